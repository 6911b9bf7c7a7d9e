"""parse_payload: formats accepted, and every kind of bad input with the exact path of the fault."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import BadInputError, FhirPayloadError
from core.fhir import ParsedPayload, parse_payload
from core.fhir.codes import is_loinc_code, is_snomed_concept_id
from tests.core.fhir.payloads import (
    b64,
    bundle,
    condition,
    diagnostic_report,
    document_reference,
    encode,
    full_record,
    imaging_study,
    observation,
    patient,
)


def _parse(document: Any, name: str = "payload.json") -> ParsedPayload:
    return parse_payload(encode(document), name=name)


def _paths(parsed: ParsedPayload) -> list[str]:
    return [e.path for e in parsed.errors]


@pytest.mark.parametrize("kind", ["collection", "transaction", "batch", "searchset"])
def test_each_bundle_kind_reads_every_resource(kind: str) -> None:
    parsed = _parse(bundle(full_record(), kind))
    assert parsed.kind == kind
    assert parsed.errors == ()
    assert parsed.n_entries == len(full_record())
    types = [m.get_resource_type() for _, m in parsed.resources]
    assert types == [r["resourceType"] for r in full_record()]
    assert parsed.resources[4][0] == "entry[4].resource"


def test_a_single_resource_is_read() -> None:
    parsed = _parse(patient())
    assert (parsed.kind, parsed.n_entries, parsed.resources[0][0]) == ("resource", 1, "")


def test_ndjson_reads_one_resource_a_line_and_skips_blank_lines() -> None:
    lines = [json.dumps(r) for r in full_record()]
    data = ("\n".join(lines[:3]) + "\n\n   \n" + "\n".join(lines[3:]) + "\n").encode()
    parsed = parse_payload(data, name="export.ndjson")
    assert parsed.kind == "ndjson"
    assert parsed.n_entries == len(lines)
    assert parsed.errors == ()
    assert [p for p, _ in parsed.resources][3] == "line[6]"  # 1-based line numbers, blank lines counted


def test_ndjson_is_recognised_without_the_extension() -> None:
    data = (json.dumps(patient()) + "\n" + json.dumps(imaging_study()) + "\n").encode()
    assert parse_payload(data, name="export.txt").kind == "ndjson"


def test_a_byte_order_mark_is_tolerated() -> None:
    assert parse_payload(b"\xef\xbb\xbf" + encode(patient()), name="bom.json").kind == "resource"


def test_searchset_next_link_is_returned() -> None:
    document = bundle([patient()], "searchset")
    document["link"] = [
        {"relation": "self", "url": "https://fhir.example.org/Patient?_count=1"},
        {"relation": "next", "url": "https://fhir.example.org/Patient?_count=1&page=2"},
    ]
    assert _parse(document).next_link == "https://fhir.example.org/Patient?_count=1&page=2"
    assert _parse(bundle([patient()])).next_link is None


def test_other_resource_types_in_a_bundle_are_counted_and_ignored() -> None:
    organization = {"resourceType": "Organization", "id": "org1", "name": "General Hospital"}
    parsed = _parse(bundle([patient(), organization]))
    assert parsed.n_entries == 2
    assert len(parsed.resources) == 1
    assert parsed.errors == ()


# --- the payload as a whole ------------------------------------------------------------------


def test_malformed_json_names_the_file_and_position() -> None:
    with pytest.raises(FhirPayloadError, match=r"broken\.json.*malformed JSON at line 1 column \d+") as info:
        parse_payload(b'{"resourceType": "Bundle", "type": ', name="broken.json")
    assert isinstance(info.value, BadInputError)


def test_bytes_that_are_not_utf8_name_the_offset() -> None:
    data = b'{"resourceType": "Patient", "id": "p\xff1"}'
    with pytest.raises(FhirPayloadError, match=r"latin\.json.*not UTF-8: byte 0xff at offset 36"):
        parse_payload(data, name="latin.json")


def test_an_empty_payload_is_rejected() -> None:
    with pytest.raises(FhirPayloadError, match="empty"):
        parse_payload(b"  \n", name="empty.json")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"resourceType": "Medication", "id": "m1"}, r"resourceType: 'Medication' is not a resource type Vigil reads"),
        ({"id": "x"}, r"resourceType: None is not a resource type Vigil reads"),
        ([{"resourceType": "Patient"}], r"expected a JSON object, got a JSON list"),
    ],
)
def test_a_top_level_resource_vigil_does_not_read_is_rejected(document: Any, message: str) -> None:
    with pytest.raises(FhirPayloadError, match=message):
        _parse(document)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("colection", r"type: 'colection' is not a Bundle\.type"),
        ("document", r"type: Vigil reads Bundles of type collection, transaction, batch, searchset, not 'document'"),
        (None, r"type: None is not a Bundle\.type"),
    ],
)
def test_a_bad_bundle_type_is_rejected(kind: str | None, message: str) -> None:
    document = bundle([patient()])
    document["type"] = kind
    with pytest.raises(FhirPayloadError, match=message):
        _parse(document)


def test_a_malformed_ndjson_line_names_the_line() -> None:
    data = (json.dumps(patient()) + "\n{not json\n").encode()
    with pytest.raises(FhirPayloadError, match=r"line\[2\]: malformed JSON"):
        parse_payload(data, name="bad.ndjson")


# --- transaction: rejected whole ---------------------------------------------------------------


def test_a_transaction_with_one_bad_resource_is_rejected_whole_naming_its_path() -> None:
    resources = full_record()
    resources[7] = condition() | {"resourceType": "Observation", "status": "final-ish", "code": {"text": "x"}}
    resources[7].pop("recordedDate")
    resources[7].pop("verificationStatus")
    resources[7].pop("note")
    with pytest.raises(FhirPayloadError) as info:
        _parse(bundle(resources, "transaction"), name="tx.json")
    assert info.value.path == "entry[7].resource.status"
    assert "entry[7].resource.status" in str(info.value)
    assert "'final-ish' is not a valid Observation.status" in str(info.value)
    assert "rejected whole" in str(info.value)


def test_a_transaction_with_a_missing_reference_is_rejected_whole() -> None:
    resources = [patient(), diagnostic_report() | {"subject": {"reference": "Patient/123"}}, imaging_study()]
    with pytest.raises(FhirPayloadError, match=r"entry\[1\]\.resource\.subject\.reference: reference 'Patient/123'"):
        _parse(bundle(resources, "transaction"))


# --- collection: good ones kept, each bad one reported -----------------------------------------


def test_a_collection_keeps_the_good_resources_and_reports_each_bad_one() -> None:
    resources = full_record()
    resources[5] = diagnostic_report() | {"status": "done"}
    resources[6] = observation() | {"status": "finished"}
    parsed = _parse(bundle(resources))
    assert _paths(parsed) == ["entry[5].resource.status", "entry[6].resource.status"]
    assert "'done' is not a valid DiagnosticReport.status" in parsed.errors[0].message
    assert len(parsed.resources) == len(resources) - 2
    assert all(p not in ("entry[5].resource", "entry[6].resource") for p, _ in parsed.resources)


@pytest.mark.parametrize(
    ("resource", "path", "message"),
    [
        (patient() | {"gender": "f"}, "gender", "'f' is not a valid Patient.gender"),
        (imaging_study() | {"status": "done"}, "status", "'done' is not a valid ImagingStudy.status"),
        (document_reference() | {"status": "final"}, "status", "'final' is not a valid DocumentReference.status"),
        (
            {"resourceType": "Procedure", "status": "done", "subject": {"reference": "Patient/p1"}},
            "status",
            "'done' is not a valid Procedure.status",
        ),
        (
            condition(verification="maybe"),
            "verificationStatus.coding[0].code",
            "'maybe' is not a valid Condition.verificationStatus",
        ),
        (
            condition()
            | {
                "clinicalStatus": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "on"}]
                }
            },
            "clinicalStatus.coding[0].code",
            "'on' is not a valid Condition.clinicalStatus",
        ),
    ],
)
def test_bad_required_bindings_are_reported_at_their_path(resource: dict[str, Any], path: str, message: str) -> None:
    parsed = _parse(
        bundle([patient(), imaging_study(), resource] if resource["resourceType"] != "Patient" else [resource])
    )
    index = 2 if resource["resourceType"] != "Patient" else 0
    assert _paths(parsed) == [f"entry[{index}].resource.{path}"]
    assert message in parsed.errors[0].message


def test_a_structural_error_from_the_model_is_reported_at_its_path() -> None:
    bad = observation()
    del bad["code"]
    parsed = _parse(bundle([patient(), imaging_study(), bad]))
    assert _paths(parsed) == ["entry[2].resource.code"]


@pytest.mark.parametrize(
    ("system", "message"),
    [
        ("http://example.org/local-codes", "unknown code system 'http://example.org/local-codes'"),
        (None, "a coding without a system"),
    ],
)
def test_an_unknown_code_system_is_reported_at_its_path(system: str | None, message: str) -> None:
    bad = condition()
    bad["code"]["coding"][0]["system"] = system
    parsed = _parse(bundle([patient(), bad]))
    assert _paths(parsed) == ["entry[1].resource.code.coding[0].system"]
    assert parsed.errors[0].message == message


def test_a_bad_snomed_check_digit_is_reported_at_its_path() -> None:
    parsed = _parse(bundle([patient(), imaging_study(), diagnostic_report(conclusion_code="786838003")]))
    assert _paths(parsed) == ["entry[2].resource.conclusionCode[0].coding[0].code"]
    assert "'786838003' is not a SNOMED CT concept id" in parsed.errors[0].message


def test_a_bad_loinc_check_digit_is_reported_at_its_path() -> None:
    parsed = _parse(bundle([patient(), imaging_study(), observation(code="36643-4")]))
    assert _paths(parsed) == ["entry[2].resource.code.coding[0].code"]
    assert "'36643-4' is not a LOINC code" in parsed.errors[0].message


def test_known_systems_other_than_snomed_and_loinc_pass() -> None:
    extra = condition(cid="c2")
    extra["code"]["coding"].append({"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R91.1"})
    assert _parse(bundle([patient(), extra])).errors == ()


def test_a_reference_to_a_missing_resource_is_a_per_resource_error_in_a_collection() -> None:
    orphan = diagnostic_report(rid="r9", study_ref={"reference": "ImagingStudy/nowhere"})
    parsed = _parse(bundle([patient(), imaging_study(), orphan, diagnostic_report()]))
    assert _paths(parsed) == ["entry[2].resource.imagingStudy[0].reference"]
    assert "'ImagingStudy/nowhere' names a resource missing from the payload" in parsed.errors[0].message
    assert len(parsed.resources) == 3


def test_references_by_full_url_and_to_servers_are_not_missing() -> None:
    study = imaging_study()
    report = diagnostic_report(study_ref={"reference": "urn:uuid:5b7e0c1a-0d7e-4c39-a4c4-0d1c8e9b2f11"})
    report["subject"] = {"reference": "https://fhir.example.org/Patient/p1"}
    document = bundle([patient(), study, report])
    document["entry"][1]["fullUrl"] = "urn:uuid:5b7e0c1a-0d7e-4c39-a4c4-0d1c8e9b2f11"
    assert _parse(document).errors == ()


def test_a_missing_urn_reference_is_an_error() -> None:
    report = diagnostic_report(study_ref={"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"})
    assert _paths(_parse(bundle([patient(), report]))) == ["entry[1].resource.imagingStudy[0].reference"]


def test_searchset_and_ndjson_do_not_require_referenced_resources() -> None:
    report = diagnostic_report()  # references Patient/p1 and ImagingStudy/is1, neither present
    assert _parse(bundle([report], "searchset")).errors == ()
    assert parse_payload(encode(report) + b"\n" + encode(observation()), name="dr.ndjson").errors == ()


def test_ndjson_errors_are_per_line() -> None:
    lines = [json.dumps(patient()), json.dumps(imaging_study()), json.dumps(observation() | {"status": "nope"})]
    parsed = parse_payload("\n".join(lines).encode(), name="x.ndjson")
    assert _paths(parsed) == ["line[3].status"]
    assert len(parsed.resources) == 2


# --- notes in an unexpected encoding -------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "data", "path", "message"),
    [
        (
            "text/plain; charset=utf-16",
            b64("nodule", "utf-16"),
            "contentType",
            "charset 'utf-16' is not one Vigil reads",
        ),
        ("application/pdf", b64("%PDF-1.4"), "contentType", "contentType 'application/pdf' is not text/plain"),
        ("text/plain; charset=utf-8", b64("nodule é", "latin-1"), "data", "not utf-8: byte 0xe9 at offset 7"),
    ],
)
def test_a_note_in_an_unexpected_encoding_is_reported_at_its_path(
    content_type: str, data: str, path: str, message: str
) -> None:
    note = document_reference(content_type=content_type, data=data)
    parsed = _parse(bundle([patient(), imaging_study(), note]))
    assert _paths(parsed) == [f"entry[2].resource.content[0].attachment.{path}"]
    assert message in parsed.errors[0].message


def test_a_bad_note_rejects_a_transaction_whole() -> None:
    note = document_reference(content_type="text/plain; charset=shift_jis")
    with pytest.raises(FhirPayloadError, match=r"entry\[2\]\.resource\.content\[0\]\.attachment\.contentType"):
        _parse(bundle([patient(), imaging_study(), note], "transaction"))


def test_a_latin1_note_is_accepted() -> None:
    note = document_reference(content_type="text/plain; charset=ISO-8859-1", data=b64("Nodule bénin.", "latin-1"))
    assert _parse(bundle([patient(), imaging_study(), note])).errors == ()


def test_a_bad_report_attachment_is_reported_at_its_path() -> None:
    report = diagnostic_report()
    report["presentedForm"][0]["contentType"] = "text/html"
    assert _paths(_parse(bundle([patient(), imaging_study(), report]))) == [
        "entry[2].resource.presentedForm[0].contentType"
    ]


# --- check digits -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["786838002", "363358000", "827032003", "10828004", "260385009", "78603008"])
def test_real_snomed_concept_ids_pass(code: str) -> None:
    assert is_snomed_concept_id(code)


@pytest.mark.parametrize(
    "code",
    ["786838001", "0786838002", "78683800", "12345", "786838002 ", "3772571013", "786838002:363698007=39607008"],
)
def test_malformed_snomed_ids_fail(code: str) -> None:
    assert not is_snomed_concept_id(code)


@pytest.mark.parametrize("code", ["11526-1", "24627-2", "36643-5", "11506-3", "11488-4", "2345-7", "718-7", "18748-4"])
def test_real_loinc_codes_pass(code: str) -> None:
    assert is_loinc_code(code)


@pytest.mark.parametrize("code", ["11526-2", "24627", "2462-72", "LP1234-5", "24627-2a"])
def test_malformed_loinc_codes_fail(code: str) -> None:
    assert not is_loinc_code(code)
