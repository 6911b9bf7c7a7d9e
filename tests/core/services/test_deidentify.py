"""``core.services.deidentify``: a folder of DICOM files de-identified into another, audited once, PHI-free."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
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
from tests.core.imaging.deid.nesting import nested_file


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
        key=lambda: deidentify.deid_secret(settings),
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
        key=lambda: deidentify.deid_secret(settings),
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
        deidentify.deidentify_folder(sf, job, key=lambda: deidentify.deid_secret(settings), actor="t", now=clock)
        outputs.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})

    # Assert: the same names and bytes, no temporary file left, a 0600 key in a 0700 folder
    assert outputs[0] == outputs[1] and len(outputs[0]) == 4
    assert not [n for n in outputs[0] if n.startswith(".")]
    key = deidentify.deid_key_path(settings)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert len(key.read_bytes()) == deidentify.KEY_BYTES


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _file(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


def _dangling(path: Path) -> Path:
    path.symlink_to(path.parent / "nothing-there")
    return path


@pytest.mark.parametrize(
    ("make_job", "error", "needle", "named"),
    [
        (lambda s, t: DeidJob(s, s / "DOE_JOHN" / "out"), UnusablePathError, "inside the source folder", "out"),
        (lambda s, t: DeidJob(s, s), UnusablePathError, "inside the source folder", "out"),
        (lambda s, t: DeidJob(s, s.parent), UnusablePathError, "holds the source folder", "out"),
        (lambda s, t: DeidJob(t / "nowhere", t / "out"), PathNotFoundError, "path not found", "src"),
        (lambda s, t: DeidJob(s / "DOE_JOHN" / "pipe", t / "out"), UnusablePathError, "named pipe", "src"),
        (lambda s, t: DeidJob(s, t / "out", site="nowhere"), UnknownSiteError, "'nowhere'", None),
        (lambda s, t: DeidJob(s, _file(t / "out")), UnusablePathError, "it is a regular file; the output", "out"),
        (
            lambda s, t: DeidJob(s, _fifo(t / "out")),
            UnusablePathError,
            r"it is a named pipe \(FIFO\); the output",
            "out",
        ),
        (lambda s, t: DeidJob(s, _dangling(t / "out")), UnusablePathError, "symbolic link to .*does not exist", "out"),
        (lambda s, t: DeidJob(s, _file(t / "f") / "out"), UnusablePathError, "above it, is a regular file", "out"),
    ],
    ids=[
        "out-inside-src",
        "out-is-src",
        "out-holds-src",
        "no-src",
        "src-is-fifo",
        "unknown-site",
        "out-is-file",
        "out-is-fifo",
        "out-is-dangling-link",
        "out-under-a-file",
    ],
)
def test_refusals_come_before_any_file_or_key(
    installation: tuple[Settings, SessionFactory],
    source: Path,
    tmp_path: Path,
    make_job: Callable[[Path, Path], DeidJob],
    error: type[Exception],
    needle: str,
    named: str | None,
) -> None:
    # Prepare
    settings, sf = installation
    job = make_job(source, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())

    # Execute: through the service, which must refuse before it asks for (and so makes) the key
    with pytest.raises(error, match=needle) as caught:
        deidentify.deidentify_folder(sf, job, key=lambda: deidentify.deid_secret(settings), actor="t", now=clock)

    # Assert: one clear error naming the bad path; no folder made, no audit entry, no key
    if named is not None:
        assert str(job.out if named == "out" else job.src) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert _entries(sf) == []
    assert not deidentify.deid_key_path(settings).exists()


def test_a_damaged_key_is_refused_without_showing_it(installation: tuple[Settings, SessionFactory]) -> None:
    settings, _ = installation
    key = deidentify.deid_key_path(settings)
    key.parent.mkdir(parents=True)
    key.write_bytes(b"short")
    with pytest.raises(PseudonymKeyError, match="holds 5 bytes") as caught:
        deidentify.deid_secret(settings)
    assert "short" not in str(caught.value)


@pytest.mark.parametrize(("mode", "who"), [(0o640, "group"), (0o604, "others"), (0o644, "group and others")])
def test_a_key_others_can_read_is_refused_naming_its_path_and_mode(
    installation: tuple[Settings, SessionFactory], mode: int, who: str
) -> None:
    # Prepare: a whole key, made as the service makes it, then opened up
    settings, _ = installation
    deidentify.deid_secret(settings)
    key = deidentify.deid_key_path(settings)
    key.chmod(mode)

    # Execute / Assert
    with pytest.raises(PseudonymKeyError, match=f"its mode is {mode:04o}, open to {who}") as caught:
        deidentify.deid_secret(settings)
    assert str(key) in str(caught.value)
    assert key.read_bytes().hex() not in str(caught.value)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_outputs_are_private_whatever_the_umask(
    installation: tuple[Settings, SessionFactory], source: Path, tmp_path: Path, umask: int
) -> None:
    # Prepare: the key first, under the usual umask (the umask under test is the operator's)
    settings, sf = installation
    secret = deidentify.deid_secret(settings)
    out = tmp_path / "out"

    # Execute
    previous = os.umask(umask)
    try:
        report = deidentify.deidentify_folder(sf, DeidJob(source, out), key=lambda: secret, actor="t", now=clock)
    finally:
        os.umask(previous)

    # Assert: 0600 files (PHI-derived) in a 0700 folder, not what the umask would have made
    assert len(report.written) == 4
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in out.iterdir()} == {oct(0o600)}
    assert stat.S_IMODE(out.stat().st_mode) == 0o700 & ~umask


def test_an_output_link_to_a_folder_is_followed(
    installation: tuple[Settings, SessionFactory], source: Path, tmp_path: Path
) -> None:
    # Prepare: OUT is a link to a real folder outside the source
    settings, sf = installation
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")

    # Execute
    report = deidentify.deidentify_folder(
        sf, DeidJob(source, tmp_path / "link"), key=lambda: deidentify.deid_secret(settings), actor="t", now=clock
    )

    # Assert: written into the folder the link names; the link is still a link
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == sorted(w.output for w in report.written)
    assert (tmp_path / "link").is_symlink() and len(report.written) == 4


def test_a_link_into_the_source_is_refused(
    installation: tuple[Settings, SessionFactory], source: Path, tmp_path: Path
) -> None:
    settings, sf = installation
    (tmp_path / "link").symlink_to(source / "DOE_JOHN")
    with pytest.raises(UnusablePathError, match="inside the source folder"):
        deidentify.deidentify_folder(
            sf, DeidJob(source, tmp_path / "link"), key=lambda: deidentify.deid_secret(settings), actor="t", now=clock
        )


def test_a_key_that_is_a_symbolic_link_is_refused_as_one(installation: tuple[Settings, SessionFactory]) -> None:
    # Prepare: a private, whole key elsewhere, and the key path a link to it
    settings, _ = installation
    key = deidentify.deid_key_path(settings)
    key.parent.mkdir(parents=True)
    elsewhere = key.parent / "elsewhere.key"
    elsewhere.write_bytes(b"k" * deidentify.KEY_BYTES)
    elsewhere.chmod(0o600)
    key.symlink_to(elsewhere)

    # Execute / Assert: named for what it is (file_kind knows links), not followed
    with pytest.raises(PseudonymKeyError, match="it is a symbolic link, not a regular file"):
        deidentify.deid_secret(settings)


def test_a_file_nested_too_deep_is_skipped_and_the_run_goes_on(
    installation: tuple[Settings, SessionFactory], source: Path, tmp_path: Path
) -> None:
    # Prepare
    settings, sf = installation
    (source / "DOE_JOHN" / "deep.dcm").write_bytes(nested_file(500))

    # Execute
    report = deidentify.deidentify_folder(
        sf, DeidJob(source, tmp_path / "out"), key=lambda: deidentify.deid_secret(settings), actor="t", now=clock
    )

    # Assert: listed with the depth, the four images written all the same
    skipped = {Path(s.path).name: s.reason for s in report.skipped}
    assert skipped["deep.dcm"].startswith("its sequences nest 500 levels deep")
    assert len(report.written) == 4
