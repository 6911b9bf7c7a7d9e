"""A promotion while ``vigil predict`` streams in another process: no prediction fails, none is lost,
and every stored prediction carries the version that was serving when it was stored.

The order is read from the audit ledger (one entry per stored prediction, and the promotion's own
entry, all in commit order): every prediction entry before ``model_promoted`` names the old
version, every one after it the new one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.audit.events import AuditAction
from core.sampledata import generate_cohort
from core.services import deployment, ingestion
from core.store import audit_log, deployments, model_versions, sites, studies
from tests.ui.installation import DEMO_PASSWORDS, TEST_MODEL_VERSION, build_installation, clock
from tests.ui.test_deployment_page import CHALLENGER, _challenger_with_a_passing_gate

NEW_STUDIES = 12  # per site: 60 studies arrive, scored one per transaction


def _prediction_entries(sf: object) -> list[tuple[str, str]]:
    with sf() as session:  # type: ignore[operator]
        return [
            (str(e.action), str(e.payload.get("model_version", e.subject)))
            for e in audit_log.iter_entries(session)
            if str(e.action) in (AuditAction.PREDICTION_MADE.value, AuditAction.MODEL_PROMOTED.value)
        ]


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["in-process", "worker-processes"])
def test_a_promotion_during_a_prediction_stream(tmp_path: Path, workers: list[str]) -> None:
    inst = build_installation(tmp_path / "inst")
    _challenger_with_a_passing_gate(inst)
    sf = inst.session_factory()
    arrivals = tmp_path / "arrivals"
    generate_cohort(arrivals, seed=5, studies_per_site=NEW_STUDIES)
    for site_dir in sorted((arrivals / "dicom").iterdir()):
        ingestion.ingest_paths(sf, [site_dir], site=site_dir.name, dicom_dir=inst.home / "dicom", actor="t", now=clock)
    config = tmp_path / "vigil.toml"
    config.write_text("[vigil]\nbatch_size = 1\n")
    env = {**os.environ, **inst.env, "VIGIL_CONFIG": str(config)}
    with sf() as session:
        old = model_versions.get_by_version(session, TEST_MODEL_VERSION).id
    before = len([p for p in _prediction_entries(sf) if p[1] == TEST_MODEL_VERSION])

    stream = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from core.cli import main; sys.exit(main(sys.argv[1:]))",
            "predict",
            *workers,
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(_prediction_entries(sf)) < before + 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    deployment.promote(
        sf,
        CHALLENGER,
        signer="cmio",
        password=DEMO_PASSWORDS["cmio"],
        models_dir=inst.home / "models",
        actor="cmio",
        now=clock,
    )
    out, err = stream.communicate(timeout=300)

    assert stream.returncode == 0, err
    entries = _prediction_entries(sf)[before:]
    switch = entries.index((AuditAction.MODEL_PROMOTED.value, CHALLENGER))
    assert switch >= 5, "the promotion came after the stream had started"
    assert {v for _, v in entries[:switch]} == {TEST_MODEL_VERSION}
    assert {v for _, v in entries[switch + 1 :]} == {CHALLENGER}
    with sf() as session:
        new = model_versions.get_by_version(session, CHALLENGER).id
        missing_new = studies.instances_without_prediction(session, new)
    assert missing_new == [], "every stored instance ends with a prediction from the serving version"
    reply = json.loads(out)
    assert old != new and reply["model_version"] == CHALLENGER
    assert [r["model_version"] for r in reply["superseded"]] == [TEST_MODEL_VERSION]


def test_two_promotions_at_once_switch_exactly_once(tmp_path: Path) -> None:
    inst = build_installation(tmp_path / "inst")
    _challenger_with_a_passing_gate(inst, "rival-a", 1e-3)
    _challenger_with_a_passing_gate(inst, "rival-b", 2e-3)
    env = {**os.environ, **inst.env}
    env.pop("VIGIL_CONFIG", None)
    vigil = "import sys; from core.cli import main; sys.exit(main(sys.argv[1:]))"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", vigil, "deploy", "promote", name, "--signer", "cmio", "--password-stdin", "--json"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("rival-a", "rival-b")
    ]
    results = [p.communicate(DEMO_PASSWORDS["cmio"] + "\n", timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)

    sf = inst.session_factory()
    with sf() as session:
        history = deployments.history(session)
        serving = model_versions.serving(session)
    assert codes == [0, 2], results
    assert [d.action for d in history] == ["initial", "promote"]
    assert serving is not None and serving.version == history[-1].version
    refused = next(err for (_, err), p in zip(results, procs, strict=True) if p.returncode == 2)
    assert "nothing switched" in refused


def test_a_promotion_of_one_site_during_a_prediction_stream(tmp_path: Path) -> None:
    # Prepare: as above, but the promotion names one site only
    inst = build_installation(tmp_path / "inst")
    _challenger_with_a_passing_gate(inst)
    sf = inst.session_factory()
    arrivals = tmp_path / "arrivals"
    generate_cohort(arrivals, seed=5, studies_per_site=NEW_STUDIES)
    site_dirs = sorted((arrivals / "dicom").iterdir())
    for site_dir in site_dirs:
        ingestion.ingest_paths(sf, [site_dir], site=site_dir.name, dicom_dir=inst.home / "dicom", actor="t", now=clock)
    switched = site_dirs[-1].name  # scored last by the stream, so its switch lands mid-run
    config = tmp_path / "vigil.toml"
    config.write_text("[vigil]\nbatch_size = 1\n")
    env = {**os.environ, **inst.env, "VIGIL_CONFIG": str(config)}
    before = len(_prediction_entries(sf))
    vigil = "import sys; from core.cli import main; sys.exit(main(sys.argv[1:]))"
    stream = subprocess.Popen(
        [sys.executable, "-c", vigil, "predict", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    # Execute
    deadline = time.monotonic() + 120
    while len(_prediction_entries(sf)) < before + 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    deployment.promote(
        sf,
        CHALLENGER,
        signer="cmio",
        password=DEMO_PASSWORDS["cmio"],
        models_dir=inst.home / "models",
        actor="cmio",
        now=clock,
        sites=[switched],
        per_site_allowed=True,
    )
    _, err = stream.communicate(timeout=300)

    # Assert: the switched site's studies are scored by the old version before the switch and by the
    # challenger after it; every other site only by the old version; nothing is left unscored
    assert stream.returncode == 0, err
    with sf() as session:
        ledger = list(audit_log.iter_entries(session))[before:]
        entries = [
            (str(e.action), str(e.payload.get("model_version", e.subject)), e.subject)
            for e in ledger
            if str(e.action) in (AuditAction.PREDICTION_MADE.value, AuditAction.MODEL_PROMOTED.value)
            and e.payload.get("reference") is not True
        ]
        # the benchmark scored by the challenger at the end, as the switched site's drift reference
        references = {(str(e.payload["model_version"]), e.subject) for e in ledger if e.payload.get("reference")}
        benchmark = next(s.name for s in sites.list_sites(session) if s.is_benchmark)
        reference_sites = {studies.get_study(session, uid).site_name for _, uid in references}
        site_of = {uid: studies.get_study(session, uid).site_name for _, _, uid in entries if uid != CHALLENGER}
        ids = {v: model_versions.get_by_version(session, v).id for v in (TEST_MODEL_VERSION, CHALLENGER)}
        missing = {
            v: {
                studies.get_study(session, i.study_uid).site_name
                for i in studies.instances_without_prediction(session, vid)
            }
            for v, vid in ids.items()
        }
    switch = next(i for i, (action, _, _) in enumerate(entries) if action == AuditAction.MODEL_PROMOTED.value)
    at_site = [(i, v) for i, (_, v, uid) in enumerate(entries) if i != switch and site_of[uid] == switched]
    assert at_site and all(v == (TEST_MODEL_VERSION if i < switch else CHALLENGER) for i, v in at_site)
    assert any(v == CHALLENGER for _, v in at_site), "the switched site was scored by the challenger after it"
    others = {v for i, (_, v, uid) in enumerate(entries) if i != switch and site_of[uid] != switched}
    assert others == {TEST_MODEL_VERSION}
    assert {v for v, _ in references} == {CHALLENGER} and reference_sites == {benchmark}
    # the old version still lacks only the switched site's later studies; the challenger lacks only the others'
    assert missing[TEST_MODEL_VERSION] <= {switched} and switched not in missing[CHALLENGER]
