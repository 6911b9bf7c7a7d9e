"""The whole path on real DICOM: generate, ingest, predict, load ground truth, validate.

The model is random (``tests.factories``) and the cohort tiny, so every site is "not enough data";
what is checked is the plumbing: labels marked as ground truth, harmonized strata from real headers,
the JSON contract and the audit trail.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.audit.events import AuditAction
from core.metrics import GapStatus
from core.sampledata import read_manifest
from core.services import audit, ingestion, models, outcomes, prediction, sites, validation
from core.store import audit_log
from tests.core.services.conftest import Env


def test_tiny_generated_cohort_end_to_end(env: Env, small_cohort: Path) -> None:
    # Prepare
    rows = read_manifest(small_cohort / "manifest.csv")
    for name in sorted({r.site for r in rows} - {"benchmark"}):
        sites.add_site(env.sf, name, benchmark=False, actor="t", now=env.now)
    for name in sorted({r.site for r in rows}):
        files = [small_cohort / r.path for r in rows if r.site == name]
        ingestion.ingest_paths(env.sf, files, site=name, dicom_dir=env.dicom_dir, actor="t", now=env.now)
    model = models.load_serving(env.sf, models_dir=env.models_dir)
    prediction.predict_pending(env.sf, model, site=None, batch_size=8, actor="t", now=env.now)

    # Execute
    loaded = outcomes.load_ground_truth(env.sf, small_cohort / "manifest.csv", actor="t", now=env.now)
    report = validation.validate(env.sf, actor="t", now=env.now)

    # Assert
    assert loaded.loaded == len(rows) and loaded.not_in_store == 0
    assert {c.site: c.by_source for c in report.labels} == {
        r.site: {"ground_truth": sum(x.site == r.site for x in rows)} for r in rows
    }
    assert all(s.status is GapStatus.NOT_ENOUGH_DATA for s in (report.drift.benchmark, *report.drift.sites))
    assert report.passed and report.drift.insufficient_sites
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert {s["site"] for s in data["sites"]} == {r.site for r in rows} - {"benchmark"}
    assert report.unmapped == ()  # every generated vendor and protocol string maps
    with env.sf() as session:
        actions = [e.action for e in audit_log.iter_entries(session)]
    assert AuditAction.GROUND_TRUTH_LOADED in actions and actions[-1] is AuditAction.VALIDATION_REPORTED
    assert audit.verify_ledger(env.sf).ok
