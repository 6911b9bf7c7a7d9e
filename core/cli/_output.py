"""How every ``vigil`` command reports: one JSON object with ``--json``, text otherwise.

Exit codes (ARCHITECTURE.md, "The command line"): 0 success, 1 a check failed, 2 bad input
(with a one-line error on stderr and nothing written).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from tqdm import tqdm

from core.errors import BadInputError, CheckFailedError

__all__ = ["Advance", "Outcome", "emit", "exit_code_for", "progress_bar"]


class Advance(Protocol):
    """Moves a progress bar ``n`` steps on; ``total`` sets the bar's length once the work knows it."""

    def __call__(self, n: int, *, total: int | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command hands back: its JSON object, its human text, and whether its check passed."""

    data: Mapping[str, object]
    text: str
    ok: bool = True


def emit(outcome: Outcome, *, as_json: bool) -> int:
    """Print ``outcome`` and return the exit code (0, or 1 when a check failed)."""
    if as_json:
        sys.stdout.write(json.dumps(outcome.data, sort_keys=True, default=str) + "\n")
    else:
        sys.stdout.write(outcome.text.rstrip("\n") + "\n")
    return 0 if outcome.ok else 1


def exit_code_for(exc: Exception) -> int:
    """2 for bad input, 1 for a failed check; anything else is a bug and is re-raised by the caller."""
    if isinstance(exc, BadInputError):
        return 2
    if isinstance(exc, CheckFailedError):
        return 1
    raise exc


@contextmanager
def progress_bar(total: int, desc: str, *, enabled: bool, unit: str = "file") -> Iterator[Advance]:
    """A tqdm bar on stderr; yields ``advance(n)``. Silent with ``--json`` so stdout stays one object."""
    bar = tqdm(total=total or None, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, leave=False)

    def advance(n: int, *, total: int | None = None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(n)

    try:
        yield advance
    finally:
        bar.close()
