"""An installation where one deployment site has an AUC and a few studies without a label, for adjudication tests.

``vigil init``'s use case runs on a SYNTHETIC cohort of 30 benchmark and 30 riverside studies with
the bundled demonstration model (small; the random test model's AUC of about 0.5 would leave no
reachable labelling plan); the cohort's ground truth is then loaded for
riverside too (``vigil init`` loads the benchmark's only), so riverside has enough labels for an
AUC without depending on the EMR sample outcomes. Then :data:`N_NEW` more riverside studies
arrive the way later studies do (ingested and scored, from a second seed) with no outcome at all:
the studies a champion can add a label to.
"""

from __future__ import annotations

from pathlib import Path

import core.services.models as model_service
from core.sampledata import MANIFEST_NAME, generate_cohort, read_manifest
from core.services import auth, ingestion, outcomes, prediction, setup
from tests.ui.installation import Installation, clock

SITE = "riverside"
N_NEW = 3


def build_labelled_site(root: Path) -> Installation:
    """Build the installation under ``root`` (about 20 s on two cores)."""
    cohort = root / "cohort"
    generate_cohort(cohort, seed=0, studies_per_site={"benchmark": 30, SITE: 30})
    inst = Installation(home=root / "home", database_url=f"sqlite:///{root / 'home' / 'vigil.db'}", cohort_dir=cohort)
    inst.home.mkdir(parents=True, exist_ok=True)
    setup.initialize(inst.settings, actor="system", now=clock)
    sf = inst.session_factory()
    auth.seed_demo_users(sf, now=clock)
    outcomes.load_ground_truth(sf, cohort / MANIFEST_NAME, actor="system", now=clock)
    later = root / "later"
    generate_cohort(later, seed=1, studies_per_site={SITE: N_NEW})
    files = [later / r.path for r in read_manifest(later / MANIFEST_NAME)]
    ingestion.ingest_paths(sf, files, site=SITE, dicom_dir=inst.home / "dicom", actor="system", now=clock)
    model = model_service.load_serving(sf, models_dir=inst.home / "models")
    prediction.predict_pending(sf, model, site=SITE, batch_size=8, actor="system", now=clock)
    return inst
