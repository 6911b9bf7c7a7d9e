"""``vigil fhir``: ingest files and folders, list unmapped codes, re-link; bad inputs exit 2 with one line.

The payloads are SYNTHETIC FHIR R4 resources made up here, coded with real SNOMED CT and LOINC codes.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from core.cli import main
from core.cli.fhir import MAX_FILE_BYTES

V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
EMR_TABLES = ("emr_ingest_run", "emr_evidence", "emr_patient", "emr_unmapped_code", "outcome")


def _patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"type": {"coding": [{"system": V2, "code": "MR"}]}, "value": "MRN-77"}],
        "gender": "male",
    }


def _report(status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2024-03-10T10:00:00Z",
        "conclusionCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]}],
    }


def _glucose() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": 5.4, "unit": "mmol/L"},
    }


def _bundle(resources: list[dict[str, Any]], kind: str = "collection") -> str:
    entries = []
    for r in resources:
        entry: dict[str, Any] = {"resource": r}
        if kind == "transaction":
            entry["request"] = {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
        entries.append(entry)
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": entries})


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    (tmp_path / "good.json").write_text(_bundle([_patient(), _report(), _glucose()]))
    (tmp_path / "bad-entry.json").write_text(_bundle([_patient(), _report("finished")], "transaction"))
    (tmp_path / "broken.json").write_text('{"resourceType": "Bundle", "type": ')
    os.mkfifo(tmp_path / "fifo.json")
    with (tmp_path / "huge.ndjson").open("wb") as f:  # sparse: over the limit on disk, no bytes written
        f.truncate(MAX_FILE_BYTES + 1)
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _rows(home: Path) -> dict[str, int]:
    db = home / "vigil.db"
    if not db.exists():
        return dict.fromkeys(EMR_TABLES, 0)
    with sqlite3.connect(db) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in EMR_TABLES}  # noqa: S608


def test_ingest_reports_each_file_as_one_json_object(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code, out, _ = _run(capsys, "fhir", "ingest", str(home / "good.json"), "--json")

    # Assert
    assert code == 0
    (report,) = json.loads(out)["files"]
    assert (report["kind"], report["entries"], report["accepted"], report["rejected"]) == ("collection", 3, 3, [])
    assert (report["evidence"], report["unlinked"], report["unmapped"]) == (1, 1, 1)
    assert _rows(home)["emr_evidence"] == 1


def test_unmapped_lists_codes_for_an_admin_and_relink_examines_waiting_evidence(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    assert _run(capsys, "fhir", "ingest", str(home), "--json")[0] == 2  # the folder holds bad files too
    assert _run(capsys, "fhir", "ingest", str(home / "good.json"))[0] == 0

    # Execute
    unmapped = _run(capsys, "fhir", "unmapped", "--json")
    relink = _run(capsys, "fhir", "relink", "--json")
    text = _run(capsys, "fhir", "unmapped")

    # Assert
    assert unmapped[0] == 0
    assert [(c["code"], c["resource_type"], c["count"]) for c in json.loads(unmapped[1])["codes"]] == [
        ("2345-7", "Observation", 1)
    ]
    assert relink[0] == 0 and json.loads(relink[1]) == {"examined": 1, "linked": {}, "ambiguous": 0, "outcomes": 0}
    assert "http://loinc.org|2345-7" in text[1]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("broken.json", "broken.json"),
        ("bad-entry.json", "entry[1].resource.status"),
        ("fifo.json", "named pipe"),
        ("missing.json", "path not found"),
        ("huge.ndjson", f"at most {MAX_FILE_BYTES:,}"),
    ],
    ids=["malformed-json", "bad-transaction-entry", "fifo", "missing", "over-the-size-limit"],
)
def test_bad_input_exits_2_with_one_line_and_nothing_written(
    home: Path, capsys: pytest.CaptureFixture[str], name: str, expected: str
) -> None:
    # Execute: the good file comes first, and is not stored either
    code, out, err = _run(capsys, "fhir", "ingest", str(home / "good.json"), str(home / name), "--json")

    # Assert
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and expected in err and name in err
    assert _rows(home) == dict.fromkeys(EMR_TABLES, 0)
    assert not (home / "home" / "secrets").exists()  # not even the site's key on a first run


def test_pull_refuses_an_unknown_resource_type_before_any_work(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Execute
    code, _, err = _run(capsys, "fhir", "pull", "--url", "http://127.0.0.1:9/fhir", "--types", "Patient,Medication")

    # Assert
    assert code == 2 and "Medication" in err and len(err.strip().splitlines()) == 1
