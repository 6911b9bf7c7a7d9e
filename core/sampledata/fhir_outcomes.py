"""SYNTHETIC EMR outcomes of the sample cohort as FHIR R4 JSON: what an EMR would send weeks later.

For every deployment-site study of a cohort manifest this writes what the hospital's EMR would hold
about the finding after the radiograph: a lung biopsy and its pathology report, a follow-up CT report,
a coded diagnosis (Condition), clinicians' notes (DocumentReference) that affirm, deny or hedge the
finding, and a few laboratory results whose codes Vigil does not map. As real records are, they are
delayed (3 to 180 days after the study), partly missing (about 12% of studies get nothing), and
occasionally wrong (about 4% of studies get evidence that contradicts the ground truth). They link
to their study in three ways: through an ImagingStudy that carries the StudyInstanceUID and the
accession number, through an ImagingStudy that carries only the accession number, or through the
patient alone (then only the date tells which study it is about).

The JSON is built as plain dictionaries: ``core.sampledata`` and ``core.fhir`` are peers, so this
module cannot use fhir.resources (the tests validate every resource with it). Codes are the real
SNOMED CT and LOINC codes of Vigil's mapping file, with their displays. Names, addresses and phone
numbers come from a small list of obviously synthetic values (555-01xx numbers, "Testville").

Layout written by :func:`write_outcomes` under ``out_dir/outcomes/``::

    <site>.json                     one Bundle (type collection) per deployment site
    bulk/DocumentReference.ndjson   notes of one site as a bulk-data export (one resource a line)
    README.md                       says that all of it is SYNTHETIC

With ``canaries=True`` every identifying value (names, the second patient identifier, addresses,
phones, clinicians) and every free-text field carries a unique string ``CANARY-<n>-ZQX``, and the
result lists them all: a de-identification test ingests such files and searches every stored byte.
The MRN identifier is never a canary: it equals the DICOM PatientID so that the outcomes still link.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from html import escape
from pathlib import Path
from typing import Any, Final

import numpy as np

from core.errors import BadInputError
from core.sampledata.manifest import ManifestRow

#: A FHIR resource or element being built: nested JSON, typed loosely on purpose (R4 defines its shape).
Json = dict[str, Any]

__all__ = [
    "BULK_NOTES_NAME",
    "BULK_SITE",
    "OUTCOMES_DIR",
    "OUTCOME_CONFIRMED",
    "OUTCOME_EXCLUDED",
    "SampleOutcomes",
    "StudyPlan",
    "build_outcomes",
    "write_outcomes",
]

OUTCOMES_DIR: Final = "outcomes"
BULK_NOTES_NAME: Final = "bulk/DocumentReference.ndjson"
#: The values of ``core.fhir.Outcome`` the plan uses (this package may not import core.fhir).
OUTCOME_CONFIRMED: Final = "finding_confirmed"
OUTCOME_EXCLUDED: Final = "finding_excluded"

#: Share of studies the EMR says nothing about, and share whose evidence contradicts the ground truth.
MISSING_RATE: Final = 0.12
CONFLICT_RATE: Final = 0.04
#: The site whose notes are exported as bulk-data NDJSON rather than in its bundle (when the cohort
#: lacks it, its first deployment site).
BULK_SITE: Final = "northfield"

SNOMED: Final = "http://snomed.info/sct"
LOINC: Final = "http://loinc.org"
_V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
_CONDITION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/condition-category"
_CLINICAL_STATUS: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VERIFICATION_STATUS: Final = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_DX_SERVICE: Final = "http://terminology.hl7.org/CodeSystem/v2-0074"
_OBS_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
_DICOM_UID: Final = "urn:dicom:uid"
_XHTML: Final = "http://www.w3.org/1999/xhtml"

# (system, code, display): exactly the codes and displays of Vigil's mapping file (see core/fhir).
NODULE: Final = (SNOMED, "786838002", "Nodule of lung")
MALIGNANT: Final = (SNOMED, "363358000", "Malignant tumor of lung")
NORMAL_LUNG: Final = (SNOMED, "827032003", "Normal lung")
POSITIVE: Final = (SNOMED, "10828004", "Positive")
NEGATIVE: Final = (SNOMED, "260385009", "Negative")
LUNG_BIOPSY: Final = (SNOMED, "78603008", "Biopsy of lung")
PATHOLOGY: Final = (LOINC, "11526-1", "Pathology study")
CT_CHEST: Final = (LOINC, "24627-2", "CT Chest")
XR_CHEST: Final = (LOINC, "36643-5", "XR Chest 2 Views")
PROGRESS_NOTE: Final = (LOINC, "11506-3", "Progress note")
CONSULT_NOTE: Final = (LOINC, "11488-4", "Consult note")
#: Laboratory results Vigil does not map: they must show up in the unmapped-code list, not as outcomes.
UNMAPPED: Final = (
    (LOINC, "2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70.0, 180.0),
    (LOINC, "718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 10.0, 17.0),
)

# Obviously synthetic identities (555-0100..555-0199 is the range reserved for fiction).
_FAMILY: Final = ("Testperson", "Syntheticus", "Fakeworth", "Mockingham", "Placeholder", "Dummington")
_GIVEN: Final = ("Alex", "Jordan", "Sam", "Robin", "Casey", "Morgan", "Riley", "Avery")
_STREETS: Final = ("Synthetic Way", "Example Street", "Phantom Lane", "Sample Road")
_CITY: Final = "Testville"
_CLINICIANS: Final = ("Dr. Ada Fakeworth", "Dr. Ben Testperson", "Dr. Cy Placeholder")
_LOBES: Final = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")

# Sentences a note or report states the finding with; read_note must read each as its key says
# (a test checks every one). "{d}" is a size in mm, "{lobe}" a lobe.
AFFIRMED: Final = (
    "There is a {d} mm solid nodule in the {lobe}.",
    "Chest CT confirms a {d} mm pulmonary nodule in the {lobe}.",
    "No change in the {d} mm nodule in the {lobe} since the radiograph.",
    "Known {d} mm nodule in the {lobe}, referred for tissue sampling.",
)
NEGATED: Final = (
    "No evidence of pulmonary nodule.",
    "Lungs are clear without pulmonary nodule or mass.",
    "Follow-up CT chest is negative for pulmonary nodule.",
    "The questioned nodule was not seen on the follow-up CT.",
)
UNCERTAIN: Final = (
    "Possible {d} mm nodule in the {lobe}.",
    "A small nodule in the {lobe} cannot be excluded.",
    "Nodular opacity in the {lobe} may represent overlapping vessels versus a true nodule.",
)


@dataclass(frozen=True, slots=True)
class StudyPlan:
    """What the generator decided for one study: the ground truth beside what the EMR will say.

    Attributes
    ----------
    study_uid, site : str
    label : int
        The manifest's ground truth (1: nodule).
    expected : str or None
        What the strongest evidence says (``"finding_confirmed"`` or ``"finding_excluded"``); None
        when the EMR holds nothing about the study.
    conflicting : bool
        The evidence contradicts the ground truth on purpose.
    linkage : str
        ``"study_uid"``, ``"accession"`` or ``"patient"``: what the evidence carries to find its study.
    evidence : tuple of str
        The kinds written: ``pathology``, ``ct``, ``xr``, ``condition``, ``note``, ``uncertain_note``,
        ``bulk_note``, ``lab``.
    """

    study_uid: str
    site: str
    label: int
    expected: str | None
    conflicting: bool
    linkage: str
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SampleOutcomes:
    """Everything :func:`build_outcomes` made, before it is written.

    Attributes
    ----------
    bundles : dict of str to JSON object
        One collection Bundle per deployment site with any outcome, by site name.
    bulk_notes : tuple of JSON object
        DocumentReference resources of the bulk-data export, in line order.
    plans : tuple of StudyPlan
        One per deployment-site study, in manifest order.
    canaries : tuple of str
        Every canary string planted (empty unless asked for).
    """

    bundles: dict[str, Json]
    bulk_notes: tuple[Json, ...]
    plans: tuple[StudyPlan, ...]
    canaries: tuple[str, ...]


class _Canaries:
    """Hands out unique canary strings, or the ordinary synthetic value when canaries are off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.planted: list[str] = []

    def value(self, ordinary: str) -> str:
        if not self.enabled:
            return ordinary
        canary = f"CANARY-{len(self.planted) + 1}-ZQX"
        self.planted.append(canary)
        return canary

    def tag(self, text: str) -> str:
        """``text`` with a canary appended (free-text fields that name no person otherwise)."""
        return f"{text} (ref {self.value('')})" if self.enabled else text


