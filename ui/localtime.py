"""Times as the reader's clock shows them: the configured display zone, never UTC by accident.

The store and the audit log keep UTC (rule: one clock for evidence); only what a page shows is
converted, here, with ``display_timezone`` from the configuration (``vigil.toml``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ui import resources

__all__ = ["duration_text", "local_text", "zone"]


def zone() -> ZoneInfo:
    """The installation's display zone (``UTC`` when not configured)."""
    return resources.settings().display_zone


def local_text(moment: datetime, tz: ZoneInfo | None = None) -> str:
    """``2025-05-14 09:30 CEST``: an aware ``moment`` in the display zone, to the minute, zone named.

    Raises
    ------
    ValueError
        ``moment`` is naive (a time without a zone cannot be shown as anyone's local time).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()!r}: only aware times can be shown")
    local = moment.astimezone(tz or zone())
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def duration_text(span: timedelta) -> str:
    """``45 min``, ``2 h 05 min`` or ``3 d 4 h``: a turnaround as a reader reads it (minutes floored)."""
    minutes = max(0, int(span.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins:02d} min"
    return f"{mins} min"
