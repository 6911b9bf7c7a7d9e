"""Pilot drift: every site against the retrospective benchmark (``vigil validate``), and the labelling plan.

The service reads one model version's scores and the resolved labels (``core.services.outcomes``),
builds harmonized strata from the stored headers (vendor taxonomy at ingest, protocol taxonomy
here, software version, detector, age band, sex), and hands arrays to the pure
:func:`core.metrics.pilot_drift.pilot_drift_report`. Benchmark studies the model version was
fitted or tuned on are never evaluated.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import numpy as np

from core.audit.events import AuditAction
from core.errors import BadInputError, UnknownSiteError
from core.imaging.harmonize import TAXONOMY_VERSION, UNMAPPED
from core.imaging.protocol import PROTOCOL_TAXONOMY_VERSION, harmonize_protocol
from core.metrics.base import finite_or_none
from core.metrics.pilot_drift import DriftOptions, pilot_drift_report
from core.metrics.report import PilotDriftReport
from core.metrics.sampling_plan import SamplingPlan, sampling_plan
from core.services import worklist
from core.services.outcomes import EvaluationSet, evaluation_set
from core.store import audit_log, outcomes, site_calibrators
from core.store.engine import SessionFactory
from core.store.outcomes import ScoredStudy
from core.store.site_calibrators import SiteCalibratorRecord
from core.types import JSONObject, JSONValue

__all__ = [
    "STRATA",
    "LabelCounts",
    "PlanReport",
    "UnmappedValue",
    "ValidationReport",
    "age_band",
    "plan_labelling",
    "report_version",
    "validate",
]

#: Harmonized strata dimensions, in display order.
STRATA: Final = ("vendor", "detector", "protocol", "software", "age_band", "sex")
_AGE: Final = re.compile(r"^(\d{1,3})([DWMY])$")
_UNKNOWN: Final = "unknown"


@dataclass(frozen=True, slots=True)
class LabelCounts:
    """One site's studies: scored, labelled (by source), unlabelled (unknown), left out as training data."""

    site: str
    n_studies: int
    n_scored: int
    n_labelled: int
    by_source: dict[str, int]
    n_excluded_training: int

    @property
    def n_unlabelled(self) -> int:
        """Scored studies without a label (unknown, not negative)."""
        return self.n_scored - self.n_labelled

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "site": self.site,
            "n_studies": self.n_studies,
            "n_scored": self.n_scored,
            "n_labelled": self.n_labelled,
            "n_unlabelled": self.n_unlabelled,
            "by_source": dict(self.by_source),
            "n_excluded_training": self.n_excluded_training,
        }


