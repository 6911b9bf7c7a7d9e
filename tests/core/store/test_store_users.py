"""Contract tests for core.store.users, on every database flavour."""

from __future__ import annotations

from datetime import datetime

import pytest

from core.errors import BadInputError, DuplicateUserError, UnknownUserError
from core.store import users
from core.store.engine import SessionFactory

HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"


def test_add_get_and_list_users(session_factory: SessionFactory, now: datetime) -> None:
    # Execute
    with session_factory.begin() as session:
        added = users.add_user(session, username="rad1", role="radiologist", password_hash=HASH, now=now)
        users.add_user(session, username="champ", role="champion", password_hash=HASH, now=now)
    with session_factory() as session:
        fetched = users.get_user(session, "rad1")
        listed = users.list_users(session)

    # Assert
    assert fetched == added
    assert (fetched.username, fetched.role, fetched.password_hash, fetched.created_at) == (
        "rad1",
        "radiologist",
        HASH,
        now,
    )
    assert [u.username for u in listed] == ["champ", "rad1"]


def test_password_hash_is_not_in_repr(session_factory: SessionFactory, now: datetime) -> None:
    # Execute
    with session_factory.begin() as session:
        user = users.add_user(session, username="rad1", role="radiologist", password_hash=HASH, now=now)

    # Assert
    assert HASH not in repr(user)


def test_duplicate_user_is_refused(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as session:
        users.add_user(session, username="rad1", role="radiologist", password_hash=HASH, now=now)

    # Execute / Assert
    with pytest.raises(DuplicateUserError, match="rad1"), session_factory.begin() as session:
        users.add_user(session, username="rad1", role="auditor", password_hash=HASH, now=now)


def test_unknown_and_empty_usernames(session_factory: SessionFactory, now: datetime) -> None:
    # Execute / Assert
    with session_factory.begin() as session:
        with pytest.raises(UnknownUserError, match="ghost"):
            users.get_user(session, "ghost")
        with pytest.raises(BadInputError, match="empty"):
            users.add_user(session, username=" ", role="radiologist", password_hash=HASH, now=now)
