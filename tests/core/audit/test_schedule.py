"""When an automatic checkpoint is due: every N entries or T minutes, whichever comes first."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from core.audit.schedule import CheckpointPolicy, is_due

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
POLICY = CheckpointPolicy(every=10, minutes=30)


@pytest.mark.parametrize(
    ("entries", "covered", "waited_min", "due"),
    [
        (0, 0, None, False),  # empty ledger
        (10, 10, None, False),  # everything signed
        (9, 0, 29.99, False),  # neither rule reached
        (10, 0, 0.0, True),  # count rule, exactly N
        (25, 14, 1.0, True),  # count rule past an earlier checkpoint
        (24, 15, 29.99, False),
        (16, 15, 30.0, True),  # time rule, exactly T
        (1, 0, 600.0, True),
    ],
)
def test_is_due(entries: int, covered: int, waited_min: float | None, due: bool) -> None:
    oldest = None if waited_min is None else T0
    now = T0 + timedelta(minutes=waited_min or 0.0)
    assert is_due(POLICY, entries=entries, covered=covered, oldest_uncovered_at=oldest, now=now) is due


def test_a_ledger_shorter_than_its_checkpoint_is_not_due() -> None:
    # Truncation is verify's to report; signing a shorter tree is make_checkpoint's to refuse.
    assert not is_due(POLICY, entries=3, covered=5, oldest_uncovered_at=None, now=T0)


@pytest.mark.parametrize(("every", "minutes"), [(0, 1.0), (-1, 1.0), (True, 1.0), (1, 0.0), (1, -5.0), (1, math.nan)])
def test_bad_policies_are_refused_naming_the_value(every: int, minutes: float) -> None:
    with pytest.raises(ValueError, match="must be a positive"):
        CheckpointPolicy(every=every, minutes=minutes)