@dataclass(frozen=True, slots=True)
class UnmappedValue:
    """A raw header value the taxonomy does not map, for an admin to add."""

    dimension: str
    raw: str
    n_studies: int
    sites: tuple[str, ...]

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {"dimension": self.dimension, "raw": self.raw, "n_studies": self.n_studies, "sites": list(self.sites)}


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The pilot-drift report with what it rests on."""

    model_version: str
    threshold: float
    benchmark: str
    drift: PilotDriftReport
    labels: tuple[LabelCounts, ...]
    unmapped: tuple[UnmappedValue, ...]
    calibrators: tuple[SiteCalibratorRecord, ...]
    vendor_taxonomy: str
    protocol_taxonomy: str

    @property
    def passed(self) -> bool:
        """The gate (see :attr:`PilotDriftReport.passed`)."""
        return self.drift.passed

    def to_dict(self) -> JSONObject:
        """The ``vigil validate --json`` object: ``sites`` lists every deployment site."""
        data = self.drift.to_dict()
        data.update(
            {
                "model_version": self.model_version,
                "threshold": self.threshold,
                "benchmark_site": self.benchmark,
                "labels": [c.to_dict() for c in self.labels],
                "unmapped": [u.to_dict() for u in self.unmapped],
                "calibrators": [c.to_dict() for c in self.calibrators],
                "taxonomies": {"vendor": self.vendor_taxonomy, "protocol": self.protocol_taxonomy},
            }
        )
        return data

    def summary(self) -> str:
        """A few lines for people."""
        lines = [
            f"model {self.model_version} at threshold {self.threshold:g}; benchmark {self.benchmark}; "
            f"target gap {self.drift.max_gap:g} on the "
            f"{'upper confidence bound' if self.drift.use_ci_bound else 'point estimate'}"
        ]
        for s in (self.drift.benchmark, *self.drift.sites):
            auc = "" if s.auc is None else f"AUC {s.auc.estimate:.3f} [{s.auc.lower:.3f}, {s.auc.upper:.3f}]"
            gap = "" if s.gap is None else f"gap {s.gap.estimate:+.3f} [{s.gap.lower:+.3f}, {s.gap.upper:+.3f}]"
            lines.append(f"  {s.site:<14} {s.status:<15} n={s.n_labelled:<5} {auc}  {gap}".rstrip())
        verdict = "PASS" if self.passed else f"FAIL: {', '.join(self.drift.failing_sites)} outside the target"
        return "\n".join([*lines, verdict])


@dataclass(frozen=True, slots=True)
class PlanReport:
    """Studies to send for labelling, per site."""

    model_version: str
    plans: tuple[SamplingPlan, ...]

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {"model_version": self.model_version, "plans": [p.to_dict() for p in self.plans]}


def age_band(patient_age: str) -> str:
    """Age band of a DICOM age string (``"054Y"``); ``"unknown"`` when absent or malformed.

    Examples
    --------
    >>> [age_band(a) for a in ("054Y", "079Y", "080Y", "030Y", "006M", "")]
    ['40-59', '60-79', '80+', '<40', '<40', 'unknown']
    """
    match = _AGE.match(patient_age.strip())
    if match is None:
        return _UNKNOWN
    value, unit = int(match.group(1)), match.group(2)
    years = value if unit == "Y" else 0
    if years < 40:
        return "<40"
    if years < 60:
        return "40-59"
    return "60-79" if years < 80 else "80+"


def _strata(study: ScoredStudy) -> dict[str, str]:
    protocol = harmonize_protocol(study.protocol_name)
    return {
        "vendor": study.vendor if study.vendor != UNMAPPED else f"{UNMAPPED}: {study.manufacturer_raw or '(empty)'}",
        "detector": study.manufacturer_model_name or _UNKNOWN,
        "protocol": protocol.protocol if protocol.mapped else f"{UNMAPPED}: {protocol.raw or '(empty)'}",
        "software": study.software_versions or _UNKNOWN,
        "age_band": age_band(study.patient_age),
        "sex": study.patient_sex or _UNKNOWN,
    }


def validate(
    session_factory: SessionFactory,
    *,
    model_version: str | None = None,
    sites: Sequence[str] = (),
    options: DriftOptions | None = None,
    actor: str,
    now: Callable[[], datetime],
    record: bool = True,
) -> ValidationReport:
    """Compute the pilot-drift report and, with ``record``, write its verdict to the audit ledger.

    Parameters
    ----------
    model_version : str, optional
        The serving version when None.
    sites : sequence of str, optional
        Deployment sites to report; every registered site when empty.
    options : DriftOptions, optional
        Target gap, interval settings, minimum cases.
    record : bool, default True
        Append a ``validation_reported`` audit entry (the CLI gate does; a page view does not).

    Raises
    ------
    UnknownSiteError
        A name in ``sites`` is not registered.
    BadInputError
        No benchmark site is registered, or no model version is serving.
    """
    ev = evaluation_set(session_factory, model_version=model_version)
    report = _report(session_factory, ev, sites, options)
    if record:
        _record(session_factory, report, actor=actor, now=now)
    return report


def _report(
    session_factory: SessionFactory, ev: EvaluationSet, sites: Sequence[str], options: DriftOptions | None
) -> ValidationReport:
    benchmark = _benchmark(ev, sites)
    chosen = set(sites) or set(ev.site_names)
    cases = [s for s in ev.studies if s.site in chosen | {benchmark}]
    labelled = [
        s for s in cases if s.score is not None and s.study_id in ev.labels.labels and s.study_id not in ev.excluded
    ]
    strata = [_strata(s) for s in labelled]
    drift = pilot_drift_report(
        np.array([ev.labels.labels[s.study_id].label for s in labelled], dtype=np.int64),
        np.array([s.score for s in labelled], dtype=np.float64),
        [s.site for s in labelled],
        benchmark=benchmark,
        threshold=ev.threshold,
        strata={dim: [row[dim] for row in strata] for dim in STRATA},
        groups=[f"{s.site}/{s.patient_id}" for s in labelled],
        all_sites=sorted(chosen - {benchmark}),
        options=options,
    )
    return ValidationReport(
        model_version=ev.model_version.version,
        threshold=ev.threshold,
        benchmark=benchmark,
        drift=drift,
        labels=_label_counts(ev, cases, sorted(chosen | {benchmark})),
        unmapped=_unmapped(cases),
        calibrators=_calibrators(session_factory, ev, chosen),
        vendor_taxonomy=TAXONOMY_VERSION,
        protocol_taxonomy=PROTOCOL_TAXONOMY_VERSION,
    )


def _benchmark(ev: EvaluationSet, sites: Sequence[str]) -> str:
    for name in sites:
        if name not in ev.site_names:
            raise UnknownSiteError(name)
    if ev.benchmark is None:
        raise BadInputError("no benchmark site is registered: mark one with `vigil site add NAME --benchmark`")
    return ev.benchmark


def _label_counts(ev: EvaluationSet, cases: Sequence[ScoredStudy], names: Sequence[str]) -> tuple[LabelCounts, ...]:
    rows = []
    for name in names:
        at_site = [s for s in cases if s.site == name]
        scored = [s for s in at_site if s.score is not None and s.study_id not in ev.excluded]
        sources = Counter(str(ev.labels.labels[s.study_id].source) for s in scored if s.study_id in ev.labels.labels)
        excluded = sum(1 for s in at_site if s.study_id in ev.excluded)
        rows.append(LabelCounts(name, len(at_site), len(scored), sum(sources.values()), dict(sources), excluded))
    return tuple(rows)


def _unmapped(cases: Sequence[ScoredStudy]) -> tuple[UnmappedValue, ...]:
    found: dict[tuple[str, str], list[str]] = {}
    for s in cases:
        if s.vendor == UNMAPPED:
            found.setdefault(("vendor", s.manufacturer_raw), []).append(s.site)
        protocol = harmonize_protocol(s.protocol_name)
        if not protocol.mapped:
            found.setdefault(("protocol", protocol.raw), []).append(s.site)
    return tuple(
        UnmappedValue(dim, raw, len(where), tuple(sorted(set(where)))) for (dim, raw), where in sorted(found.items())
    )


def _calibrators(sf: SessionFactory, ev: EvaluationSet, chosen: set[str]) -> tuple[SiteCalibratorRecord, ...]:
    with sf() as session:
        found = site_calibrators.list_calibrators(session, model_version_id=ev.model_version.id)
    return tuple(c for c in found if c.site in chosen)


def _record(sf: SessionFactory, report: ValidationReport, *, actor: str, now: Callable[[], datetime]) -> None:
    gaps: dict[str, JSONValue] = {
        s.site: None if s.gap is None else finite_or_none(s.gap.estimate) for s in report.drift.sites
    }
    payload: JSONObject = {
        "model_version": report.model_version,
        "passed": report.passed,
        "max_gap": report.drift.max_gap,
        "gap_judged_on": "upper confidence bound" if report.drift.use_ci_bound else "point estimate",
        "failing_sites": list(report.drift.failing_sites),
        "gaps": gaps,
        "statuses": {s.site: str(s.status) for s in report.drift.sites},
        "n_labelled": {c.site: c.n_labelled for c in report.labels},
        "random_state": report.drift.random_state,
    }
    with sf.begin() as session:
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.VALIDATION_REPORTED,
            subject=report.model_version,
            payload=payload,
            recorded_at=now().isoformat(),
        )


def report_version(session_factory: SessionFactory) -> str:
    """A cheap token that changes whenever :func:`validate` could return something else (for UI caches)."""
    with session_factory() as session:
        token = outcomes.version_token(session)
    return f"{worklist.data_version(session_factory)}.{token}"


def plan_labelling(
    session_factory: SessionFactory,
    *,
    model_version: str | None = None,
    sites: Sequence[str] = (),
    options: DriftOptions | None = None,
    random_state: int = 0,
) -> PlanReport:
    """Which unlabelled, scored studies each deployment site should send for labelling (``--plan``).

    Strata are vendor x protocol x age band. A site whose sample size cannot be planned (no
    usable benchmark AUC, or an unreachable target) gets a plan with ``n_required=None``.
    """
    ev = evaluation_set(session_factory, model_version=model_version)
    report = _report(session_factory, ev, sites, options)
    plans = []
    for summary in report.drift.sites:
        at_site = [
            s for s in ev.studies if s.site == summary.site and s.score is not None and s.study_id not in ev.excluded
        ]
        keys = ["|".join(_strata(s)[d] for d in ("vendor", "protocol", "age_band")) for s in at_site]
        required = summary.required.n_total if summary.required is not None else None
        plans.append(
            sampling_plan(
                [s.study_uid for s in at_site],
                keys,
                [s.study_id in ev.labels.labels for s in at_site],
                site=summary.site,
                n_required=required,
                random_state=random_state,
            )
        )
    return PlanReport(report.model_version, tuple(plans))
