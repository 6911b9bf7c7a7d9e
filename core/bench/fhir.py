"""The FHIR ingest benchmark (issue 13): a 10,000-resource Bundle ingested vs. merely parsed and validated.

The measured side is what ``vigil fhir ingest FILE`` does with one file (the mapping file loaded
once beforehand, as ``vigil fhir pull`` does for its pages): :func:`core.services.fhir_ingest.prepare_payload`
(parse, validate bindings and codes, de-identify, map codes, read notes, link within the payload)
then :func:`~core.services.fhir_ingest.ingest_prepared` (link to stored studies, write evidence,
patients, outcome rows and the audit entry in one transaction), into a freshly migrated SQLite
store each round (the migration is not timed). The baseline is the plain way to the same models:
``json.loads`` of the same bytes and ``model_validate`` of every resource with fhir.resources' R4B
classes, the models kept (see :func:`_baseline`; the variant that drops them is recorded beside).
Target: ingest / baseline <= 2, i.e. mapping, linkage and store writes do not dominate.

The Bundle is SYNTHETIC and generated in code: the sample cohort's outcome generator
(:func:`core.sampledata.fhir_outcomes.build_outcomes`) run over the cohort manifest's deployment
studies, copied with fresh UIDs, patient IDs and accession numbers until exactly ``n`` resources
(whole studies, then standalone Patient resources to fill up), so it carries the generator's mix
of patients, studies, reports with text, coded diagnoses, biopsies, notes and unmapped labs.

Guard: ingest accepted every resource the baseline validated and rejected none, and the evidence
rows the report counts are in the store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from core.bench.harness import BenchResult
from core.config import Settings
from core.errors import PathNotFoundError
from core.fhir import OutcomeMapping, load_mapping
from core.sampledata import MANIFEST_NAME, ManifestRow, read_manifest
from core.sampledata.fhir_outcomes import build_outcomes
from core.services.fhir_ingest import IngestReport, ingest_prepared, prepare_payload
from core.services.store import open_store, utc_now
from core.store import emr
from core.types import JSONObject

__all__ = ["N_RESOURCES", "TARGET", "run", "synthetic_bundle"]

N_RESOURCES: Final = 10_000
TARGET: Final = 2.0
_SECRET: Final = b"vigil-bench-fhir-pseudonym-key-0"
_R4B_MODULES: Final = {
    "Patient": "patient",
    "ImagingStudy": "imagingstudy",
    "Observation": "observation",
    "Condition": "condition",
    "DiagnosticReport": "diagnosticreport",
    "Procedure": "procedure",
    "DocumentReference": "documentreference",
}


def _copy_row(row: ManifestRow, copy: int) -> ManifestRow:
    """``row`` as another synthetic study: a fresh UID (2.25 form), patient ID and accession number."""
    digest = hashlib.sha256(f"{row.study_uid}/{copy}".encode()).digest()
    return dataclasses.replace(
        row,
        study_uid=f"2.25.{uuid.UUID(bytes=digest[:16]).int}",
        patient_id=f"{row.patient_id}-{copy}",
        accession_number=f"{row.accession_number}{copy:03d}",
    )


def synthetic_bundle(rows: Sequence[ManifestRow], n: int = N_RESOURCES) -> bytes:
    """A SYNTHETIC collection Bundle of exactly ``n`` resources built from ``rows``' deployment studies.

    Raises
    ------
    ValueError
        ``rows`` holds no deployment study.
    """
    deployment = [r for r in rows if not r.is_benchmark]
    if not deployment:
        raise ValueError("the manifest has no deployment-site study to build outcomes for")
    entries: list[Any] = []
    fill: list[Any] = []  # standalone Patients (no references) that top the Bundle up to exactly n
    copy = 0
    while len(entries) + len(fill) < n:
        for row in deployment:
            made = build_outcomes([_copy_row(row, copy)], seed=0)
            study = [e for bundle in made.bundles.values() for e in bundle["entry"]]
            if len(entries) + len(study) <= n:
                entries += study
            else:
                fill += [e for e in study if e["resource"]["resourceType"] == "Patient"]
            if len(entries) + len(fill) >= n:
                break
        copy += 1
    entries += fill[: n - len(entries)]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return json.dumps(bundle, separators=(",", ":")).encode()


def _models() -> dict[str, Any]:
    return {
        name: getattr(importlib.import_module(f"fhir.resources.R4B.{module}"), name)
        for name, module in _R4B_MODULES.items()
    }


def _baseline(data: bytes, models: dict[str, Any], *, keep: bool = True) -> int:
    """The plain way: ``json.loads`` and R4B ``model_validate`` of every resource; returns how many validated.

    ``keep`` holds the validated models until the end, as any use of them (and the ingest) does.
    Dropping each at once is about a third faster on 10,000 resources, and none of that is
    validation: it is Python's cyclic garbage collector walking the live objects that a kept
    result holds (with the collector off the two take the same time). The record carries both.
    """
    bundle = json.loads(data)
    kept: list[Any] = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        model = models[resource["resourceType"]].model_validate(resource)
        if keep:
            kept.append(model)
    return len(kept) if keep else len(bundle["entry"])


@dataclasses.dataclass(frozen=True, slots=True)
class _Ingest:
    prepare_s: float
    store_s: float
    report: IngestReport
    stored_evidence: int

    @property
    def seconds(self) -> float:
        return self.prepare_s + self.store_s


def _ingest_once(data: bytes, mapping: OutcomeMapping, root: Path, label: str) -> _Ingest:
    """Ingest ``data`` into a freshly migrated SQLite store under ``root`` (migration untimed)."""
    home = root / label
    sf = open_store(Settings(home=home, database_url=f"sqlite:///{(root / f'{label}.db').resolve()}"))
    try:
        t0 = time.perf_counter()
        prepared = prepare_payload(data, name="bench.json", secret=_SECRET, mapping=mapping)
        t1 = time.perf_counter()
        report = ingest_prepared(sf, prepared, secret=_SECRET, actor="bench:fhir", now=utc_now)
        t2 = time.perf_counter()
        with sf.begin() as session:
            stored = len(emr.list_evidence(session))
    finally:
        sf.kw["bind"].dispose()
    return _Ingest(t1 - t0, t2 - t1, report, stored)


def run(sample_dir: Path, *, rounds: int = 5, n: int = N_RESOURCES) -> list[BenchResult]:
    """The suite: one ratio, ingest / (json.loads + R4B validation), over ``rounds`` interleaved rounds.

    Parameters
    ----------
    sample_dir : Path
        A cohort folder with its manifest (the committed ``sample_data``).
    rounds : int
        Interleaved rounds after one warm-up of each side.
    n : int
        Resources in the Bundle.
    """
    manifest = sample_dir / MANIFEST_NAME
    if not manifest.is_file():
        raise PathNotFoundError(manifest)
    data = synthetic_bundle(read_manifest(manifest), n)
    mapping = load_mapping()
    models = _models()
    ingests: list[_Ingest] = []
    baselines: list[float] = []
    dropping: list[float] = []
    validated = 0
    with tempfile.TemporaryDirectory(prefix="vigil-bench-fhir-") as tmp:
        root = Path(tmp)
        _ingest_once(data, mapping, root, "warmup")  # loads the notes pipeline and the model classes
        _baseline(data, models)
        for i in range(rounds):
            ingests.append(_ingest_once(data, mapping, root, f"round{i}"))
            t0 = time.perf_counter()
            validated = _baseline(data, models)
            t1 = time.perf_counter()
            _baseline(data, models, keep=False)
            baselines.append(t1 - t0)
            dropping.append(time.perf_counter() - t1)
    return [_result(data, n, ingests, baselines, dropping, validated)]


def _result(
    data: bytes, n: int, ingests: list[_Ingest], baselines: list[float], dropping: list[float], validated: int
) -> BenchResult:
    ratios = [i.seconds / b for i, b in zip(ingests, baselines, strict=True)]
    last = ingests[-1].report
    guard_ok = (
        validated == n
        and all(i.report.accepted == n and not i.report.rejected for i in ingests)
        and all(i.stored_evidence == i.report.evidence > 0 for i in ingests)
    )
    types = Counter(e["resource"]["resourceType"] for e in json.loads(data)["entry"])
    absolutes: JSONObject = {
        "resources": n,
        "payload_mb": round(len(data) / 1e6, 2),
        "resource_types": dict(sorted(types.items())),
        "rounds": len(ingests),
        "ingest_median_s": round(statistics.median(i.seconds for i in ingests), 3),
        "parse_extract_median_s": round(statistics.median(i.prepare_s for i in ingests), 3),
        "store_median_s": round(statistics.median(i.store_s for i in ingests), 3),
        "baseline_median_s": round(statistics.median(baselines), 3),
        "baseline_dropping_models_median_s": round(statistics.median(dropping), 3),
        "ratio_against_dropping_models": round(
            statistics.median(i.seconds / d for i, d in zip(ingests, dropping, strict=True)), 3
        ),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "accepted": last.accepted,
        "rejected": len(last.rejected),
        "evidence_rows": last.evidence,
        "unmapped_codes": last.unmapped,
        "patients": last.patients,
    }
    return BenchResult(
        f"FHIR ingest of a {n:,}-resource Bundle / json.loads + R4B model_validate",
        statistics.median(ratios),
        TARGET,
        "ingest accepted every resource the baseline validated, rejected none, and stored its evidence",
        guard_ok,
        absolutes,
    )
