"""Evidence on the committed sample cohort: the software-update site's drift is found from computation alone.

The committed SYNTHETIC cohort's update site ("riverside": 150 studies over 120 days, a little over
one a day) changes its processing on 2025-05-12. The whole cohort is ingested and scored by the
bundled model (``vigil init``'s use case, shared with the pilot-drift evidence) and monitored with
the default settings (daily windows, a false-alarm budget of one incident per site every two
years). The image streams must alarm within 2 days of the update and the score streams within 10
(ranked scores under that budget: 9 days here, where normal-theory charts at five times the
false-alarm rate took 6), never before it, and the metadata-novelty event must fire on the first
study with the new software.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from core.config import Settings
from core.models.card import read_card
from core.models.loading import BUNDLED_DIR, load_model
from core.sampledata import MANIFEST_NAME, read_manifest
from core.sampledata.sites import site_by_name
from core.services import models
from core.services.monitoring import AlertHooks, AlertRecord, MonitoringRun, run_monitoring
from core.store.engine import SessionFactory
from tests.ui.installation import clock

pytestmark = pytest.mark.slow

UPDATE_SITE = "riverside"
IMAGE_STREAMS = {"intensity_mean", "intensity_spread", "noise", "embedding_distance"}
SCORE_STREAMS = {"mean_score", "positive_rate", "score_psi", "score_ks"}
#: Days after the update within which each family must alarm.
WINDOW_DAYS = {"image": 2, "score": 10}


@dataclass(frozen=True)
class Evidence:
    run: MonitoringRun
    update: date
    first_new_software: date


def _evidence(settings: Settings, sf: SessionFactory) -> Evidence:
    model = models.load_serving(sf, models_dir=settings.home / "models")
    run = run_monitoring(sf, model=model, by="t", now=clock, hooks=AlertHooks())
    spec = site_by_name(UPDATE_SITE)
    assert spec.update is not None
    rows = read_manifest(settings.sample_data_dir / MANIFEST_NAME)
    first_new = min(
        date.fromisoformat(r.study_date)
        for r in rows
        if r.site == UPDATE_SITE and r.software_versions == spec.update.software_versions
    )
    return Evidence(run, spec.update.date, first_new)


@pytest.fixture(scope="module")
def sample(initialized_sample: tuple[Settings, SessionFactory]) -> Evidence:
    return _evidence(*initialized_sample)


def _site_alerts(ev: Evidence) -> list[AlertRecord]:
    return [a for a in ev.run.raised if a.site == UPDATE_SITE]


def _first_alarm(ev: Evidence, streams: set[str]) -> date:
    dates = [a.alarm_date for a in _site_alerts(ev) if a.stream in streams]
    assert dates, f"no alarm on any of {sorted(streams)}"
    return min(dates)


def test_nothing_alarms_at_the_update_site_before_the_update(sample: Evidence) -> None:
    alerts = _site_alerts(sample)
    assert alerts
    assert min(a.alarm_date for a in alerts) >= sample.update


def test_no_alert_at_the_sites_where_nothing_changed(sample: Evidence) -> None:
    assert {s.site for s in sample.run.view.sites} > {UPDATE_SITE}
    assert [a.summary for a in sample.run.raised if a.site != UPDATE_SITE] == []


@pytest.mark.parametrize(("family", "streams"), [("image", IMAGE_STREAMS), ("score", SCORE_STREAMS)])
def test_streams_alarm_soon_after_the_update(sample: Evidence, family: str, streams: set[str]) -> None:
    first = _first_alarm(sample, streams)
    with_delay = f"first alarm {first}, {(first - sample.update).days} days after the update on {sample.update}"
    print(f"\n{sorted(streams)}: {with_delay}")
    assert sample.update <= first <= sample.update + timedelta(days=WINDOW_DAYS[family]), with_delay


def test_novelty_fires_on_the_first_study_with_the_new_software(sample: Evidence) -> None:
    novelty = [a for a in _site_alerts(sample) if a.stream == "novelty:software_versions"]
    assert len(novelty) == 1
    assert novelty[0].alarm_date == sample.first_new_software
    assert novelty[0].details["value"] == site_by_name(UPDATE_SITE).update.software_versions  # type: ignore[union-attr]


def test_the_bundled_model_did_the_scoring(sample: Evidence) -> None:
    assert load_model(read_card(BUNDLED_DIR / "card.json"), BUNDLED_DIR).card.version == sample.run.view.model_version
