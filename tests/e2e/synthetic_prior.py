"""A SYNTHETIC prior study for one patient of a test installation (the sample cohort has no repeat patients).

The first live study of the cohort is re-saved under new UIDs, mirrored left to right (so it is
visibly another film), with an accession ``SYN-P<days>-…``, the same PatientID, a date ``days``
(:data:`PRIOR_DAYS` unless given) earlier and a description saying it is a test fixture; it is
ingested through the ordinary gate and scored by the installation's serving model.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from core.services import ingestion, models, prediction, review
from core.services.permissions import Role, SignedInUser
from tests.ui.installation import Installation, clock
from ui.components.dicom_viewer.payload import film_label

__all__ = ["PRIOR_DAYS", "Pair", "add_synthetic_prior"]

RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)
PRIOR_DAYS = 400


@dataclass(frozen=True)
class Pair:
    """A live study and the synthetic prior added for its patient."""

    current_uid: str
    prior_uid: str
    current_label: str  # as the viewer must label each film
    prior_label: str


def add_synthetic_prior(inst: Installation, out: Path, *, days: int = PRIOR_DAYS) -> Pair:
    """Ingest and score a SYNTHETIC prior, ``days`` before the first live study of the cohort (test fixture only)."""
    with (inst.cohort_dir / "manifest.csv").open(newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["is_benchmark"] == "0" and r["study_date"])
    ds = pydicom.dcmread(inst.cohort_dir / row["path"])
    day = date.fromisoformat(row["study_date"]) - timedelta(days=days)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.AccessionNumber = f"SYN-P{days}-{row['accession_number']}"[:16]
    ds.StudyDate = ds.SeriesDate = day.strftime("%Y%m%d")
    ds.StudyDescription = "SYNTHETIC prior (test fixture)"
    # Mirrored, so that the prior is visibly another film (the random test model scores both alike).
    mirrored = np.ascontiguousarray(np.fliplr(ds.pixel_array))
    ds.set_pixel_data(mirrored, photometric_interpretation=ds.PhotometricInterpretation, bits_stored=ds.BitsStored)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "synthetic-prior.dcm"
    ds.save_as(path)
    sf = inst.session_factory()
    site, dicom_dir = row["site"], inst.home / "dicom"
    report = ingestion.ingest_paths(sf, [path], site=site, dicom_dir=dicom_dir, actor="test", now=clock)
    assert len(report.ingested) == 1, report
    model = models.load_serving(sf, models_dir=inst.home / "models")
    prediction.predict_pending(sf, model, site=site, batch_size=4, actor="test", now=clock)
    current = review.open_case(sf, RADIOLOGIST, row["study_uid"])
    prior = review.open_case(sf, RADIOLOGIST, str(ds.StudyInstanceUID))
    assert prior.prediction is not None and prior.prediction.score is not None, "the synthetic prior was not scored"
    return Pair(row["study_uid"], str(ds.StudyInstanceUID), film_label("Current", current), film_label("Prior", prior))
