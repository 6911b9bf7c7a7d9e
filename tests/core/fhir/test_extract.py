"""extract(): outcomes per resource type, evidence types, linkage, unmapped codes, and no identifier leaving."""

from __future__ import annotations

import copy
import dataclasses
import doctest
import importlib
import json
import random
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError
from core.fhir import (
    Evidence,
    EvidenceType,
    Extraction,
    Outcome,
    OutcomeMapping,
    extract,
    load_mapping,
    parse_payload,
    pseudonym,
)
from core.fhir.deid import Scrubber, attachment_text
from core.fhir.mapping import DEFAULT_MAPPING_PATH
from tests.core.fhir.payloads import (
    ACCESSION,
    ACCESSION_2,
    CANARIES,
    LOINC,
    MRN,
    SNOMED,
    STUDY_UID,
    STUDY_UID_2,
    b64,
    biopsy,
    bundle,
    concept,
    condition,
    diagnostic_report,
    document_reference,
    encode,
    full_record,
    imaging_study,
    observation,
    patient,
    practitioner,
    related_person,
)

SECRET = b"test-site-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def mapping() -> OutcomeMapping:
    return load_mapping()


def _extract(resources: list[dict[str, Any]], mapping: OutcomeMapping, kind: str = "collection") -> Extraction:
    return extract(parse_payload(encode(bundle(resources, kind)), name="t.json"), secret=SECRET, mapping=mapping)


def _only(extraction: Extraction) -> Evidence:
    assert len(extraction.evidence) == 1, extraction.evidence
    return extraction.evidence[0]


@pytest.fixture(scope="module")
def full(mapping: OutcomeMapping) -> Extraction:
    return _extract(full_record(), mapping)


# --- de-identification ------------------------------------------------------------------------


def test_no_canary_leaves_extract(full: Extraction) -> None:
    text = repr(full).lower()
    leaked = [c for c in CANARIES if c.lower() in text]
    assert leaked == []
    # and the extraction did carry text: the guarantee is not met by returning nothing
    assert any(e.text for e in full.evidence)
    assert len(full.evidence) == 5


def test_no_canary_leaves_extract_from_ndjson_or_a_transaction(mapping: OutcomeMapping) -> None:
    ndjson = "\n".join(json.dumps(r) for r in full_record()).encode()
    for extraction in (
        extract(parse_payload(ndjson, name="x.ndjson"), secret=SECRET, mapping=mapping),
        _extract(full_record(), mapping, "transaction"),
    ):
        text = repr(extraction).lower()
        assert [c for c in CANARIES if c.lower() in text] == []
        assert len(extraction.evidence) == 5


def test_the_note_keeps_only_the_mention_sentence_de_identified(full: Extraction) -> None:
    note = next(e for e in full.evidence if e.evidence_type is EvidenceType.NOTE_MENTION)
    assert note.outcome is Outcome.CONFIRMED
    assert "9 mm pulmonary nodule in the right upper lobe" in note.text
    assert "[NAME]" in note.text
    assert "Seen today" not in note.text  # a sentence without a mention is dropped
    assert note.display == "Progress note"
    assert note.code == f"{LOINC}|11506-3"


def test_displays_come_from_the_mapping_file(full: Extraction, mapping: OutcomeMapping) -> None:
    for item in full.evidence:
        system, _, code = item.code.partition("|")
        assert item.display == mapping.entries[(system, code)].display


def test_patient_record_is_pseudonymous_with_an_age_band(full: Extraction) -> None:
    (record,) = full.patients
    assert record.pseudonym == pseudonym(SECRET, "patient", MRN)
    assert (record.gender, record.age_band) == ("female", "90+")


def test_age_band_is_taken_at_the_evidence_date(mapping: OutcomeMapping) -> None:
    resources = [patient(birth="1944-09-01"), imaging_study(), condition()]  # 79 on 2024-03-10
    (record,) = _extract(resources, mapping).patients
    assert record.age_band == "70-79"


def test_a_patient_without_a_birth_date_has_no_age_band(mapping: OutcomeMapping) -> None:
    bare = patient()
    del bare["birthDate"]
    assert _extract([bare], mapping).patients[0].age_band == ""


