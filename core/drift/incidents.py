"""Incidents: one site's alarms that share a cause, grouped into one thing to investigate (pure).

A site runs about a dozen charts, and one change (or one false alarm) shows on several correlated
streams at once: a scanner update moves the intensity mean, its spread and the noise the same
week. A CMIO investigates the change, not each chart, so alarms are grouped into *incidents*.

**Family.** What an alarm's stream watches (:func:`family_of`): the score streams, the image
streams, the label streams (each :class:`core.drift.sitestreams.StreamGroup`), or metadata
novelty (``novelty:<attribute>``). Two families never share an incident: a new software version
and an image shift the same day are two pieces of evidence a CMIO reads side by side, and each
keeps its own lifecycle.

**The rule.** An alarm of site S and family F dated d joins an unresolved incident of (S, F) when
the incident's alarms with d added still span at most ``window_days`` days; for an alarm on or
after the incident's first alarm that is ``d - first <= window_days``. The window is measured
from the incident's *first* alarm, so alarms a week apart make several incidents, never one
that grows without bound (an alarm dated before the first one, from late data, joins only while
the span still fits, and then becomes the first). Otherwise the alarm opens a new incident.
Resolved incidents are never joined: the caller passes the unresolved ones only.

**Order.** A batch is placed in (alarm date, key) order, whatever order it arrives in, so the
grouping of a batch does not depend on the order the monitors listed its alarms.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

from core.drift.novelty import NOVELTY_ATTRIBUTES
from core.drift.sitestreams import STREAMS
from core.errors import BadInputError

__all__ = [
    "DEFAULT_WINDOW_DAYS",
    "NOVELTY_PREFIX",
    "Alarm",
    "Grouping",
    "IncidentFamily",
    "OpenIncident",
    "check_window_days",
    "family_of",
    "group_alarms",
    "incident_summary",
    "stream_title",
]

#: Days from an incident's first alarm within which a site's alarms of one family are one incident.
DEFAULT_WINDOW_DAYS: Final = 7
#: Stream name prefix of metadata-novelty alerts (``novelty:software_versions``).
NOVELTY_PREFIX: Final = "novelty:"


class IncidentFamily(StrEnum):
    """The shared cause an incident's alarms point at; the values are stored."""

    SCORE = "score"
    IMAGE = "image"
    LABEL = "label"
    METADATA = "metadata"


_FAMILY_TITLES: Final = {
    IncidentFamily.SCORE: "Score streams",
    IncidentFamily.IMAGE: "Image streams",
    IncidentFamily.LABEL: "Label streams",
    IncidentFamily.METADATA: "Metadata novelty",
}


def check_window_days(window_days: int) -> int:
    """``window_days`` when it is a whole number of days >= 0.

    Raises
    ------
    BadInputError
        Negative, fractional, a bool or not a number; the message names the value.
    """
    if isinstance(window_days, bool) or not isinstance(window_days, int) or window_days < 0:
        raise BadInputError(f"incident window must be a whole number of days >= 0, got {window_days!r}")
    return window_days


def family_of(stream: str) -> IncidentFamily:
    """The family of an alert's stream.

    Parameters
    ----------
    stream : str
        A key of :data:`core.drift.sitestreams.STREAMS` or ``"novelty:<attribute>"``.

    Raises
    ------
    BadInputError
        Neither a monitored stream nor a novelty stream.

    Examples
    --------
    >>> [str(family_of(s)) for s in ("noise", "mean_score", "specificity", "novelty:vendor")]
    ['image', 'score', 'label', 'metadata']
    """
    if stream.startswith(NOVELTY_PREFIX):
        return IncidentFamily.METADATA
    info = STREAMS.get(stream)
    if info is None:
        known = ", ".join(STREAMS)
        raise BadInputError(f"unknown stream: {stream!r} (one of {known}, or {NOVELTY_PREFIX}<attribute>)")
    return IncidentFamily(info.group.value)


