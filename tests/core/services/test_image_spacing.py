"""Which spacing a stored film is measured with: PixelSpacing, else ImagerPixelSpacing ("at detector").

CR and DX films often carry ImagerPixelSpacing (0018,1164) and no PixelSpacing. Before, the store
kept PixelSpacing only, so such a film's lengths could only be read in pixels. Each film here is a
phantom from the cohort generator (which writes both attributes) re-saved with one or both
removed, then ingested and opened through the same services the review viewer uses.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select

from core.imaging.spacing import MeasurementSpacing, SpacingSource
from core.services import ingestion, review
from core.services.permissions import Role, SignedInUser
from core.store.tables import InstanceRow
from tests.core.services.conftest import Env
from ui.components.dicom_viewer.payload import length_unit, spacing_note

RADIOLOGIST = SignedInUser("radiologist", Role.RADIOLOGIST)


def _film(small_cohort: Path, out: Path, *, pixel: bool, imager: str | None) -> tuple[Path, str]:
    """A benchmark phantom re-saved with PixelSpacing kept or removed and ImagerPixelSpacing set or removed."""
    source = sorted((small_cohort / "dicom" / "benchmark").glob("*.dcm"))[0]
    ds = pydicom.dcmread(source)
    if not pixel:
        del ds.PixelSpacing
    if imager is None:
        del ds.ImagerPixelSpacing
    else:
        ds.ImagerPixelSpacing = [imager, imager]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "film.dcm"
    ds.save_as(path)
    return path, str(ds.StudyInstanceUID)


def _ingest(env: Env, path: Path) -> None:
    report = ingestion.ingest_paths(env.sf, [path], site="benchmark", dicom_dir=env.dicom_dir, actor="t", now=env.now)
    assert len(report.ingested) == 1, report


@pytest.mark.parametrize(
    ("pixel", "imager", "expected"),
    [
        # only ImagerPixelSpacing: measured at the detector, and said so
        (False, "0.148", MeasurementSpacing(0.148, 0.148, SpacingSource.IMAGER_PIXEL_SPACING)),
        # both, different: PixelSpacing wins and was calibrated by the sender (PS3.3 10.7.1.1)
        (True, "0.148", MeasurementSpacing(1.6, 1.6, SpacingSource.PIXEL_SPACING_CALIBRATED)),
        # neither: lengths in pixels
        (False, None, None),
    ],
    ids=["imager-only", "both", "neither"],
)
def test_the_case_carries_the_spacing_and_the_attribute_it_came_from(
    env: Env,
    small_cohort: Path,
    tmp_path: Path,
    pixel: bool,
    imager: str | None,
    expected: MeasurementSpacing | None,
) -> None:
    # Prepare
    path, study_uid = _film(small_cohort, tmp_path / "in", pixel=pixel, imager=imager)

    # Execute
    _ingest(env, path)
    info = review.open_case(env.sf, RADIOLOGIST, study_uid)

    # Assert: the case view, the stored row and the viewer's words agree
    assert info.study.spacing == expected
    with env.sf() as session:
        stored = session.execute(select(InstanceRow.spacing_source)).scalar_one()
    assert stored == (None if expected is None else str(expected.source))
    if expected is not None and expected.source.at_detector:
        assert length_unit(info.study.spacing) == "mm at detector"
        assert spacing_note(info.study.spacing).startswith("Lengths in mm at detector, from ImagerPixelSpacing")
    elif expected is not None:
        assert length_unit(info.study.spacing) == "mm calibrated"
        assert spacing_note(info.study.spacing).startswith("Lengths in mm calibrated by the sender: PixelSpacing (1.6")
    else:
        assert length_unit(info.study.spacing) == "px"
