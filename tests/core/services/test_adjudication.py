"""The champion's queue and adjudications: reasons, priority, permission, label of record, history."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from core.audit.events import AuditAction
from core.config import Settings
from core.errors import BadInputError, PermissionDeniedError, UnknownStudyError
from core.services import adjudication, review, validation
from core.services.adjudication import (
    CONFIDENT_HIGH,
    CONFIDENT_LOW,
    CaseEvidence,
    Read,
    Reason,
    adjudication_queue,
    case_file,
    prioritise,
    reasons_for,
    record_adjudication,
)
from core.services.audit import verify_ledger
from core.services.feedback import FeedbackForm, Finding, new_idempotency_key, record_feedback
from core.services.outcomes import LabelSource, ResolvedLabel, evaluation_set
from core.services.permissions import Role, SignedInUser
from core.store import audit_log, model_versions, outcomes, predictions, studies
from core.store.engine import SessionFactory
from core.store.outcomes import OutcomeIn, OutcomeSource
from core.store.predictions import PredictionIn
from core.store.tables import OutcomeRow, UserRow
from tests.adjudication_installation import N_NEW, SITE, build_labelled_site
from tests.conftest import BACKENDS
from tests.core.services.installations import installation_on
from tests.ui.installation import Installation, copy_installation

RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)
CHAMPION = SignedInUser("champion", Role.CHAMPION)
CMIO = SignedInUser("cmio", Role.CMIO)
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


class Clock:
    """A clock from the real time on that moves one minute per call, so "later" is always later.

    It starts at the real time because the installation's ground truth was stored at it.
    """

    def __init__(self) -> None:
        self.t = datetime.now(UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(minutes=1)
        return self.t


@pytest.fixture(params=BACKENDS)
def sf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> SessionFactory:
    """The installation's store, on a SQLite file and on PostgreSQL (one contract, two backends)."""
    return installation_on(request.param, request, tmp_path_factory, tmp_path).session_factory()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def uids(sf: SessionFactory) -> list[str]:
    """Deployment-site studies, in store order."""
    with sf() as session:
        return [s.study_uid for s in studies.list_studies(session) if s.site_name != "benchmark"]


def _read(
    sf: SessionFactory, user: SignedInUser, uid: str, finding: Finding, clock: Clock, confidence: int = 4
) -> None:
    info = review.open_case(sf, user, uid)
    assert info.prediction is not None
    form = FeedbackForm(uid, info.prediction.prediction_id, True, finding, confidence, None, "", 10.0,
                        new_idempotency_key())  # fmt: skip
    record_feedback(sf, user, form, now=clock)


def _emr(
    sf: SessionFactory,
    uid: str,
    label: bool,
    clock: Clock,
    *,
    resource: str = "0",
    version: int = 1,
    detail: str = "histopathology:study_uid",
) -> None:
    """An EMR outcome as the FHIR ingest stores it (source emr, detail "<evidence type>:<link method>")."""
    with sf.begin() as session:
        study_id = outcomes.study_ids_by_uid(session, [uid])[uid]
        ref = "DiagnosticReport/" + hashlib.sha256(f"{uid}/{resource}".encode()).hexdigest()[:32] + f"@{version}"
        outcomes.add_outcome(
            session,
            OutcomeIn(study_id, OutcomeSource.EMR, label, ref, "system", detail=detail),
            now=clock(),
        )


def _counts(sf: SessionFactory) -> tuple[int, int]:
    with sf() as session:
        return outcomes.count_outcomes(session), audit_log.count_entries(session)


# --- the pure centre -------------------------------------------------------------------------


def _case(
    *,
    score: float | None = 0.5,
    label: int | None = None,
    source: LabelSource = LabelSource.GROUND_TRUTH,
    reads: tuple[tuple[str, int], ...] = (),
    emr: tuple[bool, ...] = (),
    evidence_at: datetime | None = T0,
    adjudicated_at: datetime | None = None,
    uid: str = "1.2.3",
) -> CaseEvidence:
    resolved = None if label is None else ResolvedLabel(1, label, source)
    return CaseEvidence(
        uid,
        "northfield",
        date(2025, 4, 1),
        score,
        resolved,
        tuple(Read(f"reader{i}", f, c) for i, (f, c) in enumerate(reads)),
        emr,
        evidence_at,
        adjudicated_at,
    )


