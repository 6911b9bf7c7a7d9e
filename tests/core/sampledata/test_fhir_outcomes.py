"""The synthetic EMR outcomes: determinism, rates, delays, linkage variety, R4 validity, canaries."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.documentreference import DocumentReference

from core.errors import BadInputError
from core.sampledata import ManifestRow, read_manifest
from core.sampledata.fhir_outcomes import (
    BULK_NOTES_NAME,
    BULK_SITE,
    CONFLICT_RATE,
    MISSING_RATE,
    OUTCOME_CONFIRMED,
    OUTCOME_EXCLUDED,
    OUTCOMES_DIR,
    SampleOutcomes,
    build_outcomes,
    write_outcomes,
)

REPO = Path(__file__).resolve().parents[3]
MANIFEST = REPO / "sample_data" / "manifest.csv"
CANARY = re.compile(r"CANARY-\d+-ZQX")
#: The codes (system, code) -> display the generator may write; the mapping file's and the unmapped examples.
ALLOWED_CODES = {
    ("http://snomed.info/sct", "786838002"): "Nodule of lung",
    ("http://snomed.info/sct", "363358000"): "Malignant tumor of lung",
    ("http://snomed.info/sct", "827032003"): "Normal lung",
    ("http://snomed.info/sct", "10828004"): "Positive",
    ("http://snomed.info/sct", "260385009"): "Negative",
    ("http://snomed.info/sct", "78603008"): "Biopsy of lung",
    ("http://loinc.org", "11526-1"): "Pathology study",
    ("http://loinc.org", "24627-2"): "CT Chest",
    ("http://loinc.org", "36643-5"): "XR Chest 2 Views",
    ("http://loinc.org", "11506-3"): "Progress note",
    ("http://loinc.org", "11488-4"): "Consult note",
    ("http://loinc.org", "2345-7"): "Glucose [Mass/volume] in Serum or Plasma",
    ("http://loinc.org", "718-7"): "Hemoglobin [Mass/volume] in Blood",
}
STATUS = {
    "Observation": {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "unknown"},
    "DiagnosticReport": {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended"},
    "Procedure": {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed", "unknown"},
    "DocumentReference": {"current", "superseded"},
    "ImagingStudy": {"registered", "available", "cancelled", "unknown"},
}


@pytest.fixture(scope="module")
def rows() -> list[ManifestRow]:
    return read_manifest(MANIFEST)


@pytest.fixture(scope="module")
def made(rows: list[ManifestRow]) -> SampleOutcomes:
    return build_outcomes(rows, seed=0)


@pytest.fixture(scope="module")
def with_canaries(rows: list[ManifestRow]) -> SampleOutcomes:
    return build_outcomes(rows, seed=0, canaries=True)


def _resources(made: SampleOutcomes) -> Iterator[dict[str, Any]]:
    for bundle in made.bundles.values():
        for entry in bundle["entry"]:
            yield entry["resource"]
    yield from made.bulk_notes


def _many(rows: list[ManifestRow], copies: int) -> list[ManifestRow]:
    """Deployment rows copied with fresh study UIDs: enough studies to measure rates."""
    deployment = [r for r in rows if not r.is_benchmark]
    return [replace(r, study_uid=f"{r.study_uid}.{k}") for k in range(1, copies + 1) for r in deployment]


def _codings(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if "system" in value and "code" in value:
            yield value
        for v in value.values():
            yield from _codings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _codings(v)


def _dates(resource: dict[str, Any]) -> list[date]:
    found = [resource.get(k) for k in ("effectiveDateTime", "performedDateTime", "onsetDateTime", "recordedDate")]
    if resource["resourceType"] == "DocumentReference":
        found.append(resource["date"])
    return [date.fromisoformat(d[:10]) for d in found if d]


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(rows: list[ManifestRow], tmp_path: Path) -> None:
    # Execute
    write_outcomes(tmp_path / "a", rows, seed=5)
    write_outcomes(tmp_path / "b", rows, seed=5)
    write_outcomes(tmp_path / "c", rows, seed=6)
    # Assert
    a = tmp_path / "a" / OUTCOMES_DIR
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    sites = sorted({r.site for r in rows if not r.is_benchmark})
    assert [str(f) for f in files] == sorted(["README.md", BULK_NOTES_NAME, *(f"{s}.json" for s in sites)])
    for rel in files:
        assert (a / rel).read_bytes() == (tmp_path / "b" / OUTCOMES_DIR / rel).read_bytes(), rel
    assert (a / "riverside.json").read_bytes() != (tmp_path / "c" / OUTCOMES_DIR / "riverside.json").read_bytes()


def test_a_study_does_not_change_when_others_are_left_out(rows: list[ManifestRow], made: SampleOutcomes) -> None:
    # Prepare
    row = next(r for r in rows if not r.is_benchmark and r.site == "harbor")
    bulk_row = next(r for r in rows if r.site == BULK_SITE)  # the same sites, so the same bulk site
    # Execute
    alone = build_outcomes([bulk_row, row], seed=0)
    # Assert
    plans = {p.study_uid: p for p in made.plans}
    assert alone.plans == (plans[bulk_row.study_uid], plans[row.study_uid])
    whole = {json.dumps(r, sort_keys=True) for r in _resources(made)}
    for resource in _resources(alone):
        assert json.dumps(resource, sort_keys=True) in whole


def test_only_deployment_sites_get_outcomes(rows: list[ManifestRow], made: SampleOutcomes) -> None:
    # Assert
    deployment = [r for r in rows if not r.is_benchmark]
    assert [p.study_uid for p in made.plans] == [r.study_uid for r in deployment]
    assert set(made.bundles) == {r.site for r in deployment}
    benchmark_ids = {r.patient_id for r in rows if r.is_benchmark}
    assert not any(p in json.dumps(made.bundles) for p in benchmark_ids)


def test_missing_and_conflicting_shares_are_near_the_design(rows: list[ManifestRow]) -> None:
    # Prepare: about 2000 studies
    many = _many(rows, 9)
    # Execute
    plans = build_outcomes(many, seed=1).plans
    # Assert
    n = len(plans)
    missing = sum(p.expected is None for p in plans) / n
    conflicting = sum(p.conflicting for p in plans) / n
    assert abs(missing - MISSING_RATE) < 0.025
    assert abs(conflicting - CONFLICT_RATE) < 0.015
    for p in plans:
        truth = OUTCOME_CONFIRMED if p.label else OUTCOME_EXCLUDED
        if p.expected is not None:
            assert (p.expected != truth) == p.conflicting
        else:
            assert p.evidence == ()
    kinds = Counter(k for p in plans for k in p.evidence)
    assert {"pathology", "ct", "xr", "condition", "note", "uncertain_note", "bulk_note", "lab"} <= set(kinds)
    assert Counter(p.linkage for p in plans).keys() == {"study_uid", "accession", "patient"}
    # Pathology follows a biopsy of a nodule: positives only.
    assert all(p.expected == OUTCOME_CONFIRMED for p in plans if "pathology" in p.evidence)


def test_outcomes_come_3_to_180_days_after_the_study(rows: list[ManifestRow]) -> None:
    # Prepare
    sample = [r for r in rows if not r.is_benchmark][:80]
    for row in sample:
        # Execute
        made = build_outcomes([row], seed=2)
        # Assert
        study_day = date.fromisoformat(row.study_date)
        for resource in _resources(made):
            if resource["resourceType"] in ("Patient", "ImagingStudy"):
                continue
            for day in _dates(resource):
                assert study_day + timedelta(days=3) <= day <= study_day + timedelta(days=180), resource["id"]


def test_each_bundle_and_bulk_line_is_valid_r4(made: SampleOutcomes, tmp_path: Path, rows: list[ManifestRow]) -> None:
    # Prepare
    write_outcomes(tmp_path, rows, seed=0)
    folder = tmp_path / OUTCOMES_DIR
    # Execute / Assert: fhir.resources (R4B models R4 for these resources) accepts every file
    for site in made.bundles:
        bundle = Bundle.model_validate_json((folder / f"{site}.json").read_bytes())
        assert bundle.type == "collection"
        assert len(bundle.entry) == len(made.bundles[site]["entry"])
    lines = (folder / BULK_NOTES_NAME).read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(made.bulk_notes) > 0
    for line in lines:
        assert DocumentReference.model_validate_json(line).status == "current"


def test_bindings_references_and_versions_vigil_reads(made: SampleOutcomes) -> None:
    # Assert
    for bundle in made.bundles.values():
        full_urls = [e["fullUrl"] for e in bundle["entry"]]
        assert len(set(full_urls)) == len(full_urls)
        assert all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", u) for u in full_urls)
        refs = re.findall(r'"reference": "([^"]+)"', json.dumps(bundle))
        assert refs and set(refs) <= set(full_urls)
    for resource in _resources(made):
        kind = resource["resourceType"]
        assert resource["meta"]["versionId"] in ("1", "2")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", resource["meta"]["lastUpdated"])
        assert resource["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
        if kind in STATUS:
            assert resource["status"] in STATUS[kind]
        if kind == "Patient":
            assert resource["gender"] in ("male", "female")
        if kind == "Condition":
            assert resource["verificationStatus"]["coding"][0]["code"] in ("confirmed", "refuted")
        for coding in _codings({k: v for k, v in resource.items() if k in ("code", "conclusionCode", "type")}):
            assert ALLOWED_CODES[(coding["system"], coding["code"])] == coding["display"]
        if kind == "DocumentReference":
            attachment = resource["content"][0]["attachment"]
            assert attachment["contentType"] == "text/plain; charset=utf-8"
            assert base64.b64decode(attachment["data"]).decode("utf-8").strip()


def test_patients_carry_the_dicom_patient_id_as_mrn(rows: list[ManifestRow], made: SampleOutcomes) -> None:
    # Prepare
    ids = {r.patient_id for r in rows if not r.is_benchmark}
    # Execute
    mrns = [
        i["value"]
        for r in _resources(made)
        if r["resourceType"] == "Patient"
        for i in r["identifier"]
        if i["type"]["coding"][0]["code"] == "MR"
    ]
    # Assert
    assert mrns and set(mrns) <= ids
    assert len(mrns) == sum(p.expected is not None for p in made.plans)


def test_linkage_variety_matches_the_plan(rows: list[ManifestRow], made: SampleOutcomes) -> None:
    # Prepare
    by_uid = {r.study_uid: r for r in rows}
    studies = {i["value"]: r for r in _resources(made) if r["resourceType"] == "ImagingStudy" for i in r["identifier"]}
    # Assert
    for plan in made.plans:
        if plan.expected is None:
            continue
        row = by_uid[plan.study_uid]
        by_uid_link = f"urn:oid:{plan.study_uid}" in studies
        by_accession = row.accession_number in studies
        assert (by_uid_link, by_accession) == {
            "study_uid": (True, True),
            "accession": (False, True),
            "patient": (False, False),
        }[plan.linkage]
        if by_uid_link:
            accession = studies[f"urn:oid:{plan.study_uid}"]["identifier"][1]
            assert accession["value"] == row.accession_number
            assert accession["type"]["coding"][0]["code"] == "ACSN"


def test_canaries_are_planted_everywhere_when_asked(with_canaries: SampleOutcomes) -> None:
    # Assert: unique, all present in what would be written
    text = json.dumps([with_canaries.bundles, with_canaries.bulk_notes], ensure_ascii=False)
    decoded = " ".join(base64.b64decode(m).decode("utf-8") for m in re.findall(r'"data": "([A-Za-z0-9+/=]+)"', text))
    assert len(set(with_canaries.canaries)) == len(with_canaries.canaries) > 100
    assert set(with_canaries.canaries) == set(CANARY.findall(text + decoded))
    for r in _resources(with_canaries):
        assert CANARY.search(r["text"]["div"]), r["id"]
        for key in ("conclusion", "description"):
            if key in r:
                assert CANARY.search(r[key]), (r["id"], key)
        for key in ("code", "type"):
            if key in r and "text" in r[key]:
                assert CANARY.search(r[key]["text"]), (r["id"], key)
        if r["resourceType"] == "Observation":
            assert CANARY.search(r["code"]["coding"][0]["display"])
        forms = [a["data"] for a in r.get("presentedForm", [])] + [
            c["attachment"]["data"] for c in r.get("content", [])
        ]
        for data in forms:
            assert len(CANARY.findall(base64.b64decode(data).decode("utf-8"))) >= 3, r["id"]
        if r["resourceType"] == "Patient":
            mrn, second = r["identifier"]
            assert not CANARY.search(mrn["value"]) and CANARY.fullmatch(second["value"])
            assert CANARY.fullmatch(r["name"][0]["family"]) and CANARY.fullmatch(r["name"][0]["given"][0])
            assert CANARY.fullmatch(r["address"][0]["line"][0]) and CANARY.fullmatch(r["telecom"][0]["value"])


def test_no_canary_without_asking(made: SampleOutcomes) -> None:
    # Assert
    assert made.canaries == ()
    assert "CANARY" not in json.dumps([made.bundles, made.bulk_notes])


def test_canaries_do_not_change_what_the_evidence_says(made: SampleOutcomes, with_canaries: SampleOutcomes) -> None:
    # Assert
    assert made.plans == with_canaries.plans


def test_a_negative_seed_is_refused(rows: list[ManifestRow]) -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match="-1"):
        build_outcomes(rows, seed=-1)


def test_a_malformed_study_date_is_refused(rows: list[ManifestRow]) -> None:
    # Prepare: a study that is not missing (so that its date is read)
    made = build_outcomes(rows, seed=0)
    uid = next(p.study_uid for p in made.plans if p.expected is not None)
    row = replace(next(r for r in rows if r.study_uid == uid), study_date="2025-13-01")
    # Execute / Assert
    with pytest.raises(BadInputError, match="2025-13-01"):
        build_outcomes([row], seed=0)


def test_vigil_sample_data_writes_the_outcomes_beside_the_cohort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    from core.cli import main

    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    out = tmp_path / "cohort"
    # Execute
    code = main(["sample-data", "--out", str(out), "--studies", "2", "--seed", "4", "--json"])
    # Assert
    assert code == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["outcomes_dir"] == str(out / OUTCOMES_DIR)
    made = build_outcomes(read_manifest(out / "manifest.csv"), seed=4)
    assert reply["studies_with_outcomes"] == sum(p.expected is not None for p in made.plans)
    for site, bundle in made.bundles.items():
        written = json.loads((out / OUTCOMES_DIR / f"{site}.json").read_text(encoding="utf-8"))
        assert written == bundle


def test_bulk_notes_come_from_another_site_when_the_bulk_site_is_absent(
    rows: list[ManifestRow], tmp_path: Path
) -> None:
    # Prepare
    others = [r for r in rows if r.site != BULK_SITE]
    first = next(r.site for r in others if not r.is_benchmark)
    # Execute
    made = write_outcomes(tmp_path, others, seed=0)
    # Assert
    assert made.bulk_notes
    assert {p.site for p in made.plans if "bulk_note" in p.evidence} == {first}
    assert (tmp_path / OUTCOMES_DIR / BULK_NOTES_NAME).is_file()


def test_no_empty_bulk_file_is_left(rows: list[ManifestRow], tmp_path: Path) -> None:
    # Prepare: a full write, then a cohort of one study whose evidence holds no extra note
    write_outcomes(tmp_path, rows, seed=0)
    one = next(r for r in rows if not r.is_benchmark and not build_outcomes([r], seed=0).bulk_notes)
    # Execute
    made = write_outcomes(tmp_path, [one], seed=0)
    # Assert: the old bundles and bulk file are gone; only this study's site remains
    assert made.bulk_notes == ()
    assert not (tmp_path / OUTCOMES_DIR / BULK_NOTES_NAME).exists()
    assert sorted(p.name for p in (tmp_path / OUTCOMES_DIR).glob("*.json")) == [f"{one.site}.json"]


def test_a_site_without_any_outcome_gets_no_bundle(rows: list[ManifestRow], made: SampleOutcomes) -> None:
    # Prepare: a study the EMR says nothing about
    uid = next(p.study_uid for p in made.plans if p.expected is None)
    row = next(r for r in rows if r.study_uid == uid)
    # Execute
    alone = build_outcomes([row], seed=0)
    # Assert
    assert alone.plans[0].expected is None
    assert alone.bundles == {}
    assert alone.bulk_notes == ()
