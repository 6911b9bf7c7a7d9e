"""Labels for metrics: load a ground-truth manifest, resolve each study's label by source, and read the evaluation set.

A study's label comes from the first source that settles it, in :data:`PRECEDENCE` order:
an adjudication (the outcome of record), a ground-truth manifest (the synthetic cohort's truth,
marked as such; real deployments have none), an EMR outcome, then readers' feedback. Within a
source, the latest adjudication or manifest row counts. Within the EMR, each resource counts by
its latest version, and only the strongest evidence type present speaks (histopathology >
follow-up imaging > clinical diagnosis > note mention, read from the row's ``detail``), so a note
never outranks a coded result; resources of that strength that disagree, or readers that
disagree, settle nothing (the conflict is counted) and the next source is asked. Rows are never
erased: a delayed outcome is a new row that changes the resolved label. A study no source
settles has no label: it is unknown, never negative.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

from core.audit.events import AuditAction
from core.audit.records import BULK_HASH_KEY, RecordKind
from core.errors import BadInputError, PathNotFoundError
from core.registry.lineage import trained_uids
from core.sampledata.manifest import read_manifest
from core.store import audit_log, feedback, model_versions, outcomes, record_hashes, sites
from core.store.engine import SessionFactory
from core.store.feedback import FeedbackRecord
from core.store.model_versions import ModelVersionRecord
from core.store.outcomes import OutcomeIn, OutcomeRecord, OutcomeSource, ScoredStudy
from core.types import JSONObject

__all__ = [
    "PRECEDENCE",
    "EvaluationSet",
    "GroundTruthLoad",
    "LabelResolution",
    "LabelSource",
    "LabelSummary",
    "ResolvedLabel",
    "emr_strength",
    "evaluation_set",
    "label_summary",
    "load_ground_truth",
    "resolve_labels",
]


class LabelSource(StrEnum):
    """Where a study's label came from, as reports name it."""

    ADJUDICATED = "adjudicated"
    GROUND_TRUTH = "ground_truth"
    EMR = "emr"
    READER_FEEDBACK = "reader_feedback"


#: Sources in the order they are asked.
PRECEDENCE: Final = (LabelSource.ADJUDICATED, LabelSource.GROUND_TRUTH, LabelSource.EMR, LabelSource.READER_FEEDBACK)

# Sources whose latest row wins; the others must agree.
_LATEST_WINS: Final = frozenset({LabelSource.ADJUDICATED, LabelSource.GROUND_TRUTH})


@dataclass(frozen=True, slots=True)
class ResolvedLabel:
    """One study's label and the source that settled it."""

    study_id: int
    label: int
    source: LabelSource
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LabelResolution:
    """Every settled label, and per source how many studies it left unsettled by disagreeing."""

    labels: dict[int, ResolvedLabel]
    conflicts: dict[str, int]


@dataclass(frozen=True, slots=True)
class GroundTruthLoad:
    """What :func:`load_ground_truth` wrote."""

    manifest: str
    manifest_sha256: str
    in_manifest: int
    loaded: int
    already_loaded: int
    not_in_store: int
    different_image: int

    def to_dict(self) -> JSONObject:
        """The ``--json`` object."""
        return {
            "manifest": self.manifest,
            "manifest_sha256": self.manifest_sha256,
            "source": str(LabelSource.GROUND_TRUTH),
            "in_manifest": self.in_manifest,
            "loaded": self.loaded,
            "already_loaded": self.already_loaded,
            "not_in_store": self.not_in_store,
            "different_image": self.different_image,
        }


@dataclass(frozen=True, slots=True)
class LabelSummary:
    """How many studies have a label, from which source, per site; unlabelled means unknown."""

    n_studies: int
    n_labelled: int
    by_source: dict[str, int]
    conflicts: dict[str, int]
    per_site: dict[str, dict[str, int]]

    @property
    def n_unlabelled(self) -> int:
        """Studies no source settles (unknown, not negative)."""
        return self.n_studies - self.n_labelled

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "n_studies": self.n_studies,
            "n_labelled": self.n_labelled,
            "n_unlabelled": self.n_unlabelled,
            "by_source": dict(self.by_source),
            "conflicts": dict(self.conflicts),
            "per_site": {site: dict(counts) for site, counts in self.per_site.items()},
            "precedence": [str(s) for s in PRECEDENCE],
        }


@dataclass(frozen=True, slots=True)
class EvaluationSet:
    """What metrics are computed from: one model version's scores, the labels, the sites.

    Attributes
    ----------
    excluded : frozenset of int
        Studies the model version was fitted or tuned on: the ground-truth manifest's ``train``
        and ``val`` splits at the benchmark when the card names that manifest, and every study a
        retrained version's card lists in its training-data manifest. Never evaluated.
    """

    model_version: ModelVersionRecord
    threshold: float
    benchmark: str | None
    site_names: tuple[str, ...]
    studies: tuple[ScoredStudy, ...]
    labels: LabelResolution
    excluded: frozenset[int] = field(default_factory=frozenset)


