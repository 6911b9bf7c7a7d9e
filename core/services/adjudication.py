"""The clinical champion's workspace: a prioritised queue of cases to settle, and the adjudicated label.

A study enters the queue when its evidence does not settle it cleanly (see :class:`Reason`): a
reader and the EMR disagree, readers disagree with each other, the model was confident and
wrong against the label of record, or a reader was unsure. A study adjudicated after its latest
evidence leaves the queue; new evidence (a later read, a delayed EMR outcome) brings it back.

An adjudication is an outcome row of source ``adjudicated`` whose ``detail`` is the champion's
reason. ``core.services.outcomes.resolve_labels`` asks that source first and lets the latest
adjudication win, so it is the label of record at once: ``vigil validate`` and the monitors read
it on their next run. Earlier adjudications stay as history.

The labelling plan (studies to label at sites that lack labels) is ``vigil validate --plan``'s,
computed by :func:`core.services.validation.plan_labelling`, not here.
"""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from core.audit.events import AuditAction
from core.audit.records import RECORD_HASH_KEY, RecordKind
from core.errors import BadInputError, UnknownSiteError
from core.metrics.pilot_drift import DriftOptions
from core.metrics.sampling_plan import SamplingPlan
from core.services import validation
from core.services.outcomes import LabelSource, ResolvedLabel, emr_strength, resolve_labels
from core.services.permissions import Permission, SignedInUser, parse_role, require
from core.store import audit_log, deployments, emr, feedback, outcomes, record_hashes, studies, users
from core.store import sites as site_store
from core.store.emr import EvidenceRecord
from core.store.engine import SessionFactory, write_with_retries
from core.store.feedback import FeedbackRecord
from core.store.outcomes import OutcomeIn, OutcomeRecord, OutcomeSource, ScoredStudy

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_FORM_KEY: Final = re.compile(r"[A-Za-z0-9_-]{8,64}")

__all__ = [
    "CONFIDENT_HIGH",
    "CONFIDENT_LOW",
    "MAX_REASON_LENGTH",
    "UNSURE_CONFIDENCE",
    "CaseEvidence",
    "CaseFile",
    "EvidenceRecord",
    "OutcomeRecord",
    "OutcomeSource",
    "QueueItem",
    "Read",
    "Reason",
    "SiteStanding",
    "adjudication_queue",
    "case_file",
    "new_form_key",
    "labelling_plan",
    "prioritise",
    "reason_counts",
    "reasons_for",
    "record_adjudication",
    "site_standing",
]

#: A score at or above this is a confident "finding present"; wrong when the label of record is absent.
CONFIDENT_HIGH: Final = 0.9
#: A score at or below this is a confident "finding absent"; wrong when the label of record is present.
CONFIDENT_LOW: Final = 0.1
#: Reader confidence (1 guess .. 5 certain) at or below this counts as unsure.
UNSURE_CONFIDENCE: Final = 2
MAX_REASON_LENGTH: Final = 2000
# The AUC point estimate (DeLong) does not depend on the bootstrap; fewer replicates keep the
# before/after figures quick while the counts and estimate equal the Site performance page's.
_STANDING_RESAMPLES: Final = 200


class Reason(StrEnum):
    """Why a study is in the queue; declared in priority order (first is most urgent).

    A finding the EMR confirms but a reader called absent may be a missed cancer, so it comes
    first; a confidently wrong model is next (a safety signal about the model itself); then an
    EMR that does not confirm what a reader saw, EMR records that contradict each other, readers
    who disagree, and readers who were unsure.
    """

    EMR_CONFIRMS_READER_ABSENT = "emr_confirms_reader_absent"
    CONFIDENT_WRONG = "model_confident_wrong"
    EMR_EXCLUDES_READER_PRESENT = "emr_excludes_reader_present"
    EMR_CONFLICT = "emr_records_disagree"
    READER_DISAGREEMENT = "readers_disagree"
    READER_UNSURE = "reader_unsure"

    @property
    def priority(self) -> int:
        """1 for the most urgent reason, in declaration order."""
        return list(Reason).index(self) + 1

    @property
    def label(self) -> str:
        """The reason in words, for the queue."""
        return _REASON_LABELS[self]

    @property
    def short(self) -> str:
        """A few words, for counters."""
        return _REASON_SHORT[self]


