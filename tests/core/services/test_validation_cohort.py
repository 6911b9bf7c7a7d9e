"""Evidence on the committed sample cohort: the pilot-drift pattern comes out of the computation.

``vigil init``'s use case ingests the committed SYNTHETIC cohort, scores it with the bundled model
and loads the synthetic ground truth; the report must then show one deployment site within the
target, one clearly outside, and the software-update site's strata apart before and after its
update. Nothing in the cohort names a model figure: sites differ in acquisition physics and
patients only.
"""

from __future__ import annotations

import pytest

from core.config import Settings
from core.metrics import DriftOptions, GapStatus
from core.sampledata.sites import site_by_name
from core.services import validation
from core.store.engine import SessionFactory
from tests.ui.installation import clock

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(initialized_sample: tuple[Settings, SessionFactory]) -> validation.ValidationReport:
    _, sf = initialized_sample
    return validation.validate(sf, options=DriftOptions(), actor="t", now=clock, record=False)


def test_one_site_within_one_clearly_outside(report: validation.ValidationReport) -> None:
    by_site = {s.site: s for s in report.drift.sites}
    print("\n" + report.summary())
    assert by_site["northfield"].status is GapStatus.WITHIN
    assert by_site["eastgate"].status is GapStatus.OUTSIDE
    eastgate_gap = by_site["eastgate"].gap
    assert eastgate_gap is not None and eastgate_gap.estimate > 0.15
    assert by_site["harbor"].status is GapStatus.NOT_ENOUGH_DATA and by_site["harbor"].auc is None
    assert not report.passed


def test_update_site_strata_separate_before_and_after(report: validation.ValidationReport) -> None:
    update = site_by_name("riverside").update
    assert update is not None
    rows = {r.level: r for r in report.drift.strata if r.site == "riverside" and r.dimension == "software"}
    before, after = rows[site_by_name("riverside").software_versions], rows[update.software_versions]
    assert before.status is GapStatus.WITHIN
    assert after.status is GapStatus.OUTSIDE
    assert before.gap is not None and after.gap is not None
    assert after.gap.estimate - before.gap.estimate > 0.15
