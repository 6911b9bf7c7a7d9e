"""The examples in core.drift's docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "core.drift.base",
    "core.drift.bocpd",
    "core.drift.calibration",
    "core.drift.cusum",
    "core.drift.ewma",
    "core.drift.features",
    "core.drift.incidents",
    "core.drift.novelty",
    "core.drift.ranks",
    "core.drift.streams",
    "core.drift.synthetic",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    # Execute
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)

    # Assert
    assert result.attempted > 0 and result.failed == 0
