"""The cohort's ground truth on disk: ``manifest.csv`` (one row per study) and ``masks.npz``.

``manifest.csv`` is the contract other code reads (training, the outcome bundles, the metric
checks): its columns are the fields of :class:`ManifestRow`, in order, with booleans as ``0``/``1``,
dates as ISO ``YYYY-MM-DD`` and absent values (the nodule of a negative study) as empty cells.
``masks.npz`` holds one boolean array of shape (rows, columns) per positive study, keyed by
SOP Instance UID; a negative study has no key (its mask is empty). Both files are written
byte-for-byte reproducibly (fixed zip timestamps), and each row holds the SHA-256 of its DICOM
file, so a manifest's SHA-256 names a cohort, images included: regenerating one image with other
processing changes the manifest too, and readers refuse a file whose bytes no longer match.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Final

import numpy as np

from core.errors import BadInputError
from core.types import BoolArray

__all__ = ["MANIFEST_NAME", "MASKS_NAME", "ManifestRow", "read_manifest", "read_masks", "write_manifest", "write_masks"]

MANIFEST_NAME: Final = "manifest.csv"
MASKS_NAME: Final = "masks.npz"
_ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class ManifestRow:
    """Ground truth and acquisition record of one synthetic study.

    Attributes
    ----------
    path : str
        The DICOM file, relative to the cohort folder (POSIX separators).
    file_sha256 : str
        SHA-256 of the DICOM file's bytes (lower-case hex).
    split : str
        ``"train"``, ``"val"`` or ``"test"`` at the benchmark site; ``"deployment"`` elsewhere.
    label : int
        1 when the phantom holds a nodule.
    processing : str
        The vendor processing in force on the study date (changes at a software update).
    dose_factor : float
        Detector dose relative to the site's nominal exposure.
    nodule_diameter_mm, nodule_density : float or None
        Diameter and density (relative to water) of the nodule; None for negatives.
    nodule_row, nodule_col : float or None
        Nodule centre on the stored pixel grid.
    lesion_pixels : int
        Pixels in the lesion mask (0 for negatives).
    """

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    path: str
    file_sha256: str
    site: str
    is_benchmark: bool
    split: str
    study_date: str
    label: int
    view_position: str
    patient_id: str
    patient_age: int
    patient_sex: str
    accession_number: str
    manufacturer: str
    model_name: str
    software_versions: str
    processing: str
    kvp: float
    mas: float
    dose_factor: float
    grid: bool
    pixel_spacing_mm: float
    rows: int
    columns: int
    bits_stored: int
    photometric: str
    nodule_diameter_mm: float | None
    nodule_density: float | None
    nodule_row: float | None
    nodule_col: float | None
    lesion_pixels: int
    n_electrodes: int
    n_lines: int
    n_granulomas: int


_COLUMNS: Final = tuple(f.name for f in fields(ManifestRow))
_BOOL: Final = frozenset({"is_benchmark", "grid"})
_INT: Final = frozenset(
    {
        "label",
        "patient_age",
        "rows",
        "columns",
        "bits_stored",
        "lesion_pixels",
        "n_electrodes",
        "n_lines",
        "n_granulomas",
    }
)
_FLOAT: Final = frozenset({"kvp", "mas", "dose_factor", "pixel_spacing_mm"})
_OPTIONAL_FLOAT: Final = frozenset({"nodule_diameter_mm", "nodule_density", "nodule_row", "nodule_col"})


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_manifest(rows: Iterable[ManifestRow], path: Path) -> None:
    """Write ``rows`` as CSV: a header row first, Unix line ends."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for row in rows:
        writer.writerow([_cell(v) for v in astuple(row)])
    path.write_text(buf.getvalue(), encoding="utf-8")


def _parse(name: str, text: str) -> object:
    if name in _BOOL:
        return text == "1"
    if name in _INT:
        return int(text)
    if name in _FLOAT:
        return float(text)
    if name in _OPTIONAL_FLOAT:
        return float(text) if text else None
    return text


def read_manifest(path: Path) -> list[ManifestRow]:
    """Read a manifest written by :func:`write_manifest`.

    Raises
    ------
    BadInputError
        The file is missing, is not UTF-8 CSV text, lacks a column, or holds a value of the wrong type.
    """
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            records = list(csv.DictReader(fh))
    except OSError as exc:
        raise BadInputError(f"cannot read cohort manifest {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise BadInputError(f"cohort manifest {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except csv.Error as exc:
        raise BadInputError(f"cohort manifest {path} is not a CSV file: {exc}") from exc
    if records and (missing := sorted(set(_COLUMNS) - records[0].keys())):
        raise BadInputError(f"cohort manifest {path} lacks columns: {', '.join(missing)}")
    try:
        return [ManifestRow(**{name: _parse(name, rec[name]) for name in _COLUMNS}) for rec in records]  # type: ignore[arg-type]
    except ValueError as exc:
        raise BadInputError(f"cohort manifest {path} holds a malformed value: {exc}") from exc


def write_masks(masks: Mapping[str, BoolArray], path: Path) -> None:
    """Write boolean masks to a compressed ``.npz`` keyed by SOP Instance UID, reproducibly.

    ``numpy.savez_compressed`` stamps each member with the current time; this writer uses a fixed
    date so that the same masks always give the same bytes. ``numpy.load`` reads the result.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for uid in sorted(masks):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(masks[uid], dtype=bool), allow_pickle=False)
            info = zipfile.ZipInfo(f"{uid}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def read_masks(path: Path) -> dict[str, BoolArray]:
    """All masks of a cohort, keyed by SOP Instance UID (negatives have no key)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: np.asarray(data[key], dtype=bool) for key in data.files}
