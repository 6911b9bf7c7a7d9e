"""When the ledger is due a signed checkpoint: every N entries or T minutes, whichever comes first.

Pure: the caller reads the ledger's size, the newest checkpoint's size and the time of the
oldest entry no checkpoint covers, and asks :func:`is_due`. The time rule bounds how long an
entry waits unsigned (an insider who truncates the tail can only erase what no signature has
vouched for yet); the count rule bounds how many entries can be lost that way on a busy day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["CheckpointPolicy", "is_due"]


@dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """How often the ledger is checkpointed without anyone asking.

    Attributes
    ----------
    every : int
        A checkpoint is due once this many entries are not covered by one (>= 1).
    minutes : float
        A checkpoint is due once the oldest uncovered entry is this old, in minutes (> 0).
    """

    every: int = 1000
    minutes: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or self.every < 1:
            raise ValueError(f"every must be a positive number of entries, got {self.every!r}")
        if not self.minutes > 0:  # also refuses NaN
            raise ValueError(f"minutes must be a positive number of minutes, got {self.minutes!r}")


def is_due(
    policy: CheckpointPolicy,
    *,
    entries: int,
    covered: int,
    oldest_uncovered_at: datetime | None,
    now: datetime,
) -> bool:
    """Whether a checkpoint is due now.

    Parameters
    ----------
    entries : int
        Entries in the ledger.
    covered : int
        Entries covered by the newest checkpoint (0 when there is none).
    oldest_uncovered_at : datetime or None
        ``recorded_at`` of entry ``covered`` (the oldest one not yet signed); None when every
        entry is covered.
    now : datetime
        The current time, timezone-aware like ``oldest_uncovered_at``.
    """
    uncovered = entries - covered
    if uncovered <= 0:
        return False
    if uncovered >= policy.every:
        return True
    return oldest_uncovered_at is not None and now - oldest_uncovered_at >= timedelta(minutes=policy.minutes)