R = Reason
LATER = T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (_case(), ()),
        (_case(emr=(True,), reads=(("absent", 5),)), (R.EMR_CONFIRMS_READER_ABSENT,)),
        (_case(emr=(False,), reads=(("present", 5),)), (R.EMR_EXCLUDES_READER_PRESENT,)),
        (_case(emr=(True,), reads=(("present", 5),)), ()),
        (_case(emr=(True,), reads=(("indeterminate", 5),)), (R.READER_UNSURE,)),
        (_case(emr=(True, False)), (R.EMR_CONFLICT,)),
        (_case(emr=(True, False), reads=(("absent", 5),)), (R.EMR_CONFIRMS_READER_ABSENT, R.EMR_CONFLICT)),
        (_case(score=CONFIDENT_HIGH, label=0), (R.CONFIDENT_WRONG,)),
        (_case(score=CONFIDENT_HIGH - 0.001, label=0), ()),
        (_case(score=CONFIDENT_LOW, label=1), (R.CONFIDENT_WRONG,)),
        (_case(score=CONFIDENT_LOW + 0.001, label=1), ()),
        (_case(score=0.99, label=1), ()),
        (_case(score=0.99, label=0, source=LabelSource.ADJUDICATED), ()),
        (_case(score=None, label=0), ()),
        (_case(score=0.95, label=None), ()),
        (_case(reads=(("present", 4), ("absent", 4))), (R.READER_DISAGREEMENT,)),
        (_case(reads=(("present", 4), ("present", 5))), ()),
        (_case(reads=(("present", 2),)), (R.READER_UNSURE,)),
        (_case(reads=(("present", 3),)), ()),
        (
            _case(score=0.02, label=1, emr=(True,), reads=(("absent", 1), ("present", 5))),
            (R.EMR_CONFIRMS_READER_ABSENT, R.CONFIDENT_WRONG, R.READER_DISAGREEMENT, R.READER_UNSURE),
        ),
        # adjudicated after the newest evidence: settled; newer evidence: back in the queue
        (_case(reads=(("indeterminate", 3),), evidence_at=T0, adjudicated_at=LATER), ()),
        (_case(reads=(("indeterminate", 3),), evidence_at=T0, adjudicated_at=T0), ()),
        (_case(reads=(("indeterminate", 3),), evidence_at=LATER, adjudicated_at=T0), (R.READER_UNSURE,)),
    ],
)
def test_reasons_table(case: CaseEvidence, expected: tuple[Reason, ...]) -> None:
    assert reasons_for(case) == expected


def test_priority_order_is_reason_then_number_of_reasons_then_age() -> None:
    # Prepare
    now = T0 + timedelta(days=10)
    cases = [
        _case(uid="unsure-old", reads=(("indeterminate", 3),), evidence_at=T0),
        _case(uid="disagree", reads=(("present", 4), ("absent", 4))),
        _case(uid="wrong", score=0.95, label=0),
        _case(uid="emr-excludes", emr=(False,), reads=(("present", 4),)),
        _case(uid="unsure-new", reads=(("indeterminate", 3),), evidence_at=T0 + timedelta(days=2)),
        _case(uid="emr-missed", emr=(True,), reads=(("absent", 4),)),
        _case(uid="wrong-and-unsure", score=0.95, label=0, reads=(("absent", 1),)),
        _case(uid="nothing"),
    ]

    # Execute
    queue = prioritise(cases, now=now)

    # Assert
    assert [i.study_uid for i in queue] == [
        "emr-missed", "wrong-and-unsure", "wrong", "emr-excludes", "disagree", "unsure-old", "unsure-new",
    ]  # fmt: skip
    assert [i.priority for i in queue] == [1, 2, 2, 3, 5, 6, 6]
    assert queue[-2].age == timedelta(days=10) and queue[-1].age == timedelta(days=8)
    counts = adjudication.reason_counts(queue)
    assert counts[R.READER_UNSURE] == 3 and counts[R.CONFIDENT_WRONG] == 2 and sum(counts.values()) == 8


# --- the queue from the store ----------------------------------------------------------------


