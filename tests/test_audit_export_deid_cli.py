"""``vigil audit export`` is de-identified by default: a canary scan of the package, the opt-out, the verifier.

The ledger is made the way a site makes it: sample studies ingested through ``vigil ingest`` from
folders named after their patients (as sites name them), plus a file the gate rejects, whose path
becomes an entry's subject. Every identifier of those studies is a canary: the patient's ID and
name, the accession number, the study, series and instance UIDs, and the folder names.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pydicom
import pytest

from core.audit import verify_evidence
from core.config import SAMPLE_DATA_DIR
from core.sampledata import MANIFEST_NAME, read_manifest
from tests.cli_home import point_vigil_at, run_json

STUDIES = 3
REASON = "regulator's inspection 2026-11, case 114"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    point_vigil_at(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _folder_name(ds: pydicom.Dataset) -> str:
    return f"{str(ds.PatientName).replace('^', '_')}_{ds.PatientID}"


@pytest.fixture
def canaries(home: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Ingest sample studies from patient-named folders; return every identifier they carry."""
    src = home / "incoming"
    found: list[str] = []
    for row in read_manifest(SAMPLE_DATA_DIR / MANIFEST_NAME)[:STUDIES]:
        ds = pydicom.dcmread(SAMPLE_DATA_DIR / row.path, stop_before_pixels=True)
        folder = src / _folder_name(ds)
        folder.mkdir(parents=True)
        shutil.copy(SAMPLE_DATA_DIR / row.path, folder / "1.dcm")
        found += [str(ds.PatientID), str(ds.PatientName), str(ds.AccessionNumber), _folder_name(ds)]
        found += [str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)]
    rejected = src / "DOE_JANE_MRN0042"
    rejected.mkdir()
    (rejected / "scan.dcm").write_bytes(b"not a DICOM file")
    found.append("DOE_JANE_MRN0042")
    assert run_json(capsys, "site", "add", "benchmark")[0] == 0
    code, out, err = run_json(capsys, "ingest", str(src), "--site", "benchmark")
    assert code == 0 and out["ingested"] == STUDIES and len(out["rejected"]) == 1, err  # type: ignore[arg-type]
    return found


def _stored_ledger_text() -> str:
    from core.config import load_settings
    from core.services.store import open_store
    from core.store import audit_log

    with open_store(load_settings(os.environ))() as session:
        return "\n".join(
            json.dumps([e.subject, str(e.action), dict(e.payload)]) for e in audit_log.iter_entries(session)
        )


def _package_bytes(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def _ledger(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "entries.jsonl").read_text().splitlines()]


def _verify(folder: Path) -> tuple[bool, list[str]]:
    report: list[str] = []
    return verify_evidence.verify(folder, None, report), report


