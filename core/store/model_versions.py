"""Registered model versions: immutable cards, and which one is serving."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.audit.chain import canonical_json
from core.errors import DuplicateModelContentError, DuplicateModelVersionError, UnknownModelVersionError
from core.models.address import content_address
from core.store.tables import ModelVersionRow
from core.types import JSONObject, JSONValue

__all__ = [
    "ModelVersionRecord",
    "get_by_id",
    "get_by_version",
    "list_versions",
    "register",
    "serving",
    "serving_id",
    "set_serving",
]


@dataclass(frozen=True, slots=True)
class ModelVersionRecord:
    """A registered model version.

    Attributes
    ----------
    id : int
        Database key (``PredictionRecord.model_version_id``).
    version : str
        Unique version name, as in the card.
    card_json : str
        The model card as canonical JSON, exactly as stored; :attr:`card` parses it.
    weights_sha256 : str
        Hex SHA-256 of the weights file the card names.
    is_serving : bool
        True for the one version that scores new studies.
    created_at : datetime
        Aware, UTC.
    content_sha256 : str or None
        The content address (``core.models.address``); None only for a row written outside Vigil.
    """

    id: int
    version: str
    card_json: str
    weights_sha256: str
    is_serving: bool
    created_at: datetime
    content_sha256: str | None = None

    @property
    def number(self) -> int:
        """The registry's sequence number: the first version registered is 1."""
        return self.id

    def address_matches(self) -> bool:
        """Whether the stored card and weights hash still produce the stored content address."""
        return self.content_sha256 == content_address(json.loads(self.card_json), self.weights_sha256)

    @property
    def card(self) -> JSONObject:
        """The model card as a fresh dict (``vigil model show`` prints it)."""
        return cast(JSONObject, json.loads(self.card_json))

    @classmethod
    def from_row(cls, row: ModelVersionRow) -> ModelVersionRecord:
        """Copy a row into a record that is safe to keep after the session closes."""
        return cls(
            id=row.id,
            version=row.version,
            card_json=row.card_json,
            weights_sha256=row.weights_sha256,
            is_serving=row.is_serving,
            created_at=row.created_at,
            content_sha256=row.content_sha256,
        )


def register(
    session: Session, *, version: str, card: Mapping[str, JSONValue], weights_sha256: str, now: datetime
) -> ModelVersionRecord:
    """Stage a new, not yet serving, model version. The caller owns the transaction.

    Parameters
    ----------
    session : Session
        Open session; nothing is committed here.
    version : str
        Unique version name.
    card : Mapping of str to JSON values
        The whole model card; stored as canonical JSON and never edited.
    weights_sha256 : str
        Hex SHA-256 of the weights file.
    now : datetime
        Aware creation time.

    Returns
    -------
    ModelVersionRecord

    Raises
    ------
    DuplicateModelVersionError
        If ``version`` is already registered: a changed model needs a new version.
    DuplicateModelContentError
        If the same content is registered under another name.
    ValueError
        If the card holds NaN or an infinity.
    """
    if _find(session, version) is not None:
        raise DuplicateModelVersionError(version)
    address = content_address(card, weights_sha256)
    same = session.scalars(select(ModelVersionRow.version).where(ModelVersionRow.content_sha256 == address)).first()
    if same is not None:
        raise DuplicateModelContentError(version, same, address)
    row = ModelVersionRow(
        version=version,
        card_json=canonical_json(dict(card)).decode("utf-8"),
        weights_sha256=weights_sha256,
        is_serving=False,
        created_at=now,
        content_sha256=address,
    )
    session.add(row)
    session.flush()
    return ModelVersionRecord.from_row(row)


def get_by_version(session: Session, version: str) -> ModelVersionRecord:
    """Look a model version up by name.

    Raises
    ------
    UnknownModelVersionError
        If ``version`` is not registered.
    """
    row = _find(session, version)
    if row is None:
        raise UnknownModelVersionError(version)
    return ModelVersionRecord.from_row(row)


def get_by_id(session: Session, version_id: int) -> ModelVersionRecord:
    """Look a model version up by its registry number.

    Raises
    ------
    UnknownModelVersionError
        If no version has this number.
    """
    row = session.get(ModelVersionRow, version_id)
    if row is None:
        raise UnknownModelVersionError(f"#{version_id}")
    return ModelVersionRecord.from_row(row)


def serving_id(session: Session, *, for_update: bool = False) -> int | None:
    """The serving version's number, optionally locking its row until the transaction ends.

    A prediction writer reads it with ``for_update=False`` inside its write transaction; on
    PostgreSQL the deployment switch locks every ``model_version`` row it changes, so a writer
    either commits before the switch or reads the new pointer after it (SQLite serializes
    writers anyway).
    """
    query = select(ModelVersionRow.id).where(ModelVersionRow.is_serving)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def list_versions(session: Session) -> list[ModelVersionRecord]:
    """Every registered version, oldest first."""
    query = select(ModelVersionRow).order_by(ModelVersionRow.created_at, ModelVersionRow.id)
    return [ModelVersionRecord.from_row(row) for row in session.scalars(query)]


def serving(session: Session) -> ModelVersionRecord | None:
    """Return the version that scores new studies, or None before one is chosen."""
    row = session.scalars(select(ModelVersionRow).where(ModelVersionRow.is_serving)).one_or_none()
    return None if row is None else ModelVersionRecord.from_row(row)


def set_serving(session: Session, version: str) -> ModelVersionRecord:
    """Make ``version`` the only serving version (a blue/green switch, in one transaction).

    Raises
    ------
    UnknownModelVersionError
        If ``version`` is not registered; nothing changes then.
    """
    target = get_by_version(session, version)
    session.execute(
        update(ModelVersionRow).where(ModelVersionRow.id != target.id).values(is_serving=False),
        execution_options={"synchronize_session": "fetch"},
    )
    session.execute(
        update(ModelVersionRow).where(ModelVersionRow.id == target.id).values(is_serving=True),
        execution_options={"synchronize_session": "fetch"},
    )
    return get_by_version(session, version)


def _find(session: Session, version: str) -> ModelVersionRow | None:
    return session.scalars(select(ModelVersionRow).where(ModelVersionRow.version == version)).one_or_none()
