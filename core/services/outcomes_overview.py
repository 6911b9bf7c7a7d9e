"""What the Outcomes page shows: EMR ingest runs, linkage per site, label backlog and delay, label sources.

One read transaction, pure arithmetic after it. The delay is measured from the study date to the
clinical date (``effective_at``, else the day it was stored) of the first EMR outcome row that
agrees with the study's label of record, for studies whose label comes from the EMR: how long a
site waits for its labels. Ground truth has no clinical date and adjudications are a champion's
act, so neither counts as a delay.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

from core.services.outcomes import LabelSource, ResolvedLabel, resolve_labels
from core.store import emr, feedback, outcomes
from core.store.emr import EvidenceRecord, RunRecord, UnmappedRecord
from core.store.engine import SessionFactory
from core.store.outcomes import OutcomeRecord, OutcomeSource

__all__ = ["OutcomesOverview", "SiteOutcomes", "outcomes_overview", "overview_version"]


@dataclass(frozen=True, slots=True)
class SiteOutcomes:
    """One site's EMR linkage, labels and label delay.

    Attributes
    ----------
    n_studies : int
    n_linked_studies : int
        Studies with at least one piece of EMR evidence linked to them.
    linked_by_method : dict
        Linked evidence by how it was linked (``study_uid``, ``accession``, ``patient_date``).
    n_labelled : int
        Studies with a label of record (any source).
    by_source : dict
        Labels of record by source.
    n_waiting : int
        Studies without a label of record (unknown, not negative).
    delay_median_days, delay_p90_days : float or None
        Study date to EMR label date, over the studies labelled from the EMR; None without any.
    n_delay : int
        How many studies the delay is computed over.
    """

    site: str
    n_studies: int
    n_linked_studies: int
    linked_by_method: dict[str, int]
    n_labelled: int
    by_source: dict[str, int]
    n_waiting: int
    delay_median_days: float | None
    delay_p90_days: float | None
    n_delay: int

    @property
    def linkage_rate(self) -> float | None:
        """Share of the site's studies with linked EMR evidence (None for a site without studies)."""
        return self.n_linked_studies / self.n_studies if self.n_studies else None


@dataclass(frozen=True, slots=True)
class OutcomesOverview:
    """Everything the Outcomes page renders."""

    runs: tuple[RunRecord, ...]
    sites: tuple[SiteOutcomes, ...]
    n_evidence: int
    n_unlinked: int
    unmapped: tuple[UnmappedRecord, ...]
    conflicts: dict[str, int]


def outcomes_overview(sf: SessionFactory, *, max_runs: int = 50) -> OutcomesOverview:
    """Read and summarise the EMR outcomes (one read transaction)."""
    with sf() as session:
        runs = emr.list_runs(session, limit=max_runs)
        evidence = emr.list_evidence(session)
        unmapped = emr.list_unmapped(session)
        studies = emr.link_candidates(session)
        records = outcomes.list_outcomes(session)
        resolution = resolve_labels(records, feedback.list_feedback(session, current_only=True))
    first_emr = _first_emr_dates(records)
    per_site: dict[str, list[tuple[int, date | None]]] = defaultdict(list)
    for s in studies:
        per_site[s.site].append((s.study_id, s.study_date))
    sites = tuple(_site(name, per_site[name], evidence, resolution.labels, first_emr) for name in sorted(per_site))
    return OutcomesOverview(
        runs=tuple(runs),
        sites=sites,
        n_evidence=len(evidence),
        n_unlinked=sum(e.study_id is None for e in evidence),
        unmapped=tuple(unmapped),
        conflicts=dict(resolution.conflicts),
    )


def overview_version(sf: SessionFactory) -> str:
    """A token that changes whenever the overview could (new labels, sites, ingest runs); index look-ups only."""
    with sf() as session:
        latest = emr.list_runs(session, limit=1)
        return f"{outcomes.version_token(session)}.r{latest[0].id if latest else 0}"


def _first_emr_dates(records: Sequence[OutcomeRecord]) -> dict[tuple[int, bool], date]:
    """The earliest clinical date of an EMR row per (study, label value)."""
    first: dict[tuple[int, bool], date] = {}
    for r in records:
        if r.source is not OutcomeSource.EMR:
            continue
        day = (r.effective_at or r.created_at).date()
        key = (r.study_id, r.label)
        if key not in first or day < first[key]:
            first[key] = day
    return first


def _site(
    name: str,
    studies: Sequence[tuple[int, date | None]],
    evidence: Sequence[EvidenceRecord],
    labels: dict[int, ResolvedLabel],
    first_emr: dict[tuple[int, bool], date],
) -> SiteOutcomes:
    ids = {sid for sid, _ in studies}
    linked = [e for e in evidence if e.study_id in ids]
    resolved = [labels[sid] for sid in ids if sid in labels]
    delays = [
        (first_emr[(sid, bool(labels[sid].label))] - day).days
        for sid, day in studies
        if sid in labels
        and labels[sid].source is LabelSource.EMR
        and day is not None
        and (sid, bool(labels[sid].label)) in first_emr
    ]
    return SiteOutcomes(
        site=name,
        n_studies=len(ids),
        n_linked_studies=len({e.study_id for e in linked}),
        linked_by_method=dict(Counter(e.link_method for e in linked)),
        n_labelled=len(resolved),
        by_source=dict(Counter(str(label.source) for label in resolved)),
        n_waiting=len(ids) - len(resolved),
        delay_median_days=float(np.median(delays)) if delays else None,
        delay_p90_days=float(np.percentile(delays, 90)) if delays else None,
        n_delay=len(delays),
    )
