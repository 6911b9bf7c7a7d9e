"""Generate the synthetic multi-site cohort: DICOM files, ground-truth manifest, lesion masks.

Layout of ``out_dir``::

    dicom/<site>/<site>-<index>.dcm   one single-frame radiograph per study
    manifest.csv                      ground truth and acquisition record, one row per study
    masks.npz                         lesion masks of the positive studies, keyed by SOP UID
    cohort.json                       the site definitions and dated events (software update)
    README.md                         what this is (SYNTHETIC) and the call that regenerates it

Every study draws from its own generator seeded by ``(seed, site, index)``, so a study does not
change when other sites or other study counts are generated, and the same seed gives the same bytes.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Final

import numpy as np

from core.errors import BadInputError
from core.sampledata.acquisition import Exposure, StoredImage, expose, process, quantize, sample_exposure
from core.sampledata.anatomy import Grid, Patient, Phantom, render_phantom, sample_patient
from core.sampledata.dicom_writer import XrayHeader, synthetic_uid, write_xray
from core.sampledata.manifest import MANIFEST_NAME, MASKS_NAME, ManifestRow, write_manifest, write_masks
from core.sampledata.sites import SITES, TRANSFER_SYNTAX_NAMES, SiteSpec
from core.types import BoolArray, JSONObject, JSONValue

__all__ = ["COHORT_INFO_NAME", "GENERATOR_VERSION", "MAX_STUDIES_PER_SITE", "CohortSummary", "generate_cohort"]

GENERATOR_VERSION: Final = "1.1.0"
COHORT_INFO_NAME: Final = "cohort.json"
#: The most studies generated at one site: a typo such as 100000000 would otherwise write until the disk fills.
MAX_STUDIES_PER_SITE: Final = 5000
#: Shares of the benchmark site's studies in the train / validation / test splits.
_SPLITS: Final = (("train", 0.7), ("val", 0.15), ("test", 0.15))


@dataclass(frozen=True, slots=True)
class CohortSummary:
    """What :func:`generate_cohort` wrote.

    Attributes
    ----------
    out_dir : Path
    n_studies : int
        Studies (one image each) over all sites.
    sites : tuple of str
        Site names, benchmark first.
    manifest_path : Path
        ``out_dir / "manifest.csv"``.
    """

    out_dir: Path
    n_studies: int
    sites: tuple[str, ...]
    manifest_path: Path


@dataclass(frozen=True, slots=True)
class _Study:
    row: ManifestRow
    mask: BoolArray | None


def generate_cohort(
    out_dir: Path,
    *,
    seed: int = 0,
    studies_per_site: int | Mapping[str, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CohortSummary:
    """Write the synthetic cohort to ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Created if needed. DICOM files of an earlier cohort under ``out_dir/dicom/<site>/`` are
        removed first so that the folder never mixes two cohorts; other files are left alone.
    seed : int
        Non-negative; the same seed gives byte-identical files.
    studies_per_site : int or mapping of str to int, optional
        Studies at every site, or per site name (sites left out are not generated), each from 1 to
        :data:`MAX_STUDIES_PER_SITE`; by default each site's ``default_studies`` (800 at the
        benchmark, 120 at each deployment site).
    progress : callable, optional
        Called as ``progress(done, total)`` after each study.

    Raises
    ------
    BadInputError
        A negative seed, a study count below 1 or above :data:`MAX_STUDIES_PER_SITE`, or a site name
        the cohort does not have.
    """
    if seed < 0:
        raise BadInputError(f"seed must be >= 0, got {seed}")
    counts = _study_counts(studies_per_site)
    generated = tuple(site for site in SITES if site.name in counts)
    requested = _as_json(studies_per_site)  # how the caller asked, as cohort.json and the README record it
    total = sum(counts.values())
    _clear_previous(out_dir)
    rows: list[ManifestRow] = []
    masks: dict[str, BoolArray] = {}
    for site in generated:
        for index in range(counts[site.name]):
            study = _make_study(out_dir, site, index, counts[site.name], seed)
            rows.append(study.row)
            if study.mask is not None:
                masks[study.row.sop_instance_uid] = study.mask
            if progress is not None:
                progress(len(rows), total)
    rows.sort(key=lambda r: (r.site != SITES[0].name, r.site, r.study_date, r.path))
    manifest_path = out_dir / MANIFEST_NAME
    write_manifest(rows, manifest_path)
    write_masks(masks, out_dir / MASKS_NAME)
    (out_dir / COHORT_INFO_NAME).write_text(_cohort_json(seed, requested, counts, generated), encoding="utf-8")
    (out_dir / "README.md").write_text(_readme(out_dir, seed, requested, counts, generated), encoding="utf-8")
    return CohortSummary(out_dir, len(rows), tuple(s.name for s in generated), manifest_path)


def _as_json(studies_per_site: int | Mapping[str, int] | None) -> JSONValue:
    if isinstance(studies_per_site, Mapping):
        # A comprehension, not dict(): it must build a JSON object, and dict[str, int] is not one to mypy.
        return {name: n for name, n in studies_per_site.items()}  # noqa: C416
    return studies_per_site


def _study_counts(studies_per_site: int | Mapping[str, int] | None) -> dict[str, int]:
    """Studies to generate per site name, in :data:`SITES` order; validated."""
    if studies_per_site is None:
        return {site.name: site.default_studies for site in SITES}
    if isinstance(studies_per_site, int):
        wanted = {site.name: studies_per_site for site in SITES}
    else:
        known = {site.name for site in SITES}
        unknown = sorted(set(studies_per_site) - known)
        if unknown:
            raise BadInputError(f"unknown site {unknown[0]!r} in studies_per_site (sites: {', '.join(sorted(known))})")
        wanted = {site.name: studies_per_site[site.name] for site in SITES if site.name in studies_per_site}
    for name, count in wanted.items():
        if not 1 <= count <= MAX_STUDIES_PER_SITE:
            raise BadInputError(f"studies_per_site must be from 1 to {MAX_STUDIES_PER_SITE}, got {count} for {name!r}")
    if not wanted:
        raise BadInputError("studies_per_site names no site")
    return wanted


def _clear_previous(out_dir: Path) -> None:
    for site in SITES:
        for old in (out_dir / "dicom" / site.name).glob("*.dcm"):
            old.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _site_key(site: SiteSpec) -> int:
    # A stable number per site name (Python's hash() is salted per process).
    return zlib.crc32(site.name.encode("utf-8"))


def _split(rng: np.random.Generator, site: SiteSpec) -> str:
    if not site.is_benchmark:
        return "deployment"
    u, cumulative = rng.random(), 0.0
    for name, share in _SPLITS:
        cumulative += share
        if u < cumulative:
            return name
    return _SPLITS[-1][0]


def _make_study(out_dir: Path, site: SiteSpec, index: int, n: int, seed: int) -> _Study:
    """Sample, render, expose, process and write one study; return its manifest row and mask."""
    rng = np.random.default_rng([seed, _site_key(site), index])
    mix = site.patients
    # Dates are stratified over the site's range so every stretch of days holds studies.
    day = site.date_of((index + rng.random()) / n)
    positive = bool(rng.random() < mix.prevalence)
    supine = bool(rng.random() < mix.ap_fraction)
    female = bool(rng.random() < mix.female_fraction)
    age = int(np.clip(round(rng.normal(mix.age_mean, mix.age_sd)), 18, 95))
    split = _split(rng, site)
    patient = sample_patient(
        rng, female=female, age=age, supine_ap=supine, positive=positive, granuloma_rate=mix.granuloma_rate
    )
    exposure = sample_exposure(rng, site.technique, supine_ap=supine, depth_mm=patient.depth)
    det = site.detector
    phantom = render_phantom(patient, Grid(det.matrix, det.pixel_spacing_mm))
    image01 = process(expose(phantom, exposure, det, rng), site.processing_on(day), det.pixel_spacing_mm)
    stored = quantize(image01, det)
    header = _header(site, index, seed, day, patient, exposure, stored, rng)
    rel = f"dicom/{site.name}/{site.name}-{index:05d}.dcm"
    file_sha256 = write_xray(out_dir / rel, header, stored.pixels)
    row = _row(site, header, rel, file_sha256, split, positive, patient, exposure, phantom, day)
    return _Study(row=row, mask=phantom.lesion_mask if positive else None)


def _header(  # noqa: PLR0913 - one argument per source of header values
    site: SiteSpec,
    index: int,
    seed: int,
    day: date,
    patient: Patient,
    exposure: Exposure,
    stored: StoredImage,
    rng: np.random.Generator,
) -> XrayHeader:
    key = (str(seed), site.name, str(index))
    study_uid = synthetic_uid(*key, "study")
    # Departmental PA studies happen in opening hours; portable studies at any hour.
    hour = int(rng.integers(0, 24)) if patient.supine_ap else int(rng.integers(7, 19))
    study_time = f"{hour:02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
    birth = day - timedelta(days=int(365.25 * patient.age) + int(rng.integers(0, 365)))
    det = site.detector
    return XrayHeader(
        sop_class_uid=det.sop_class_uid,
        study_uid=study_uid,
        series_uid=synthetic_uid(*key, "series"),
        sop_uid=synthetic_uid(*key, "instance"),
        patient_id=f"SYN-{site.code}-{seed}-{index:05d}",
        patient_name=f"PHANTOM^{site.code}{index:05d}",
        patient_age=f"{patient.age:03d}Y",
        patient_sex="F" if patient.female else "M",
        patient_birth_date=birth,
        study_date=day,
        study_time=study_time,
        accession_number=f"{site.code}{study_uid[-12:]}",
        institution_name=site.institution_name,
        station_name=site.station_name,
        manufacturer=det.manufacturer,
        model_name=det.model_name,
        software_versions=site.software_on(day),
        detector_type=det.detector_type,
        modality=det.object_modality,
        view_position=exposure.view,
        protocol_name=site.protocol_ap if patient.supine_ap else site.protocol_pa,
        kvp=exposure.kvp,
        mas=exposure.mas,
        distance_mm=exposure.distance_mm,
        grid=exposure.grid,
        pixel_spacing_mm=det.pixel_spacing_mm,
        bits_stored=det.bits_stored,
        photometric=det.photometric,
        rescale_slope=det.rescale_slope,
        rescale_intercept=det.rescale_intercept,
        window_center=stored.window_center,
        window_width=max(stored.window_width, 1.0),
        transfer_syntax=det.transfer_syntax,
    )


def _row(  # noqa: PLR0913 - one argument per source of manifest values
    site: SiteSpec,
    h: XrayHeader,
    rel: str,
    file_sha256: str,
    split: str,
    positive: bool,
    patient: Patient,
    exposure: Exposure,
    phantom: Phantom,
    day: date,
) -> ManifestRow:
    nodule = patient.nodule
    centre = phantom.nodule_centre_px
    return ManifestRow(
        study_uid=h.study_uid,
        series_uid=h.series_uid,
        sop_instance_uid=h.sop_uid,
        path=rel,
        file_sha256=file_sha256,
        site=site.name,
        is_benchmark=site.is_benchmark,
        split=split,
        study_date=day.isoformat(),
        label=int(positive),
        view_position=h.view_position,
        patient_id=h.patient_id,
        patient_age=patient.age,
        patient_sex=h.patient_sex,
        accession_number=h.accession_number,
        manufacturer=h.manufacturer,
        model_name=h.model_name,
        software_versions=h.software_versions,
        processing=site.processing_on(day).name,
        kvp=exposure.kvp,
        mas=exposure.mas,
        dose_factor=exposure.dose_factor,
        grid=exposure.grid,
        pixel_spacing_mm=h.pixel_spacing_mm,
        rows=int(phantom.lesion_mask.shape[0]),
        columns=int(phantom.lesion_mask.shape[1]),
        bits_stored=h.bits_stored,
        photometric=h.photometric,
        nodule_diameter_mm=nodule.diameter_mm if nodule else None,
        nodule_density=nodule.density if nodule else None,
        nodule_row=centre[0] if centre else None,
        nodule_col=centre[1] if centre else None,
        lesion_pixels=int(phantom.lesion_mask.sum()),
        n_electrodes=len(patient.electrodes),
        n_lines=len(patient.lines),
        n_granulomas=len(patient.granulomas),
    )


def _jsonable(value: object) -> JSONValue:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot write {type(value).__name__} to cohort.json")


def _cohort_json(seed: int, requested: JSONValue, counts: dict[str, int], sites: tuple[SiteSpec, ...]) -> str:
    events: list[JSONValue] = [
        {
            "kind": "software_update",
            "site": s.name,
            "date": s.update.date.isoformat(),
            "software_versions_before": s.software_versions,
            "software_versions_after": s.update.software_versions,
            "processing_before": s.processing.name,
            "processing_after": s.update.processing.name,
            "note": s.update.note,
        }
        for s in sites
        if s.update is not None
    ]
    info: JSONObject = {
        "synthetic": True,
        "description": "SYNTHETIC chest radiograph phantoms generated by Vigil; no patient data.",
        "generator": "core.sampledata.generate_cohort",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "studies_per_site": requested,
        "studies": {name: counts[name] for name in counts},
        "benchmark_site": next(s.name for s in SITES if s.is_benchmark),
        "events": events,
        "sites": [_jsonable(asdict(s)) for s in sites],
    }
    return json.dumps(info, indent=2, sort_keys=True) + "\n"


def _readme(
    out_dir: Path,
    seed: int,
    requested: JSONValue,
    counts: dict[str, int],
    sites: tuple[SiteSpec, ...],
) -> str:
    call = f"generate_cohort(Path({out_dir.name!r}), seed={seed}, studies_per_site={requested!r})"
    table = "\n".join(
        f"| {s.name} | {'benchmark' if s.is_benchmark else 'deployment'} | {s.detector.manufacturer} "
        f"{s.detector.model_name} | {_device_kind(s)}, {s.detector.photometric}, {s.detector.bits_stored} bit | "
        f"{s.detector.matrix} px at {s.detector.pixel_spacing_mm:g} mm | {s.technique.kvp_pa:g} / "
        f"{s.technique.kvp_ap:g} | {s.patients.ap_fraction:.0%} | {s.patients.prevalence:.0%} | {counts[s.name]} |"
        for s in sites
    )
    updates = "\n".join(
        f"- `{s.name}`: software update on {s.update.date.isoformat()} "
        f"(`{s.software_versions}` -> `{s.update.software_versions}`): {s.update.note}."
        for s in sites
        if s.update is not None
    )
    syntaxes = "; ".join(f"{s.name} {TRANSFER_SYNTAX_NAMES[s.detector.transfer_syntax]}" for s in sites)
    return _README_TEMPLATE.format(
        call=call, sites=table, updates=updates, total=sum(counts.values()), syntaxes=syntaxes
    )


def _device_kind(site: SiteSpec) -> str:
    """The detector's modality, and what its objects say when that differs (``"DX sent as CR"``)."""
    det = site.detector
    return det.modality if det.object_modality == det.modality else f"{det.modality} sent as {det.object_modality}"


