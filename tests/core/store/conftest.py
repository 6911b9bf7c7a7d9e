"""Builders for store tests: headers of fake DICOM files and a small seeded database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime

import pytest

from core.imaging.spacing import SpacingSource
from core.store import model_versions, sites, studies
from core.store.engine import SessionFactory
from core.store.studies import InstanceIn, StudyIn

STUDY = StudyIn(
    study_uid="1.2.826.0.1.3680043.8.498.1",
    patient_id="PAT001",
    accession_number="ACC001",
    study_date=date(2024, 4, 30),
    modality="DX",
    body_part="CHEST",
    view_position="PA",
    manufacturer_raw="ACME Medical Systems",
    vendor="ACME",
    vendor_mapped=True,
    manufacturer_model_name="Ray 9000",
    station_name="XR1",
    institution_name="North General",
    software_versions="4.2.1",
    protocol_name="Chest PA",
    patient_age="054Y",
    patient_sex="F",
    kvp=120.0,
)

INSTANCE = InstanceIn(
    sop_instance_uid="1.2.826.0.1.3680043.8.498.1.1",
    series_uid="1.2.826.0.1.3680043.8.498.1.0",
    sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
    path="/data/north/1.dcm",
    sha256="a" * 64,
    rows=2048,
    columns=2048,
    pixel_spacing_row=0.139,
    pixel_spacing_col=0.139,
    photometric="MONOCHROME2",
    transfer_syntax_uid="1.2.840.10008.1.2.1",
    spacing_source=SpacingSource.PIXEL_SPACING,
)


def study_in(n: int, **changes: object) -> StudyIn:
    """Return study header number ``n`` (unique UID), with ``changes`` applied."""
    return replace(STUDY, study_uid=f"{STUDY.study_uid}{n}", **changes)  # type: ignore[arg-type]


def instance_in(n: int, *, study: int = 0, **changes: object) -> InstanceIn:
    """Return instance header number ``n`` of study ``study`` (unique UID and hash)."""
    return replace(
        INSTANCE,
        sop_instance_uid=f"{STUDY.study_uid}{study}.{n}",
        sha256=f"{n:064x}",
        path=f"/data/{study}/{n}.dcm",
        **changes,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Seeded:
    """Keys of :func:`seeded`'s rows."""

    north_id: int
    south_id: int
    model_version_id: int
    other_model_version_id: int
    instance_ids: tuple[int, ...]  # 0, 1 at north (study 0, 1); 2 at south (study 2)


@pytest.fixture
def seeded(session_factory: SessionFactory, now: datetime) -> Seeded:
    """Commit two sites, two model versions and three instances in three studies."""
    with session_factory.begin() as session:
        north = sites.add_site(session, "north", now=now)
        south = sites.add_site(session, "south", now=now)
        mv1 = model_versions.register(session, version="v1", card={"version": "v1"}, weights_sha256="1" * 64, now=now)
        mv2 = model_versions.register(session, version="v2", card={"version": "v2"}, weights_sha256="2" * 64, now=now)
        ids = [
            studies.add_study_with_instance(
                session, site_id=site_id, study=study_in(i), instance=instance_in(i, study=i), now=now
            ).instance.id
            for i, site_id in enumerate([north.id, north.id, south.id])
        ]
    return Seeded(north.id, south.id, mv1.id, mv2.id, tuple(ids))


@pytest.fixture
def new_study() -> Callable[..., StudyIn]:
    """Return the :func:`study_in` builder."""
    return study_in


@pytest.fixture
def new_instance() -> Callable[..., InstanceIn]:
    """Return the :func:`instance_in` builder."""
    return instance_in