def test_pseudonyms_depend_on_the_secret_and_the_kind() -> None:
    assert pseudonym(SECRET, "patient", "X1") != pseudonym(b"other", "patient", "X1")
    assert pseudonym(SECRET, "patient", "X1") != pseudonym(SECRET, "accession", "X1")
    assert len(pseudonym(SECRET, "patient", "X1")) == 32


def test_scrubber_removes_identifier_patterns_without_known_values() -> None:
    text = (
        "Name: Jane Roe. Call +1 (617) 555-0100 or write to j.roe@example.com, see https://portal.example.org/x. "
        "Seen by Mrs. Alba Quist on March 3, 2024 and 2024-03-03; ref 8812345."
    )
    out = Scrubber([]).scrub(text)
    for value in (
        "Jane",
        "Roe",
        "617",
        "555-0100",
        "j.roe",
        "portal",
        "Alba",
        "Quist",
        "March 3",
        "2024-03-03",
        "8812345",
    ):
        assert value not in out, (value, out)
    assert "[DATE]" in out and "[PHONE]" in out and "[EMAIL]" in out and "[URL]" in out and "[NAME]" in out


def test_scrubber_keeps_clinical_text() -> None:
    text = "There is a 9 mm spiculated nodule in the right upper lobe; follow-up CT in 3 months."
    assert Scrubber(["Ada", "MRN4471"]).scrub(text) == text


def test_attachment_text_reads_each_accepted_charset() -> None:
    assert attachment_text("text/plain", b64("nodule")) == "nodule"
    assert attachment_text("text/plain; charset=US-ASCII", b64("nodule")) == "nodule"
    assert attachment_text('text/plain; charset="latin-1"', b64("bénin", "latin-1")) == "bénin"


# --- outcomes and evidence types -------------------------------------------------------------------


def test_each_resource_in_the_full_record_decides_as_expected(full: Extraction) -> None:
    got = {(e.ref.split("/")[0], e.evidence_type, e.outcome, e.code) for e in full.evidence}
    assert got == {
        ("DocumentReference", EvidenceType.NOTE_MENTION, Outcome.CONFIRMED, f"{LOINC}|11506-3"),
        ("DiagnosticReport", EvidenceType.FOLLOW_UP_IMAGING, Outcome.CONFIRMED, f"{SNOMED}|10828004"),
        ("Observation", EvidenceType.FOLLOW_UP_IMAGING, Outcome.EXCLUDED, f"{SNOMED}|260385009"),
        ("Condition", EvidenceType.CLINICAL_DIAGNOSIS, Outcome.CONFIRMED, f"{SNOMED}|786838002"),
        ("DiagnosticReport", EvidenceType.HISTOPATHOLOGY, Outcome.CONFIRMED, f"{SNOMED}|363358000"),
    }


@pytest.mark.parametrize(
    ("verification", "code", "outcome"),
    [
        ("confirmed", "786838002", Outcome.CONFIRMED),
        (None, "363358000", Outcome.CONFIRMED),
        ("refuted", "786838002", Outcome.EXCLUDED),
        ("provisional", "786838002", Outcome.INDETERMINATE),
        ("differential", "363358000", Outcome.INDETERMINATE),
        ("confirmed", "827032003", Outcome.EXCLUDED),
        ("refuted", "827032003", Outcome.INDETERMINATE),
    ],
)
def test_condition_verification_status(
    verification: str | None, code: str, outcome: Outcome, mapping: OutcomeMapping
) -> None:
    item = _only(_extract([patient(), condition(code=code, verification=verification)], mapping))
    assert (item.outcome, item.evidence_type) == (outcome, EvidenceType.CLINICAL_DIAGNOSIS)
    assert item.effective == date(2024, 3, 10)
    assert item.version == "2"
    assert item.text == ""


def test_an_entered_in_error_condition_is_ignored(mapping: OutcomeMapping) -> None:
    assert _extract([patient(), condition(verification="entered-in-error")], mapping).evidence == ()


def test_a_report_code_alone_decides_nothing_and_its_text_decides(mapping: OutcomeMapping) -> None:
    report = diagnostic_report(conclusion_code=None, conclusion="No evidence of pulmonary nodule.")
    del report["presentedForm"]
    item = _only(_extract([patient(), imaging_study(), report], mapping))
    assert (item.outcome, item.evidence_type, item.code) == (
        Outcome.EXCLUDED,
        EvidenceType.FOLLOW_UP_IMAGING,
        f"{LOINC}|24627-2",
    )
    assert item.display == "CT Chest"
    assert "pulmonary nodule" in item.text


