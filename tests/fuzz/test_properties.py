"""Property tests (hypothesis) of the two parsers that read outside bytes: the DICOM gate and the FHIR parser.

The property is the parsers' contract: whatever the bytes, the gate returns an accepted instance
holding exactly those bytes or raises DicomRejectedError with a one-sentence reason, and the FHIR
parser returns a parsed payload or raises FhirPayloadError. Inputs are arbitrary bytes, the seed
corpus with bytes overwritten, inserted or cut (``tests/fuzz/corpus``), and, for FHIR, JSON
documents built from the resource types and fields Vigil reads, with any value in any place.
The targets are :mod:`tests.fuzz.targets`, the same the coverage-guided fuzzer runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.fhir.parse import READ_TYPES
from tests.fuzz.targets import load

CORPUS: Final = Path(__file__).resolve().parent / "corpus"
DICOM_SEEDS: Final = tuple(sorted(p.read_bytes() for p in (CORPUS / "dicom").iterdir()))
FHIR_SEEDS: Final = tuple(sorted(p.read_bytes() for p in (CORPUS / "fhir").iterdir()))
dicom_gate, fhir_parser = load("dicom-gate"), load("fhir-parser")

#: Fixed budget and no deadline: a parser's first call imports plugins, and the machine is shared.
SETTINGS: Final = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)

_JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_FIELDS = (
    "resourceType",
    "id",
    "type",
    "entry",
    "resource",
    "fullUrl",
    "subject",
    "reference",
    "status",
    "code",
    "coding",
    "system",
    "valueCodeableConcept",
    "effectiveDateTime",
    "identifier",
    "value",
    "imagingStudy",
    "result",
    "content",
    "attachment",
    "data",
    "contentType",
    "link",
    "relation",
    "url",
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(_FIELDS) | st.text(max_size=8)
    return st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5)


_JSON = st.recursive(_JSON_LEAVES | st.sampled_from(sorted(READ_TYPES | {"Bundle"})), _containers, max_leaves=30)


@st.composite
def _mutated(draw: st.DrawFn, seeds: tuple[bytes, ...]) -> bytes:
    """A seed with a few bytes overwritten, inserted or removed at drawn offsets."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(("overwrite", "insert", "cut")))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if kind == "overwrite":
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = chunk
        else:
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@st.composite
def _resource(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object of a type Vigil reads (or a Bundle) with drawn fields of any JSON value."""
    document: dict[str, Any] = draw(st.dictionaries(st.sampled_from(_FIELDS), _JSON, max_size=6))
    document["resourceType"] = draw(st.sampled_from(sorted(READ_TYPES | {"Bundle"})))
    if document["resourceType"] == "Bundle" and draw(st.booleans()):
        document["type"] = draw(st.sampled_from(("collection", "transaction", "batch", "searchset", "document")))
        document["entry"] = draw(st.lists(st.fixed_dictionaries({"resource": _JSON}), max_size=4))
    return document


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_the_gate_refuses_arbitrary_bytes_with_one_sentence(data: bytes) -> None:
    dicom_gate(data)  # raises on anything but an accepted instance or a one-sentence rejection


@SETTINGS
@given(data=_mutated(DICOM_SEEDS))
def test_the_gate_accepts_or_refuses_a_damaged_seed(data: bytes) -> None:
    dicom_gate(data)


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_the_fhir_parser_refuses_arbitrary_bytes_with_its_error(data: bytes) -> None:
    fhir_parser(data)


@SETTINGS
@given(data=_mutated(FHIR_SEEDS))
def test_the_fhir_parser_reads_or_refuses_a_damaged_seed(data: bytes) -> None:
    fhir_parser(data)


@SETTINGS
@given(document=_resource())
def test_the_fhir_parser_reads_or_refuses_any_shape_of_resource(document: dict[str, Any]) -> None:
    fhir_parser(json.dumps(document).encode())