@dataclass(slots=True)
class _Ctx:
    """The state one study's resources are built with."""

    row: ManifestRow
    rng: np.random.Generator
    seed: int
    canaries: _Canaries
    patient_ref: str
    patient_name: str
    patient_pi: str
    study_ref: str | None
    study_uid_linked: bool
    bulk: bool
    entries: list[Json] = field(default_factory=list)
    bulk_notes: list[Json] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


def build_outcomes(rows: Sequence[ManifestRow], *, seed: int = 0, canaries: bool = False) -> SampleOutcomes:
    """Make the synthetic EMR outcomes of a cohort's deployment-site studies (pure; nothing is written).

    Parameters
    ----------
    rows : sequence of ManifestRow
        The cohort manifest; benchmark-site rows are skipped (its labels are the retrospective truth).
    seed : int
        Non-negative; with the same rows, the same seed gives the same resources. Each study draws
        from its own generator seeded by ``(seed, study UID)``, so a study's outcomes do not change
        when other studies are added or removed (as long as the bulk-export site stays the same).
    canaries : bool
        Plant unique canary strings in every identifying value and free-text field.

    Raises
    ------
    BadInputError
        A negative seed, or a manifest row whose study date is not an ISO date.
    """
    if seed < 0:
        raise BadInputError(f"seed must be >= 0, got {seed}")
    canary = _Canaries(canaries)
    sites = [r.site for r in rows if not r.is_benchmark]
    bulk_site = BULK_SITE if BULK_SITE in sites else next(iter(sites), "")
    by_site: dict[str, list[Json]] = {}
    bulk: list[Json] = []
    plans: list[StudyPlan] = []
    for row in rows:
        if row.is_benchmark:
            continue
        entries = by_site.setdefault(row.site, [])
        plan, study_entries, notes = _study(row, seed, canary, bulk=row.site == bulk_site)
        plans.append(plan)
        entries.extend(study_entries)
        bulk.extend(notes)
    # A site whose studies all went without outcomes gets no bundle (FHIR JSON has no empty arrays).
    bundles = {site: _bundle(site, seed, entries) for site, entries in by_site.items() if entries}
    return SampleOutcomes(bundles, tuple(bulk), tuple(plans), tuple(canary.planted))