def test_each_reason_puts_a_study_in_the_queue(sf: SessionFactory, uids: list[str], clock: Clock) -> None:
    # Prepare: nothing to settle yet (the random model is never confident)
    assert adjudication_queue(sf, CHAMPION, now=clock) == ()
    missed, excluded, disagree, unsure, conflict, settled = uids[:6]
    _read(sf, RADIOLOGIST, missed, Finding.ABSENT, clock)
    _emr(sf, missed, True, clock)
    _read(sf, RADIOLOGIST, excluded, Finding.PRESENT, clock)
    _emr(sf, excluded, False, clock)
    _read(sf, RADIOLOGIST, disagree, Finding.PRESENT, clock)
    _read(sf, CHAMPION, disagree, Finding.ABSENT, clock)
    _read(sf, RADIOLOGIST, unsure, Finding.INDETERMINATE, clock, confidence=3)
    _emr(sf, conflict, True, clock, resource="a")
    _emr(sf, conflict, False, clock, resource="b")
    # settled: b's second version agrees with a, and a note (weaker evidence) does not speak
    _emr(sf, settled, True, clock, resource="a")
    _emr(sf, settled, False, clock, resource="b")
    _emr(sf, settled, True, clock, resource="b", version=2)
    _emr(sf, settled, False, clock, resource="c", detail="note_mention:patient_date")

    # Execute
    queue = adjudication_queue(sf, CHAMPION, now=clock)

    # Assert
    assert [(i.study_uid, i.reasons) for i in queue] == [
        (missed, (R.EMR_CONFIRMS_READER_ABSENT,)),
        (excluded, (R.EMR_EXCLUDES_READER_PRESENT,)),
        (conflict, (R.EMR_CONFLICT,)),
        (disagree, (R.READER_DISAGREEMENT,)),
        (unsure, (R.READER_UNSURE,)),
    ]
    with sf() as session:
        site = studies.get_study(session, missed).site_name
    assert all(i.site == site for i in adjudication_queue(sf, CHAMPION, site=site, now=clock))
    assert missed in {i.study_uid for i in adjudication_queue(sf, CHAMPION, site=site, now=clock)}
    assert adjudication_queue(sf, CHAMPION, site="benchmark", now=clock) == ()


def test_a_confident_wrong_model_puts_a_study_in_the_queue(sf: SessionFactory, clock: Clock) -> None:
    # Prepare: a serving version whose stored scores are confident: 0.97 everywhere
    with sf.begin() as session:
        old = model_versions.serving(session)
        assert old is not None
        card = dict(old.card) | {"version": "confident-0"}
        mv = model_versions.register(session, version="confident-0", card=card, weights_sha256="0" * 64, now=clock())
        model_versions.set_serving(session, "confident-0")
        for s in studies.list_studies(session):
            instance = studies.list_instances(session, s.study_uid)[0]
            predictions.add_prediction(
                session, PredictionIn(instance.id, mv.id, None, 0.97, True, 0.5, 1.0, "cpu"), now=clock()
            )
        truth = {r.study_uid: r.label for r in outcomes.list_outcomes(session)}

    # Execute
    queue = adjudication_queue(sf, CHAMPION, now=clock)

    # Assert: exactly the studies whose label of record (synthetic ground truth) is "absent"
    assert {i.study_uid for i in queue} == {uid for uid, label in truth.items() if not label}
    assert all(i.reasons == (R.CONFIDENT_WRONG,) and i.score == pytest.approx(0.97) for i in queue)


# --- recording an adjudication ---------------------------------------------------------------


