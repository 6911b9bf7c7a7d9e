"""Send a study's result back to its site's PACS after a reader's verdict (``auto_push = true``).

**When.** After :func:`core.services.review.record_verdict` has *committed* a new verdict, it calls
:func:`push_after_verdict`, inline, in the same request: the verdict is stored whatever happens
here, and nothing here can undo or delay its transaction. Inline rather than a background thread
because the reader's confirmation can then say what happened (a thread's result would have to be
polled for across Streamlit reruns and would die with the server process), and because a test
sees the push done when the call returns. The cost is the reader's wait: explaining the study and
one STOW-RS request, bounded by the endpoint's ``timeout_s`` and ``max_attempts``.

**What.** The same objects as ``vigil pacs push STUDY``: the Structured Report of the serving
model's result and the Grad-CAM Secondary Capture and Segmentation (:func:`push_study`). A study
is pushed once: later verdicts (a second reader, a correction) push again only while its last push
attempt failed, since the objects describe the model's result, which a verdict does not change.

**Failure.** Any failure (the PACS unreachable, credentials refused, the secret not set, the study
unscored, an object refused) is returned, never raised, and is in the audit log: a refusal in the
``pacs_pushed`` entry :func:`core.services.pacs.push_objects` writes, anything that stopped the push
before the PACS stored anything in a ``pacs_push_failed`` entry. :func:`open_failures` lists the
studies whose last attempt failed (the PACS page shows them); ``vigil pacs push STUDY`` retries.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

from core.audit.events import AuditAction
from core.config import PacsEndpoint, Settings
from core.errors import PacsConfigError
from core.imaging.dicomweb import DicomwebClient
from core.services import pacs, result_report
from core.store import audit_log
from core.store.audit_queries import AuditFilter, StoredEntry, search
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = [
    "OUTBOX_PREFIX",
    "AutoPush",
    "PushFailure",
    "PushOutcome",
    "open_failures",
    "push_after_verdict",
    "push_study",
    "refuse_deidentified",
]

#: Temporary folders under ``VIGIL_HOME`` holding the objects of one push (removed afterwards).
OUTBOX_PREFIX: Final = "pacs-outbox-"
#: How many of the newest entries of each push action :func:`open_failures` looks at.
_RECENT_ENTRIES: Final = 500

Clients = Callable[[PacsEndpoint], DicomwebClient]
"""Builds an endpoint's client; the edge reads the secret from the environment (``PacsConfigError`` if unset)."""


class PushOutcome(StrEnum):
    """What happened to a study's objects after a verdict."""

    OFF = "off"  # the study's site has no PACS, or auto_push is not on
    ALREADY = "already"  # pushed before: nothing sent again
    PUSHED = "pushed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AutoPush:
    """The outcome of :func:`push_after_verdict` for one study.

    Attributes
    ----------
    stored : tuple of str
        SOP Instance UIDs the PACS stored.
    error : str
        Why the push failed (empty otherwise); never holds a secret.
    """

    study_uid: str
    site: str
    outcome: PushOutcome
    endpoint: str = ""
    stored: tuple[str, ...] = ()
    error: str = ""

    def message(self) -> str:
        """One sentence for the reader's confirmation (empty when auto-push is off)."""
        if self.outcome is PushOutcome.PUSHED:
            return f"Result and Grad-CAM ({len(self.stored)} objects) sent to the PACS of {self.site}."
        if self.outcome is PushOutcome.ALREADY:
            return f"The result was already in the PACS of {self.site}."
        if self.outcome is PushOutcome.FAILED:
            return (
                f"Your verdict is saved, but sending the result to the PACS of {self.site or 'its site'} failed: "
                f"{self.error.rstrip('.')}. Retry with `vigil pacs push {self.study_uid}`."
            )
        return ""


@dataclass(frozen=True, slots=True)
class PushFailure:
    """A study whose last push attempt failed (from the audit log), waiting for a retry."""

    study_uid: str
    site: str
    endpoint: str
    error: str
    failed_at: datetime
    actor: str


def push_study(
    sf: SessionFactory,
    settings: Settings,
    client: DicomwebClient,
    study_uid: str,
    *,
    actor: str,
    now: Callable[[], datetime],
) -> pacs.PushReport:
    """Send the result SR and the Grad-CAM objects of ``study_uid`` into it on ``client``'s PACS.

    What ``vigil pacs push`` sends; the objects are written to a temporary folder under
    ``settings.home`` and removed afterwards.

    Raises
    ------
    UnknownStudyError, BadInputError
        The study is unknown or has no result from the serving model: nothing is sent.
    PacsConfigError
        The study's site de-identifies at ingest: nothing is sent (see :func:`refuse_deidentified`).
    PacsUnreachableError, PacsAuthError, PacsServerError
        Nothing was stored.
    """
    refuse_deidentified(settings, pacs.study_site(sf, study_uid))
    settings.home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.home, prefix=OUTBOX_PREFIX) as folder:
        outbox = Path(folder)
        # The result first: a study the serving model has not scored is refused before anything is explained.
        report_sr = result_report.export_result_sr(sf, study_uid, out_dir=outbox)
        objects = [
            report_sr.path,
            *pacs.explanation_objects(sf, settings, study_uid, out_dir=outbox, actor=actor, now=now),
        ]
        return pacs.push_objects(sf, client, study_uid, objects, actor=actor, now=now)


