"""The synthetic cohort: determinism, DICOM validity, designed site differences, update date, masks."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest

from core.errors import BadInputError, DicomRejectedError
from core.imaging.dicom import read_dicom
from core.models.preprocess import PreprocessParams, preprocess
from core.sampledata import (
    MANIFEST_NAME,
    MASKS_NAME,
    SITES,
    CohortSummary,
    ManifestRow,
    generate_cohort,
    read_manifest,
    read_masks,
    site_by_name,
)

UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
STUDIES_PER_SITE = 6


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> CohortSummary:
    return generate_cohort(tmp_path_factory.mktemp("cohort"), seed=3, studies_per_site=STUDIES_PER_SITE)


@pytest.fixture(scope="module")
def rows(cohort: CohortSummary) -> list[ManifestRow]:
    return read_manifest(cohort.manifest_path)


def _noise(path: Path) -> float:
    """Robust noise estimate: median absolute second difference of the preprocessed image."""
    img = preprocess(read_dicom(path).pixels, PreprocessParams())[0]
    lap = img[1:-1, 1:-1] * 4 - img[:-2, 1:-1] - img[2:, 1:-1] - img[1:-1, :-2] - img[1:-1, 2:]
    return float(np.median(np.abs(lap)))


def test_summary_and_layout(cohort: CohortSummary, rows: list[ManifestRow]) -> None:
    # Execute: (the fixture generated the cohort)
    # Assert
    assert cohort.n_studies == len(rows) == STUDIES_PER_SITE * len(SITES)
    assert cohort.sites == tuple(s.name for s in SITES)
    for name in (MANIFEST_NAME, MASKS_NAME, "cohort.json", "README.md"):
        assert (cohort.out_dir / name).is_file()
    assert "SYNTHETIC" in (cohort.out_dir / "README.md").read_text(encoding="utf-8")
    assert json.loads((cohort.out_dir / "cohort.json").read_text(encoding="utf-8"))["synthetic"] is True


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    # Prepare
    a, b = tmp_path / "a", tmp_path / "b"
    # Execute
    generate_cohort(a, seed=11, studies_per_site=2)
    generate_cohort(b, seed=11, studies_per_site=2)
    generate_cohort(tmp_path / "c", seed=12, studies_per_site=2)
    # Assert
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 * len(SITES) + 4
    for rel in files:
        # The README names its own folder in the regeneration command; everything else is equal.
        theirs = (b / rel).read_bytes().replace(b"Path('b')", b"Path('a')")
        assert (a / rel).read_bytes() == theirs, rel
    assert (a / MANIFEST_NAME).read_bytes() != (tmp_path / "c" / MANIFEST_NAME).read_bytes()


def test_manifest_records_each_files_sha256_and_reads_check_it(cohort: CohortSummary, rows: list[ManifestRow]) -> None:
    # Assert: the manifest names the bytes, so its own SHA-256 names the images too
    for row in rows:
        assert row.file_sha256 == hashlib.sha256((cohort.out_dir / row.path).read_bytes()).hexdigest()
        read_dicom(cohort.out_dir / row.path, sha256=row.file_sha256)  # the recorded hash passes
    # Execute / Assert: a file that is not the one recorded is refused, naming file and hashes
    other = rows[1].file_sha256
    with pytest.raises(
        DicomRejectedError, match=f"{re.escape(rows[0].path)}.*SHA-256 is {rows[0].file_sha256}, not the {other}"
    ):
        read_dicom(cohort.out_dir / rows[0].path, sha256=other)


def test_files_are_valid_dicom_read_through_the_ingest_reader(cohort: CohortSummary, rows: list[ManifestRow]) -> None:
    for row in rows:
        # Execute
        image = read_dicom(cohort.out_dir / row.path)
        meta = image.meta
        # Assert
        assert image.pixels.shape == (row.rows, row.columns)
        for uid in (meta.sop_instance_uid, meta.study_instance_uid, meta.series_instance_uid, meta.sop_class_uid):
            assert UID.match(uid) and len(uid) <= 64, uid
        assert (meta.sop_instance_uid, meta.study_instance_uid) == (row.sop_instance_uid, row.study_uid)
        assert meta.modality in {"DX", "CR"} and meta.body_part_examined == "CHEST"
        assert meta.view_position == row.view_position in {"PA", "AP"}
        assert meta.image_type[0] == "ORIGINAL"
        assert meta.manufacturer == row.manufacturer and meta.manufacturer_model_name and meta.station_name
        assert meta.institution_name and meta.protocol_name and meta.accession_number and meta.patient_id
        assert re.fullmatch(r"\d{3}Y", meta.patient_age) and meta.patient_sex in {"F", "M"}
        assert meta.kvp == row.kvp and meta.study_date == row.study_date.replace("-", "")
        assert meta.pixel_spacing_mm == (row.pixel_spacing_mm, row.pixel_spacing_mm)
        assert meta.bits_stored is not None and 12 <= meta.bits_stored <= 16
        assert meta.software_versions == row.software_versions
        assert meta.window_center is not None and meta.window_width is not None


def test_files_say_they_are_synthetic(cohort: CohortSummary, rows: list[ManifestRow]) -> None:
    # Execute
    ds = pydicom.dcmread(cohort.out_dir / rows[0].path, stop_before_pixels=True)
    # Assert
    assert "SYNTHETIC PHANTOM" in ds.ImageComments


def test_each_site_writes_its_devices_lossless_transfer_syntax(cohort: CohortSummary, rows: list[ManifestRow]) -> None:
    # Execute
    written = {
        r.site: str(pydicom.dcmread(cohort.out_dir / r.path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        for r in rows
    }
    # Assert: sites differ in syntax too, and a compressed file decodes to the values it was written from
    assert written == {s.name: s.detector.transfer_syntax for s in SITES}
    assert {
        pydicom.uid.JPEG2000Lossless,
        pydicom.uid.JPEGLSLossless,
        pydicom.uid.DeflatedExplicitVRLittleEndian,
    } <= set(written.values())
    compressed = next(r for r in rows if written[r.site] == pydicom.uid.JPEG2000Lossless)
    ds = pydicom.dcmread(cohort.out_dir / compressed.path)
    assert ds.LossyImageCompression == "00" and int(ds.pixel_array.max()) < 2**ds.BitsStored


def test_per_site_counts_generate_only_the_sites_named(tmp_path: Path) -> None:
    # Execute
    summary = generate_cohort(tmp_path, seed=0, studies_per_site={"riverside": 3, "benchmark": 1})
    # Assert
    sites = [r.site for r in read_manifest(summary.manifest_path)]
    assert sorted(sites) == ["benchmark", "riverside", "riverside", "riverside"]
    info = json.loads((tmp_path / "cohort.json").read_text(encoding="utf-8"))
    assert info["studies"] == {"benchmark": 1, "riverside": 3}
    assert "studies_per_site={'riverside': 3, 'benchmark': 1}" in (tmp_path / "README.md").read_text(encoding="utf-8")


def test_sites_differ_as_designed(cohort: CohortSummary, rows: list[ManifestRow]) -> None:
    # Prepare
    by_site = {s.name: [r for r in rows if r.site == s.name] for s in SITES}
    # Execute
    noise = {name: np.mean([_noise(cohort.out_dir / r.path) for r in site_rows]) for name, site_rows in by_site.items()}
    # Assert: the CR plate with few quanta and strong edge enhancement is noisier than the benchmark's DR panel
    assert noise["eastgate"] > 1.25 * noise["benchmark"]
    assert {r.photometric for r in by_site["eastgate"]} == {"MONOCHROME1"}
    assert {r.photometric for r in by_site["benchmark"]} == {"MONOCHROME2"}
    assert len({r.manufacturer for r in rows}) == len(SITES)
    assert len({(r.rows, r.pixel_spacing_mm) for r in rows}) >= 4
    assert {r.split for r in by_site["benchmark"]} <= {"train", "val", "test"}
    assert all(r.split == "deployment" for r in rows if not r.is_benchmark)


def test_update_site_changes_software_exactly_on_the_update_date(rows: list[ManifestRow]) -> None:
    # Prepare
    site = next(s for s in SITES if s.update is not None)
    assert site.update is not None
    site_rows = [r for r in rows if r.site == site.name]
    # Execute
    before = {r.software_versions for r in site_rows if date.fromisoformat(r.study_date) < site.update.date}
    after = {r.software_versions for r in site_rows if date.fromisoformat(r.study_date) >= site.update.date}
    # Assert: both sides are present in even a small cohort, and each side has one version
    assert before == {site.software_versions}
    assert after == {site.update.software_versions}
    assert site_by_name(site.name).software_on(site.update.date) == site.update.software_versions


def test_masks_align_with_positives(cohort: CohortSummary, rows: list[ManifestRow]) -> None:
    # Execute
    masks = read_masks(cohort.out_dir / MASKS_NAME)
    # Assert
    positives = [r for r in rows if r.label == 1]
    assert positives and set(masks) == {r.sop_instance_uid for r in positives}
    for row in positives:
        mask = masks[row.sop_instance_uid]
        assert mask.shape == (row.rows, row.columns) and int(mask.sum()) == row.lesion_pixels > 0
        assert row.nodule_row is not None and row.nodule_col is not None
        assert mask[round(row.nodule_row), round(row.nodule_col)]
    for row in rows:
        if row.label == 0:
            assert row.lesion_pixels == 0 and row.nodule_diameter_mm is None


def test_manifest_round_trips(cohort: CohortSummary, rows: list[ManifestRow]) -> None:
    # Execute
    with cohort.manifest_path.open(encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    # Assert
    assert header[:6] == ["study_uid", "series_uid", "sop_instance_uid", "path", "file_sha256", "site"]
    assert all(isinstance(r.label, int) and isinstance(r.is_benchmark, bool) for r in rows)


@pytest.mark.parametrize(
    ("seed", "studies", "named"),
    [
        (-1, None, "-1"),
        (0, 0, "0"),
        (0, {"riverside": 0}, "riverside"),
        (0, {"lakeside": 2}, "lakeside"),
        (0, {}, "no site"),
    ],
)
def test_bad_arguments_are_rejected(
    tmp_path: Path, seed: int, studies: int | dict[str, int] | None, named: str
) -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match=named):
        generate_cohort(tmp_path, seed=seed, studies_per_site=studies)
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_progress_is_reported(tmp_path: Path) -> None:
    # Prepare
    calls: list[tuple[int, int]] = []
    # Execute
    generate_cohort(tmp_path, seed=0, studies_per_site=1, progress=lambda done, total: calls.append((done, total)))
    # Assert
    assert calls == [(i, len(SITES)) for i in range(1, len(SITES) + 1)]