def test_an_adjudication_is_the_label_of_record_and_leaves_the_queue(
    sf: SessionFactory, uids: list[str], clock: Clock
) -> None:
    # Prepare: the EMR confirms a finding the reader called absent; ground truth says absent or present
    uid = uids[0]
    _read(sf, RADIOLOGIST, uid, Finding.ABSENT, clock)
    _emr(sf, uid, True, clock)
    counts = _counts(sf)

    # Execute
    first = record_adjudication(
        sf, CHAMPION, uid, label=True, reason="  biopsy-proven; nodule visible RUL  ", now=clock
    )

    # Assert: one outcome row and one audit entry; it settles the study and the evaluation set
    assert _counts(sf) == (counts[0] + 1, counts[1] + 1)
    assert (first.source, first.label, first.detail, first.recorded_by) == (
        OutcomeSource.ADJUDICATED, True, "biopsy-proven; nodule visible RUL", "champion",
    )  # fmt: skip
    assert first.source_ref.startswith("adjudication:")
    ev = evaluation_set(sf)
    label = ev.labels.labels[first.study_id]
    assert (label.source, label.label, label.detail) == (LabelSource.ADJUDICATED, 1, first.detail)
    assert uid not in {i.study_uid for i in adjudication_queue(sf, CHAMPION, now=clock)}
    with sf() as session:
        entry = audit_log.last_entry(session)
    assert entry is not None
    assert (entry.actor, entry.action, entry.subject) == ("champion", AuditAction.ADJUDICATION_RECORDED, uid)
    assert entry.payload["outcome_id"] == first.id and entry.payload["label"] is True
    assert entry.payload["reason_length"] == len(first.detail) and "biopsy" not in str(entry.payload)
    assert verify_ledger(sf).ok

    # Execute: a second adjudication appends; the latest wins and the first stays as history
    second = record_adjudication(sf, CHAMPION, uid, label=False, reason="re-read: vessel end-on", now=clock)

    # Assert
    assert evaluation_set(sf).labels.labels[first.study_id].label == 0
    file = case_file(sf, CHAMPION, uid)
    adjudicated = [(o.id, o.label, o.detail) for o in file.outcomes if o.source is OutcomeSource.ADJUDICATED]
    assert adjudicated == [(first.id, True, first.detail), (second.id, False, "re-read: vessel end-on")]
    assert file.label_of_record is not None and file.label_of_record.label == 0
    assert [f.finding for f in file.feedback] == ["absent"] and file.score is not None

    # Execute: new evidence after the adjudication brings the study back
    _read(sf, CHAMPION, uid, Finding.PRESENT, clock)

    # Assert
    back = next(i for i in adjudication_queue(sf, CHAMPION, now=clock) if i.study_uid == uid)
    assert back.reasons == (R.EMR_CONFIRMS_READER_ABSENT, R.READER_DISAGREEMENT)


@pytest.mark.parametrize("user", [RADIOLOGIST, CMIO])
def test_only_a_champion_adjudicates(sf: SessionFactory, uids: list[str], clock: Clock, user: SignedInUser) -> None:
    counts = _counts(sf)
    with pytest.raises(PermissionDeniedError, match=user.username):
        record_adjudication(sf, user, uids[0], label=True, reason="r", now=clock)
    with pytest.raises(PermissionDeniedError):
        adjudication_queue(sf, user, now=clock)
    with pytest.raises(PermissionDeniedError):
        case_file(sf, user, uids[0])
    assert _counts(sf) == counts


def test_a_withdrawn_role_is_refused_at_once(sf: SessionFactory, uids: list[str], clock: Clock) -> None:
    # Prepare: the champion's stored role was changed after sign-in
    with sf.begin() as session:
        session.execute(update(UserRow).where(UserRow.username == "champion").values(role="radiologist"))
    counts = _counts(sf)

    # Execute / Assert
    with pytest.raises(PermissionDeniedError, match="radiologist"):
        record_adjudication(sf, CHAMPION, uids[0], label=True, reason="r", now=clock)
    assert _counts(sf) == counts


@pytest.mark.parametrize(
    ("reason", "message"), [("", "needs a reason"), ("   \n", "needs a reason"), ("x" * 2001, "2001 characters")]
)
def test_a_missing_or_long_reason_is_refused(
    sf: SessionFactory, uids: list[str], clock: Clock, reason: str, message: str
) -> None:
    counts = _counts(sf)
    with pytest.raises(BadInputError, match=message):
        record_adjudication(sf, CHAMPION, uids[0], label=True, reason=reason, now=clock)
    assert _counts(sf) == counts


def test_an_unknown_study_is_refused(sf: SessionFactory, clock: Clock) -> None:
    counts = _counts(sf)
    with pytest.raises(UnknownStudyError, match="1.2.826.0.1.999"):
        record_adjudication(sf, CHAMPION, "1.2.826.0.1.999", label=True, reason="r", now=clock)
    assert _counts(sf) == counts
    with sf() as session:
        assert (
            session.scalar(select(func.count()).select_from(OutcomeRow).where(OutcomeRow.source == "adjudicated")) == 0
        )


def test_a_form_submitted_twice_is_recorded_once(sf: SessionFactory, uids: list[str], clock: Clock) -> None:
    key = adjudication.new_form_key()
    counts = _counts(sf)
    first = record_adjudication(
        sf, CHAMPION, uids[0], label=True, reason="nodule at right base", now=clock, form_key=key
    )
    again = record_adjudication(
        sf, CHAMPION, uids[0], label=True, reason="nodule at right base", now=clock, form_key=key
    )
    assert again == first
    assert _counts(sf) == (counts[0] + 1, counts[1] + 1)
    with pytest.raises(BadInputError, match=key):
        record_adjudication(sf, CHAMPION, uids[0], label=False, reason="nodule at right base", now=clock, form_key=key)
    assert _counts(sf) == (counts[0] + 1, counts[1] + 1)