def refuse_deidentified(settings: Settings, site: str) -> None:
    """Refuse to send results to the PACS of a site that de-identifies at ingest.

    Such a site's studies are stored under keyed UIDs and a pseudonymous patient, which its PACS
    does not know: objects referring to them would not join the reader's study, they would open
    a new one under the pseudonym. A keyed UID cannot be turned back into the original (that is
    its point), so there is nothing to push them under.

    Raises
    ------
    PacsConfigError
        Naming the site and why.
    """
    if settings.deid.deidentify_at_ingest_for(site):
        raise PacsConfigError(
            site,
            "the site de-identifies at ingest, so Vigil holds its studies under keyed UIDs its PACS does not "
            "know; results cannot be filed into the PACS's study (read them in Vigil, or turn "
            "[vigil.deid] deidentify_at_ingest off for the site)",
        )


def push_after_verdict(
    sf: SessionFactory,
    settings: Settings,
    study_uid: str,
    *,
    clients: Clients,
    actor: str,
    now: Callable[[], datetime],
) -> AutoPush:
    """Push ``study_uid``'s objects to its site's PACS when that PACS has ``auto_push`` on.

    Call only after the verdict has committed (see the module docstring). Never raises for a
    failed push: the failure is returned and audited.

    Parameters
    ----------
    clients : callable
        Builds the endpoint's client (the edge reads the secret).
    actor : str
        The reader whose verdict caused the push.
    """
    site, endpoint = "", None
    try:
        site = pacs.study_site(sf, study_uid)
        endpoint = next((e for e in settings.pacs if e.site == site), None)
        if endpoint is None or not endpoint.auto_push:
            return AutoPush(study_uid, site, PushOutcome.OFF)
        if _last_push_succeeded(sf, study_uid):
            return AutoPush(study_uid, site, PushOutcome.ALREADY, endpoint.url)
        with clients(endpoint) as client:
            report = push_study(sf, settings, client, study_uid, actor=actor, now=now)
    # The verdict is committed: whatever stops the push (a PACS error, an unscored study, a bug in
    # explaining) must be reported and audited, not raised into the reader's confirmation.
    except Exception as exc:  # noqa: BLE001
        error = str(exc) if str(exc) else type(exc).__name__
        url = endpoint.url if endpoint is not None else ""
        _audit_failure(sf, study_uid, site=site, endpoint=url, error=error, actor=actor, now=now)
        return AutoPush(study_uid, site, PushOutcome.FAILED, url, error=error)
    if report.failed:  # already in the pacs_pushed entry push_objects wrote
        refused = "; ".join(f"{uid}: {reason}" for uid, reason in report.failed)
        return AutoPush(
            study_uid, site, PushOutcome.FAILED, report.endpoint, report.stored, f"the PACS refused {refused}."
        )
    return AutoPush(study_uid, site, PushOutcome.PUSHED, report.endpoint, report.stored)


def open_failures(sf: SessionFactory, settings: Settings) -> tuple[PushFailure, ...]:
    """Studies whose last push attempt failed, newest first, among the recent push entries.

    A failure is open until a later ``pacs_pushed`` entry of the study has no refusal (a retry
    with ``vigil pacs push``, or the next verdict's auto-push). The site of a refusal recorded
    by ``pacs_pushed`` is found through the configured endpoint URL.
    """
    by_url = {e.url: e.site for e in settings.pacs}
    with sf() as session:
        entries = [
            entry
            for action in (AuditAction.PACS_PUSH_FAILED, AuditAction.PACS_PUSHED)
            for entry in search(session, AuditFilter(action=action.value), limit=_RECENT_ENTRIES, offset=0)[0]
        ]
    last: dict[str, StoredEntry] = {}
    for entry in sorted(entries, key=lambda e: e.seq, reverse=True):
        last.setdefault(entry.subject, entry)  # newest first: the first seen is the study's last attempt
    return tuple(_failure(e, by_url) for e in last.values() if not _succeeded(e))


def _last_push_succeeded(sf: SessionFactory, study_uid: str) -> bool:
    with sf() as session:
        found = [
            page[0]
            for action in (AuditAction.PACS_PUSHED, AuditAction.PACS_PUSH_FAILED)
            if (page := search(session, AuditFilter(action=action.value, subject=study_uid), limit=1, offset=0)[0])
        ]
    last = max(found, key=lambda e: e.seq, default=None)
    return last is not None and _succeeded(last)


def _succeeded(entry: StoredEntry) -> bool:
    payload = _payload(entry)
    return entry.action == AuditAction.PACS_PUSHED.value and not payload.get("failed") and bool(payload.get("stored"))


def _failure(entry: StoredEntry, by_url: dict[str, str]) -> PushFailure:
    payload = _payload(entry)
    endpoint = str(payload.get("endpoint", ""))
    if entry.action == AuditAction.PACS_PUSH_FAILED.value:
        site, error = str(payload.get("site", "")), str(payload.get("error", ""))
    else:
        refused = payload.get("failed")
        site = by_url.get(endpoint, "")
        error = f"the PACS refused {len(refused) if isinstance(refused, list) else 0} object(s)"
    return PushFailure(entry.subject, site, endpoint, error, datetime.fromisoformat(entry.recorded_at), entry.actor)


def _payload(entry: StoredEntry) -> JSONObject:
    try:
        data = json.loads(entry.payload_json)
    except ValueError:  # an edited row: `vigil audit verify` reports it; here it is no success
        return {}
    return data if isinstance(data, dict) else {}


def _audit_failure(  # noqa: PLR0913 - keyword-only; one audit entry's fields
    sf: SessionFactory,
    study_uid: str,
    *,
    site: str,
    endpoint: str,
    error: str,
    actor: str,
    now: Callable[[], datetime],
) -> None:
    with sf.begin() as session:
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.PACS_PUSH_FAILED,
            subject=study_uid,
            payload={"site": site, "endpoint": endpoint, "error": error, "trigger": "verdict"},
            recorded_at=now().isoformat(),
        )