def test_a_report_whose_text_mentions_no_finding_gives_no_evidence(mapping: OutcomeMapping) -> None:
    report = diagnostic_report(conclusion_code=None, conclusion="Heart size normal.")
    del report["presentedForm"]
    assert _extract([patient(), imaging_study(), report], mapping).evidence == ()


def test_a_report_from_presented_form_text(mapping: OutcomeMapping) -> None:
    report = diagnostic_report(code="36643-5", conclusion_code=None)
    del report["conclusion"]
    report["presentedForm"] = [
        {"contentType": "text/plain; charset=utf-8", "data": b64("Findings: possible nodule at the left base.")}
    ]
    item = _only(_extract([patient(), imaging_study(), report], mapping))
    assert (item.outcome, item.evidence_type) == (Outcome.INDETERMINATE, EvidenceType.FOLLOW_UP_IMAGING)


def test_a_pathology_report_without_a_biopsy_is_histopathology(mapping: OutcomeMapping) -> None:
    report = diagnostic_report(code="11526-1", conclusion_code="260385009")
    item = _only(_extract([patient(), imaging_study(), report], mapping))
    assert (item.outcome, item.evidence_type) == (Outcome.EXCLUDED, EvidenceType.HISTOPATHOLOGY)


def test_a_report_named_by_a_biopsy_is_histopathology(mapping: OutcomeMapping) -> None:
    report = diagnostic_report(rid="path1", code="18748-4", conclusion_code="363358000")
    with_biopsy = _only(_extract([patient(), imaging_study(), report, biopsy()], mapping))
    assert with_biopsy.evidence_type is EvidenceType.HISTOPATHOLOGY
    without = _only(_extract([patient(), imaging_study(), report], mapping))
    assert without.evidence_type is EvidenceType.FOLLOW_UP_IMAGING


def test_an_observation_part_of_a_biopsy_is_histopathology(mapping: OutcomeMapping) -> None:
    obs = observation(code="786838002", value_code="10828004") | {"partOf": [{"reference": "Procedure/bx1"}]}
    obs["code"] = concept(SNOMED, "786838002")
    item = _only(_extract([patient(), imaging_study(), obs, biopsy(report="Observation/o1")], mapping))
    assert (item.outcome, item.evidence_type) == (Outcome.CONFIRMED, EvidenceType.HISTOPATHOLOGY)


def test_a_biopsy_alone_decides_nothing(mapping: OutcomeMapping) -> None:
    extraction = _extract([patient(), biopsy(report="Patient/p1")], mapping)
    assert extraction.evidence == ()
    assert extraction.unmapped == ()


def test_a_finding_observation_without_a_value_confirms(mapping: OutcomeMapping) -> None:
    obs = observation(value_code=None)
    obs["code"] = concept(SNOMED, "786838002")
    item = _only(_extract([patient(), imaging_study(), obs], mapping))
    assert (item.outcome, item.evidence_type, item.display) == (
        Outcome.CONFIRMED,
        EvidenceType.CLINICAL_DIAGNOSIS,
        "Nodule of lung",
    )


def test_a_finding_observation_with_an_unmapped_value_decides_nothing(mapping: OutcomeMapping) -> None:
    obs = observation(value_code="301230006")  # SNOMED CT "Lung finding": real, not in the mapping
    obs["code"] = concept(SNOMED, "786838002")
    extraction = _extract([patient(), imaging_study(), obs], mapping)
    assert extraction.evidence == ()
    assert [(u.code, u.resource_type, u.count) for u in extraction.unmapped] == [("301230006", "Observation", 1)]


def test_an_observation_from_its_value_string(mapping: OutcomeMapping) -> None:
    obs = observation(value_code=None) | {"valueString": "Nodule has resolved; no pulmonary nodule is seen."}
    item = _only(_extract([patient(), imaging_study(), obs], mapping))
    assert item.evidence_type is EvidenceType.FOLLOW_UP_IMAGING
    assert item.outcome in (Outcome.EXCLUDED, Outcome.INDETERMINATE)


