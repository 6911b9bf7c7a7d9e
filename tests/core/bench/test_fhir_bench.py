"""The FHIR ingest benchmark at a tiny size: its SYNTHETIC Bundle and the shape of its record."""

from __future__ import annotations

import json
from pathlib import Path

from core.bench import fhir
from core.bench.suites import SUITES
from core.fhir import parse_payload
from core.sampledata import MANIFEST_NAME, read_manifest

SAMPLE = Path(__file__).resolve().parents[3] / "sample_data"


def test_the_bundle_has_exactly_n_valid_resources_and_is_reproducible() -> None:
    rows = read_manifest(SAMPLE / MANIFEST_NAME)
    data = fhir.synthetic_bundle(rows, 257)
    parsed = parse_payload(data, name="bench")
    assert parsed.kind == "collection" and parsed.n_entries == 257
    assert parsed.errors == () and len(parsed.resources) == 257
    types = {m.get_resource_type() for _, m in parsed.resources}
    assert {"Patient", "ImagingStudy", "DiagnosticReport", "DocumentReference"} <= types
    assert fhir.synthetic_bundle(rows, 257) == data
    # Copies of a study are new studies: no StudyInstanceUID of the manifest is reused.
    uids = {r.study_uid for r in rows}
    assert not any(uid in data.decode() for uid in uids)


def test_a_tiny_run_records_the_ratio_its_spread_and_absolutes() -> None:
    (result,) = fhir.run(SAMPLE, rounds=2, n=120)
    record = json.loads(json.dumps(result.to_dict()))
    assert record["target"] == fhir.TARGET == 2.0
    assert record["guard_ok"] is True
    assert record["name"] == "FHIR ingest of a 120-resource Bundle / json.loads + R4B model_validate"
    a = record["absolutes"]
    assert a["resources"] == a["accepted"] == 120 and a["rejected"] == 0 and a["rounds"] == 2
    assert sum(a["resource_types"].values()) == 120
    assert a["evidence_rows"] > 0
    assert 0 < a["ratio_min"] <= record["ratio"] <= a["ratio_max"]
    assert a["ingest_median_s"] > 0 and a["baseline_median_s"] > 0
    assert a["parse_extract_median_s"] + a["store_median_s"] <= a["ingest_median_s"] * 1.5


def test_the_suite_is_registered() -> None:
    assert "fhir" in SUITES
