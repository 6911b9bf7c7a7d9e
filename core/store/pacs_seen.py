"""What each PACS pull has dealt with, per DICOMweb endpoint: an instance seen once is never retrieved again.

A row is written after the instance's ingest has committed (stored, a duplicate, or refused by
the gate with its audit entry), so a pull killed at any point finds on its next run exactly the
instances it still has to retrieve. Keyed by the endpoint's base URL and the SOP Instance UID:
the same instance on two PACS is two rows. The endpoint column holds
:data:`core.config.PACS_URL_MAX_CHARS` characters (the configuration refuses a longer URL, and
:func:`check_endpoint` refuses one given in code, before PostgreSQL would).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.config import PACS_URL_MAX_CHARS
from core.errors import BadInputError
from core.store.tables import PacsSeenRow, SiteRow

__all__ = ["OUTCOMES", "SeenInstance", "check_endpoint", "counts_by_study", "list_seen", "mark_seen", "seen_uids"]

#: What became of a seen instance.
OUTCOMES: Final = ("stored", "duplicate", "rejected")


@dataclass(frozen=True, slots=True)
class SeenInstance:
    """One instance a pull dealt with.

    Attributes
    ----------
    endpoint : str
        The DICOMweb base URL it came from.
    site : str
        The site it was ingested into.
    outcome : str
        One of :data:`OUTCOMES`.
    reason : str
        Why it was rejected; ``""`` otherwise.
    seen_at : datetime
        Aware, UTC.
    """

    endpoint: str
    site: str
    study_uid: str
    sop_instance_uid: str
    outcome: str
    reason: str
    seen_at: datetime


def check_endpoint(endpoint: str) -> str:
    """``endpoint`` when it fits the endpoint column; a pull checks it before asking anything of the PACS.

    Raises
    ------
    BadInputError
        Longer than :data:`~core.config.PACS_URL_MAX_CHARS` characters (the start of it is shown).
    """
    if len(endpoint) > PACS_URL_MAX_CHARS:
        raise BadInputError(
            f"PACS URL {endpoint[:60]!r}… is {len(endpoint)} characters long; at most {PACS_URL_MAX_CHARS} "
            "can be recorded"
        )
    return endpoint


def mark_seen(  # noqa: PLR0913 - keyword-only; one row's columns
    session: Session,
    *,
    endpoint: str,
    site_id: int,
    study_uid: str,
    sop_instance_uid: str,
    outcome: str,
    reason: str = "",
    now: datetime,
) -> bool:
    """Stage the row of one instance unless the endpoint's instance is already marked; True when staged.

    The caller owns the transaction. A concurrent pull that marked it first makes the unique key
    fail at flush; run the caller's work under ``write_with_retries`` and the second try sees it.

    Raises
    ------
    BadInputError
        ``outcome`` is not one of :data:`OUTCOMES`, or ``endpoint`` is too long.
    """
    check_endpoint(endpoint)
    if outcome not in OUTCOMES:
        raise BadInputError(f"unknown PACS outcome {outcome!r} (one of {', '.join(OUTCOMES)})")
    exists = session.scalars(
        select(PacsSeenRow.id).where(PacsSeenRow.endpoint == endpoint, PacsSeenRow.sop_instance_uid == sop_instance_uid)
    ).first()
    if exists is not None:
        return False
    session.add(
        PacsSeenRow(
            endpoint=endpoint,
            site_id=site_id,
            study_uid=study_uid,
            sop_instance_uid=sop_instance_uid,
            outcome=outcome,
            reason=reason,
            seen_at=now,
        )
    )
    session.flush()
    return True


def seen_uids(session: Session, endpoint: str, study_uid: str) -> set[str]:
    """SOP Instance UIDs of ``study_uid`` already dealt with from ``endpoint``."""
    query = select(PacsSeenRow.sop_instance_uid).where(
        PacsSeenRow.endpoint == endpoint, PacsSeenRow.study_uid == study_uid
    )
    return set(session.scalars(query))


def counts_by_study(session: Session, endpoint: str, study_uids: Sequence[str]) -> dict[str, int]:
    """How many instances of each of ``study_uids`` were dealt with from ``endpoint`` (absent: none)."""
    if not study_uids:
        return {}
    query = (
        select(PacsSeenRow.study_uid, func.count())
        .where(PacsSeenRow.endpoint == endpoint, PacsSeenRow.study_uid.in_(list(study_uids)))
        .group_by(PacsSeenRow.study_uid)
    )
    return {uid: int(n) for uid, n in session.execute(query)}


def list_seen(session: Session, endpoint: str | None = None) -> list[SeenInstance]:
    """Every seen instance (of one endpoint when given), oldest first."""
    query = select(PacsSeenRow, SiteRow.name).join(SiteRow, SiteRow.id == PacsSeenRow.site_id)
    if endpoint is not None:
        query = query.where(PacsSeenRow.endpoint == endpoint)
    return [
        SeenInstance(row.endpoint, site, row.study_uid, row.sop_instance_uid, row.outcome, row.reason, row.seen_at)
        for row, site in session.execute(query.order_by(PacsSeenRow.id))
    ]