def test_the_same_form_from_two_threads_at_once_is_recorded_once(
    sf: SessionFactory, uids: list[str], clock: Clock
) -> None:
    key = adjudication.new_form_key()
    counts = _counts(sf)
    with ThreadPoolExecutor(max_workers=4) as pool:
        records = list(
            pool.map(
                lambda _: record_adjudication(
                    sf, CHAMPION, uids[1], label=False, reason="vessel end-on", now=clock, form_key=key
                ),
                range(4),
            )
        )
    assert len({r.id for r in records}) == 1
    assert _counts(sf) == (counts[0] + 1, counts[1] + 1)


@pytest.mark.parametrize("key", ["short", "x" * 65, "../../etc", "key with spaces"])
def test_a_malformed_form_key_is_refused(sf: SessionFactory, uids: list[str], clock: Clock, key: str) -> None:
    counts = _counts(sf)
    with pytest.raises(BadInputError, match="form key"):
        record_adjudication(sf, CHAMPION, uids[0], label=True, reason="r", now=clock, form_key=key)
    assert _counts(sf) == counts


# --- the site's figures and the labelling plan -----------------------------------------------


@pytest.fixture(scope="module")
def labelled_site(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    return build_labelled_site(tmp_path_factory.mktemp("labelled-site"))


def test_the_plan_is_validates_plan_for_sites_that_need_labels(labelled_site: Installation) -> None:
    sf = labelled_site.session_factory()
    plans = adjudication.labelling_plan(sf, CHAMPION)
    assert plans == tuple(p for p in validation.plan_labelling(sf).plans if p.n_to_label > 0)
    assert [p.site for p in plans] == [SITE] and 1 <= plans[0].n_to_label <= N_NEW
    assert adjudication.labelling_plan(sf, CHAMPION, site="benchmark") == ()
    with pytest.raises(PermissionDeniedError):
        adjudication.labelling_plan(sf, RADIOLOGIST)


def test_an_adjudication_moves_the_sites_label_count_and_auc(
    labelled_site: Installation, tmp_path: Path, clock: Clock
) -> None:
    # Prepare: a private copy; a planned (unlabelled) riverside study
    sf = copy_installation(labelled_site, tmp_path).session_factory()
    uid = adjudication.labelling_plan(sf, CHAMPION)[0].selected[0]
    before = adjudication.site_standing(sf, CHAMPION, SITE, now=clock)

    # Execute
    record_adjudication(sf, CHAMPION, uid, label=True, reason="planned sample: nodule seen", now=clock)
    after = adjudication.site_standing(sf, CHAMPION, SITE, now=clock)

    # Assert: the figures are the Site performance report's, one more label, another AUC
    report = validation.validate(sf, sites=(SITE,), actor="", now=clock, record=False)
    summary = report.drift.sites[0]
    assert summary.auc is not None and (after.n_labelled, after.auc) == (summary.n_labelled, summary.auc.estimate)
    assert after.n_labelled == before.n_labelled + 1
    assert before.auc is not None and after.auc is not None and after.auc != before.auc


def test_a_case_shows_its_emr_evidence_de_identified(initialized_sample: tuple[Settings, SessionFactory]) -> None:
    # Prepare: `vigil init` on the committed cohort ingests its SYNTHETIC EMR outcomes
    _, sf = initialized_sample
    with sf() as session:
        emr_rows = outcomes.list_outcomes(session, source=OutcomeSource.EMR)
    uid = emr_rows[0].study_uid

    # Execute
    file = case_file(sf, CHAMPION, uid)

    # Assert: every EMR outcome row of the study has its evidence, linked the way the row says
    shown = {f"{e.evidence.evidence_type}:{e.link_method}" for e in file.evidence}
    assert {o.detail for o in file.outcomes if o.source is OutcomeSource.EMR} <= shown
    assert all(e.study_uid_linked == uid for e in file.evidence)
    assert all(e.evidence.code.startswith(("http://snomed.info/sct|", "http://loinc.org|")) for e in file.evidence)