def write_outcomes(
    out_dir: Path, rows: Sequence[ManifestRow], *, seed: int = 0, canaries: bool = False
) -> SampleOutcomes:
    """Build the outcomes (see :func:`build_outcomes`) and write them under ``out_dir/outcomes/``.

    Earlier ``*.json`` bundles and the bulk file are replaced, so the folder never mixes two cohorts;
    the bulk file is left out when no note went there (a cohort of a few studies).
    Files are written compact (one line per bundle, one resource per NDJSON line) and byte-for-byte
    reproducibly.
    """
    made = build_outcomes(rows, seed=seed, canaries=canaries)
    folder = out_dir / OUTCOMES_DIR
    (folder / "bulk").mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    for site, bundle in made.bundles.items():
        (folder / f"{site}.json").write_text(_dumps(bundle) + "\n", encoding="utf-8")
    bulk = folder / BULK_NOTES_NAME
    if made.bulk_notes:
        bulk.write_text("".join(_dumps(r) + "\n" for r in made.bulk_notes), encoding="utf-8")
    else:  # an empty NDJSON file is no export; a small cohort may have no note to put there
        bulk.unlink(missing_ok=True)
    (folder / "README.md").write_text(_README.format(seed=seed, n=len(made.plans)), encoding="utf-8")
    return made


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --- one study ----------------------------------------------------------------------------------


