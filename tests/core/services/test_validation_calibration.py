"""Per-site recalibration: proposed calibrators change nothing, approved ones recalibrate, both are audited."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.audit.events import AuditAction
from core.errors import BadInputError, CalibratorStateError, PermissionDeniedError, UnknownMethodError
from core.services import calibration
from core.services.permissions import Role, SignedInUser
from core.store import audit_log
from core.store.engine import SessionFactory, make_engine, make_session_factory, migrate
from core.store.site_calibrators import CalibratorStatus
from tests.core.services.test_validation import VERSION, SiteDesign, clock, seed_pilot_cohort


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("calibration") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    design = (SiteDesign("benchmark", 60, 2.6), SiteDesign("north", 300, 1.5), SiteDesign("tiny", 8, 2.0))
    seed_pilot_cohort(make_session_factory(engine), design=design)
    engine.dispose()  # checkpoints the WAL into the file
    return path


@pytest.fixture
def store(template: Path, tmp_path: Path) -> SessionFactory:
    """A private copy of the seeded database: seeding once keeps the module fast."""
    shutil.copyfile(template, tmp_path / "v.db")
    return make_session_factory(make_engine(f"sqlite:///{tmp_path / 'v.db'}"))


def _actions(sf: SessionFactory) -> list[str]:
    with sf() as session:
        return [str(e.action) for e in audit_log.iter_entries(session)]


def test_fit_proposes_the_better_method_and_is_not_applied(store: SessionFactory) -> None:
    # Execute
    fit = calibration.fit_site_calibrator(store, "north", actor="ml", now=clock)
    applied = calibration.recalibrate(store, [0.2, 0.8], site="north", model_version=VERSION)

    # Assert
    assert fit.calibrator.status is CalibratorStatus.PROPOSED and fit.calibrator.revision == 1
    assert {str(c.method) for c in fit.candidates} == {"platt", "isotonic"}
    assert fit.calibrator.ece_after == min(c.ece_after for c in fit.candidates)
    assert applied is None
    assert _actions(store)[-1] == AuditAction.SITE_CALIBRATOR_FITTED


def test_approved_calibrator_recalibrates_and_retires_the_previous(store: SessionFactory) -> None:
    # Prepare
    first = calibration.fit_site_calibrator(store, "north", method="platt", actor="ml", now=clock).calibrator
    second = calibration.fit_site_calibrator(store, "north", method="isotonic", actor="ml", now=clock).calibrator
    calibration.approve_site_calibrator(store, first.id, actor="cmio", now=clock)

    # Execute
    approved = calibration.approve_site_calibrator(store, second.id, actor="cmio", now=clock)
    scores = calibration.recalibrate(store, np.array([0.1, 0.5, 0.9]), site="north", model_version=VERSION)

    # Assert
    statuses = {c.id: c.status for c in calibration.list_site_calibrators(store, site="north")}
    assert statuses == {first.id: CalibratorStatus.RETIRED, second.id: CalibratorStatus.APPROVED}
    assert approved.approved_by == "cmio" and second.revision == 2
    assert scores is not None and np.all(np.diff(scores) >= 0) and not np.allclose(scores, [0.1, 0.5, 0.9])
    assert _actions(store).count(AuditAction.SITE_CALIBRATOR_APPROVED) == 2


def test_approving_twice_is_refused(store: SessionFactory) -> None:
    # Prepare
    fit = calibration.fit_site_calibrator(store, "north", method="platt", actor="ml", now=clock)
    calibration.approve_site_calibrator(store, fit.calibrator.id, actor="cmio", now=clock)

    # Execute / Assert
    with pytest.raises(CalibratorStateError, match="approved"):
        calibration.approve_site_calibrator(store, fit.calibrator.id, actor="cmio", now=clock)


def test_a_radiologist_may_not_approve(store: SessionFactory) -> None:
    # Prepare
    fit = calibration.fit_site_calibrator(store, "north", method="platt", actor="ml", now=clock)

    # Execute / Assert
    with pytest.raises(PermissionDeniedError):
        calibration.approve_site_calibrator(
            store, fit.calibrator.id, actor="rad", now=clock, user=SignedInUser("rad", Role.RADIOLOGIST)
        )


def test_too_few_cases_and_unknown_methods_are_bad_input(store: SessionFactory) -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match="each class"):
        calibration.fit_site_calibrator(store, "tiny", actor="ml", now=clock)
    with pytest.raises(UnknownMethodError, match="temperature"):
        calibration.fit_site_calibrator(store, "north", method="temperature", actor="ml", now=clock)