@pytest.mark.parametrize("status", ["preliminary", "cancelled", "entered-in-error", "registered"])
def test_reports_that_are_not_final_give_no_evidence(status: str, mapping: OutcomeMapping) -> None:
    assert _extract([patient(), imaging_study(), diagnostic_report() | {"status": status}], mapping).evidence == ()


@pytest.mark.parametrize("status", ["superseded", "entered-in-error"])
def test_notes_that_are_not_current_give_no_evidence(status: str, mapping: OutcomeMapping) -> None:
    assert _extract([patient(), imaging_study(), document_reference() | {"status": status}], mapping).evidence == ()


def test_a_note_of_an_unmapped_type_is_counted_not_read(mapping: OutcomeMapping) -> None:
    note = document_reference()
    note["type"] = concept(LOINC, "18842-5")  # Discharge summary: not in the mapping
    extraction = _extract([patient(), imaging_study(), note], mapping)
    assert extraction.evidence == ()
    assert [(u.system, u.code, u.resource_type, u.count) for u in extraction.unmapped] == [
        (LOINC, "18842-5", "DocumentReference", 1)
    ]


def test_a_negated_note(mapping: OutcomeMapping) -> None:
    note = document_reference(text="Reviewed chest imaging. No evidence of pulmonary nodule.\n")
    item = _only(_extract([patient(), imaging_study(), note], mapping))
    assert (item.outcome, item.evidence_type) == (Outcome.EXCLUDED, EvidenceType.NOTE_MENTION)


# --- mapping round trip and unmapped codes -------------------------------------------------------


def test_every_mapped_finding_and_qualifier_round_trips(mapping: OutcomeMapping) -> None:
    deciding = [e for e in mapping.entries.values() if e.outcome is not None]
    assert {e.code for e in deciding} >= {"786838002", "363358000", "827032003", "10828004", "260385009"}
    for entry in deciding:
        if entry.evidence_type is not None:  # a finding: a Condition of it
            item = _only(_extract([patient(), condition(code=entry.code)], mapping))
        else:  # a qualifier: the conclusion of a CT chest report
            item = _only(_extract([patient(), imaging_study(), diagnostic_report(conclusion_code=entry.code)], mapping))
        assert (item.outcome, item.code, item.display) == (entry.outcome, entry.token, entry.display)


def test_every_mapped_report_and_note_type_round_trips(mapping: OutcomeMapping) -> None:
    for entry in mapping.entries.values():
        if (
            entry.outcome is not None
            or entry.evidence_type is EvidenceType.HISTOPATHOLOGY
            and "Procedure" in entry.resource_types
        ):
            continue
        if "DocumentReference" in entry.resource_types:
            note = document_reference()
            note["type"] = concept(entry.system, entry.code)
            resources = [patient(), imaging_study(), note]
        else:
            resources = [patient(), imaging_study(), diagnostic_report(code=entry.code, conclusion_code=None)]
        item = _only(_extract(resources, mapping))
        assert (item.evidence_type, item.code, item.display) == (entry.evidence_type, entry.token, entry.display)


def test_unknown_codes_are_counted_per_code_and_resource_type(mapping: OutcomeMapping) -> None:
    glucose = observation(oid="g1", code="2345-7", value_code=None) | {"valueString": "5.4 mmol/L"}
    hemoglobin = [observation(oid=f"h{i}", code="718-7", value_code=None) for i in range(3)]
    extraction = _extract([patient(), imaging_study(), glucose, *hemoglobin], mapping)
    assert extraction.evidence == ()
    assert [(u.system, u.code, u.resource_type, u.count) for u in extraction.unmapped] == [
        (LOINC, "2345-7", "Observation", 1),
        (LOINC, "718-7", "Observation", 3),
    ]


def test_a_mapped_code_in_a_resource_type_it_is_not_mapped_for_is_unmapped(mapping: OutcomeMapping) -> None:
    qualifier_as_condition = condition(code="10828004")
    extraction = _extract([patient(), qualifier_as_condition], mapping)
    assert extraction.evidence == ()
    assert [(u.code, u.resource_type) for u in extraction.unmapped] == [("10828004", "Condition")]


