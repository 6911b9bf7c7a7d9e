"""How failed sign-ins are slowed down: a few free tries, then a lock that doubles with each failure (pure).

Keyed twice, by the typed username and by the client's address, so that neither one account
attacked from many places nor many accounts tried from one place escapes. The key of an unknown
username is throttled exactly like a real one: the lock says nothing about which accounts exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["ADDRESS_POLICY", "USER_POLICY", "ThrottlePolicy", "ThrottleState", "after_failure", "remaining_lock"]


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The schedule.

    Attributes
    ----------
    free_failures : int
        Consecutive failures of one key that cost nothing but their audit entry.
    base_lock_s : float
        The lock after the first failure beyond the free ones, in seconds; it doubles with each
        further failure.
    max_lock_s : float
        The longest lock, in seconds.
    """

    free_failures: int = 5
    base_lock_s: float = 30.0
    max_lock_s: float = 900.0

    def lock_after(self, failures: int) -> timedelta:
        """The lock that the ``failures``-th consecutive failure sets (zero while still free)."""
        beyond = failures - self.free_failures
        if beyond <= 0:
            return timedelta(0)
        return timedelta(seconds=min(self.max_lock_s, self.base_lock_s * 2.0 ** (beyond - 1)))


@dataclass(frozen=True, slots=True)
class ThrottleState:
    """One key's consecutive failures, its lock, and the attempts refused while locked."""

    failures: int = 0
    locked_until: datetime | None = None
    refused: int = 0


def remaining_lock(state: ThrottleState, now: datetime) -> timedelta:
    """How long the key stays locked after ``now`` (zero when it is not locked)."""
    if state.locked_until is None or state.locked_until <= now:
        return timedelta(0)
    return state.locked_until - now


def after_failure(state: ThrottleState, policy: ThrottlePolicy, now: datetime) -> ThrottleState:
    """The state after one more failed sign-in at ``now`` (the refused count is reported, then cleared)."""
    failures = state.failures + 1
    lock = policy.lock_after(failures)
    return ThrottleState(failures=failures, locked_until=now + lock if lock else None, refused=0)


#: One account: five free tries, then 30 s, 1 min, 2 min ... up to 15 min.
USER_POLICY = ThrottlePolicy(free_failures=5)
#: One client address: more free tries, because a hospital's readers may share one address (NAT, a
#: terminal server), and one reader's typos must not lock out the department.
ADDRESS_POLICY = ThrottlePolicy(free_failures=20)