def load_ground_truth(
    session_factory: SessionFactory,
    manifest_path: Path,
    *,
    actor: str,
    now: Callable[[], datetime],
    sites: Collection[str] | None = None,
) -> GroundTruthLoad:
    """Store the labels of a ground-truth manifest as source ``ground_truth`` (idempotent).

    Each label's reference is ``manifest:<sha256>`` and its detail the manifest's split, so a
    report can say the label is synthetic truth and the validation can leave out the studies a
    model was trained on. A label attaches only to the image it was made for: studies not in the
    store, and studies whose stored instance is not the manifest's file (another SOP Instance UID
    or other bytes than ``file_sha256``), are counted and skipped. One transaction; the audit entry
    is written only when labels were added.

    Parameters
    ----------
    sites : collection of str, optional
        Load only these sites' rows (``vigil init`` loads the benchmark site's: a deployment site's
        labels come from its EMR); every row when None. The counts cover the chosen rows.

    Raises
    ------
    PathNotFoundError
        The manifest does not exist.
    BadInputError
        The manifest is malformed.
    """
    if not manifest_path.is_file():
        raise PathNotFoundError(manifest_path)
    sha = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    rows = [r for r in read_manifest(manifest_path) if sites is None or r.site in sites]
    ref = f"manifest:{sha}"
    with session_factory.begin() as session:
        ids = outcomes.study_ids_by_uid(session, [r.study_uid for r in rows])
        images = outcomes.stored_images(session, [r.sop_instance_uid for r in rows])
        present = outcomes.studies_with_outcome(session, source=OutcomeSource.GROUND_TRUTH, source_ref=ref)
        in_store = [r for r in rows if r.study_uid in ids]
        same_image = [r for r in in_store if (r.sop_instance_uid, r.file_sha256) in images]
        new = [
            OutcomeIn(
                ids[r.study_uid], OutcomeSource.GROUND_TRUTH, bool(r.label), ref, actor, detail=f"split={r.split}"
            )
            for r in same_image
            if ids[r.study_uid] not in present
        ]
        added = outcomes.add_outcomes(session, new, now=now())
        result = GroundTruthLoad(
            manifest_path.name,
            sha,
            in_manifest=len(rows),
            loaded=len(new),
            already_loaded=len(present),
            not_in_store=len(rows) - len(in_store),
            different_image=len(in_store) - len(same_image),
        )
        if new:
            audit_log.append(
                session,
                actor=actor,
                action=AuditAction.GROUND_TRUTH_LOADED,
                subject=ref,
                payload={**result.to_dict(), BULK_HASH_KEY: record_hashes.hash_map(session, RecordKind.OUTCOME, added)},
                recorded_at=now().isoformat(),
            )
    return result


@dataclass(frozen=True, slots=True)
class _Vote:
    order: tuple[datetime, int]  # (stored at, id): later wins where the latest counts
    value: int
    detail: str
    ref: str = ""  # the EMR resource (source_ref without its @version)


