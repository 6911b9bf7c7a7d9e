"""argparse value types: every bounded number, database id and path a command takes is checked here.

A value is checked while the command line is parsed, so a bad one exits 2 with one line naming
it before any work starts and before anything is written: no row, no audit entry, no file. The
bounds keep a typo from running until the disk fills (``--studies 100000000``) and keep numbers
inside what the database and the random generators accept (an id past SQLite's 64-bit INTEGER
used to crash at the query).

Output paths are checked here in full (:mod:`core.cli._paths`). Input paths are checked here for
form only (not empty, no NUL); that they exist and are of the right kind is the handler's first
check, when the command runs: a parser built ahead of time (a test, a wrapper turning flags into
a recipe) must accept an input that is only created later.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from core.cli import _paths
from core.errors import VigilError

__all__ = [
    "MAX_ID",
    "aware_time",
    "MAX_SEED",
    "bounded_int",
    "existing_path",
    "finite_float",
    "input_dir",
    "input_file",
    "output_dir",
    "output_file",
    "positive_id",
    "seed",
    "version_name",
]

#: The largest row id a database INTEGER (SQLite, PostgreSQL BIGINT) holds.
MAX_ID: Final = 2**63 - 1
#: The largest seed numpy's legacy RandomState and scikit-learn's ``random_state`` accept.
MAX_SEED: Final = 2**32 - 1


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type for a whole number from ``low`` to ``high`` (both included)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, got {text!r}")
        return value

    parse.__name__ = f"int_{low}_to_{high}"
    return parse


#: A database row id (``vigil calibrator approve ID``, ``vigil alert ack ALERT_ID``).
positive_id: Final = bounded_int(1, MAX_ID)
#: A random seed.
seed: Final = bounded_int(0, MAX_SEED)


def finite_float(low: float, high: float = math.inf, *, above: bool = False) -> Callable[[str], float]:
    """An argparse type for a finite number from ``low`` (excluded when ``above``) to ``high``; no NaN or infinity."""
    lowest = f"greater than {low:g}" if above else f"at least {low:g}"
    bound = lowest if math.isinf(high) else f"{lowest} and at most {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value > low if above else value >= low) and value <= high):
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}")
        return value

    parse.__name__ = "finite_float"
    return parse


def aware_time(text: str) -> datetime:
    """An argparse type for an ISO-8601 moment with its zone (``2026-12-05T10:00Z``, ``...+01:00``).

    A time without a zone is refused: "10:00" at which hospital's clock is not evidence.
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an ISO-8601 time with a zone, e.g. 2026-12-05T10:00Z, got {text!r}"
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"needs a zone (Z or +HH:MM), got {text!r}")
    return value.astimezone(UTC)


_VERSION_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def version_name(text: str) -> str:
    """An argparse type for a new model version's name; it names the weights file, so no path separators."""
    if not _VERSION_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "must be 1 to 128 letters, digits, '.', '_', '+' or '-', starting with a letter or digit "
            f"(it names the weights file), got {text!r}"
        )
    return text


def _path_type(check: Callable[[Path], None], name: str) -> Callable[[str], Path]:
    def parse(text: str) -> Path:
        # Path("") is ".", the working directory: an empty value must not quietly mean "here".
        if not text:
            raise argparse.ArgumentTypeError("an empty path")
        if "\x00" in text:
            raise argparse.ArgumentTypeError(f"a path cannot contain a NUL character, got {text!r}")
        path = Path(text)
        try:
            check(path)
        except VigilError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc
        return path

    parse.__name__ = name
    return parse


def output_file(suffix: str | None = None) -> Callable[[str], Path]:
    """An argparse type for a file the command will write (see :func:`core.cli._paths.check_output_file`)."""
    return _path_type(lambda p: _paths.check_output_file(p, suffix=suffix), "output_file")


#: A folder the command will create or write into.
output_dir: Final = _path_type(_paths.check_output_dir, "output_dir")


def _checked_when_run(_path: Path) -> None:
    """Nothing at parse time: the handler runs the ``core.cli._paths`` input check first thing."""


#: A regular file the command will read (handler: :func:`core.cli._paths.check_input_file`).
input_file: Final = _path_type(_checked_when_run, "input_file")
#: A folder the command will read (handler: :func:`core.cli._paths.check_input_dir`).
input_dir: Final = _path_type(_checked_when_run, "input_dir")
#: Anything that exists; ``vigil ingest`` judges each file's kind itself (:func:`core.cli._paths.check_existing_path`).
existing_path: Final = _path_type(_checked_when_run, "existing_path")