def _study(row: ManifestRow, seed: int, canary: _Canaries, *, bulk: bool) -> tuple[StudyPlan, list[Json], list[Json]]:
    rng = np.random.default_rng([seed, zlib.crc32(row.study_uid.encode("ascii"))])
    missing = bool(rng.random() < MISSING_RATE)
    # Conflicts are drawn among the studies that get evidence, so the overall share is CONFLICT_RATE.
    conflicting = bool(rng.random() < CONFLICT_RATE / (1 - MISSING_RATE)) and not missing
    linkage = ("study_uid", "accession", "patient")[int(rng.choice(3, p=[0.5, 0.25, 0.25]))]
    if missing:
        return StudyPlan(row.study_uid, row.site, row.label, None, False, linkage, ()), [], []
    positive = bool(row.label) != conflicting
    ctx = _context(row, rng, seed, canary, linkage, bulk=bulk)
    _evidence(ctx, positive)
    expected = OUTCOME_CONFIRMED if positive else OUTCOME_EXCLUDED
    plan = StudyPlan(row.study_uid, row.site, row.label, expected, conflicting, linkage, tuple(ctx.kinds))
    return plan, ctx.entries, ctx.bulk_notes


def _context(  # noqa: PLR0913 - one argument per source of the study's state
    row: ManifestRow, rng: np.random.Generator, seed: int, canary: _Canaries, linkage: str, *, bulk: bool
) -> _Ctx:
    patient, name, pi = _patient(row, rng, seed, canary)
    ctx = _Ctx(
        row=row,
        rng=rng,
        seed=seed,
        canaries=canary,
        patient_ref=patient["fullUrl"],
        patient_name=name,
        patient_pi=pi,
        study_ref=None,
        study_uid_linked=linkage == "study_uid",
        bulk=bulk,
    )
    ctx.entries.append(patient)
    if linkage != "patient":
        study = _imaging_study(ctx, with_uid=linkage == "study_uid")
        ctx.entries.append(study)
        ctx.study_ref = study["fullUrl"]
    return ctx


def _evidence(ctx: _Ctx, positive: bool) -> None:
    """Add the study's evidence: one deciding coded result or note, then agreeing or weaker extras."""
    u = ctx.rng.random()
    if positive:
        primary = "pathology" if u < 0.35 else "ct" if u < 0.65 else "condition" if u < 0.85 else "note"
    else:
        primary = "ct" if u < 0.45 else "xr" if u < 0.55 else "condition" if u < 0.75 else "note"
    _add(ctx, primary, positive, primary=True)
    if primary != "note" and ctx.rng.random() < 0.4:
        _add(ctx, "note", positive)
    if ctx.rng.random() < 0.15 and primary != "note":
        # A hedged note beside a coded result: weaker evidence that must not change the outcome.
        # (Beside a deciding note it would be as strong, and the study's reading indeterminate.)
        _add(ctx, "uncertain_note", positive)
    if ctx.rng.random() < 0.1:
        _add(ctx, "lab", positive)


def _add(ctx: _Ctx, kind: str, positive: bool, *, primary: bool = False) -> None:
    """Add one piece of evidence; at the bulk-export site, notes that do not decide go to the NDJSON."""
    if kind == "pathology":
        procedure, biopsy_day = _procedure(ctx)
        report = _pathology(ctx, procedure_day=biopsy_day)
        procedure["resource"]["report"] = [{"reference": report["fullUrl"]}]
        ctx.entries += [procedure, report]
    elif kind in ("ct", "xr"):
        ctx.entries.append(_imaging_report(ctx, positive, ct=kind == "ct"))
    elif kind == "condition":
        ctx.entries.append(_condition(ctx, positive))
    elif kind in ("note", "uncertain_note"):
        bulk = ctx.bulk and not primary
        note = _note(ctx, positive, uncertain=kind == "uncertain_note", bulk=bulk)
        if bulk:
            ctx.bulk_notes.append(note["resource"])
            kind = "bulk_note"
        else:
            ctx.entries.append(note)
    else:
        ctx.entries.append(_lab(ctx))
    ctx.kinds.append(kind)


# --- resources ----------------------------------------------------------------------------------