def test_a_default_export_carries_no_identifier_of_the_cohort(
    home: Path, canaries: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the ledger itself holds the UIDs and the patient-named folders
    stored = _stored_ledger_text()
    assert sum(c in stored for c in canaries) >= 3 * STUDIES + 1
    # Execute
    code, out, err = run_json(capsys, "audit", "export", "--out", str(home / "evidence"))
    # Assert
    assert code == 0, err
    assert out["ok"] is True and out["deidentified"] is True
    data = _package_bytes(home / "evidence")
    leaked = [c for c in canaries if c.encode() in data]
    figure = f"evidence export canary scan: planted {len(canaries)}, leaked {len(leaked)}"
    print(f"\n{figure}")  # noqa: T201
    assert len(canaries) == 7 * STUDIES + 1 and leaked == []
    assert figure in (Path(__file__).resolve().parent.parent / "README.md").read_text()  # quoted, not typed
    ok, report = _verify(home / "evidence")
    assert ok, report
    meta = json.loads((home / "evidence" / "export.json").read_text())["deidentification"]
    assert meta["deidentified"] is True and meta["method"] == "vigil-evidence-deid/1"
    assert meta["entries_exported"] == out["deidentified_entries"]
    assert int(meta["entries_exported"]) >= STUDIES + 1  # each ingested study and the rejected file
    assert "DE-IDENTIFIED (vigil-evidence-deid/1" in (home / "evidence" / "summary.html").read_text()


def test_the_uids_are_those_vigil_deid_gives_the_same_images(
    home: Path, canaries: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    assert run_json(capsys, "audit", "export", "--out", str(home / "evidence"))[0] == 0
    code, _, err = run_json(capsys, "deid", str(home / "incoming"), str(home / "images"), "--site", "benchmark")
    # Assert: a reviewer can match an entry to the de-identified image it is about
    assert code == 0, err
    studies = {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in (home / "images").glob("*")}
    subjects = {str(e["subject"]) for e in _ledger(home / "evidence") if e["action"] == "study_ingested"}
    assert len(studies) == STUDIES and studies == subjects


def test_an_identified_export_is_refused_unless_the_settings_allow_it(
    home: Path, canaries: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code, out, err = run_json(capsys, "audit", "export", "--out", str(home / "evidence"), "--identified", REASON)
    # Assert: nothing written, nothing audited
    assert code == 2 and out == {}
    assert "identified_exports" in err
    assert not (home / "evidence").exists()
    assert '"audit_exported"' not in _stored_ledger_text()


def _allow(home: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    (home / "vigil.toml").write_text(text)
    monkeypatch.setenv("VIGIL_CONFIG", str(home / "vigil.toml"))


def test_a_site_that_refuses_identified_exports_is_obeyed(
    home: Path, canaries: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _allow(
        home,
        monkeypatch,
        "[vigil.deid]\nidentified_exports = true\n[vigil.deid.sites.benchmark]\nidentified_exports = false\n",
    )
    # Execute
    code, _, err = run_json(capsys, "audit", "export", "--out", str(home / "evidence"), "--identified", REASON)
    # Assert
    assert code == 2 and "identified_exports" in err


def test_an_allowed_identified_export_is_audited_with_its_reason(
    home: Path, canaries: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _allow(home, monkeypatch, "[vigil.deid]\nidentified_exports = true\n")
    # Execute
    code, out, err = run_json(capsys, "audit", "export", "--out", str(home / "evidence"), "--identified", REASON)
    # Assert
    assert code == 0, err
    assert out["ok"] is True and out["deidentified"] is False and out["deidentified_entries"] == 0
    entry = [e for e in _ledger(home / "evidence") if e["action"] == "audit_exported"][-1]
    assert str(entry["actor"]).startswith("cli:")
    assert entry["payload"]["deidentification"] == {"deidentified": False, "reason": REASON}  # type: ignore[index]
    data = _package_bytes(home / "evidence")
    in_ledger = [c for c in canaries if c in _stored_ledger_text()]
    assert len(in_ledger) >= 3 * STUDIES + 1 and all(c.encode() in data for c in in_ledger)  # as stored
    ok, report = _verify(home / "evidence")
    assert ok, report


def test_an_empty_reason_is_refused(
    home: Path, canaries: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _allow(home, monkeypatch, "[vigil.deid]\nidentified_exports = true\n")
    code, _, err = run_json(capsys, "audit", "export", "--out", str(home / "evidence"), "--identified", "  ")
    assert code == 2 and "needs a reason" in err


def _rewrite(folder: Path, edit: object) -> None:
    lines = _ledger(folder)
    edit(lines)  # type: ignore[operator]
    text = "".join(json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n" for e in lines)
    (folder / "entries.jsonl").write_text(text)


def _first_deidentified(lines: list[dict[str, object]]) -> dict[str, object]:
    return next(e for e in lines if e.get("deidentified") is True)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda ls: _first_deidentified(ls).update(subject="2.25.1"), "do not match the count"),
        (lambda ls: _first_deidentified(ls).update(deidentified=False), "not an entry object"),
        (
            lambda ls: next(e for e in ls if e["action"] == "audit_exported").update(deidentified=True),
            "such entries are exported as stored",
        ),
    ],
    ids=["edited-de-identified-entry", "unmarked", "anchor-marked"],
)
def test_the_verifier_catches_an_edited_de_identified_package(
    home: Path, canaries: list[str], capsys: pytest.CaptureFixture[str], edit: object, needle: str
) -> None:
    # Prepare
    assert run_json(capsys, "audit", "export", "--out", str(home / "evidence"))[0] == 0
    # Execute
    _rewrite(home / "evidence", edit)
    ok, report = _verify(home / "evidence")
    # Assert
    assert not ok
    assert needle in report[-1], report


def test_the_verifier_refuses_a_line_marked_de_identified_in_an_identified_export(
    home: Path, canaries: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: an identified package, then an entry edited and passed off as de-identified
    _allow(home, monkeypatch, "[vigil.deid]\nidentified_exports = true\n")
    assert run_json(capsys, "audit", "export", "--out", str(home / "evidence"), "--identified", REASON)[0] == 0
    # Execute
    _rewrite(
        home / "evidence",
        lambda ls: next(e for e in ls if e["action"] == "study_ingested").update(
            subject="1.2.3.4.5", deidentified=True
        ),
    )
    ok, report = _verify(home / "evidence")
    # Assert
    assert not ok
    assert "does not record a de-identified export" in report[-1], report