def stream_title(stream: str) -> str:
    """The name people read for a stream (``"Noise estimate"``, ``"New software version"``)."""
    if stream.startswith(NOVELTY_PREFIX):
        attribute = stream.removeprefix(NOVELTY_PREFIX)
        return f"New {NOVELTY_ATTRIBUTES.get(attribute, attribute)}"
    return STREAMS[stream].title if stream in STREAMS else stream


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm to place in an incident.

    Attributes
    ----------
    key : str
        Identifies the alarm within a batch (an alert's stored key); unique per batch.
    site, stream : str
    alarm_date : date
    """

    key: str
    site: str
    stream: str
    alarm_date: date

    @property
    def family(self) -> IncidentFamily:
        """The family of its stream."""
        return family_of(self.stream)


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """An unresolved incident as the rule sees it: site, family and the span of its alarm dates."""

    id: int
    site: str
    family: IncidentFamily
    first_alarm_date: date
    last_alarm_date: date


@dataclass(frozen=True, slots=True)
class Grouping:
    """Where each alarm of a batch went.

    Attributes
    ----------
    joined : dict of str to int
        Alarm key -> id of the existing unresolved incident it joins.
    opened : tuple of tuple of Alarm
        The new incidents, in the order of their first alarm, each its alarms in (date, key) order.
    """

    joined: Mapping[str, int]
    opened: tuple[tuple[Alarm, ...], ...]


@dataclass(slots=True)
class _Span:
    """A working incident while a batch is placed: an existing one (``ref``) or a new one (``alarms``)."""

    site: str
    family: IncidentFamily
    first: date
    last: date
    ref: int | None
    alarms: list[Alarm]

    def admits(self, day: date, window_days: int) -> bool:
        return (max(self.last, day) - min(self.first, day)).days <= window_days

    def rank(self, day: date) -> tuple[int, date, bool, int]:
        # The nearest first alarm wins; ties go to the older incident, then to an existing one.
        return abs((day - self.first).days), self.first, self.ref is None, self.ref or 0

    def take(self, day: date) -> None:
        self.first, self.last = min(self.first, day), max(self.last, day)


def group_alarms(
    alarms: Iterable[Alarm], unresolved: Sequence[OpenIncident], *, window_days: int = DEFAULT_WINDOW_DAYS
) -> Grouping:
    """Place a batch of alarms: each joins an unresolved incident of its site and family, or opens one.

    Parameters
    ----------
    alarms : iterable of Alarm
        The batch, in any order; keys unique.
    unresolved : sequence of OpenIncident
        The open and acknowledged incidents (never resolved ones: those are closed for good).
    window_days : int, default 7
        Largest span in days of one incident's alarm dates, from its first alarm; 0 groups only
        alarms of the same day.

    Returns
    -------
    Grouping

    Raises
    ------
    BadInputError
        ``window_days`` is negative, two alarms share a key, or a stream is unknown.

    Examples
    --------
    >>> d = date(2025, 5, 13)
    >>> g = group_alarms(
    ...     [Alarm("a", "riverside", "noise", d), Alarm("b", "riverside", "intensity_mean", d.replace(day=15)),
    ...      Alarm("c", "riverside", "mean_score", d.replace(day=19))],
    ...     [OpenIncident(4, "riverside", IncidentFamily.SCORE, d.replace(day=12), d.replace(day=12))],
    ... )
    >>> dict(g.joined), [[a.key for a in new] for new in g.opened]
    ({'c': 4}, [['a', 'b']])
    """
    check_window_days(window_days)
    batch = sorted(alarms, key=lambda a: (a.alarm_date, a.key))
    keys = [a.key for a in batch]
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise BadInputError(f"alarm keys must be unique in a batch, repeated: {twice!r}")
    spans = [_Span(i.site, i.family, i.first_alarm_date, i.last_alarm_date, i.id, []) for i in unresolved]
    joined: dict[str, int] = {}
    opened: list[_Span] = []
    for alarm in batch:
        family, day = alarm.family, alarm.alarm_date
        fits = [s for s in spans if s.site == alarm.site and s.family == family and s.admits(day, window_days)]
        if not fits:
            new = _Span(alarm.site, family, day, day, None, [alarm])
            spans.append(new)
            opened.append(new)
            continue
        span = min(fits, key=lambda s: s.rank(day))
        span.take(day)
        if span.ref is None:
            span.alarms.append(alarm)
        else:
            joined[alarm.key] = span.ref
    return Grouping(joined, tuple(tuple(s.alarms) for s in opened))


def incident_summary(
    site: str, family: IncidentFamily, alarms: Sequence[tuple[str, date]], change_date: date | None
) -> str:
    """One sentence for the inbox: family, site, how many alarms on which streams, since when.

    Parameters
    ----------
    alarms : sequence of (stream, alarm date)
        The incident's alarms, any order; at least one.

    Examples
    --------
    >>> alarms = [("noise", date(2025, 5, 16)), ("intensity_mean", date(2025, 5, 13))]
    >>> print(incident_summary("riverside", IncidentFamily.IMAGE, alarms, date(2025, 5, 12)))
    Image streams at riverside: 2 alarms from 2025-05-13 (Intensity mean, Noise estimate); estimated change from ...
    """
    if not alarms:
        raise BadInputError(f"an incident at {site!r} needs at least one alarm")
    ordered = sorted(alarms, key=lambda a: (a[1], a[0]))
    titles = list(dict.fromkeys(stream_title(stream) for stream, _ in ordered))
    count = f"{len(ordered)} alarm{'s' if len(ordered) != 1 else ''}"
    text = f"{_FAMILY_TITLES[family]} at {site}: {count} from {ordered[0][1].isoformat()} ({', '.join(titles)})"
    return text if change_date is None else f"{text}; estimated change from {change_date.isoformat()}"
