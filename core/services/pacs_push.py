"""Push Vigil's objects about a study back into the site's PACS over STOW-RS, audited.

:func:`push_objects` sends any list of DICOM objects (datasets or files) into a study with one
audit entry; :func:`explanation_objects` makes the Grad-CAM Secondary Capture and Segmentation
Vigil exports, which ``vigil pacs push`` sends. Other objects about the study (a Structured
Report of the model's result) join the same list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.audit.events import AuditAction
from core.config import Settings
from core.imaging.dicomweb import DicomwebClient, Outgoing
from core.store import audit_log, studies
from core.store.engine import SessionFactory
from core.types import JSONObject

__all__ = ["PushReport", "explanation_objects", "push_objects", "study_site"]


@dataclass(frozen=True, slots=True)
class PushReport:
    """What a STOW-RS push stored, and what the PACS refused (``(uid, reason)``)."""

    study_uid: str
    endpoint: str
    stored: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]

    def to_dict(self) -> JSONObject:
        """JSON-ready (what ``vigil pacs push --json`` prints)."""
        return {
            "study_uid": self.study_uid,
            "endpoint": self.endpoint,
            "stored": list(self.stored),
            "failed": [{"sop_instance_uid": uid, "reason": reason} for uid, reason in self.failed],
        }


def study_site(sf: SessionFactory, study_uid: str) -> str:
    """The site a stored study belongs to (its PACS is where results go back).

    Raises
    ------
    UnknownStudyError
    """
    with sf() as session:
        return studies.get_study(session, study_uid).site_name


def push_objects(
    sf: SessionFactory,
    client: DicomwebClient,
    study_uid: str,
    objects: Sequence[Outgoing],
    *,
    actor: str,
    now: Callable[[], datetime],
) -> PushReport:
    """Send ``objects`` into ``study_uid`` on ``client``'s PACS (STOW-RS), with one audit entry.

    Parameters
    ----------
    objects : sequence of Dataset or Path
        DICOM objects of the study: the Grad-CAM exports (:func:`explanation_objects`), and any
        other object Vigil makes about it (a Structured Report of the model's result).

    Raises
    ------
    UnknownStudyError
        The study is not stored; nothing is sent.
    BadInputError
        An object cannot be read or belongs to another study; nothing is sent.
    PacsUnreachableError, PacsAuthError, PacsServerError
        Nothing was stored (and nothing is audited).
    """
    study_site(sf, study_uid)
    result = client.store(objects, study_uid=study_uid)
    with sf.begin() as session:
        audit_log.append(
            session,
            actor=actor,
            action=AuditAction.PACS_PUSHED,
            subject=study_uid,
            payload={
                "endpoint": client.base_url,
                "stored": list(result.stored),
                "failed": [{"sop_instance_uid": uid, "reason": reason} for uid, reason in result.failed],
            },
            recorded_at=now().isoformat(),
        )
    return PushReport(study_uid, client.base_url, result.stored, result.failed)


def explanation_objects(
    sf: SessionFactory,
    settings: Settings,
    study_uid: str,
    *,
    out_dir: Path,
    actor: str,
    now: Callable[[], datetime],
) -> list[Path]:
    """The Grad-CAM Secondary Capture and Segmentation of ``study_uid``, exported into ``out_dir`` (audited).

    Explains with the version serving the study's site, as ``vigil explain --method gradcam --export-dicom`` does.

    Raises
    ------
    UnknownStudyError, BadInputError, PixelsUnreadableError
        As :func:`core.services.explanation.explain_study` and ``export_dicom``.
    """
    from core.services import explanation  # torch and captum: only when something is explained
    from core.services import models as model_service

    model = model_service.load_for_study(sf, study_uid, models_dir=settings.home / "models")
    stored = explanation.explain_study(
        sf,
        model,
        study_uid,
        method=explanation.ExplainMethod.GRADCAM,
        artifacts_dir=settings.artifacts_dir,
        lock=None,
        actor=actor,
        now=now,
    )
    return [o.path for o in explanation.export_dicom(sf, stored, out_dir=out_dir, actor=actor, now=now)]
