"""The rules that de-identify an audit entry for an evidence package (``core.services.evidence_deid``), one by one."""

from __future__ import annotations

import io
import stat
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.audit.chain import link
from core.audit.events import AuditAction, AuditEntry
from core.errors import BadInputError, PermissionDeniedError
from core.imaging.deid import pseudonymous_uid
from core.services.audit_checkpoints import CheckpointPlaces
from core.services.audit_export import IdentifiedExport
from core.services.audit_search import export_zip
from core.services.evidence_deid import PATH_REMOVED, exported_line, pseudonymous_id
from core.services.permissions import Role, SignedInUser
from core.store import audit_log, users
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.types import JSONObject

SECRET = b"s" * 32
STUDY = "1.2.826.0.1.3680043.8.498.475651460352984128950909365"
SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage: a kind, not a patient
AUDITOR = SignedInUser("audrey", Role.AUDITOR)
_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _entry(action: AuditAction, subject: str, payload: JSONObject) -> AuditEntry:
    return link(
        None, recorded_at="2026-11-28T12:00:00+00:00", actor="dr.a", action=action, subject=subject, payload=payload
    )


def test_instance_uids_become_the_keyed_uids_vigil_deid_gives() -> None:
    # Prepare
    entry = _entry(
        AuditAction.EXPLANATION_EXPORTED,
        STUDY,
        {"sop_instance_uids": [STUDY + ".1"], "sop_class_uids": [SOP_CLASS], "model_version": "1.0.2", "n": 3},
    )
    # Execute
    line, changed = exported_line(entry, SECRET)
    # Assert
    assert changed and line["deidentified"] is True
    assert line["subject"] == pseudonymous_uid(SECRET, STUDY)
    assert line["payload"] == {
        "sop_instance_uids": [pseudonymous_uid(SECRET, STUDY + ".1")],
        "sop_class_uids": [SOP_CLASS],
        "model_version": "1.0.2",
        "n": 3,
    }
    assert (line["entry_hash"], line["prev_hash"]) == (entry.entry_hash, entry.prev_hash)


@pytest.mark.parametrize(
    ("action", "subject", "payload", "want_subject", "want_payload"),
    [
        (
            AuditAction.INGEST_REJECTED,
            "/data/DOE_JOHN/1.dcm",
            {"path": "/data/DOE_JOHN/1.dcm", "site": "north", "reason": "not DICOM"},
            PATH_REMOVED,
            {"path": PATH_REMOVED, "site": "north", "reason": "not DICOM"},
        ),
        (
            AuditAction.STUDY_INGESTED,
            "site-north",
            {"source_path": "/x/SMITH/1.dcm", "cache_dir": "/x", "rejected": ["/y/a.json"], "rejected_n": 2},
            "site-north",
            {"source_path": PATH_REMOVED, "cache_dir": PATH_REMOVED, "rejected": [PATH_REMOVED], "rejected_n": 2},
        ),
        (
            AuditAction.OUTCOMES_INGESTED,
            "emr_evidence",
            {"patient_id": "MRN-1", "accession": ["A1"], "by": {"mrn": "M2"}, "linked_by_patient": 4},
            "emr_evidence",
            {
                "patient_id": pseudonymous_id(SECRET, "patient", "MRN-1"),
                "accession": [pseudonymous_id(SECRET, "accession", "A1")],
                "by": {"mrn": pseudonymous_id(SECRET, "mrn", "M2")},
                "linked_by_patient": 4,
            },
        ),
    ],
    ids=["rejected-path", "path-keys", "patient-keys"],
)
def test_paths_and_patient_identifiers(
    action: AuditAction, subject: str, payload: JSONObject, want_subject: str, want_payload: JSONObject
) -> None:
    line, changed = exported_line(_entry(action, subject, payload), SECRET)
    assert changed
    assert (line["subject"], line["payload"]) == (want_subject, want_payload)


@pytest.mark.parametrize(
    "action", [AuditAction.AUDIT_EXPORTED, AuditAction.MODEL_REGISTERED, AuditAction.VALIDATION_REPORTED]
)
def test_the_entries_the_records_are_checked_against_are_exported_as_stored(action: AuditAction) -> None:
    entry = _entry(action, "demo-1.0", {"out_dir": "/tmp/x", "uid": STUDY})
    line, changed = exported_line(entry, SECRET)
    assert not changed and "deidentified" not in line
    assert line["payload"] == {"out_dir": "/tmp/x", "uid": STUDY}


def test_an_entry_without_identifiers_and_an_identified_export_are_unchanged() -> None:
    plain = _entry(AuditAction.SITE_ADDED, "north", {"is_benchmark": False})
    study = _entry(AuditAction.PREDICTION_MADE, STUDY, {"score": 0.5})
    assert exported_line(plain, SECRET) == (exported_line(plain, None)[0], False)
    assert exported_line(study, None) == (exported_line(study, None)[0], False)
    assert exported_line(study, None)[0]["subject"] == STUDY


# --- the Audit page's export (core.services.audit_search.export_zip) --------------------------------


@pytest.fixture
def store(tmp_path: Path) -> tuple[SessionFactory, CheckpointPlaces]:
    engine = make_engine(f"sqlite:///{tmp_path / 'vigil.db'}")
    migrate(engine)
    sf = make_session_factory(engine)
    with sf.begin() as session:
        users.add_user(
            session, username="audrey", role="auditor", password_hash="x" * 20, now=_NOW, full_name="Audrey A"
        )
        audit_log.append(
            session,
            actor="system",
            action=AuditAction.STUDY_INGESTED,
            subject=STUDY,
            payload={"source_path": "/data/DOE_JOHN/1.dcm"},
            recorded_at=_NOW.isoformat(),
        )
    places = CheckpointPlaces(key_file=tmp_path / "secrets" / "audit-signing.key", external_file=tmp_path / "cp.jsonl")
    return sf, places


def _exports(sf: SessionFactory) -> int:
    with sf() as session:
        return sum(e.action == AuditAction.AUDIT_EXPORTED for e in audit_log.iter_entries(session))


def test_the_audit_pages_export_is_de_identified(store: tuple[SessionFactory, CheckpointPlaces]) -> None:
    # Prepare
    sf, places = store
    # Execute
    package = export_zip(sf, places, AUDITOR, now=lambda: _NOW)
    # Assert
    assert package.summary.ok and package.summary.deidentified and package.summary.deidentified_entries == 1
    with zipfile.ZipFile(io.BytesIO(package.data)) as archive:
        assert not any(STUDY.encode() in archive.read(n) or b"DOE_JOHN" in archive.read(n) for n in archive.namelist())
    # the installation's key, beside the signing key, made 0600 on first use
    assert stat.S_IMODE((places.key_file.parent / "dicom-deid.key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("user", "allowed", "error"),
    [
        (SignedInUser("carol", Role.CMIO), True, PermissionDeniedError),  # may not export at all
        (AUDITOR, False, BadInputError),  # the settings do not allow identified exports
    ],
    ids=["role", "settings"],
)
def test_an_identified_export_is_checked_before_anything_is_written(
    store: tuple[SessionFactory, CheckpointPlaces], user: SignedInUser, allowed: bool, error: type[Exception]
) -> None:
    # Prepare
    sf, places = store
    # Execute
    with pytest.raises(error):
        export_zip(sf, places, user, now=lambda: _NOW, identified=IdentifiedExport("inspection", allowed=allowed))
    # Assert
    assert _exports(sf) == 0