_README_TEMPLATE: Final = """# SYNTHETIC cohort: not patient data

Every image here is a **synthetic chest radiograph phantom** generated by Vigil
(`core.sampledata`). No image, name, date or identifier belongs to a real person. Each file says so
in `ImageComments` and `PatientComments` ("SYNTHETIC PHANTOM"). A model trained on it is a
demonstration model only.

Regenerate exactly (same bytes) from the repository root:

```
.venv/bin/python -c "from pathlib import Path; from core.sampledata import generate_cohort; {call}"
```

({total} studies.) Phantoms are stored on a coarse grid (1.3 to 1.75 mm pixels, 224 to 320 pixels
a side) rather than a real detector's 0.1 to 0.2 mm, to keep the cohort small; `PixelSpacing`
states the stored grid.

| site | role | device | detector | stored grid | kVp PA / AP | portable AP | prevalence | studies |
|---|---|---|---|---|---|---|---|---|
{sites}

{updates}

What differs between sites is acquisition physics and patients only (vendor processing curve, quantum
noise, detector blur, scatter and grid, kVp, resolution, bit depth, MONOCHROME1, portable share with
its ECG electrodes and lines, age, prevalence), chosen as plausible values. Three changes followed
measurements with a demonstration model, and so are fitted to a model figure: because the deployment
AUC gaps came out bunched near 0 and at 0.2, `harbor` moved from a 125 kV to a 90 kV technique (more
rib contrast); because the `riverside` update moved scores too little for a week of studies to show
it, its range compression rose from 0.6 to 0.85 (the update now breaks the model's calibration, as
processing updates do); and when the bundled model was retrained in double precision with a
localization term, that model proved less disturbed by the update (its score monitors took 8 days
instead of 6), so the range compression rose again, to 0.9, the smallest step that gave 6 days. Nodules
(5 to 15 mm, solid or part-solid) are drawn with 8 times their physical contrast so that a small
demonstration model can learn them from a few hundred phantoms (see
`core.sampledata.anatomy.NODULE_CONSPICUITY`); they look like dense nodules.

Files:

- `dicom/<site>/*.dcm`: DX (For Presentation) or CR images, each site in its device's lossless
  transfer syntax: {syntaxes}.
- `manifest.csv`: one row per study: UIDs, file path and the file's SHA-256 (readers refuse a
  file that no longer matches), site, split (benchmark train/val/test or
  deployment), date, label (1 = nodule), view, patient age/sex, acquisition (kVp, mAs, dose, grid),
  software version and processing in force, nodule size/density/centre, lesion pixel count.
- `masks.npz`: boolean lesion masks (rows x columns of the stored image) of the positive studies,
  keyed by SOP Instance UID; negatives have no key.
- `cohort.json`: site definitions (vendor, detector, technique, processing, patient mix) and
  dated events such as the software update.
- `outcomes/`: SYNTHETIC EMR outcomes of the deployment-site studies as FHIR R4 (one collection
  Bundle per site, notes of one site as bulk-data NDJSON): delayed, partly missing, sometimes
  conflicting with the ground truth. `vigil sample-data` writes them (`core.sampledata.fhir_outcomes`);
  see `outcomes/README.md`.
"""
