"""Failed sign-ins slow down and stop growing the ledger: per username and per client address.

Probed before this existed: 20 wrong passwords in a row met no lockout and no delay, and each added
an audit row. Every test here runs on SQLite and PostgreSQL with a clock the test moves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.audit.events import AuditAction
from core.errors import SignatureFailedError, SignInFailedError, SignInThrottledError
from core.services import auth
from core.services.auth_throttle import ThrottlePolicy, ThrottleState, after_failure, remaining_lock
from core.services.permissions import Permission
from core.store import audit_log
from core.store.engine import SessionFactory

PASSWORD = "correct horse battery staple"
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t


def _user(sf: SessionFactory) -> None:
    auth.add_user(sf, "dr.a", "radiologist", PASSWORD, actor="admin", now=lambda: T0)


def _entries(sf: SessionFactory, action: AuditAction = AuditAction.LOGIN_FAILED) -> list[dict[str, object]]:
    with sf() as session:
        return [dict(e.payload) for e in audit_log.iter_entries(session) if e.action == action]


def _attempt(sf: SessionFactory, clock: Clock, password: str, *, name: str = "dr.a", address: str | None = None) -> str:
    try:
        auth.sign_in(sf, name, password, now=clock, client_address=address)
    except SignInThrottledError as exc:
        return f"locked {exc.wait_s}"
    except SignInFailedError:
        return "failed"
    return "ok"


def test_the_schedule_doubles_after_the_free_failures() -> None:
    policy = ThrottlePolicy(free_failures=5, base_lock_s=30, max_lock_s=900)
    locks = [policy.lock_after(n).total_seconds() for n in range(1, 12)]
    assert locks == [0, 0, 0, 0, 0, 30, 60, 120, 240, 480, 900]
    state = after_failure(ThrottleState(failures=5), policy, T0)
    assert remaining_lock(state, T0 + timedelta(seconds=29)) == timedelta(seconds=1)
    assert remaining_lock(state, T0 + timedelta(seconds=30)) == timedelta(0)


def test_twenty_wrong_passwords_in_a_row_lock_the_account_and_cost_six_audit_rows(
    session_factory: SessionFactory,
) -> None:
    _user(session_factory)
    clock = Clock()

    outcomes = [_attempt(session_factory, clock, "wrong") for _ in range(20)]
    right_while_locked = _attempt(session_factory, clock, PASSWORD)

    assert outcomes[:6] == ["failed"] * 6
    assert outcomes[6:] == ["locked 30"] * 14
    assert right_while_locked == "locked 30"  # a lock is a lock: the password is not even checked
    rows = _entries(session_factory)
    assert len(rows) == 6
    assert rows[-1]["consecutive_failures"] == 6 and rows[-1]["locked_for_s"] == 30


def test_after_the_lock_the_next_failure_doubles_it_and_reports_the_refusals(session_factory: SessionFactory) -> None:
    _user(session_factory)
    clock = Clock()
    for _ in range(6):
        _attempt(session_factory, clock, "wrong")
    for _ in range(3):
        _attempt(session_factory, clock, "wrong")  # refused while locked

    clock.t += timedelta(seconds=31)
    again = _attempt(session_factory, clock, "wrong")
    clock.t += timedelta(seconds=59)
    still = _attempt(session_factory, clock, PASSWORD)
    clock.t += timedelta(seconds=2)
    then = _attempt(session_factory, clock, PASSWORD)

    rows = _entries(session_factory)
    assert again == "failed" and still == "locked 1" and then == "ok"
    assert rows[-1]["consecutive_failures"] == 7 and rows[-1]["locked_for_s"] == 60
    assert rows[-1]["refused_while_locked"] == 3
    assert _attempt(session_factory, clock, "wrong") == "failed"  # success cleared the count


def test_an_unknown_username_is_throttled_exactly_like_a_real_one(session_factory: SessionFactory) -> None:
    _user(session_factory)
    clock = Clock()
    real = [_attempt(session_factory, clock, "wrong", name="dr.a") for _ in range(7)]
    unknown = [_attempt(session_factory, clock, "wrong", name="dr.nobody") for _ in range(7)]
    assert real == unknown == ["failed"] * 6 + ["locked 30"]


def test_one_address_trying_many_accounts_is_locked_by_its_address(session_factory: SessionFactory) -> None:
    _user(session_factory)
    clock = Clock()
    tries = [_attempt(session_factory, clock, "wrong", name=f"user{i}", address="10.0.0.9") for i in range(22)]
    other_address = _attempt(session_factory, clock, PASSWORD, address="10.0.0.10")

    assert tries[:21] == ["failed"] * 21 and tries[21] == "locked 30"
    assert other_address == "ok"  # the account itself was never tried from there


@pytest.mark.parametrize("address", [None, "10.0.0.9"])
def test_a_locked_account_refuses_even_from_another_address(
    session_factory: SessionFactory, address: str | None
) -> None:
    _user(session_factory)
    clock = Clock()
    for _ in range(6):
        _attempt(session_factory, clock, "wrong", address="10.0.0.1")
    assert _attempt(session_factory, clock, PASSWORD, address=address) == "locked 30"


def _sign(
    sf: SessionFactory,
    clock: Clock,
    password: str,
    *,
    signer: str = "dr.a",
    permission: Permission = Permission.RECORD_FEEDBACK,
) -> str:
    try:
        auth.verify_signature(
            sf,
            signer,
            password,
            permission=permission,
            meaning="test meaning",
            subject="subject-1",
            now=clock,
        )
    except SignInThrottledError as exc:
        return f"locked {exc.wait_s}"
    except SignatureFailedError:
        return "refused"
    return "ok"


def test_a_signature_form_guesses_no_faster_than_the_sign_in_page(session_factory: SessionFactory) -> None:
    _user(session_factory)
    clock = Clock()

    signatures = [_sign(session_factory, clock, "wrong") for _ in range(8)]
    sign_in_meanwhile = _attempt(session_factory, clock, PASSWORD)
    clock.t += timedelta(seconds=31)
    after_the_lock = _sign(session_factory, clock, PASSWORD)

    assert signatures == ["refused"] * 6 + ["locked 30"] * 2
    assert sign_in_meanwhile == "locked 30"  # the signature failures locked the account itself
    assert after_the_lock == "ok"
    failed = _entries(session_factory, AuditAction.SIGNATURE_FAILED)
    assert len(failed) == 6
    assert failed[-1]["consecutive_failures"] == 6 and failed[-1]["locked_for_s"] == 30
    assert failed[-1]["meaning"] == "test meaning" and failed[-1]["reason"] == "unknown signer or wrong password"


def test_the_right_password_with_a_role_that_may_not_sign_is_refused_but_guesses_nothing(
    session_factory: SessionFactory,
) -> None:
    _user(session_factory)
    clock = Clock()
    outcomes = [_sign(session_factory, clock, "wrong") for _ in range(5)]
    outcomes.append(_sign(session_factory, clock, PASSWORD, permission=Permission.APPROVE_DEPLOYMENT))
    outcomes.append(_sign(session_factory, clock, "wrong"))

    # Five failures, then the right password (wrong role) clears the count: the next wrong one is the first.
    assert outcomes == ["refused"] * 7
    failed = _entries(session_factory, AuditAction.SIGNATURE_FAILED)
    assert failed[5]["reason"] == "role 'radiologist' may not approve deployment"
    assert failed[6]["consecutive_failures"] == 1
