"""A random run of real user actions leaves exactly one audit entry per action: none missing, none extra.

Issue 15's completeness evidence. A small real installation (``vigil init`` on a SYNTHETIC cohort
with a random test model, the demo accounts seeded) takes 60 actions drawn at random from what its
users do through the services: sign-ins that succeed and fail, sites and accounts added, feedback
and its correction, a form submitted twice, adjudications, and actions refused for bad input or a
missing permission. Each action says which entries it must leave (a refused or repeated action:
none); the ledger's new entries must equal that list, in order, and still verify.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from core.audit.events import AuditAction
from core.errors import VigilError
from core.services import adjudication, auth, feedback, sites
from core.services.permissions import Role, SignedInUser
from core.store import audit_log
from core.store.engine import SessionFactory
from core.store.tables import InstanceRow, PredictionRow, StudyRow
from tests.ui.installation import DEMO_PASSWORDS, build_installation, clock

ACTIONS = 60
#: One expected ledger entry: (action, actor, subject).
Expected = tuple[str, str, str]


@dataclass
class Run:
    """The installation under test and what the random actions have done to it so far."""

    sf: SessionFactory
    rng: random.Random
    scored: list[tuple[str, int]]  # (study UID, prediction id) of every scored study
    users: dict[Role, SignedInUser]
    sites_added: int = 0
    accounts_added: int = 0
    last_feedback: dict[str, tuple[int, str]] | None = None  # study -> (row id, idempotency key)
    last_form_key: tuple[str, str] | None = None  # (study, form key) of the last adjudication


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    inst = build_installation(tmp_path_factory.mktemp("completeness"))
    sf = inst.session_factory()
    with sf() as session:
        rows = session.execute(
            select(StudyRow.study_uid, PredictionRow.id)
            .join(InstanceRow, InstanceRow.study_id == StudyRow.id)
            .join(PredictionRow, PredictionRow.instance_id == InstanceRow.id)
            .where(PredictionRow.score.is_not(None))
            .order_by(PredictionRow.id)
        ).all()
    users = {role: SignedInUser(name, role) for name, role in ((d.username, d.role) for d in auth.DEMO_USERS)}
    return Run(sf, random.Random(15), [(uid, pid) for uid, pid in rows], users, last_feedback={})


# --- the actions: each does one thing and returns the entries it must leave ----------------------


def sign_in_ok(r: Run) -> list[Expected]:
    role = r.rng.choice(list(Role))
    name = r.users[role].username
    auth.sign_in(r.sf, name, DEMO_PASSWORDS[name], now=clock)
    return [(AuditAction.LOGIN_SUCCEEDED, name, name)]


def sign_in_wrong(r: Run) -> list[Expected]:
    name = r.rng.choice(["radiologist", "admin", "nobody-by-that-name"])
    with pytest.raises(VigilError):
        auth.sign_in(r.sf, name, "not the password", now=clock)
    return [(AuditAction.LOGIN_FAILED, auth.ANONYMOUS_ACTOR, name)]


def add_site(r: Run) -> list[Expected]:
    r.sites_added += 1
    name = f"random-site-{r.sites_added}"
    sites.add_site(r.sf, name, benchmark=False, actor="admin", now=clock)
    return [(AuditAction.SITE_ADDED, "admin", name)]


def add_site_again(r: Run) -> list[Expected]:
    with pytest.raises(VigilError):  # an existing name is refused, and nothing is written
        sites.add_site(r.sf, "riverside", benchmark=False, actor="admin", now=clock)
    return []


def create_account(r: Run) -> list[Expected]:
    r.accounts_added += 1
    name = f"reader{r.accounts_added}"
    admin = r.users[Role.ADMIN]
    auth.create_user(
        r.sf, admin, name, Role.RADIOLOGIST.value, f"long enough pass {r.accounts_added}!", full_name=name, now=clock
    )
    return [(AuditAction.USER_CREATED, admin.username, name)]


def create_account_without_permission(r: Run) -> list[Expected]:
    with pytest.raises(VigilError):
        auth.create_user(
            r.sf, r.users[Role.RADIOLOGIST], "sneaky", "admin", "long enough pass 0!", full_name="Sneaky", now=clock
        )
    return []


def _feedback_form(r: Run, study: str, prediction_id: int, supersedes: int | None) -> feedback.FeedbackForm:
    return feedback.FeedbackForm(
        study_uid=study,
        prediction_id=prediction_id,
        agrees=r.rng.random() < 0.5,
        finding=r.rng.choice(list(feedback.Finding)),
        confidence=r.rng.randint(1, 5),
        explanation=None,
        comment="random run",
        time_on_case_s=r.rng.uniform(5, 90),
        idempotency_key=feedback.new_idempotency_key(),
        supersedes_id=supersedes,
    )


def give_feedback(r: Run) -> list[Expected]:
    # A new read, or a correction of the reader's current row on that study
    study, prediction_id = r.rng.choice(r.scored)
    assert r.last_feedback is not None
    previous = r.last_feedback.get(study)
    form = _feedback_form(r, study, prediction_id, previous[0] if previous else None)
    saved = feedback.record_feedback(r.sf, r.users[Role.RADIOLOGIST], form, now=clock)
    assert saved.created
    r.last_feedback[study] = (saved.record.id, form.idempotency_key)
    return [(AuditAction.FEEDBACK_RECORDED, "radiologist", study)]


def submit_feedback_twice(r: Run) -> list[Expected]:
    study, prediction_id = r.rng.choice(r.scored)
    assert r.last_feedback is not None
    previous = r.last_feedback.get(study)
    form = _feedback_form(r, study, prediction_id, previous[0] if previous else None)
    first = feedback.record_feedback(r.sf, r.users[Role.RADIOLOGIST], form, now=clock)
    again = feedback.record_feedback(r.sf, r.users[Role.RADIOLOGIST], form, now=clock)  # a double click
    assert (first.created, again.created, again.record.id) == (True, False, first.record.id)
    r.last_feedback[study] = (first.record.id, form.idempotency_key)
    return [(AuditAction.FEEDBACK_RECORDED, "radiologist", study)]


def adjudicate(r: Run) -> list[Expected]:
    study, _ = r.rng.choice(r.scored)
    key = adjudication.new_form_key()
    champion = r.users[Role.CHAMPION]
    adjudication.record_adjudication(
        r.sf, champion, study, label=r.rng.random() < 0.5, reason="random run", now=clock, form_key=key
    )
    r.last_form_key = (study, key)
    return [(AuditAction.ADJUDICATION_RECORDED, champion.username, study)]


def adjudicate_same_form_again(r: Run) -> list[Expected]:
    if r.last_form_key is None:
        return adjudicate(r)
    study, key = r.last_form_key
    adjudication.record_adjudication(
        r.sf, r.users[Role.CHAMPION], study, label=True, reason="random run", now=clock, form_key=key
    )
    return []


def adjudicate_without_permission(r: Run) -> list[Expected]:
    study, _ = r.rng.choice(r.scored)
    with pytest.raises(VigilError):
        adjudication.record_adjudication(r.sf, r.users[Role.RADIOLOGIST], study, label=True, reason="x", now=clock)
    return []


OPERATIONS: tuple[Callable[[Run], list[Expected]], ...] = (
    sign_in_ok,
    sign_in_wrong,
    add_site,
    add_site_again,
    create_account,
    create_account_without_permission,
    give_feedback,
    submit_feedback_twice,
    adjudicate,
    adjudicate_same_form_again,
    adjudicate_without_permission,
)


def _ledger(sf: SessionFactory) -> list[Expected]:
    with sf() as session:
        return [(str(e.action), e.actor, e.subject) for e in audit_log.iter_entries(session)]


def test_random_actions_leave_exactly_one_entry_each(run: Run) -> None:
    # Prepare
    assert len(run.scored) >= 2, "the installation must have scored studies to act on"
    before = len(_ledger(run.sf))
    expected: list[Expected] = []
    done: list[str] = []
    # Execute
    for _ in range(ACTIONS):
        operation = run.rng.choice(OPERATIONS)
        expected.extend(operation(run))
        done.append(operation.__name__)
    # Assert: the new entries are exactly the expected ones, in order, and the chain holds
    new = _ledger(run.sf)[before:]
    assert new == [(str(a), actor, subject) for a, actor, subject in expected]
    assert len(set(done)) == len(OPERATIONS), f"every kind of action ran at least once: {sorted(set(done))}"
    with run.sf() as session:
        assert audit_log.verify(session).ok


def test_a_path_that_never_writes_is_not_counted(run: Run) -> None:
    # A control: reading (the worklist, history) writes nothing to the ledger
    before = len(_ledger(run.sf))
    study, _ = run.scored[0]
    feedback.feedback_history(run.sf, run.users[Role.CHAMPION], study)
    sites.list_sites(run.sf)
    auth.list_users(run.sf)
    assert len(_ledger(run.sf)) == before
