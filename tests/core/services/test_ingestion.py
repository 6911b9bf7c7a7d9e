from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from pydicom import examples
from pydicom.uid import generate_uid

from core.config import Settings
from core.errors import PathNotFoundError, UnknownSiteError
from core.imaging.gate import check_file
from core.services import ingestion, sites
from core.services.store import open_store
from core.store import audit_log, studies
from core.store.engine import SessionFactory
from tests.conftest import NewDatabase
from tests.core.services.conftest import Env, fixed_clock


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

    monkeypatch.setattr(audit_log, "append_many", boom)
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


def _variant(src: Path, out: Path, **header: str) -> Path:
    """A copy of ``src`` with header values changed (a new SOPInstanceUID, another institution...)."""
    ds = pydicom.dcmread(src)
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    ds.save_as(out)
    return out


def _store_with_sites(new_database: NewDatabase, backend: str, home: Path) -> SessionFactory:
    sf = open_store(Settings(home=home, database_url=new_database(backend, migrated=True)))
    for name in ("benchmark", "eastgate"):
        sites.add_site(sf, name, benchmark=name == "benchmark", actor="t", now=fixed_clock)
    return sf


def test_a_batch_records_what_one_file_at_a_time_records(
    small_cohort: Path, tmp_path: Path, backend: str, new_database: NewDatabase
) -> None:
    # Prepare: every kind of outcome in one batch, decided against the store and the files before it
    a, b, c = _dicom_files(small_cohort)[:3]
    items: list[ingestion.GatedFile | ingestion.Rejection] = [
        check_file(a),
        check_file(a),  # the same file again: a duplicate of the row the batch just made
        check_file(_variant(a, tmp_path / "a-altered.dcm", InstitutionName="Changed")),  # its UID, other bytes
        check_file(b),
        # a second image of b's study with another header: the study keeps b's
        check_file(_variant(b, tmp_path / "b-2.dcm", SOPInstanceUID=generate_uid(), InstitutionName="Other")),
        ingestion.Rejection(str(tmp_path / "truncated.dcm"), "not a DICOM file"),
        # an image of c's study, which eastgate already stored
        check_file(_variant(c, tmp_path / "c-2.dcm", SOPInstanceUID=generate_uid())),
    ]

    def run(sf: SessionFactory, home: Path, site: str) -> ingestion.IngestRun:
        return ingestion.IngestRun(sf, site=site, dicom_dir=home / "dicom", actor="t", now=fixed_clock)

    homes = {"batch": tmp_path / "batch", "one-by-one": tmp_path / "one-by-one"}
    stores = {way: _store_with_sites(new_database, backend, home) for way, home in homes.items()}
    for way, sf in stores.items():
        ingestion.record_batch(run(sf, homes[way], "eastgate"), [check_file(c)])
    # Execute
    batch, _ = ingestion.record_batch(run(stores["batch"], homes["batch"], "benchmark"), items)
    one_by_one = [
        ingestion.record_batch(run(stores["one-by-one"], homes["one-by-one"], "benchmark"), [item])[0][0]
        for item in items
    ]
    # Assert: the same outcomes, reasons, rows and audit entries
    outcomes = [r.outcome.value for r in batch]
    assert outcomes == ["stored", "duplicate", "rejected", "stored", "stored", "rejected", "rejected"]
    assert "already stored with different content" in batch[2].reason
    assert "already stored for site 'eastgate', not 'benchmark'" in batch[6].reason
    assert batch[1].instance == batch[0].instance

    def comparable(recorded: list[ingestion.Recorded]) -> list[tuple[object, ...]]:
        return [
            (r.outcome, r.reason, r.instance and (r.instance.id, r.instance.study_uid, Path(r.instance.path).name))
            for r in recorded
        ]

    assert comparable(batch) == comparable(one_by_one)
    ledgers, headers = {}, {}
    for way, sf in stores.items():
        with sf() as s:
            ledgers[way] = [(e.seq, e.action, e.subject, e.payload) for e in audit_log.iter_entries(s)]
            headers[way] = [(st.id, st.study_uid, st.site_name, st.institution_name) for st in studies.list_studies(s)]
            assert audit_log.verify(s).ok
    assert ledgers["batch"] == ledgers["one-by-one"]
    assert headers["batch"] == headers["one-by-one"]
    institutions = {uid: name for _, uid, _, name in headers["batch"]}
    assert institutions[pydicom.dcmread(b).StudyInstanceUID] == pydicom.dcmread(b).InstitutionName