def resolve_labels(records: Iterable[OutcomeRecord], reader_feedback: Iterable[FeedbackRecord]) -> LabelResolution:
    """Settle each study's label by :data:`PRECEDENCE` (pure; see the module docstring).

    Parameters
    ----------
    records : iterable of OutcomeRecord
        Stored outcomes of every source.
    reader_feedback : iterable of FeedbackRecord
        Current (not superseded) feedback; ``indeterminate`` findings settle nothing.
    """
    votes: dict[int, dict[LabelSource, list[_Vote]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        vote = _Vote((rec.created_at, rec.id), int(rec.label), rec.detail, rec.source_ref.rsplit("@", 1)[0])
        votes[rec.study_id][LabelSource(str(rec.source))].append(vote)
    for fb in reader_feedback:
        if fb.current and fb.finding in ("present", "absent"):
            value = int(fb.finding == "present")
            votes[fb.study_id][LabelSource.READER_FEEDBACK].append(_Vote((fb.created_at, fb.id), value, fb.username))
    labels: dict[int, ResolvedLabel] = {}
    conflicts: Counter[str] = Counter()
    for study_id, by_source in votes.items():
        resolved = _settle(study_id, by_source, conflicts)
        if resolved is not None:
            labels[study_id] = resolved
    return LabelResolution(labels, dict(conflicts))


def _settle(study_id: int, by_source: dict[LabelSource, list[_Vote]], conflicts: Counter[str]) -> ResolvedLabel | None:
    for source in PRECEDENCE:
        entries = by_source.get(source)
        if not entries:
            continue
        if source in _LATEST_WINS:
            latest = max(entries, key=lambda v: v.order)
            return ResolvedLabel(study_id, latest.value, source, latest.detail)
        if source is LabelSource.EMR:
            entries = _strongest_emr(entries)
        counts = Counter(v.value for v in entries)
        if source is LabelSource.EMR and len(counts) == 1:
            latest = max(entries, key=lambda v: v.order)
            return ResolvedLabel(study_id, latest.value, source, f"{latest.detail} ({len(entries)} agree)")
        if source is not LabelSource.EMR and (len(counts) == 1 or counts[0] != counts[1]):
            value = counts.most_common(1)[0][0]
            return ResolvedLabel(study_id, value, source, f"{counts[value]} of {len(entries)} agree")
        conflicts[str(source)] += 1
    return None


def emr_strength(detail: str) -> int:
    """The evidence strength an ``emr`` row's detail (``"<evidence type>:<link method>"``) names; 0 if none."""
    # Imported here: the core.fhir package loads fhir.resources and spaCy, which `vigil --help` and
    # every command that never meets an EMR row must not pay for.
    from core.fhir.vocabulary import EvidenceType

    kind = detail.split(":", 1)[0]
    return EvidenceType(kind).strength if kind in EvidenceType.__members__.values() else 0


def _strongest_emr(entries: Sequence[_Vote]) -> list[_Vote]:
    """Each resource's latest version, then only those of the strongest evidence type among them."""
    latest: dict[str, _Vote] = {}
    for vote in sorted(entries, key=lambda v: v.order):
        latest[vote.ref] = vote  # a new version of a resource replaces its earlier one
    top = max(emr_strength(v.detail) for v in latest.values())
    return [v for v in latest.values() if emr_strength(v.detail) == top]


def label_summary(session_factory: SessionFactory) -> LabelSummary:
    """Counts of labelled studies by source and site (``vigil outcomes summary``)."""
    with session_factory() as session:
        resolution = resolve_labels(outcomes.list_outcomes(session), feedback.list_feedback(session, current_only=True))
        site_of = outcomes.study_sites(session)
    per_site: dict[str, dict[str, int]] = defaultdict(lambda: {"n_studies": 0, "n_labelled": 0})
    by_source: Counter[str] = Counter()
    for study_id, site in site_of.items():
        counts = per_site[site]
        counts["n_studies"] += 1
        label = resolution.labels.get(study_id)
        if label is not None:
            counts["n_labelled"] += 1
            counts[str(label.source)] = counts.get(str(label.source), 0) + 1
            by_source[str(label.source)] += 1
    for counts in per_site.values():
        counts["n_unlabelled"] = counts["n_studies"] - counts["n_labelled"]
    return LabelSummary(
        len(site_of), sum(by_source.values()), dict(by_source), resolution.conflicts, dict(sorted(per_site.items()))
    )


def evaluation_set(session_factory: SessionFactory, *, model_version: str | None = None) -> EvaluationSet:
    """Read one model version's scores, every label and the sites, in one read transaction.

    Parameters
    ----------
    model_version : str, optional
        The fleet-wide serving version when None. Deliberately one version across every site,
        benchmark included, even where a site serves a version of its own: the metrics built on
        this set compare each site with the benchmark under the same version.

    Raises
    ------
    UnknownModelVersionError
        ``model_version`` is not registered.
    BadInputError
        No version is given and none is serving.
    """
    with session_factory() as session:
        mv = model_versions.get_by_version(session, model_version) if model_version else model_versions.serving(session)
        if mv is None:
            raise BadInputError("no model version is serving: register one or name it with --model")
        registered = sites.list_sites(session)
        studies = tuple(outcomes.scored_studies(session, mv.id))
        records = outcomes.list_outcomes(session)
        resolution = resolve_labels(records, feedback.list_feedback(session, current_only=True))
    bench = next((s.name for s in registered if s.is_benchmark), None)
    threshold = _threshold(mv, studies)
    excluded = _fitted_on(mv, records, bench)
    return EvaluationSet(mv, threshold, bench, tuple(s.name for s in registered), studies, resolution, excluded)


def _threshold(mv: ModelVersionRecord, studies: Sequence[ScoredStudy]) -> float:
    value = mv.card.get("operating_threshold")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    stored = next((s.threshold for s in studies if s.threshold is not None), None)
    if stored is None:
        raise BadInputError(f"model version {mv.version!r} has no operating threshold in its card")
    return stored


def _fitted_on(mv: ModelVersionRecord, records: Sequence[OutcomeRecord], benchmark: str | None) -> frozenset[int]:
    """Studies the card says the version was fitted or tuned on (see :attr:`EvaluationSet.excluded`)."""
    listed = trained_uids([mv.card])  # a retrained version lists every study it was fitted or tuned on
    by_listing = frozenset(r.study_id for r in records if r.study_uid in listed)
    training = mv.card.get("training_data")
    sha = training.get("manifest_sha256") if isinstance(training, dict) else None
    if not isinstance(sha, str) or benchmark is None:
        return by_listing
    ref = f"manifest:{sha}"
    return by_listing | frozenset(
        r.study_id
        for r in records
        if r.source is OutcomeSource.GROUND_TRUTH
        and r.source_ref == ref
        and r.site == benchmark
        and r.detail in ("split=train", "split=val")
    )
