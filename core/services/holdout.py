"""The locked hold-out and the labelled pool retraining draws from.

Labels are the labels of record (``core.services.outcomes.resolve_labels``: adjudicated, then
ground truth, then EMR, then reader feedback). :func:`lock_holdout` moves a site- and
label-stratified share of the labelled studies that no model version was trained or tuned on
into the hold-out, for good: the study stays locked, a training run that names it is refused
(:func:`training_pool` leaves it out; ``core.models.finetune`` refuses it again), and every
lock and every read of the hold-out by the gate is an audit entry. Calling it again later locks
the same share of the studies labelled since.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.audit.chain import canonical_json
from core.audit.events import AuditAction
from core.errors import BadInputError
from core.models.finetune import TrainingExample
from core.registry.lineage import trained_uids
from core.services.outcomes import evaluation_set
from core.store import audit_log, holdout, model_versions, sites, studies
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = [
    "HoldoutLock",
    "LabelledCase",
    "holdout_cases",
    "holdout_sha256",
    "lock_holdout",
    "trained_uids",
    "training_pool",
]


@dataclass(frozen=True, slots=True)
class LabelledCase:
    """A study with its label of record and the image it is scored from."""

    study_id: int
    study_uid: str
    site: str
    label: int
    source: str
    path: str
    sha256: str

    def example(self) -> TrainingExample:
        """The case as a fine-tuning example."""
        return TrainingExample(
            study_uid=self.study_uid,
            path=Path(self.path),
            sha256=self.sha256,
            site=self.site,
            label=self.label,
            source=self.source,
        )


@dataclass(frozen=True, slots=True)
class HoldoutLock:
    """What one :func:`lock_holdout` call locked."""

    lock_sha256: str | None
    added: dict[str, int]
    total: int
    fraction: float
    seed: int

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "lock_sha256": self.lock_sha256,
            "added": dict(self.added),
            "added_total": sum(self.added.values()),
            "holdout_total": self.total,
            "fraction": self.fraction,
            "seed": self.seed,
        }


def _pool(session_factory: SessionFactory) -> tuple[list[LabelledCase], frozenset[int], frozenset[str]]:
    """Every labelled case, the hold-out's study ids, and the UIDs some version was trained on."""
    ev = evaluation_set(session_factory)
    with session_factory() as session:
        locked = holdout.holdout_study_ids(session)
        cards = [r.card for r in model_versions.list_versions(session)]
        labelled = ev.labels.labels
        first = studies.first_instances(session, labelled)
    cases = [
        LabelledCase(
            study_id=s.study_id,
            study_uid=s.study_uid,
            site=s.site,
            label=labelled[s.study_id].label,
            source=str(labelled[s.study_id].source),
            path=first[s.study_id].path,
            sha256=first[s.study_id].sha256,
        )
        for s in ev.studies
        if s.study_id in labelled and s.study_id in first
    ]
    trained = trained_uids(cards) | {c.study_uid for c in cases if c.study_id in ev.excluded}
    return cases, locked, trained


def _rank(seed: int, uid: str) -> str:
    return hashlib.sha256(f"{seed}:{uid}".encode()).hexdigest()


def _stratified(cases: Sequence[LabelledCase], fraction: float, seed: int) -> list[LabelledCase]:
    strata: dict[tuple[str, int], list[LabelledCase]] = defaultdict(list)
    for case in cases:
        strata[(case.site, case.label)].append(case)
    chosen: list[LabelledCase] = []
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda c: _rank(seed, c.study_uid))
        chosen += members[: round(fraction * len(members))]
    return chosen


def holdout_sha256(uids: Iterable[str]) -> str:
    """SHA-256 of the sorted Study Instance UIDs (what a gate report names its hold-out by)."""
    return hashlib.sha256(canonical_json(sorted(uids))).hexdigest()


def lock_holdout(
    session_factory: SessionFactory, *, fraction: float, seed: int, actor: str, now: Callable[[], datetime]
) -> HoldoutLock:
    """Lock a stratified ``fraction`` of the labelled studies no version was trained on.

    Raises
    ------
    BadInputError
        ``fraction`` outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise BadInputError(f"hold-out fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    cases, locked, trained = _pool(session_factory)
    eligible = [c for c in cases if c.study_id not in locked and c.study_uid not in trained]
    chosen = _stratified(eligible, fraction, seed)
    added: dict[str, int] = defaultdict(int)
    for case in chosen:
        added[case.site] += 1
    if not chosen:
        return HoldoutLock(None, {}, len(locked), fraction, seed)
    lock_sha = holdout_sha256(c.study_uid for c in chosen)
    with session_factory.begin() as session:
        site_ids = {s.name: s.id for s in sites.list_sites(session)}
        holdout.add_studies(
            session, [(c.study_id, site_ids[c.site]) for c in chosen], lock_sha256=lock_sha, actor=actor, now=now()
        )
        total = len(holdout.holdout_study_ids(session))
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.HOLDOUT_LOCKED,
            subject=lock_sha,
            payload={"added": dict(sorted(added.items())), "fraction": fraction, "seed": seed, "holdout_total": total},
            recorded_at=now().isoformat(),
        )
    return HoldoutLock(lock_sha, dict(sorted(added.items())), total, fraction, seed)


def holdout_cases(session_factory: SessionFactory) -> list[LabelledCase]:
    """The locked studies that carry a label of record (what the gate evaluates on)."""
    cases, locked, _ = _pool(session_factory)
    return [c for c in cases if c.study_id in locked]


def training_pool(session_factory: SessionFactory) -> tuple[list[LabelledCase], frozenset[str]]:
    """Labelled studies outside the hold-out, and the hold-out's UIDs (for the trainer's own check)."""
    cases, locked, _ = _pool(session_factory)
    with session_factory() as session:
        locked_uids = frozenset(holdout.holdout_uids(session))
    return [c for c in cases if c.study_id not in locked], locked_uids