def test_the_mapping_file_has_a_version_and_checks_its_codes(tmp_path: Path) -> None:
    assert load_mapping().version
    bad = json.loads(DEFAULT_MAPPING_PATH.read_text())
    bad["codes"][0]["code"] = "786838003"
    path = tmp_path / "m.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="'786838003' is not a SNOMED CT concept id"):
        load_mapping(path)
    bad["codes"][0]["code"] = bad["codes"][1]["code"]
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="listed twice"):
        load_mapping(path)
    del bad["version"]
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="has no version"):
        load_mapping(path)


# --- linkage ---------------------------------------------------------------------------------------


def _link(item: Evidence) -> tuple[str | None, str | None, str | None]:
    return item.patient, item.study_uid, item.accession


EXPECTED_LINK = (pseudonym(SECRET, "patient", MRN), STUDY_UID, pseudonym(SECRET, "accession", ACCESSION))


def test_linkage_by_relative_reference(full: Extraction) -> None:
    for item in full.evidence:
        if not item.ref.startswith("Condition/"):
            assert _link(item) == EXPECTED_LINK


def test_linkage_by_urn_uuid_full_urls(mapping: OutcomeMapping) -> None:
    pat, study = patient(), imaging_study()
    del pat["id"], study["id"]
    report = diagnostic_report(study_ref={"reference": "urn:uuid:0c8a1b3e-8a0a-4d7e-9a55-4bfb2b8f5a01"})
    report["subject"] = study["subject"] = {"reference": "urn:uuid:0c8a1b3e-8a0a-4d7e-9a55-4bfb2b8f5a00"}
    document = bundle([pat, study, report])
    document["entry"][0]["fullUrl"] = "urn:uuid:0c8a1b3e-8a0a-4d7e-9a55-4bfb2b8f5a00"
    document["entry"][1]["fullUrl"] = "urn:uuid:0c8a1b3e-8a0a-4d7e-9a55-4bfb2b8f5a01"
    parsed = parse_payload(encode(document), name="u.json")
    assert parsed.errors == ()
    item = _only(extract(parsed, secret=SECRET, mapping=mapping))
    assert _link(item) == EXPECTED_LINK
    assert item.ref.startswith("DiagnosticReport/")


def test_linkage_by_absolute_url(mapping: OutcomeMapping) -> None:
    report = diagnostic_report(study_ref={"reference": "https://fhir.example.org/r4/ImagingStudy/is1/_history/3"})
    report["subject"] = {"reference": "https://fhir.example.org/r4/Patient/p1"}
    item = _only(_extract([patient(), imaging_study(), report], mapping))
    assert _link(item) == EXPECTED_LINK


def test_linkage_by_logical_study_uid_and_accession(mapping: OutcomeMapping) -> None:
    by_uid = diagnostic_report(study_ref={"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID_2}"}})
    item = _only(_extract([patient(), by_uid], mapping))
    assert _link(item) == (EXPECTED_LINK[0], STUDY_UID_2, None)
    by_accession = diagnostic_report(
        study_ref={
            "identifier": {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                "value": ACCESSION_2,
            }
        }
    )
    item = _only(_extract([patient(), by_accession], mapping))
    assert _link(item) == (EXPECTED_LINK[0], None, pseudonym(SECRET, "accession", ACCESSION_2))


def test_linkage_by_logical_patient_identifier(mapping: OutcomeMapping) -> None:
    report = diagnostic_report()
    report["subject"] = {
        "identifier": {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "value": MRN,
        }
    }
    item = _only(_extract([imaging_study() | {"subject": report["subject"]}, report], mapping))
    assert _link(item) == EXPECTED_LINK


def test_patient_from_the_study_when_the_resource_has_no_subject(mapping: OutcomeMapping) -> None:
    note = document_reference()
    del note["subject"]
    item = _only(_extract([patient(), imaging_study(), note], mapping))
    assert _link(item) == EXPECTED_LINK


def test_observation_linked_through_part_of_an_imaging_study(mapping: OutcomeMapping) -> None:
    obs = observation()
    obs["partOf"] = [{"reference": "ImagingStudy/is2"}]
    del obs["derivedFrom"]
    item = _only(_extract([patient(), imaging_study(), imaging_study("is2", STUDY_UID_2, ACCESSION_2), obs], mapping))
    assert item.study_uid == STUDY_UID_2


