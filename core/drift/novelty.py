"""Metadata novelty: a vendor, detector, protocol or software version a site has never sent before.

No statistics are needed: the first study carrying a value outside the site's known set is an
event by itself. The known set is what the site's first ``warmup`` studies carry (its
installation as Vigil first saw it) and grows with every event, so each new value fires once.
Empty values (an attribute missing from the header) are never novel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

__all__ = ["NoveltyEvent", "NoveltyReport", "detect_novelty", "NOVELTY_ATTRIBUTES"]

#: Study attributes watched, with the name shown to people.
NOVELTY_ATTRIBUTES: Mapping[str, str] = {
    "vendor": "vendor",
    "manufacturer_model_name": "detector model",
    "protocol_name": "protocol",
    "software_versions": "software version",
}


@dataclass(frozen=True, slots=True)
class NoveltyEvent:
    """The first study of a site with a value never seen there before.

    Attributes
    ----------
    attribute : str
        A key of :data:`NOVELTY_ATTRIBUTES`.
    value : str
        The new value.
    index : int
        Position of the study in the date-ordered input.
    study_uid : str
    study_date : date
    known : tuple of str
        Values of the attribute seen at the site before this study.
    """

    attribute: str
    value: str
    index: int
    study_uid: str
    study_date: date
    known: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NoveltyReport:
    """Novelty events of one site, and the baseline they were judged against.

    Attributes
    ----------
    events : tuple of NoveltyEvent
        In study order.
    baseline : dict of str to tuple of str
        Values per attribute in the site's first ``warmup`` studies.
    warmup : int
        Studies in the baseline (fewer when the site has fewer studies: then no events yet).
    warming_up : bool
        True while the site has no more than ``warmup`` studies.
    """

    events: tuple[NoveltyEvent, ...]
    baseline: dict[str, tuple[str, ...]]
    warmup: int
    warming_up: bool


def detect_novelty(
    uids: Sequence[str],
    dates: Sequence[date],
    attributes: Mapping[str, Sequence[str]],
    *,
    warmup: int,
) -> NoveltyReport:
    """Find the first study with each never-seen attribute value.

    Parameters
    ----------
    uids, dates : sequences of length n
        Study UIDs and dates, sorted by date (ties in storage order).
    attributes : mapping of str to sequence of str
        For each watched attribute, its value in every study ("" when absent).
    warmup : int
        Studies that define the known set before events can fire (>= 1).

    Returns
    -------
    NoveltyReport

    Examples
    --------
    >>> d = [date(2025, 5, i) for i in (1, 2, 3)]
    >>> rep = detect_novelty(["a", "b", "c"], d, {"software_versions": ["v4", "v4", "v5"]}, warmup=2)
    >>> [(e.value, e.study_uid) for e in rep.events]
    [('v5', 'c')]
    """
    if warmup < 1:
        raise ValueError(f"novelty warm-up needs at least 1 study, got {warmup}")
    n = len(uids)
    base = min(warmup, n)
    baseline = {a: tuple(sorted({v for v in vals[:base] if v})) for a, vals in attributes.items()}
    known = {a: set(vals) for a, vals in baseline.items()}
    events: list[NoveltyEvent] = []
    for i in range(base, n):
        for attr, vals in attributes.items():
            value = vals[i]
            if value and value not in known[attr]:
                events.append(NoveltyEvent(attr, value, i, uids[i], dates[i], tuple(sorted(known[attr]))))
                known[attr].add(value)
    return NoveltyReport(tuple(events), baseline, base, warming_up=n <= warmup)
