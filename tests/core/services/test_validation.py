"""The pilot-drift service on a seeded store whose site gaps are known by construction.

``seed_pilot_cohort`` writes sites, a serving model version, studies with one scored instance
each and ground-truth labels straight through the store (no DICOM, no network): a benchmark,
a site as good as the benchmark, a site whose software update halves the model's separation,
and a site with too few labels. The UI test reuses it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from core.audit.events import AuditAction
from core.errors import BadInputError, UnknownSiteError
from core.imaging.spacing import SpacingSource
from core.metrics import DriftOptions, GapStatus
from core.services import validation
from core.store import audit_log, model_versions, outcomes, predictions, sites, studies
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.outcomes import OutcomeIn, OutcomeSource
from core.store.predictions import PredictionIn
from core.store.studies import InstanceIn, StudyIn

MANIFEST_SHA = "f" * 64
VERSION = "pilot-test-1.0"
UPDATE = date(2025, 5, 12)


def clock() -> datetime:
    return datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SiteDesign:
    name: str
    n: int
    separation: float
    software: str = "v4.3.1"
    vendor: str = "GE"
    protocol: str = "XR CHEST PA"
    n_unlabelled: int = 0
    separation_after_update: float | None = None


DESIGN = (
    SiteDesign("benchmark", 490, 2.6),
    SiteDesign("northfield", 300, 2.6, vendor="GE", protocol="Chest PA", n_unlabelled=60),
    SiteDesign("riverside", 400, 2.6, vendor="Philips", protocol="Thorax PA", separation_after_update=0.6),
    SiteDesign("harbor", 12, 2.6, vendor="Siemens", protocol="Thorax p.a.", n_unlabelled=10),
)


def _study(site: SiteDesign, i: int, uid: str, day: date, software: str) -> StudyIn:
    return StudyIn(
        study_uid=uid,
        patient_id=f"{site.name[:2].upper()}-{i:05d}",
        accession_number=f"A{i}",
        study_date=day,
        modality="DX",
        body_part="CHEST",
        view_position="PA",
        manufacturer_raw=site.vendor,
        vendor=site.vendor,
        vendor_mapped=True,
        manufacturer_model_name="Detector X",
        station_name="XR1",
        institution_name=site.name,
        software_versions=software,
        protocol_name=site.protocol,
        patient_age=f"{40 + i % 45:03d}Y",
        patient_sex="F" if i % 2 else "M",
        kvp=120.0,
    )


def _instance(study_uid: str, i: int) -> InstanceIn:
    return InstanceIn(
        study_uid + ".1",
        study_uid + ".0",
        "1.2.840.10008.5.1.4.1.1.1.1",
        f"/d/{i}.dcm",
        f"{i:064x}",
        256,
        256,
        1.6,
        1.6,
        "MONOCHROME2",
        "1.2.840.10008.1.2.1",
        SpacingSource.PIXEL_SPACING,
    )


def seed_pilot_cohort(sf: SessionFactory, *, seed: int = 0, design: tuple[SiteDesign, ...] = DESIGN) -> None:
    """Commit the designed cohort (see the module docstring) in one transaction."""
    rng = np.random.default_rng(seed)
    now = clock()
    card = {"version": VERSION, "operating_threshold": 0.5, "training_data": {"manifest_sha256": MANIFEST_SHA}}
    counter = 0
    with sf.begin() as session:
        mv = model_versions.register(session, version=VERSION, card=card, weights_sha256="0" * 64, now=now)
        model_versions.set_serving(session, VERSION)
        for site in design:
            rec = sites.add_site(session, site.name, is_benchmark=site.name == "benchmark", now=now)
            for i in range(site.n + site.n_unlabelled):
                counter += 1
                day = date(2025, 3, 3) + timedelta(days=int(120 * i / (site.n + site.n_unlabelled)))
                updated = site.separation_after_update is not None and day >= UPDATE
                software = "v5.1.0 UNIQUE2" if updated else site.software
                separation = site.separation_after_update if updated else site.separation
                y = int(rng.random() < 0.3)
                score = float(1.0 / (1.0 + np.exp(-(rng.normal() + separation * y - 1.2))))
                uid = f"1.2.826.0.1.3680043.10.{counter}"
                stored = studies.add_study_with_instance(
                    session,
                    site_id=rec.id,
                    study=_study(site, i, uid, day, software),
                    instance=_instance(uid, counter),
                    now=now,
                )
                predictions.add_prediction(
                    session,
                    PredictionIn(stored.instance.id, mv.id, None, score, score >= 0.5, 0.5, 1.0, "cpu"),
                    now=now,
                )
                if i < site.n:
                    split = "train" if site.name == "benchmark" and i % 7 == 0 else "test"
                    outcomes.add_outcome(
                        session,
                        OutcomeIn(
                            stored.study.id,
                            OutcomeSource.GROUND_TRUTH,
                            bool(y),
                            f"manifest:{MANIFEST_SHA}",
                            "seed",
                            detail=f"split={split}",
                        ),
                        now=now,
                    )


@pytest.fixture(scope="module")
def pilot_sf(tmp_path_factory: pytest.TempPathFactory) -> SessionFactory:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('pilot') / 'vigil.db'}")
    migrate(engine)
    sf = make_session_factory(engine)
    seed_pilot_cohort(sf)
    return sf


@pytest.fixture(scope="module")
def report(pilot_sf: SessionFactory) -> validation.ValidationReport:
    return validation.validate(pilot_sf, options=DriftOptions(n_resamples=200), actor="t", now=clock, record=False)


def test_designed_pattern_comes_out_of_the_computation(report: validation.ValidationReport) -> None:
    # Execute
    by_site = {s.site: s for s in report.drift.sites}

    # Assert: northfield within, riverside outside, harbor not enough data, and the gate fails
    assert by_site["northfield"].status is GapStatus.WITHIN
    assert by_site["riverside"].status is GapStatus.OUTSIDE
    assert by_site["harbor"].status is GapStatus.NOT_ENOUGH_DATA and by_site["harbor"].auc is None
    assert report.drift.failing_sites == ("riverside",)
    assert not report.passed


def test_software_strata_separate_before_and_after_the_update(report: validation.ValidationReport) -> None:
    # Execute
    rows = {r.level: r for r in report.drift.strata if r.site == "riverside" and r.dimension == "software"}

    # Assert
    before, after = rows["v4.3.1"], rows["v5.1.0 UNIQUE2"]
    assert before.status is GapStatus.WITHIN and after.status is GapStatus.OUTSIDE
    assert after.gap is not None and before.gap is not None and after.gap.lower > before.gap.upper


def test_protocols_are_harmonized_across_sites(report: validation.ValidationReport) -> None:
    # Execute
    levels = {r.level for r in report.drift.strata if r.dimension == "protocol"}

    # Assert: "XR CHEST PA", "Chest PA", "Thorax PA" and "Thorax p.a." are one protocol
    assert levels == {"Chest PA"}
    assert report.unmapped == ()


def test_training_studies_are_left_out_and_unlabelled_are_unknown(report: validation.ValidationReport) -> None:
    # Execute
    counts = {c.site: c for c in report.labels}

    # Assert
    assert counts["benchmark"].n_excluded_training == 70  # every 7th of 490
    assert report.drift.benchmark.n_labelled == 420
    assert counts["northfield"].n_unlabelled == 60 and counts["northfield"].n_labelled == 300
    assert counts["northfield"].by_source == {"ground_truth": 300}


def test_json_keeps_the_contract_and_has_no_nan(report: validation.ValidationReport) -> None:
    # Execute
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))

    # Assert
    assert isinstance(data["sites"], list) and {s["site"] for s in data["sites"]} == {
        "northfield",
        "riverside",
        "harbor",
    }
    assert data["passed"] is False and data["failing_sites"] == ["riverside"]
    assert data["labels"][0]["site"] == "benchmark"


def test_recorded_run_writes_its_verdict_to_the_ledger(pilot_sf: SessionFactory) -> None:
    # Execute
    validation.validate(pilot_sf, sites=["northfield"], options=DriftOptions(n_resamples=50), actor="ci", now=clock)

    # Assert
    with pilot_sf() as session:
        last = audit_log.last_entry(session)
    assert last is not None and last.action is AuditAction.VALIDATION_REPORTED
    assert last.payload["passed"] is True and last.actor == "ci"


def test_unknown_site_is_named(pilot_sf: SessionFactory) -> None:
    # Execute / Assert
    with pytest.raises(UnknownSiteError, match="nowhere"):
        validation.validate(pilot_sf, sites=["nowhere"], actor="t", now=clock, record=False)


def test_no_benchmark_is_bad_input(tmp_path: Path) -> None:
    # Prepare
    engine = make_engine(f"sqlite:///{tmp_path / 'v.db'}")
    migrate(engine)
    sf = make_session_factory(engine)
    seed_pilot_cohort(sf, design=(SiteDesign("north", 40, 2.0),))

    # Execute / Assert
    with pytest.raises(BadInputError, match="benchmark"):
        validation.validate(sf, actor="t", now=clock, record=False)


def test_plan_asks_for_labels_where_a_site_lacks_them(pilot_sf: SessionFactory) -> None:
    # Execute
    plan = validation.plan_labelling(pilot_sf, options=DriftOptions(n_resamples=20))

    # Assert
    by_site = {p.site: p for p in plan.plans}
    harbor = by_site["harbor"]
    assert harbor.n_required is not None and harbor.n_required > harbor.n_labelled
    assert harbor.n_to_label == 10 and harbor.shortfall == harbor.n_required - 22
    assert len(set(harbor.selected)) == 10


@pytest.mark.parametrize(("age", "band"), [("039Y", "<40"), ("040Y", "40-59"), ("079Y", "60-79"), ("", "unknown")])
def test_age_bands(age: str, band: str) -> None:
    # Execute / Assert
    assert validation.age_band(age) == band