def test_no_study_reference_means_no_study_link(full: Extraction) -> None:
    item = next(e for e in full.evidence if e.ref.startswith("Condition/"))
    assert (item.study_uid, item.accession) == (None, None)
    assert item.patient == EXPECTED_LINK[0]


def test_evidence_refs_are_keyed_hashes_and_versions_are_kept(mapping: OutcomeMapping) -> None:
    first = _only(_extract([patient(), condition()], mapping))
    again = _only(_extract([patient(), condition()], mapping))
    newer = condition()
    newer["meta"]["versionId"] = "3"
    third = _only(_extract([patient(), newer], mapping))
    assert first.ref == again.ref == third.ref
    assert first.ref == f"Condition/{pseudonym(SECRET, 'resource', 'Condition/c1')}"
    assert (first.version, third.version) == ("2", "3")


def test_evidence_is_frozen(full: Extraction) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        full.evidence[0].outcome = Outcome.EXCLUDED  # type: ignore[misc]


def test_extract_errors_carry_the_payload_errors(mapping: OutcomeMapping) -> None:
    extraction = _extract([patient(), imaging_study(), diagnostic_report() | {"status": "done"}, condition()], mapping)
    assert [e.path for e in extraction.errors] == ["entry[2].resource.status"]
    assert len(extraction.evidence) == 1


def test_practitioner_and_related_person_names_are_scrubbed(mapping: OutcomeMapping) -> None:
    text = "Canarina and CANARY-RELATIVE-M2 agree: pulmonary nodule confirmed.\n"
    note = document_reference(text=text)
    item = _only(_extract([patient(), practitioner(), related_person(), imaging_study(), note], mapping))
    assert "Canarina" not in item.text and "CANARY-RELATIVE-M2" not in item.text
    assert "pulmonary nodule" in item.text


@pytest.mark.parametrize("name", ["core.fhir.codes", "core.fhir.deid", "core.fhir.mapping"])
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0
    assert result.failed == 0


_WEIRD: tuple[Any, ...] = (None, [], {}, 1, "x", [1], {"a": 1}, True, "", [{"x": 1}], 1.5)


def _mutate(node: Any, rng: random.Random) -> None:
    if isinstance(node, dict) and node:
        key = rng.choice(list(node))
        if rng.random() < 0.4:
            node[key] = copy.deepcopy(rng.choice(_WEIRD))
        else:
            _mutate(node[key], rng)
    elif isinstance(node, list) and node:
        i = rng.randrange(len(node))
        if rng.random() < 0.4:
            node[i] = copy.deepcopy(rng.choice(_WEIRD))
        else:
            _mutate(node[i], rng)


def test_mangled_entries_fail_cleanly_and_leak_no_identifier_they_still_carry(mapping: OutcomeMapping) -> None:
    """Seeded random damage anywhere in the entries: per-resource errors, never a crash or a leak."""
    rng = random.Random(13)
    evidence = errors = 0
    for _ in range(150):
        document = bundle(full_record(), rng.choice(["collection", "batch", "searchset"]))
        for _ in range(rng.randint(1, 4)):
            _mutate(document["entry"], rng)
        parsed = parse_payload(encode(document), name="mangled.json")
        extraction = extract(parsed, secret=SECRET, mapping=mapping)
        text = repr(extraction).lower()
        # A canary the damage removed from every identifying element is ordinary text by then.
        known = " ".join(parsed.identifying).lower()
        assert [c for c in CANARIES if c.lower() in text and c.lower() in known] == []
        evidence += len(extraction.evidence)
        errors += len(extraction.errors)
    assert evidence > 300 and errors > 50


def test_a_rejected_patient_still_protects_its_names(mapping: OutcomeMapping) -> None:
    extraction = _extract([patient() | {"gender": "F"}, imaging_study(), document_reference()], mapping)
    assert [e.path for e in extraction.errors] == ["entry[0].resource.gender"]
    item = _only(extraction)
    assert "pulmonary nodule" in item.text
    assert "canary" not in repr(extraction).lower()
    assert item.patient is None  # the subject's Patient was rejected: no MRN to link by
