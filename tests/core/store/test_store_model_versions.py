"""Contract tests for core.store.model_versions, on every database flavour."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import pytest

from core.errors import DuplicateModelVersionError, UnknownModelVersionError
from core.store import model_versions
from core.store.engine import SessionFactory
from core.types import JSONObject

CARD: JSONObject = {
    "version": "v1",
    "labels": ["no nodule", "nodule"],
    "operating_threshold": 0.5,
    "network": {"class": "x"},
}


def test_register_and_get_by_version(session_factory: SessionFactory, now: datetime) -> None:
    # Execute
    with session_factory.begin() as session:
        added = model_versions.register(session, version="v1", card=CARD, weights_sha256="f" * 64, now=now)
    with session_factory() as session:
        fetched = model_versions.get_by_version(session, "v1")

    # Assert
    assert fetched == added
    assert fetched.card == CARD
    assert fetched.card_json == json.dumps(CARD, sort_keys=True, separators=(",", ":"))
    assert (fetched.weights_sha256, fetched.is_serving, fetched.created_at) == ("f" * 64, False, now)


def test_duplicate_version_is_refused(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as session:
        model_versions.register(session, version="v1", card=CARD, weights_sha256="f" * 64, now=now)

    # Execute / Assert
    with pytest.raises(DuplicateModelVersionError, match="v1"), session_factory.begin() as session:
        model_versions.register(session, version="v1", card={}, weights_sha256="e" * 64, now=now)


def test_unknown_version_is_an_error(session_factory: SessionFactory) -> None:
    # Execute / Assert
    with pytest.raises(UnknownModelVersionError, match="v9"), session_factory() as session:
        model_versions.get_by_version(session, "v9")


def test_card_with_nan_is_refused(session_factory: SessionFactory, now: datetime) -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="NaN"), session_factory.begin() as session:
        model_versions.register(session, version="v1", card={"auc": math.nan}, weights_sha256="f" * 64, now=now)


def test_list_versions_oldest_first(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as session:
        model_versions.register(session, version="v2", card={}, weights_sha256="2" * 64, now=now + timedelta(days=1))
        model_versions.register(session, version="v1", card={}, weights_sha256="1" * 64, now=now)

    # Execute
    with session_factory() as session:
        listed = model_versions.list_versions(session)

    # Assert
    assert [m.version for m in listed] == ["v1", "v2"]


def test_set_serving_switches_exclusively(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as session:
        for version, digit in [("v1", "1"), ("v2", "2")]:
            model_versions.register(session, version=version, card={}, weights_sha256=digit * 64, now=now)
        before = model_versions.serving(session)

    # Execute
    with session_factory.begin() as session:
        first = model_versions.set_serving(session, "v1")
    with session_factory.begin() as session:
        second = model_versions.set_serving(session, "v2")
    with session_factory() as session:
        now_serving = model_versions.serving(session)
        flags = {m.version: m.is_serving for m in model_versions.list_versions(session)}

    # Assert
    assert before is None
    assert first.is_serving and second.is_serving
    assert now_serving == second
    assert flags == {"v1": False, "v2": True}


def test_set_serving_unknown_version_changes_nothing(session_factory: SessionFactory, now: datetime) -> None:
    # Prepare
    with session_factory.begin() as session:
        model_versions.register(session, version="v1", card={}, weights_sha256="1" * 64, now=now)
        model_versions.set_serving(session, "v1")

    # Execute
    with pytest.raises(UnknownModelVersionError), session_factory.begin() as session:
        model_versions.set_serving(session, "v9")

    # Assert
    with session_factory() as session:
        serving = model_versions.serving(session)
    assert serving is not None and serving.version == "v1"
