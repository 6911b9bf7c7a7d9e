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

from core.errors import BadInputError, CheckFailedError

__all__ = ["Advance", "Outcome", "emit", "exit_code_for", "one_line", "progress_bar"]


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


def one_line(message: str) -> str:
    r"""``message`` with every unprintable character escaped (``\n``, ``\x1b``, ``\udcff``): one printable line.

    An error names the bad value, and a value can hold a newline, a terminal escape or a lone
    surrogate (a byte of a non-UTF-8 argument): printed raw they would split the one-line error
    or garble the terminal.
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


@contextmanager
def progress_bar(total: int, desc: str, *, enabled: bool, unit: str = "file") -> Iterator[Advance]:
    """A tqdm bar on stderr; yields ``advance(n)``. Silent with ``--json`` so stdout stays one object.

    Silent too when stderr is not a terminal: in a log or a pipe the bar's carriage-return redraws
    are noise, and a command that then fails must leave its one-line error alone on stderr.
    """
    from tqdm import tqdm  # here, not at the top: building the parser (``vigil --help``) does not need it

    shown = enabled and sys.stderr.isatty()
    bar = tqdm(total=total or None, desc=desc, unit=unit, disable=not shown, file=sys.stderr, leave=False)

    def advance(n: int, *, total: int | None = None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(n)

    try:
        yield advance
    finally:
        bar.close()
