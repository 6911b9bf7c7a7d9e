"""``core.services.deidentify``: a folder of DICOM files de-identified into another, audited once, PHI-free."""

from __future__ import annotations

import json
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest

from core.audit.events import AuditEntry
from core.config import Settings
from core.errors import PathNotFoundError, PseudonymKeyError, UnknownSiteError, UnusablePathError
from core.sampledata import MANIFEST_NAME, read_manifest
from core.services import deidentify, sites
from core.services.deidentify import DeidJob
from core.services.store import open_store
from core.store import audit_log
from core.store.engine import SessionFactory


def clock() -> datetime:
    return datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def installation(tmp_path: Path) -> tuple[Settings, SessionFactory]:
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=f"sqlite:///{tmp_path / 'vigil.db'}")
    sf = open_store(settings)
    sites.add_site(sf, "northfield", benchmark=False, actor="t", now=clock)
    return settings, sf


@pytest.fixture
def source(tmp_path: Path, small_cohort: Path) -> Path:
    """A site's folder as an operator has it: named after a patient, with a stray file, a FIFO and a screen grab."""
    rows = read_manifest(small_cohort / MANIFEST_NAME)
    src = tmp_path / "src" / "DOE_JOHN"
    src.mkdir(parents=True)
    for row in rows[:4]:
        shutil.copy(small_cohort / row.path, src / Path(row.path).name)
    (src / "notes.txt").write_text("not DICOM\n", encoding="utf-8")
    os.mkfifo(src / "pipe")
    grab = pydicom.dcmread(small_cohort / rows[4].path)
    grab.BurnedInAnnotation = "YES"
    grab.save_as(src / "grab.dcm")
    return tmp_path / "src"


def _entries(sf: SessionFactory) -> list[AuditEntry]:
    with sf() as session:
        return [e for e in audit_log.iter_entries(session) if e.action == "deid_exported"]


def test_a_folder_is_written_quarantined_and_skipped_as_documented(
    installation: tuple[Settings, SessionFactory], source: Path, tmp_path: Path
) -> None:
    # Prepare
    settings, sf = installation
    out = tmp_path / "out"

    # Execute
    report = deidentify.deidentify_folder(
        sf,
        DeidJob(source, out, site="northfield"),
        secret=deidentify.deid_secret(settings),
        actor="t",
        now=clock,
    )

    # Assert: four written under their new UIDs, the screen grab only listed, two skipped with reasons
    assert len(report.written) == 4
    assert sorted(p.name for p in out.iterdir()) == sorted(w.output for w in report.written)
    assert all(w.output.startswith("2.25.") and w.output.endswith(".dcm") for w in report.written)
    assert [Path(q.path).name for q in report.quarantined] == ["grab.dcm"]
    assert "BurnedInAnnotation is YES" in report.quarantined[0].reason
    skipped = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(skipped) == {"notes.txt", "pipe"} and "named pipe" in skipped["pipe"]
    for written in out.iterdir():
        ds = pydicom.dcmread(written)
        assert ds.PatientIdentityRemoved == "YES" and report.table_sha256 in ds.DeidentificationMethod


def test_one_audit_entry_holds_counts_and_no_phi(
    installation: tuple[Settings, SessionFactory], source: Path, tmp_path: Path
) -> None:
    # Prepare
    settings, sf = installation
    originals = [pydicom.dcmread(p) for p in sorted(source.rglob("*.dcm"))]

    # Execute
    report = deidentify.deidentify_folder(
        sf,
        DeidJob(source, tmp_path / "out", site="northfield"),
        secret=deidentify.deid_secret(settings),
        actor="t",
        now=clock,
    )

    # Assert
    (entry,) = _entries(sf)
    payload = entry.payload
    assert entry.subject == "northfield"
    assert (payload["written"], payload["quarantined"], payload["skipped"], payload["files"]) == (4, 1, 2, 7)
    assert payload["table_sha256"] == report.table_sha256 and payload["completed"] is True
    text = json.dumps(payload)
    forbidden = ["DOE_JOHN", str(source), "notes.txt"]
    for ds in originals:
        forbidden += [str(ds.PatientID), str(ds.PatientName), str(ds.StudyInstanceUID), str(ds.AccessionNumber)]
    assert [f for f in forbidden if f in text] == []
    assert bytes(deidentify.deid_secret(settings)).hex() not in text


def test_runs_are_deterministic_and_the_key_is_private(
    installation: tuple[Settings, SessionFactory], source: Path, tmp_path: Path
) -> None:
    # Execute
    settings, sf = installation
    outputs = []
    for name in ("a", "b"):
        job = DeidJob(source, tmp_path / name)
        deidentify.deidentify_folder(sf, job, secret=deidentify.deid_secret(settings), actor="t", now=clock)
        outputs.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})

    # Assert: the same names and bytes, no temporary file left, a 0600 key in a 0700 folder
    assert outputs[0] == outputs[1] and len(outputs[0]) == 4
    assert not [n for n in outputs[0] if n.startswith(".")]
    key = deidentify.deid_key_path(settings)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert len(key.read_bytes()) == deidentify.KEY_BYTES


def test_refusals_come_before_any_file_or_key(
    installation: tuple[Settings, SessionFactory], source: Path, tmp_path: Path
) -> None:
    settings, sf = installation
    with pytest.raises(UnusablePathError, match="inside the source folder"):
        deidentify.check_request(sf, DeidJob(source, source / "DOE_JOHN" / "out"))
    with pytest.raises(UnusablePathError, match="inside the source folder"):
        deidentify.check_request(sf, DeidJob(source, source))
    with pytest.raises(UnusablePathError, match="holds the source folder"):
        deidentify.check_request(sf, DeidJob(source, source.parent))
    with pytest.raises(PathNotFoundError, match="nowhere"):
        deidentify.check_request(sf, DeidJob(tmp_path / "nowhere", tmp_path / "out"))
    with pytest.raises(UnusablePathError, match="named pipe"):
        deidentify.check_request(sf, DeidJob(source / "DOE_JOHN" / "pipe", tmp_path / "out"))
    with pytest.raises(UnknownSiteError, match="'nowhere'"):
        deidentify.deidentify_folder(
            sf, DeidJob(source, tmp_path / "out", site="nowhere"), secret=b"k" * 32, actor="t", now=clock
        )
    assert not (tmp_path / "out").exists() and _entries(sf) == []
    assert not deidentify.deid_key_path(settings).exists()


def test_a_damaged_key_is_refused_without_showing_it(installation: tuple[Settings, SessionFactory]) -> None:
    settings, _ = installation
    key = deidentify.deid_key_path(settings)
    key.parent.mkdir(parents=True)
    key.write_bytes(b"short")
    with pytest.raises(PseudonymKeyError, match="holds 5 bytes") as caught:
        deidentify.deid_secret(settings)
    assert "short" not in str(caught.value)
