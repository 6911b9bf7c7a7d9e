"""Signatures waiting for the signer's re-authentication at the identity provider: one per signer.

A person signed in through single sign-on has no Vigil password, so their electronic signature is
completed by the identity provider asking for their password again. The act they asked to sign
waits here across that round trip (the browser leaves Vigil and comes back in a new session).
The service layer decides what a request may complete; this module only keeps the rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.audit.chain import canonical_json
from core.store.tables import SignatureRequestRow
from core.types import JSONObject

__all__ = ["SignatureRequestRecord", "discard", "get", "save"]


@dataclass(frozen=True, slots=True)
class SignatureRequestRecord:
    """One waiting signature: who signs, what it means, what is signed and the rest of the act.

    Attributes
    ----------
    signer : str
        The username of the person who asked to sign.
    meaning : str
        The signature's meaning (21 CFR 11.50(b)(3)).
    subject : str
        What is signed (a model version).
    scope : JSONObject
        The rest of the act, as the service wrote it (for a promotion: its sites).
    requested_at : datetime
        When the signer asked to sign (aware, UTC): a re-authentication before it does not count.
    """

    signer: str
    meaning: str
    subject: str
    scope: JSONObject
    requested_at: datetime


def save(session: Session, record: SignatureRequestRecord) -> None:
    """Store ``record``, replacing any request its signer had waiting (the caller owns the transaction)."""
    row = session.get(SignatureRequestRow, record.signer)
    if row is None:
        row = SignatureRequestRow(signer=record.signer)
        session.add(row)
    row.meaning, row.subject, row.requested_at = record.meaning, record.subject, record.requested_at
    row.scope = canonical_json(record.scope).decode("utf-8")
    session.flush()


def get(session: Session, signer: str, *, for_update: bool = False) -> SignatureRequestRecord | None:
    """The request ``signer`` has waiting, or None; optionally locked until the transaction ends."""
    row = session.get(SignatureRequestRow, signer, with_for_update=for_update)
    if row is None:
        return None
    scope = json.loads(row.scope)
    return SignatureRequestRecord(row.signer, row.meaning, row.subject, scope, row.requested_at)


def discard(session: Session, signer: str) -> bool:
    """Delete ``signer``'s waiting request; whether there was one."""
    result = session.execute(delete(SignatureRequestRow).where(SignatureRequestRow.signer == signer))
    return bool(getattr(result, "rowcount", 0))