_REASON_LABELS: Final = {
    Reason.EMR_CONFIRMS_READER_ABSENT: "EMR confirms a finding a reader called absent",
    Reason.CONFIDENT_WRONG: "model confident and wrong against the label of record",
    Reason.EMR_EXCLUDES_READER_PRESENT: "EMR excludes a finding a reader called present",
    Reason.EMR_CONFLICT: "EMR records of the same strength disagree",
    Reason.READER_DISAGREEMENT: "readers disagree",
    Reason.READER_UNSURE: "a reader was unsure",
}

_REASON_SHORT: Final = {
    Reason.EMR_CONFIRMS_READER_ABSENT: "EMR +, reader −",
    Reason.CONFIDENT_WRONG: "Model confident, wrong",
    Reason.EMR_EXCLUDES_READER_PRESENT: "EMR −, reader +",
    Reason.EMR_CONFLICT: "EMR conflict",
    Reason.READER_DISAGREEMENT: "Readers disagree",
    Reason.READER_UNSURE: "Reader unsure",
}


@dataclass(frozen=True, slots=True)
class Read:
    """One reader's current verdict on a study."""

    username: str
    finding: str  # "present" | "absent" | "indeterminate"
    confidence: int


@dataclass(frozen=True, slots=True)
class CaseEvidence:
    """What the queue needs to know about one study (the input of :func:`reasons_for`).

    Attributes
    ----------
    score : float or None
        The score of the version serving its site, None when not scored.
    label_of_record : ResolvedLabel or None
        The resolved label, None when no source settles the study.
    reads : tuple of Read
        Current (not corrected) reader feedback.
    emr_labels : tuple of bool
        The labels of the EMR outcomes that speak (True: finding confirmed): each resource's
        latest version, of the strongest evidence type present, as ``resolve_labels`` reads them.
    latest_evidence_at : datetime or None
        When the newest feedback or non-adjudicated outcome was stored.
    adjudicated_at : datetime or None
        When the latest adjudication was stored.
    """

    study_uid: str
    site: str
    study_date: date | None
    score: float | None
    label_of_record: ResolvedLabel | None
    reads: tuple[Read, ...]
    emr_labels: tuple[bool, ...]
    latest_evidence_at: datetime | None
    adjudicated_at: datetime | None


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One study to adjudicate.

    Attributes
    ----------
    reasons : tuple of Reason
        Every reason that applies, most urgent first.
    priority : int
        The most urgent reason's :attr:`Reason.priority` (1 is the most urgent).
    age : timedelta
        Time since the newest evidence arrived (how long the question has waited).
    """

    study_uid: str
    site: str
    study_date: date | None
    score: float | None
    reasons: tuple[Reason, ...]
    priority: int
    age: timedelta


@dataclass(frozen=True, slots=True)
class CaseFile:
    """Every piece of evidence on one study, with its history, for the champion.

    ``outcomes`` holds every stored label, oldest first: adjudications (detail = reason),
    EMR outcomes (detail = ``"<evidence type>:<link method>"``) and ground truth (synthetic).
    ``feedback`` holds every reader row, corrected ones included. ``evidence`` holds the EMR
    evidence linked to the study, every version, indeterminate ones included (they decide nothing),
    with its de-identified text.
    """

    study_uid: str
    site: str
    threshold: float | None
    score: float | None
    model_version: str | None
    label_of_record: ResolvedLabel | None
    outcomes: tuple[OutcomeRecord, ...]
    feedback: tuple[FeedbackRecord, ...]
    evidence: tuple[EvidenceRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class SiteStanding:
    """A site's labelled count and AUC under the serving model, as the Site performance page computes them.

    ``auc`` is None when the site has too few labels (``reason`` says why) or nothing is serving.
    """

    site: str
    n_labelled: int
    auc: float | None
    reason: str


def reasons_for(case: CaseEvidence) -> tuple[Reason, ...]:
    """Why ``case`` needs a champion, most urgent first; empty when it does not (pure).

    A study adjudicated at or after its newest evidence needs nothing more.
    """
    if case.adjudicated_at is not None and (
        case.latest_evidence_at is None or case.adjudicated_at >= case.latest_evidence_at
    ):
        return ()
    found: set[Reason] = set()
    said = {r.finding for r in case.reads}
    if True in case.emr_labels and "absent" in said:
        found.add(Reason.EMR_CONFIRMS_READER_ABSENT)
    if False in case.emr_labels and "present" in said:
        found.add(Reason.EMR_EXCLUDES_READER_PRESENT)
    if {True, False} <= set(case.emr_labels):
        found.add(Reason.EMR_CONFLICT)
    if _confident_wrong(case.score, case.label_of_record):
        found.add(Reason.CONFIDENT_WRONG)
    if {"present", "absent"} <= said:
        found.add(Reason.READER_DISAGREEMENT)
    if any(r.finding == "indeterminate" or r.confidence <= UNSURE_CONFIDENCE for r in case.reads):
        found.add(Reason.READER_UNSURE)
    return tuple(sorted(found, key=lambda r: r.priority))


def _confident_wrong(score: float | None, label: ResolvedLabel | None) -> bool:
    # Every label source outranks the model; an adjudicated label is the champion's own settlement.
    if score is None or label is None or label.source is LabelSource.ADJUDICATED:
        return False
    return (score >= CONFIDENT_HIGH and label.label == 0) or (score <= CONFIDENT_LOW and label.label == 1)


def prioritise(cases: Iterable[CaseEvidence], *, now: datetime) -> tuple[QueueItem, ...]:
    """The queue: cases with a reason, most urgent first (pure).

    Order: the most urgent reason (:class:`Reason` order), then more reasons first, then the
    longest-waiting first, then the StudyInstanceUID (a stable order).
    """
    items = []
    for case in cases:
        reasons = reasons_for(case)
        if not reasons:
            continue
        since = case.latest_evidence_at or now
        items.append(
            QueueItem(
                case.study_uid,
                case.site,
                case.study_date,
                case.score,
                reasons,
                reasons[0].priority,
                max(now - since, timedelta(0)),
            )
        )
    return tuple(sorted(items, key=lambda i: (i.priority, -len(i.reasons), -i.age, i.study_uid)))


def reason_counts(items: Iterable[QueueItem]) -> dict[Reason, int]:
    """How many queued studies carry each reason (every reason listed, zeros included)."""
    counts = Counter(reason for item in items for reason in item.reasons)
    return {reason: counts[reason] for reason in Reason}


def adjudication_queue(
    sf: SessionFactory, user: SignedInUser, *, site: str | None = None, now: Callable[[], datetime]
) -> tuple[QueueItem, ...]:
    """The prioritised queue of studies to adjudicate, of one site or all.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not adjudicate.
    UnknownSiteError
        ``site`` is given but not registered.
    """
    require(user, Permission.ADJUDICATE)
    with sf() as session:
        scored = _scored_as_served(session, site)
        site_of = outcomes.study_sites(session)
        uids = {sid: uid for uid, sid in outcomes.study_ids_by_uid(session).items()}
        records = outcomes.list_outcomes(session)
        reads = feedback.list_feedback(session, current_only=True)
    if site is not None:
        site_of = {sid: name for sid, name in site_of.items() if name == site}
    scores = {s.study_id: s.score for s in scored}
    dates = {s.study_id: s.study_date for s in scored}
    cases = _cases(site_of, uids, scores, dates, records, reads)
    return prioritise(cases, now=now())


def _scored_as_served(session: Session, site: str | None) -> list[ScoredStudy]:
    """Every study of ``site`` (of every site when None), scored by the version serving its site.

    Raises
    ------
    UnknownSiteError
        ``site`` is given but not registered.
    """
    if site is not None:
        site_store.get_site(session, site)
    serving = deployments.versions_by_site(session)
    names = [site] if site is not None else sorted(serving)
    return [
        s
        for name in names
        if (version := serving.get(name)) is not None
        for s in outcomes.scored_studies(session, version.id, site=name)
    ]


def _cases(
    site_of: dict[int, str],
    uids: dict[int, str],
    scores: dict[int, float | None],
    dates: dict[int, date | None],
    records: Sequence[OutcomeRecord],
    reads: Sequence[FeedbackRecord],
) -> list[CaseEvidence]:
    resolution = resolve_labels(records, reads)
    by_study: dict[int, list[OutcomeRecord]] = defaultdict(list)
    for rec in records:
        by_study[rec.study_id].append(rec)
    reads_of: dict[int, list[FeedbackRecord]] = defaultdict(list)
    for fb in reads:
        reads_of[fb.study_id].append(fb)
    cases = []
    for study_id in by_study.keys() | reads_of.keys() | {s for s, v in scores.items() if v is not None}:
        if study_id not in site_of:
            continue
        recs, fbs = by_study.get(study_id, []), reads_of.get(study_id, [])
        adjudicated = [r.created_at for r in recs if r.source is OutcomeSource.ADJUDICATED]
        evidence = [r.created_at for r in recs if r.source is not OutcomeSource.ADJUDICATED]
        evidence += [f.created_at for f in fbs]
        cases.append(
            CaseEvidence(
                study_uid=uids[study_id],
                site=site_of[study_id],
                study_date=dates.get(study_id),
                score=scores.get(study_id),
                label_of_record=resolution.labels.get(study_id),
                reads=tuple(Read(f.username, f.finding, f.confidence) for f in fbs),
                emr_labels=_speaking_emr(recs),
                latest_evidence_at=max(evidence, default=None),
                adjudicated_at=max(adjudicated, default=None),
            )
        )
    return cases


def _speaking_emr(records: Sequence[OutcomeRecord]) -> tuple[bool, ...]:
    """The EMR labels that ``resolve_labels`` weighs: latest version per resource, strongest type only."""
    latest: dict[str, OutcomeRecord] = {}
    for rec in sorted((r for r in records if r.source is OutcomeSource.EMR), key=lambda r: (r.created_at, r.id)):
        latest[rec.source_ref.rsplit("@", 1)[0]] = rec  # source_ref is "<resource>@<version>"
    if not latest:
        return ()
    top = max(emr_strength(r.detail) for r in latest.values())
    return tuple(r.label for r in latest.values() if emr_strength(r.detail) == top)


def case_file(sf: SessionFactory, user: SignedInUser, study_uid: str) -> CaseFile:
    """Every label and every reader row of one study, and its label of record.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not adjudicate.
    UnknownStudyError
        No such study.
    """
    require(user, Permission.ADJUDICATE)
    with sf() as session:
        study = studies.get_study(session, study_uid)
        recs = [r for r in outcomes.list_outcomes(session, site=study.site_name) if r.study_id == study.id]
        rows = feedback.study_history(session, study.id)
        evidence = emr.list_evidence(session, study_id=study.id)
        serving = deployments.version_serving(session, study.site_name)
        scored = outcomes.scored_studies(session, serving.id, site=study.site_name) if serving is not None else []
    mine = next((s for s in scored if s.study_id == study.id), None)
    label = resolve_labels(recs, [r for r in rows if r.current]).labels.get(study.id)
    return CaseFile(
        study_uid=study_uid,
        site=study.site_name,
        threshold=None if mine is None else mine.threshold,
        score=None if mine is None else mine.score,
        model_version=None if serving is None else serving.version,
        label_of_record=label,
        outcomes=tuple(recs),
        feedback=tuple(rows),
        evidence=tuple(evidence),
    )


def record_adjudication(
    sf: SessionFactory,
    user: SignedInUser,
    study_uid: str,
    *,
    label: bool,
    reason: str,
    now: Callable[[], datetime],
    form_key: str | None = None,
) -> OutcomeRecord:
    """Store the champion's label as the outcome of record, with its audit entry, in one transaction.

    Parameters
    ----------
    label : bool
        True when the finding is present.
    form_key : str, optional
        From :func:`new_form_key`, one per rendered form: a form submitted twice (a double click,
        a retried request) repeats it and the second submission returns the first one's record
        and writes nothing. Without it every call is a new adjudication.
    reason : str
        Why, in the champion's words: required, at most :data:`MAX_REASON_LENGTH` characters
        (surrounding spaces removed). Kept as the outcome's ``detail``; the audit entry holds its
        SHA-256 and length, not the text (free text may hold identifiers; the ledger is permanent).

    Raises
    ------
    PermissionDeniedError
        ``user`` may not adjudicate, checked again against the role stored now.
    BadInputError
        The reason is empty or too long, the form key is malformed, or it was already used for a
        different adjudication.
    UnknownStudyError
        No such study.
    """
    require(user, Permission.ADJUDICATE)
    if form_key is not None and not _FORM_KEY.fullmatch(form_key):
        raise BadInputError(f"form key must be 8 to 64 letters, digits, '-' or '_'; got {form_key!r}")
    text = reason.strip()
    if not text:
        raise BadInputError("an adjudication needs a reason; got an empty one")
    if len(text) > MAX_REASON_LENGTH:
        raise BadInputError(f"reason is {len(text)} characters; at most {MAX_REASON_LENGTH}")
    ref = f"adjudication:{form_key or new_form_key()}"
    work = functools.partial(_save, user=user, study_uid=study_uid, label=label, reason=text, ref=ref, now=now)
    return write_with_retries(sf, work)


def new_form_key() -> str:
    """A fresh random key for one rendered adjudication form."""
    return uuid.uuid4().hex


def _save(
    session: Session,
    *,
    user: SignedInUser,
    study_uid: str,
    label: bool,
    reason: str,
    ref: str,
    now: Callable[[], datetime],
) -> OutcomeRecord:
    stored = users.get_user(session, user.username)
    # The role is re-read in the transaction: a role withdrawn since sign-in takes effect now.
    require(SignedInUser(stored.username, parse_role(stored.role)), Permission.ADJUDICATE)
    study = studies.get_study(session, study_uid)
    # A repeated form key is the same submission again (under PostgreSQL a concurrent twin fails
    # on the unique key and its retry lands here): answer with what was stored, write nothing.
    earlier = outcomes.find_outcome(session, study_id=study.id, source=OutcomeSource.ADJUDICATED, source_ref=ref)
    if earlier is not None:
        if earlier.label != label or earlier.detail != reason:
            raise BadInputError(
                f"form key {ref.removeprefix('adjudication:')!r} was already used for another adjudication"
            )
        return earlier
    at = now()
    record = outcomes.add_outcome(
        session,
        OutcomeIn(
            study_id=study.id,
            source=OutcomeSource.ADJUDICATED,
            label=label,
            source_ref=ref,
            recorded_by=stored.username,
            detail=reason,
            effective_at=at,
        ),
        now=at,
    )
    audit_log.append(
        session,
        actor=stored.username,
        action=AuditAction.ADJUDICATION_RECORDED,
        subject=study_uid,
        payload={
            "outcome_id": record.id,
            "source_ref": record.source_ref,
            "site": record.site,
            "label": label,
            "reason_sha256": hashlib.sha256(reason.encode("utf-8")).hexdigest(),
            "reason_length": len(reason),
            RECORD_HASH_KEY: record_hashes.record_hashes(session, RecordKind.OUTCOME, [record.id])[record.id],
        },
        recorded_at=at.isoformat(),
    )
    return record


def labelling_plan(sf: SessionFactory, user: SignedInUser, *, site: str | None = None) -> tuple[SamplingPlan, ...]:
    """``vigil validate --plan``'s stratified sample, for the sites that still need labels.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not adjudicate.
    UnknownSiteError
        ``site`` is given but not registered.
    BadInputError
        No benchmark site is registered, or no model version is serving.
    """
    require(user, Permission.ADJUDICATE)
    report = validation.plan_labelling(sf, sites=() if site is None else (site,))
    return tuple(p for p in report.plans if p.n_to_label > 0)


def site_standing(sf: SessionFactory, user: SignedInUser, site: str, *, now: Callable[[], datetime]) -> SiteStanding:
    """``site``'s labelled studies and AUC under the serving model (the pilot-drift report's figures).

    Raises
    ------
    PermissionDeniedError
        ``user`` may not adjudicate.
    UnknownSiteError
        ``site`` is not registered.
    """
    require(user, Permission.ADJUDICATE)
    try:
        report = validation.validate(
            sf, sites=(site,), options=DriftOptions(n_resamples=_STANDING_RESAMPLES), actor="", now=now, record=False
        )
    except BadInputError as exc:
        if isinstance(exc, UnknownSiteError):
            raise
        return SiteStanding(site, 0, None, str(exc))
    summary = next(s for s in (report.drift.benchmark, *report.drift.sites) if s.site == site)
    auc = None if summary.auc is None else summary.auc.estimate
    return SiteStanding(site, summary.n_labelled, auc, summary.reason)
