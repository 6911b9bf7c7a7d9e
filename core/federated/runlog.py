"""A run's progress as JSON lines: the ServerApp appends, ``vigil fl run`` follows and records.

One object per line, each with an ``event``: ``round`` (the verdict on every update, their norms
and hashes, the aggregate's hash), ``evaluate`` (per-site validation aggregates), ``finished`` or
``failed`` (with the reason). Appended and flushed line by line, so a reader never sees half an
object except the line being written, which :func:`read_events` leaves for next time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from core.types import JSONObject

__all__ = ["EVENTS_FILE", "append_event", "read_events"]

EVENTS_FILE: Final = "events.jsonl"


def append_event(run_dir: Path, event: JSONObject) -> None:
    """Append ``event`` as one line of ``events.jsonl`` and flush it."""
    with (run_dir / EVENTS_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, sort_keys=True, allow_nan=True) + "\n")
        fh.flush()


def read_events(run_dir: Path, *, skip: int = 0) -> list[JSONObject]:
    """The complete events after the first ``skip``; ``[]`` while the file does not exist."""
    path = run_dir / EVENTS_FILE
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    complete = lines[:-1]  # the last piece is "" or a line still being written
    return [json.loads(line) for line in complete[skip:] if line]