def _uuid(seed: int, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join((str(seed), *parts)).encode("utf-8")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _study_day(row: ManifestRow) -> date:
    try:
        return date.fromisoformat(row.study_date)
    except ValueError as exc:
        raise BadInputError(f"manifest row {row.study_uid} has study_date {row.study_date!r}, not YYYY-MM-DD") from exc


def _later(ctx: _Ctx, low: int, high: int) -> date:
    """A day ``low`` to ``high`` days (inclusive) after the study: the EMR's delay."""
    return _study_day(ctx.row) + timedelta(days=int(ctx.rng.integers(low, high + 1)))


def _meta(day: date, rng: np.random.Generator) -> Json:
    # Most resources are first versions; some were amended once before the export.
    version = "2" if rng.random() < 0.1 else "1"
    stamp = f"{day.isoformat()}T{int(rng.integers(7, 19)):02d}:{int(rng.integers(0, 60)):02d}:00Z"
    return {"versionId": version, "lastUpdated": stamp}


def _narrative(text: str) -> Json:
    return {"status": "generated", "div": f'<div xmlns="{_XHTML}"><p>{escape(text)}</p></div>'}


def _coding(code: tuple[str, str, str]) -> Json:
    return {"system": code[0], "code": code[1], "display": code[2]}


def _concept(code: tuple[str, str, str], text: str | None = None) -> Json:
    concept: Json = {"coding": [_coding(code)]}
    if text is not None:
        concept["text"] = text
    return concept


def _identifier_type(code: str, display: str) -> Json:
    return {"coding": [{"system": _V2_0203, "code": code, "display": display}]}


def _entry(ctx: _Ctx, kind: str, resource: Json) -> Json:
    rid = _uuid(ctx.seed, ctx.row.study_uid, kind, str(len(ctx.entries)), str(len(ctx.bulk_notes)))
    return {"fullUrl": f"urn:uuid:{rid}", "resource": {"id": rid, **resource}}


def _patient(row: ManifestRow, rng: np.random.Generator, seed: int, canary: _Canaries) -> tuple[Json, str, str]:
    index = int(rng.integers(0, 1 << 30))
    family = canary.value(_FAMILY[index % len(_FAMILY)])
    given = canary.value(_GIVEN[index // 7 % len(_GIVEN)])
    pi = canary.value(f"PI{index % 10_000_000:07d}")
    line = canary.value(f"{index % 200 + 1} {_STREETS[index // 11 % len(_STREETS)]}")
    phone = canary.value(f"555-01{index % 100:02d}")
    day = _study_day(row)
    birth = date(day.year - row.patient_age, 1 + index % 12, 1 + index % 28)
    name = f"{given} {family}"
    rid = _uuid(seed, row.study_uid, "patient")
    site_system = f"https://vigil.example/sites/{row.site}"
    resource: Json = {
        "resourceType": "Patient",
        "id": rid,
        "meta": _meta(day, rng),
        "text": _narrative(f"SYNTHETIC patient {name}, MRN {pi}, {line}, {_CITY}, phone {phone}"),
        "identifier": [
            # The MRN equals the DICOM PatientID: it is how Vigil links the patient to its studies.
            {
                "use": "usual",
                "type": _identifier_type("MR", "Medical record number"),
                "system": f"{site_system}/mrn",
                "value": row.patient_id,
            },
            {
                "use": "secondary",
                "type": _identifier_type("PI", "Patient internal identifier"),
                "system": f"{site_system}/internal-id",
                "value": pi,
            },
        ],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "telecom": [{"system": "phone", "value": phone, "use": "home"}],
        "gender": "female" if row.patient_sex == "F" else "male",
        "birthDate": birth.isoformat(),
        "address": [{"use": "home", "line": [line], "city": _CITY, "postalCode": "00000", "country": "ZZ"}],
    }
    return {"fullUrl": f"urn:uuid:{rid}", "resource": resource}, name, pi


def _imaging_study(ctx: _Ctx, *, with_uid: bool) -> Json:
    row = ctx.row
    identifiers: list[Any] = []
    if with_uid:
        identifiers.append({"system": _DICOM_UID, "value": f"urn:oid:{row.study_uid}"})
    identifiers.append(
        {
            "type": _identifier_type("ACSN", "Accession ID"),
            "system": f"https://vigil.example/sites/{row.site}/accession",
            "value": row.accession_number,
        }
    )
    day = _study_day(row)
    resource: Json = {
        "resourceType": "ImagingStudy",
        "meta": _meta(day, ctx.rng),
        "text": _narrative(ctx.canaries.tag(f"Chest radiograph {row.view_position} of {day.isoformat()}")),
        "identifier": identifiers,
        "status": "available",
        "subject": {"reference": ctx.patient_ref},
        "started": day.isoformat(),
        "numberOfSeries": 1,
        "numberOfInstances": 1,
        "description": ctx.canaries.tag(f"XR chest {row.view_position}"),
    }
    return _entry(ctx, "imaging_study", resource)


def _study_link(ctx: _Ctx) -> list[Any]:
    return [{"reference": ctx.study_ref}] if ctx.study_ref is not None else []


def _size(ctx: _Ctx) -> int:
    # Sizes of real nodules for positives; a plausible one for the conflicting negatives too.
    return int(round(ctx.row.nodule_diameter_mm)) if ctx.row.nodule_diameter_mm else int(ctx.rng.integers(5, 13))


def _lobe(ctx: _Ctx) -> str:
    return _LOBES[int(ctx.rng.integers(0, len(_LOBES)))]


def _pick(ctx: _Ctx, options: tuple[str, ...]) -> str:
    return options[int(ctx.rng.integers(0, len(options)))].format(d=_size(ctx), lobe=_lobe(ctx))


def _clinician(ctx: _Ctx) -> str:
    return ctx.canaries.value(_CLINICIANS[int(ctx.rng.integers(0, len(_CLINICIANS)))])


def _procedure(ctx: _Ctx) -> tuple[Json, date]:
    """The lung biopsy, and its day (the pathology report follows it)."""
    day = _later(ctx, 7, 60)
    resource: Json = {
        "resourceType": "Procedure",
        "meta": _meta(day, ctx.rng),
        "text": _narrative(ctx.canaries.tag(f"CT-guided core needle biopsy of lung for {ctx.patient_name}")),
        "status": "completed",
        "code": _concept(LUNG_BIOPSY, ctx.canaries.tag("CT-guided lung biopsy")),
        "subject": {"reference": ctx.patient_ref},
        "performedDateTime": day.isoformat(),
    }
    return _entry(ctx, "procedure", resource), day


def _presented(text: str) -> list[Any]:
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return [{"contentType": "text/plain; charset=utf-8", "data": data}]


def _header(ctx: _Ctx, title: str) -> str:
    return f"{title}\nPatient: {ctx.patient_name}  MRN: {ctx.patient_pi}\n"


def _pathology(ctx: _Ctx, *, procedure_day: date) -> Json:
    day = min(procedure_day + timedelta(days=int(ctx.rng.integers(2, 8))), _study_day(ctx.row) + timedelta(days=180))
    malignant = ctx.rng.random() < 0.7
    code = MALIGNANT if malignant else NODULE
    diagnosis = (
        "Invasive adenocarcinoma of the lung, acinar predominant."
        if malignant
        else f"Nodule of lung, {_lobe(ctx)}: organizing pneumonia with fibrosis; no malignant cells."
    )
    conclusion = ctx.canaries.tag(diagnosis)
    text = (
        _header(ctx, "SURGICAL PATHOLOGY REPORT (SYNTHETIC)")
        + f"Specimen: lung, {_lobe(ctx)}, CT-guided core needle biopsy.\n"
        + f"Final diagnosis: {diagnosis}\n"
        + f"Electronically signed by {_clinician(ctx)}\n"
    )
    resource: Json = {
        "resourceType": "DiagnosticReport",
        "meta": _meta(day, ctx.rng),
        "text": _narrative(ctx.canaries.tag(f"Pathology report for {ctx.patient_name}")),
        "status": "final",
        "category": [
            {"coding": [{"system": _DX_SERVICE, "code": "SP", "display": "Surgical Pathology"}]},
        ],
        "code": _concept(PATHOLOGY, ctx.canaries.tag("Lung biopsy pathology")),
        "subject": {"reference": ctx.patient_ref},
        "effectiveDateTime": day.isoformat(),
        "issued": f"{day.isoformat()}T16:00:00Z",
        "imagingStudy": _study_link(ctx),
        "conclusion": conclusion,
        "conclusionCode": [_concept(code)],
        "presentedForm": _presented(text),
    }
    if not resource["imagingStudy"]:
        del resource["imagingStudy"]
    return _entry(ctx, "pathology", resource)


def _imaging_report(ctx: _Ctx, positive: bool, *, ct: bool) -> Json:
    day = _later(ctx, 14, 180) if ct else _later(ctx, 3, 90)
    finding = _pick(ctx, AFFIRMED[:2] if positive else NEGATED[:3])
    coded = ctx.rng.random() < 0.8  # the rest carry text only: read with the notes reader
    if positive:
        code = NODULE if ctx.rng.random() < 0.7 else POSITIVE
    else:
        code = NORMAL_LUNG if ctx.rng.random() < 0.6 else NEGATIVE
    title = "CT CHEST WITHOUT CONTRAST (SYNTHETIC)" if ct else "XR CHEST 2 VIEWS (SYNTHETIC)"
    text = (
        _header(ctx, title)
        + f"Comparison: chest radiograph of {ctx.row.study_date}.\n"
        + f"Findings: {finding}\n"
        + f"Reported by {_clinician(ctx)}\n"
    )
    resource: Json = {
        "resourceType": "DiagnosticReport",
        "meta": _meta(day, ctx.rng),
        "text": _narrative(ctx.canaries.tag(f"{title} for {ctx.patient_name}")),
        "status": "final" if ctx.rng.random() < 0.9 else "amended",
        "category": [{"coding": [{"system": _DX_SERVICE, "code": "RAD", "display": "Radiology"}]}],
        "code": _concept(CT_CHEST if ct else XR_CHEST, ctx.canaries.tag("Follow-up imaging of the chest")),
        "subject": {"reference": ctx.patient_ref},
        "effectiveDateTime": day.isoformat(),
        "issued": f"{day.isoformat()}T18:30:00Z",
        "conclusion": ctx.canaries.tag(finding),
        "presentedForm": _presented(text),
    }
    if coded:
        resource["conclusionCode"] = [_concept(code)]
    if ctx.study_ref is not None:
        # The comparison study: a follow-up report names the radiograph it answers.
        resource["imagingStudy"] = _study_link(ctx)
    return _entry(ctx, "ct" if ct else "xr", resource)


def _condition(ctx: _Ctx, positive: bool) -> Json:
    day = _later(ctx, 3, 60)
    code = (MALIGNANT if ctx.rng.random() < 0.25 else NODULE) if positive else NODULE
    resource: Json = {
        "resourceType": "Condition",
        "meta": _meta(day, ctx.rng),
        "text": _narrative(ctx.canaries.tag(f"{code[2]} ({'confirmed' if positive else 'refuted'})")),
        "verificationStatus": _concept(
            (_VERIFICATION_STATUS, "confirmed", "Confirmed")
            if positive
            else (_VERIFICATION_STATUS, "refuted", "Refuted")
        ),
        "category": [
            _concept((_CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")),
        ],
        "code": _concept(code, ctx.canaries.tag("Lung nodule" if code is NODULE else "Lung cancer")),
        "subject": {"reference": ctx.patient_ref},
        "onsetDateTime": day.isoformat(),
        "recordedDate": day.isoformat(),
    }
    if positive:
        # A refuted condition carries no clinical status: there is nothing whose course to state.
        resource["clinicalStatus"] = _concept((_CLINICAL_STATUS, "active", "Active"))
    if ctx.study_ref is not None:
        resource["evidence"] = [{"detail": _study_link(ctx)}]
    return _entry(ctx, "condition", resource)


def _note(ctx: _Ctx, positive: bool, *, uncertain: bool, bulk: bool) -> Json:
    day = _later(ctx, 3, 120)
    consult = ctx.rng.random() < 0.5
    if uncertain:
        statement = _pick(ctx, UNCERTAIN)
    else:
        statement = _pick(ctx, AFFIRMED if positive else NEGATED)
    plan = (
        "Recommend follow-up CT chest in 3 months per Fleischner Society guidance."
        if positive or uncertain
        else "No further imaging is needed."
    )
    title = "PULMONOLOGY CONSULT NOTE (SYNTHETIC)" if consult else "PROGRESS NOTE (SYNTHETIC)"
    text = (
        _header(ctx, title)
        + f"Reason for visit: follow-up of the chest radiograph of {ctx.row.study_date}.\n"
        + f"Assessment: {statement}\n"
        + f"Plan: {plan}\n"
        + f"Electronically signed by {_clinician(ctx)}\n"
    )
    subject: Json = {"reference": ctx.patient_ref}
    related = _study_link(ctx)
    if bulk:
        subject, related = _bulk_links(ctx)
    resource: Json = {
        "resourceType": "DocumentReference",
        "meta": _meta(day, ctx.rng),
        "text": _narrative(ctx.canaries.tag(f"{title} for {ctx.patient_name}")),
        "status": "current",
        "docStatus": "final",
        "type": _concept(CONSULT_NOTE if consult else PROGRESS_NOTE, ctx.canaries.tag("Clinical note")),
        "subject": subject,
        "date": f"{day.isoformat()}T12:00:00Z",
        "description": ctx.canaries.tag("Clinic note"),
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "language": "en", "data": _b64(text)}}],
        "context": {"period": {"start": day.isoformat(), "end": day.isoformat()}},
    }
    if related:
        resource["context"]["related"] = related
    return _entry(ctx, "note", resource)


def _bulk_links(ctx: _Ctx) -> tuple[Json, list[Any]]:
    """Subject and related study of a bulk-exported note: type/id references plus logical identifiers.

    A bulk-data export refers to resources by type and id, not by bundle fullUrl, and the note's file
    holds no Patient or ImagingStudy; the identifiers (R4 ``Reference.identifier``) let a reader
    link the note on its own: the MRN, and the StudyInstanceUID or accession number.
    """
    row = ctx.row
    subject: Json = {
        "reference": "Patient/" + ctx.patient_ref.removeprefix("urn:uuid:"),
        "type": "Patient",
        "identifier": {
            "type": _identifier_type("MR", "Medical record number"),
            "system": f"https://vigil.example/sites/{row.site}/mrn",
            "value": row.patient_id,
        },
    }
    if ctx.study_ref is None:
        return subject, []
    study: Json = {"reference": "ImagingStudy/" + ctx.study_ref.removeprefix("urn:uuid:"), "type": "ImagingStudy"}
    if ctx.study_uid_linked:
        study["identifier"] = {"system": _DICOM_UID, "value": f"urn:oid:{row.study_uid}"}
    else:
        study["identifier"] = {
            "type": _identifier_type("ACSN", "Accession ID"),
            "system": f"https://vigil.example/sites/{row.site}/accession",
            "value": row.accession_number,
        }
    return subject, [study]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _lab(ctx: _Ctx) -> Json:
    day = _later(ctx, 3, 180)
    system, code, display, unit, low, high = UNMAPPED[int(ctx.rng.integers(0, len(UNMAPPED)))]
    value = round(float(ctx.rng.uniform(low, high)), 1)
    resource: Json = {
        "resourceType": "Observation",
        "meta": _meta(day, ctx.rng),
        "text": _narrative(ctx.canaries.tag(f"{display}: {value} {unit}")),
        "status": "final",
        "category": [_concept((_OBS_CATEGORY, "laboratory", "Laboratory"))],
        "code": {"coding": [{"system": system, "code": code, "display": ctx.canaries.tag(display)}]},
        "subject": {"reference": ctx.patient_ref},
        "effectiveDateTime": day.isoformat(),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }
    return _entry(ctx, "lab", resource)


def _bundle(site: str, seed: int, entries: list[Json]) -> Json:
    last = max(e["resource"]["meta"]["lastUpdated"] for e in entries)
    return {
        "resourceType": "Bundle",
        "id": _uuid(seed, "bundle", site),
        "meta": {"versionId": "1", "lastUpdated": last},
        "type": "collection",
        "timestamp": last,
        "entry": entries,
    }


_README: Final = """# SYNTHETIC EMR outcomes: not patient data

FHIR R4 resources that an EMR would send about the sample cohort's deployment-site studies, written
by `core.sampledata.fhir_outcomes` (seed {seed}, {n} studies). Every patient, name, address, phone
number, clinician, report and note here is **synthetic**; none belongs to a real person. Codes are
real SNOMED CT and LOINC codes (see `core/fhir/outcome_codes.json`).

As real records are, the outcomes are delayed (3 to 180 days after the study), missing for about 12%
of studies and contradict the ground truth for about 4%.

- `<site>.json`: one Bundle (type `collection`) per deployment site.
- `bulk/DocumentReference.ndjson`: the clinical notes of one site as a bulk-data export.

Regenerate (same bytes): `vigil sample-data --out DIR` writes them beside the cohort, or from the
repository root:

```
.venv/bin/python - <<'EOF'
from pathlib import Path
from core.sampledata import read_manifest
from core.sampledata.fhir_outcomes import write_outcomes
write_outcomes(Path("sample_data"), read_manifest(Path("sample_data/manifest.csv")), seed={seed})
EOF
```
"""
