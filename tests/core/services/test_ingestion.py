from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from pydicom import examples

from core.errors import PathNotFoundError, UnknownSiteError
from core.services import ingestion
from core.store import audit_log, studies
from tests.core.services.conftest import Env


def _dicom_files(cohort: Path) -> list[Path]:
    return sorted((cohort / "dicom").rglob("*.dcm"))


def _counts(env: Env) -> tuple[int, int]:
    with env.sf() as s:
        return studies.count_studies(s), audit_log.count_entries(s)


def test_ingest_folder_then_again_reports_duplicates(env: Env, small_cohort: Path) -> None:
    # Prepare
    files = _dicom_files(small_cohort)
    # Execute
    first = ingestion.ingest_paths(
        env.sf, [small_cohort / "dicom"], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now
    )
    second = ingestion.ingest_paths(
        env.sf, [small_cohort / "dicom"], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now
    )
    # Assert
    assert len(first.ingested) == len(files) and not first.rejected and not first.duplicates
    assert len(second.duplicates) == len(files) and not second.ingested
    with env.sf() as s:
        assert studies.count_studies(s) == len(files)
        inst = studies.list_instances(s, studies.list_studies(s, limit=1)[0].study_uid)[0]
    stored = Path(inst.path)
    assert stored.is_file() and stored.name == f"{inst.sha256}.dcm"


def test_unknown_site_writes_nothing(env: Env, small_cohort: Path) -> None:
    before = _counts(env)
    with pytest.raises(UnknownSiteError, match="NOPE"):
        ingestion.ingest_paths(env.sf, [small_cohort], site="NOPE", dicom_dir=env.dicom_dir, actor="t", now=env.now)
    assert _counts(env) == before
    assert not env.dicom_dir.exists()


def test_missing_path_writes_nothing(env: Env, tmp_path: Path) -> None:
    before = _counts(env)
    missing = tmp_path / "no-such-folder"
    with pytest.raises(PathNotFoundError, match="no-such-folder"):
        ingestion.ingest_paths(env.sf, [missing], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now)
    assert _counts(env) == before


def test_rejected_file_leaves_only_its_audit_entry(env: Env, tmp_path: Path) -> None:
    # Prepare: a truncated copy of a real DICOM file
    good = Path(examples.get_path("ct"))
    bad = tmp_path / "truncated.dcm"
    bad.write_bytes(good.read_bytes()[:2000])
    studies_before, entries_before = _counts(env)
    # Execute
    report = ingestion.ingest_paths(env.sf, [bad], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now)
    # Assert
    assert [r.path for r in report.rejected] == [str(bad)]
    assert report.rejected[0].reason
    assert _counts(env) == (studies_before, entries_before + 1)
    with env.sf() as s:
        last = audit_log.last_entry(s)
    assert last is not None and last.action == "ingest_rejected" and last.payload["path"] == str(bad)


def test_same_uid_with_different_content_is_rejected(env: Env, small_cohort: Path, tmp_path: Path) -> None:
    # Prepare: the same SOPInstanceUID with one changed header value
    original = _dicom_files(small_cohort)[0]
    ds = pydicom.dcmread(original)
    ds.InstitutionName = "Changed Hospital"
    altered = tmp_path / "altered.dcm"
    ds.save_as(altered)
    ingestion.ingest_paths(env.sf, [original], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now)
    # Execute
    report = ingestion.ingest_paths(
        env.sf, [altered], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now
    )
    # Assert
    assert len(report.rejected) == 1 and "different content" in report.rejected[0].reason
    assert not report.ingested


def test_failed_transaction_removes_the_copied_file(
    env: Env, small_cohort: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: make the audit append fail inside the ingest transaction
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit_log, "append", boom)
    before = _counts(env)
    # Execute
    with pytest.raises(RuntimeError, match="disk full"):
        ingestion.ingest_paths(
            env.sf, _dicom_files(small_cohort)[:1], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now
        )
    # Assert: neither rows nor the content-addressed copy remain
    monkeypatch.undo()
    assert _counts(env) == before
    assert not list(env.dicom_dir.rglob("*.dcm"))


def test_copy_is_byte_identical(env: Env, small_cohort: Path) -> None:
    src = _dicom_files(small_cohort)[0]
    ingestion.ingest_paths(env.sf, [src], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now)
    (copy,) = list(env.dicom_dir.rglob("*.dcm"))
    assert copy.read_bytes() == src.read_bytes()


def test_devices_fifos_and_dangling_links_in_a_folder_are_reported(
    env: Env, small_cohort: Path, tmp_path: Path
) -> None:
    # Prepare: one good file beside a FIFO, a dangling link and a link to /dev/zero
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    good = incoming / "good.dcm"
    good.write_bytes(_dicom_files(small_cohort)[0].read_bytes())
    os.mkfifo(incoming / "pipe")
    (incoming / "dangling.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (incoming / "zero.dcm").symlink_to("/dev/zero")

    # Execute
    report = ingestion.ingest_paths(
        env.sf, [incoming], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now
    )

    # Assert: on c038d86 the FIFO and the dangling link were skipped without a word
    reasons = {Path(r.path).name: r.reason for r in report.rejected}
    assert len(report.ingested) == 1
    assert "FIFO" in reasons["pipe"]
    assert "dangling symbolic link" in reasons["dangling.dcm"]
    assert "character device" in reasons["zero.dcm"]


def test_the_size_limit_rejects_a_file_unread(env: Env, small_cohort: Path) -> None:
    src = _dicom_files(small_cohort)[0]
    report = ingestion.ingest_paths(
        env.sf, [src], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now, max_file_bytes=1024
    )
    assert not report.ingested and "limit 1024 bytes" in report.rejected[0].reason


def test_paths_in_the_report_and_audit_are_absolute(
    env: Env, small_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: name one file relative to the working directory, one that is rejected
    (tmp_path / "junk.dcm").write_bytes(b"not dicom")
    monkeypatch.chdir(tmp_path)

    # Execute
    report = ingestion.ingest_paths(
        env.sf, [Path("junk.dcm")], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now
    )

    # Assert
    assert report.rejected[0].path == str(tmp_path / "junk.dcm")
    with env.sf() as s:
        last = audit_log.last_entry(s)
    assert last is not None and last.payload["path"] == str(tmp_path / "junk.dcm")
