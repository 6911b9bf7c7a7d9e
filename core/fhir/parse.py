"""Parse an R4 JSON Bundle, a single resource or bulk-export NDJSON into validated R4B models.

fhir.resources 8 models R5 at its top level; its ``R4B`` module models R4B, which reads R4 content
for every element Vigil uses (R4B changed no element of Patient, ImagingStudy, Observation,
Condition, DiagnosticReport, Procedure or DocumentReference that Vigil reads). Pydantic checks the
structure; this module adds the required bindings the library leaves unchecked (status codes,
Bundle.type, gender, the code systems and check digits of the codes Vigil maps), the text
attachments' encodings, and references to resources missing from the payload. Every problem
carries the path of the bad element (``entry[7].resource.status``, ``line[12].status``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import ValidationError

from core.errors import FhirPayloadError
from core.fhir.codes import BINDINGS, code_problem, system_problem
from core.fhir.deid import AttachmentError, attachment_text, identifying_values

__all__ = ["BUNDLE_KINDS", "READ_TYPES", "ParsedPayload", "ResourceError", "parse_payload"]

BUNDLE_KINDS: Final = ("collection", "transaction", "batch", "searchset")


@functools.cache
def _model_classes() -> dict[str, type[Any]]:
    # Imported on first use, so that importing core.fhir (e.g. for `vigil --help`) stays fast.
    from fhir.resources.R4B.condition import Condition
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from fhir.resources.R4B.documentreference import DocumentReference
    from fhir.resources.R4B.imagingstudy import ImagingStudy
    from fhir.resources.R4B.observation import Observation
    from fhir.resources.R4B.patient import Patient
    from fhir.resources.R4B.practitioner import Practitioner
    from fhir.resources.R4B.procedure import Procedure
    from fhir.resources.R4B.relatedperson import RelatedPerson

    classes: tuple[type[Any], ...] = (
        Patient,
        ImagingStudy,
        Observation,
        Condition,
        DiagnosticReport,
        Procedure,
        DocumentReference,
        Practitioner,
        RelatedPerson,
    )
    return {cls.__name__: cls for cls in classes}


# Practitioner and RelatedPerson are read only for their names, which de-identification removes from text.
READ_TYPES: Final = frozenset(
    {
        "Patient",
        "ImagingStudy",
        "Observation",
        "Condition",
        "DiagnosticReport",
        "Procedure",
        "DocumentReference",
        "Practitioner",
        "RelatedPerson",
    }
)

# Elements holding the CodeableConcepts Vigil maps, per resource type.
_MAPPED_CONCEPTS: Final[dict[str, tuple[str, ...]]] = {
    "Observation": ("code", "valueCodeableConcept"),
    "Condition": ("code",),
    "DiagnosticReport": ("code", "conclusionCode"),
    "Procedure": ("code",),
    "DocumentReference": ("type",),
}
# Elements holding the references Vigil follows, per resource type.
_FOLLOWED_REFERENCES: Final[dict[str, tuple[str, ...]]] = {
    "ImagingStudy": ("subject",),
    "Observation": ("subject", "derivedFrom", "partOf"),
    "Condition": ("subject",),
    "DiagnosticReport": ("subject", "imagingStudy"),
    "Procedure": ("subject", "report"),
    "DocumentReference": ("subject", "context.related"),
}
# Bundles split by design (pages of a search, files of a bulk export) reference what they do not carry.
_CHECK_REFERENCES: Final = frozenset({"transaction", "batch", "collection", "resource"})
_RELATIVE_REF: Final = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?")


@dataclass(frozen=True, slots=True)
class ResourceError:
    """A resource Vigil did not accept, and why.

    Attributes
    ----------
    path : str
        Where the fault is, e.g. ``"entry[7].resource.status"`` or ``"line[12].status"``.
    message : str
        What is wrong, naming the bad value.
    """

    path: str
    message: str


@dataclass(frozen=True, slots=True)
class ParsedPayload:
    """A FHIR payload split into validated resources and per-resource errors.

    Attributes
    ----------
    kind : str
        ``"transaction"``, ``"batch"``, ``"collection"``, ``"searchset"``, ``"ndjson"`` or ``"resource"``.
    resources : tuple of (str, model)
        The path and validated R4B model of each good resource of a type Vigil reads.
    errors : tuple of ResourceError
        Each bad resource (a transaction has none: any bad entry rejects it whole).
    n_entries : int
        Entries (bundle), non-blank lines (NDJSON) or 1 (a single resource), good, bad or ignored.
    next_link : str or None
        A searchset's ``Bundle.link`` with relation ``next``, else None.
    full_urls : tuple of (str, str)
        The ``entry.fullUrl`` of each good resource that has one, by path, so that ``urn:uuid:``
        references resolve (the models do not carry it).
    identifying : frozenset of str
        Every identifying string of every entry, good, bad or ignored (names, identifier,
        telecom and address values, birth dates), which extraction removes from free text.
    """

    kind: str
    resources: tuple[tuple[str, Any], ...]
    errors: tuple[ResourceError, ...]
    n_entries: int
    next_link: str | None
    full_urls: tuple[tuple[str, str], ...] = ()
    identifying: frozenset[str] = field(default=frozenset(), repr=False)  # identifiers: never in a log line


@dataclass(frozen=True, slots=True)
class _Item:
    path: str  # where the resource sits: "entry[3].resource", "line[4]", ""
    raw: Any
    full_url: str | None


def parse_payload(data: bytes, *, name: str) -> ParsedPayload:
    """Parse and validate a FHIR R4 JSON payload.

    Parameters
    ----------
    data : bytes
        UTF-8 JSON (a byte-order mark is tolerated): a Bundle of type collection, transaction,
        batch or searchset, a single resource of a type Vigil reads, or NDJSON (one resource a line,
        blank lines ignored; a ``.ndjson`` name forces it).
    name : str
        The payload's name (file name or URL) for messages.

    Returns
    -------
    ParsedPayload

    Raises
    ------
    FhirPayloadError
        Undecodable bytes (with the byte offset), malformed JSON (with line and column), a
        top-level resourceType Vigil does not read, a Bundle.type it does not read, or any bad
        entry of a transaction bundle (the message names the entry's path).
    """
    text = _decode(data, name)
    if not text.strip():
        raise FhirPayloadError(name, "", "the payload is empty")
    if name.lower().endswith(".ndjson"):
        return _parse_ndjson(text, name)
    try:
        document = json.loads(text)
    except RecursionError as exc:
        raise FhirPayloadError(name, "", "malformed JSON: nested too deeply") from exc
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":
            return _parse_ndjson(text, name)
        raise FhirPayloadError(name, "", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    if not isinstance(document, dict):
        raise FhirPayloadError(name, "", f"expected a JSON object, got a JSON {type(document).__name__}")
    resource_type = document.get("resourceType")
    if resource_type == "Bundle":
        return _parse_bundle(document, name)
    if not _in(resource_type, READ_TYPES):
        raise FhirPayloadError(
            name,
            "resourceType",
            f"{resource_type!r} is not a resource type Vigil reads (a Bundle or one of {sorted(READ_TYPES)})",
        )
    return _finish("resource", [_Item("", document, None)], name, next_link=None)


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FhirPayloadError(name, "", f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}") from exc


def _parse_ndjson(text: str, name: str) -> ParsedPayload:
    items: list[_Item] = []
    bad: list[ResourceError] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        path = f"line[{number}]"
        try:
            raw = json.loads(line)
        except RecursionError as exc:
            raise FhirPayloadError(name, path, "malformed JSON: nested too deeply") from exc
        except json.JSONDecodeError as exc:
            raise FhirPayloadError(name, path, f"malformed JSON at column {exc.colno}: {exc.msg}") from exc
        if not isinstance(raw, dict):
            bad.append(ResourceError(path, f"expected a JSON object, got a JSON {type(raw).__name__}"))
            continue
        items.append(_Item(path, raw, None))
    return _finish("ndjson", items, name, next_link=None, n_entries=len(items) + len(bad), prior=bad)


def _parse_bundle(bundle: dict[str, Any], name: str) -> ParsedPayload:
    kind = bundle.get("type")
    if not _in(kind, BINDINGS["Bundle.type"]):
        raise FhirPayloadError(
            name, "type", f"{kind!r} is not a Bundle.type (one of {sorted(BINDINGS['Bundle.type'])})"
        )
    if kind not in BUNDLE_KINDS:
        raise FhirPayloadError(name, "type", f"Vigil reads Bundles of type {', '.join(BUNDLE_KINDS)}, not {kind!r}")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise FhirPayloadError(name, "entry", "Bundle.entry must be a list")
    items: list[_Item] = []
    bad: list[ResourceError] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            bad.append(ResourceError(f"entry[{i}]", "a Bundle entry must be a JSON object"))
            continue
        resource = entry.get("resource")
        if resource is None:
            continue  # a DELETE or GET request of a transaction carries no resource
        full_url = entry.get("fullUrl")
        items.append(_Item(f"entry[{i}].resource", resource, full_url if isinstance(full_url, str) else None))
    return _finish(kind, items, name, next_link=_next_link(bundle), n_entries=len(entries), prior=bad)


def _next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in _list(bundle.get("link")):
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return str(link["url"])
    return None


def _finish(
    kind: str,
    items: Sequence[_Item],
    name: str,
    *,
    next_link: str | None,
    n_entries: int = 1,
    prior: Sequence[ResourceError] = (),
) -> ParsedPayload:
    known = _known_targets(items)
    good: list[tuple[str, Any]] = []
    full_urls: list[tuple[str, str]] = []
    errors = list(prior)
    for item in items:
        problems = _check_item(item, known if kind in _CHECK_REFERENCES else None)
        if problems:
            errors.extend(problems)
            continue
        model = _validate_model(item, errors)
        if model is not None:
            good.append((item.path, model))
            if item.full_url:
                full_urls.append((item.path, item.full_url))
    if errors and kind == "transaction":
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise FhirPayloadError(name, first.path, f"{first.message}; the transaction is rejected whole{more}")
    identifying = frozenset(v for item in items if isinstance(item.raw, dict) for v in identifying_values(item.raw))
    return ParsedPayload(kind, tuple(good), tuple(errors), n_entries, next_link, tuple(full_urls), identifying)


def _list(value: Any) -> list[Any]:
    # A malformed element (an object where a list belongs) is pydantic's to report, not a crash here.
    return value if isinstance(value, list) else []


def _in(value: Any, allowed: frozenset[str]) -> bool:
    return isinstance(value, str) and value in allowed


def _join(base: str, rest: str) -> str:
    return f"{base}.{rest}" if base else rest


def _known_targets(items: Sequence[_Item]) -> frozenset[str]:
    known: set[str] = set()
    for item in items:
        if not isinstance(item.raw, dict):
            continue
        if item.full_url:
            known.add(item.full_url)
        rid = item.raw.get("id")
        if isinstance(rid, str):
            known.add(f"{item.raw.get('resourceType')}/{rid}")
    return frozenset(known)


def _check_item(item: _Item, known: frozenset[str] | None) -> list[ResourceError]:
    raw = item.raw
    if not isinstance(raw, dict):
        return [ResourceError(item.path, "a resource must be a JSON object")]
    resource_type = raw.get("resourceType")
    if not isinstance(resource_type, str):
        return [ResourceError(_join(item.path, "resourceType"), "a resource without a resourceType")]
    if resource_type not in READ_TYPES:
        return []  # counted in n_entries, otherwise ignored
    problems = list(_binding_problems(raw, resource_type, item.path))
    problems.extend(_coding_problems(raw, resource_type, item.path))
    problems.extend(_attachment_problems(raw, resource_type, item.path))
    if known is not None:
        problems.extend(_reference_problems(raw, resource_type, item.path, known))
    return problems


def _validate_model(item: _Item, errors: list[ResourceError]) -> Any:
    resource_type = item.raw["resourceType"]
    if resource_type not in READ_TYPES:
        return None
    try:
        return _model_classes()[resource_type].model_validate(item.raw)
    except ValidationError as exc:
        for err in exc.errors():
            where = _loc_path(err["loc"])
            errors.append(ResourceError(_join(item.path, where) if where else item.path, err["msg"]))
        return None


def _loc_path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "__root__":
            out = _join(out, part)
    return out


def _binding_problems(raw: Mapping[str, Any], resource_type: str, path: str) -> Iterator[ResourceError]:
    for element in ("status", "gender"):
        binding = BINDINGS.get(f"{resource_type}.{element}")
        if binding is None:
            continue
        value = raw.get(element)
        if value is None and element == "gender":
            continue  # Patient.gender is optional; status is required (pydantic reports a missing one)
        if value is not None and not _in(value, binding):
            yield ResourceError(
                _join(path, element), f"{value!r} is not a valid {resource_type}.{element} (one of {sorted(binding)})"
            )
    if resource_type == "Condition":
        for element in ("clinicalStatus", "verificationStatus"):
            concept = raw.get(element)
            if not isinstance(concept, dict):
                continue
            binding = BINDINGS[f"Condition.{element}"]
            for j, coding in enumerate(_list(concept.get("coding"))):
                code = coding.get("code") if isinstance(coding, dict) else None
                if not _in(code, binding):
                    yield ResourceError(
                        _join(path, f"{element}.coding[{j}].code"),
                        f"{code!r} is not a valid Condition.{element} (one of {sorted(binding)})",
                    )


def _coding_problems(raw: Mapping[str, Any], resource_type: str, path: str) -> Iterator[ResourceError]:
    for element in _MAPPED_CONCEPTS.get(resource_type, ()):
        concepts = raw.get(element)
        for k, concept in _enumerate_maybe_list(concepts):
            if not isinstance(concept, dict):
                continue
            base = element if k is None else f"{element}[{k}]"
            for j, coding in enumerate(_list(concept.get("coding"))):
                if not isinstance(coding, dict):
                    continue
                where = _join(path, f"{base}.coding[{j}]")
                system = coding.get("system")
                problem = system_problem(system)
                if problem is not None:
                    yield ResourceError(f"{where}.system", problem)
                    continue
                code = coding.get("code")
                problem = code_problem(str(system), code if isinstance(code, str) else None)
                if problem is not None:
                    yield ResourceError(f"{where}.code", problem)


def _enumerate_maybe_list(value: Any) -> Iterator[tuple[int | None, Any]]:
    if isinstance(value, list):
        yield from enumerate(value)
    elif value is not None:
        yield None, value


def _attachment_problems(raw: Mapping[str, Any], resource_type: str, path: str) -> Iterator[ResourceError]:
    if resource_type == "DocumentReference":
        located = [
            (f"content[{i}].attachment", c.get("attachment"))
            for i, c in enumerate(_list(raw.get("content")))
            if isinstance(c, dict)
        ]
    elif resource_type == "DiagnosticReport":
        located = [(f"presentedForm[{i}]", a) for i, a in enumerate(_list(raw.get("presentedForm")))]
    else:
        return
    for where, attachment in located:
        if not isinstance(attachment, dict) or "data" not in attachment:
            continue
        try:
            attachment_text(attachment.get("contentType"), attachment.get("data"))
        except AttachmentError as exc:
            yield ResourceError(_join(path, f"{where}.{exc.element}"), exc.reason)


def _reference_problems(
    raw: Mapping[str, Any], resource_type: str, path: str, known: frozenset[str]
) -> Iterator[ResourceError]:
    for element in _FOLLOWED_REFERENCES.get(resource_type, ()):
        head, _, tail = element.partition(".")
        value = raw.get(head)
        if tail:
            for k, inner in _enumerate_maybe_list(value.get(tail) if isinstance(value, dict) else None):
                yield from _one_reference(inner, f"{head}.{tail}" if k is None else f"{head}.{tail}[{k}]", path, known)
        else:
            for k, inner in _enumerate_maybe_list(value):
                yield from _one_reference(inner, head if k is None else f"{head}[{k}]", path, known)


def _one_reference(ref: Any, where: str, path: str, known: frozenset[str]) -> Iterator[ResourceError]:
    target = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(target, str) or target.startswith("#"):
        return  # a logical (identifier) reference, or a contained resource
    if target in known:
        return
    match = _RELATIVE_REF.fullmatch(target)
    if match is not None and f"{match.group(1)}/{match.group(2)}" in known:
        return
    if match is None and not target.startswith("urn:"):
        return  # an absolute URL to a resource on a server: not expected in the payload
    yield ResourceError(
        _join(path, f"{where}.reference"), f"reference {target!r} names a resource missing from the payload"
    )
