"""``vigil fl``: a real federated run on loopback (a SuperLink and two SuperNodes), recorded and audited.

Slow by nature (Flower processes start, each round trains at both sites): one module-scoped run
serves the assertions, on two sites with a few studies each.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.audit.events import AuditAction, AuditEntry
from core.cli import main
from core.config import Settings
from core.federated.launcher import ENV_MARKER
from core.federated.privacy import epsilon
from core.sampledata import MANIFEST_NAME, generate_cohort
from core.services import federated, holdout, ingestion, models, outcomes, prediction, sites
from core.services.store import open_store
from core.store import audit_log, federated_runs
from core.store.engine import SessionFactory
from tests.factories import RANDOM_VERSION, write_random_model

SITES = ("northfield", "riverside")


def _clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Home:
    env: dict[str, str]
    settings: Settings
    sf: SessionFactory


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A store with the random model serving and two sites' studies, scored and labelled."""
    root = tmp_path_factory.mktemp("fl-home")
    cohort = root / "cohort"
    generate_cohort(cohort, seed=3, studies_per_site=4)
    settings = Settings(home=root / "home", database_url=f"sqlite:///{root / 'vigil.db'}")
    sf = open_store(settings)
    card = write_random_model(root / "model")
    models.register_model(
        sf, card, source_dir=root / "model", models_dir=settings.home / "models", actor="t", now=_clock
    )
    for site in SITES:
        sites.add_site(sf, site, benchmark=False, actor="t", now=_clock)
        ingestion.ingest_paths(
            sf, [cohort / "dicom" / site], site=site, dicom_dir=settings.home / "dicom", actor="t", now=_clock
        )
    loaded = models.load_serving(sf, models_dir=settings.home / "models")
    prediction.predict_pending(sf, loaded, site=None, batch_size=4, actor="t", now=_clock)
    outcomes.load_ground_truth(sf, cohort / MANIFEST_NAME, actor="t", now=_clock)
    holdout.lock_holdout(sf, fraction=0.25, seed=0, actor="t", now=_clock)
    env = {"VIGIL_HOME": str(settings.home), "VIGIL_DATABASE_URL": settings.database_url}
    return Home(env, settings, sf)


def _vigil(
    home: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, dict[str, object]]:
    for k, v in home.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    code = main([*argv, "--json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}


def _kill_everything(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` and every process a federation started."""
    proc.kill()
    proc.wait()
    for pid in _marked():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _marked() -> list[int]:
    """Every process on this machine started by a federation of this test process (Linux /proc).

    Under pytest-xdist another worker may be running a federation of its own (the TLS test, the
    live browser test): its processes carry the same marker variable but that worker's name.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    mine = f"\0PYTEST_XDIST_WORKER={worker}\0".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            env = b"\0" + (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"\0{ENV_MARKER}=".encode() in env and (worker is None or mine in env):
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def keyed(home: Home) -> Home:
    for site in SITES:
        federated.register_site_key(home.sf, site, keys_dir=home.settings.home / "fl-keys", actor="t", now=_clock)
    return home


def test_an_unregistered_site_or_a_keyless_site_is_refused_before_anything_starts(
    home: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _vigil(home, monkeypatch, capsys, "fl", "run", "--sites", "northfield,nowhere", "--rounds", "1")
    assert code == 2
    code, _ = _vigil(home, monkeypatch, capsys, "fl", "run", "--sites", "northfield", "--rounds", "1")
    assert code == 2


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (("--secagg-threshold", "2"), "--secagg-threshold needs --secure-aggregation"),
        (("--dp-noise-multiplier", "1.0"), "differential privacy needs"),
    ],
)
def test_an_option_that_needs_another_is_named_before_the_store_is_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: tuple[str, ...],
    named: str,
) -> None:
    # Prepare: an empty home, where the first thing read from the store (the serving model) is missing
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'v.db'}")
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)

    # Execute
    code = main(["fl", "run", "--sites", "northfield,eastgate", "--rounds", "1", *options])

    # Assert: the option is named, not the missing model, and no store was made
    assert code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "v.db").exists()


def test_a_loopback_run_trains_records_audits_registers_and_leaves_no_process(
    keyed: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code, data = _vigil(
        keyed, monkeypatch, capsys,
        "fl", "run", "--sites", ",".join(SITES), "--rounds", "2", "--version", "fl-run-1",
        "--batch-size", "4", "--timeout", "500",
    )  # fmt: skip

    # Assert: finished, every process gone
    assert code == 0, data
    assert data["status"] == "finished"
    assert _marked() == []
    # Assert: stored per round and site, every update accepted, with aggregate metrics only
    with keyed.sf() as session:
        record = federated_runs.get_run(session, str(data["run"]))
    assert record is not None
    assert record.model_version == "fl-run-1"
    assert [(u.round, u.site) for u in record.updates] == [(r, s) for r in (1, 2) for s in sorted(SITES)]
    assert all(u.accepted for u in record.updates)
    assert all(u.metrics["update_norm"] > 0 for u in record.updates)
    # Assert: one audit entry per round naming each accepted update's hash and the aggregate's
    rounds = [e for e in _entries(keyed.sf) if e.action == AuditAction.FL_ROUND_AGGREGATED]
    assert [e.payload["round"] for e in rounds] == [1, 2]
    for entry in rounds:
        stored = {u.site: u.update_sha256 for u in record.updates if u.round == entry.payload["round"]}
        assert entry.payload["accepted_updates_sha256"] == stored
        assert entry.payload["aggregate_sha256"] == next(
            u.aggregate_sha256 for u in record.updates if u.round == entry.payload["round"]
        )
    # Assert: the aggregate is a registered challenger with its lineage
    card = models.get_card(keyed.sf, "fl-run-1")
    assert card.parent_version == RANDOM_VERSION
    assert card.hyperparameters["recipe"] == "federated"
    assert card.hyperparameters["sites"] == list(SITES)
    assert card.hyperparameters["strategy"] == "fedavg"
    assert card.training_data["federated"] == {"run": data["run"], "sites": list(SITES), "rounds": 2}


def _entries(sf: SessionFactory) -> list[AuditEntry]:
    with sf() as session:
        return list(audit_log.iter_entries(session))


def test_ctrl_c_stops_every_flower_process_and_records_the_run_as_failed(keyed: Home) -> None:
    # Prepare
    env = {**os.environ, **keyed.env}
    env.pop("VIGIL_CONFIG", None)
    runs = keyed.settings.home / "fl-runs"
    before = set(runs.glob("*/events.jsonl"))
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from core.cli import main; sys.exit(main())",
         "fl", "run", "--sites", ",".join(SITES), "--rounds", "50", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not set(runs.glob("*/events.jsonl")) - before:
        time.sleep(0.5)  # until the ServerApp has started: SuperLink, SuperNodes and apps are all up
    assert set(runs.glob("*/events.jsonl")) - before, "the run never started"

    # Execute
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        _kill_everything(proc)  # so one slow stop does not leave processes that fail the tests after it
        raise

    # Assert
    assert code == 130
    assert _marked() == []
    with keyed.sf() as session:
        latest = federated_runs.list_runs(session)[0]
    assert latest.status == "failed"
    assert "interrupted" in latest.reason


def test_the_federated_model_goes_through_the_change_control_gate(
    keyed: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the run above registered fl-run-1 (trained only outside the locked hold-out)
    locked = holdout.holdout_sha256(c.study_uid for c in holdout.holdout_cases(keyed.sf))
    card = models.get_card(keyed.sf, "fl-run-1")
    assert not {row[0] for row in card.training_data["studies"]} & {
        c.study_uid for c in holdout.holdout_cases(keyed.sf)
    }

    # Execute
    code, data = _vigil(keyed, monkeypatch, capsys, "validate-change", "fl-run-1")

    # Assert: judged like any challenger (passing or failing is the gate's business, not bad input)
    assert code in (0, 1), data
    assert data["challenger_version"] == "fl-run-1"
    assert data["holdout_sha256"] == locked


def test_a_private_run_halts_before_the_budget_is_exceeded_and_records_the_epsilon_it_spent(
    keyed: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a per-site budget that allows 1 of the 2 rounds asked for
    z, delta = 2.0, 1e-5
    one, two = (epsilon(q=1.0, noise_multiplier=z, steps=k, delta=delta) for k in (1, 2))
    budget = (one + two) / 2

    # Execute
    code, data = _vigil(
        keyed, monkeypatch, capsys,
        "fl", "run", "--sites", ",".join(SITES), "--rounds", "2", "--batch-size", "4",
        "--dp-noise-multiplier", str(z), "--dp-clipping-norm", "1.0", "--dp-delta", str(delta),
        "--epsilon-budget", repr(budget), "--version", "fl-dp-1", "--timeout", "500",
    )  # fmt: skip

    # Assert: one round released, the second never started, epsilon recomputed from the logged settings
    assert code == 0, data
    assert "halted before round 2" in str(data["reason"])
    assert sorted({u["round"] for u in data["updates"]}) == [1]  # type: ignore[union-attr]
    dp = data["config"]["dp"]  # type: ignore[index]
    assert dp["epsilon_spent"] == pytest.approx(one)
    assert dp["epsilon_reported_by_server"] == pytest.approx(one)
    assert dp["epsilon_spent"] <= budget
    assert models.get_card(keyed.sf, "fl-dp-1").hyperparameters["dp"]["epsilon_spent"] == pytest.approx(one)
    assert _marked() == []

    # Execute / Assert: the sites' budget is spent, so another private run is refused before it starts
    code, _ = _vigil(
        keyed, monkeypatch, capsys,
        "fl", "run", "--sites", ",".join(SITES), "--rounds", "1",
        "--dp-noise-multiplier", str(z), "--dp-clipping-norm", "1.0", "--epsilon-budget", repr(budget),
    )  # fmt: skip
    assert code == 2


def test_a_key_generated_at_the_hospital_is_registered_and_a_non_ed25519_key_refused(
    home: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    # Prepare
    sites.add_site(home.sf, "eastgate", benchmark=False, actor="t", now=_clock)
    public = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ec_key = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(*public)
    (tmp_path / "ec.pem").write_bytes(ec_key)
    ed_key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(*public)
    (tmp_path / "ed.pem").write_bytes(ed_key)

    # Execute / Assert: the P-384 key is refused, nothing registered
    code, _ = _vigil(home, monkeypatch, capsys, "fl", "keys", "eastgate", "--public-key", str(tmp_path / "ec.pem"))
    assert code == 2
    with home.sf() as session:
        assert "eastgate" not in federated_runs.site_keys(session)

    # Execute / Assert: the Ed25519 key is registered as given, and no private key is made here
    code, data = _vigil(home, monkeypatch, capsys, "fl", "keys", "eastgate", "--public-key", str(tmp_path / "ed.pem"))
    assert code == 0
    with home.sf() as session:
        assert federated_runs.site_keys(session)["eastgate"] == ed_key.decode()
    assert not federated.key_path(home.settings.home / "fl-keys", "eastgate").exists()
    assert data["registered"] == {"eastgate": hashlib.sha256(ed_key).hexdigest()}


def test_a_hospital_writes_its_supernodes_manifest_without_the_holdout(
    home: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from core.federated.task import read_site_manifest

    # Execute
    code, data = _vigil(home, monkeypatch, capsys, "fl", "site-data", "riverside", "--out", str(tmp_path / "r.json"))

    # Assert
    assert code == 0
    manifest = read_site_manifest(tmp_path / "r.json")
    locked = {c.study_uid for c in holdout.holdout_cases(home.sf)}
    assert manifest.site == "riverside"
    assert data["studies"] == len(manifest.examples) > 0
    assert not {e.study_uid for e in manifest.examples} & locked
    assert {e.site for e in manifest.examples} == {"riverside"}
    assert manifest.holdout_uids >= locked


def test_a_taken_version_name_is_refused_before_anything_starts(
    home: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k, v in home.env.items():
        monkeypatch.setenv(k, v)
    runs_before = set((home.settings.home / "fl-runs").glob("*"))

    code = main(["fl", "run", "--sites", ",".join(SITES), "--rounds", "1", "--version", RANDOM_VERSION, "--json"])

    assert code == 2
    assert f"model version {RANDOM_VERSION!r} is already registered" in capsys.readouterr().err
    assert set((home.settings.home / "fl-runs").glob("*")) == runs_before


def test_a_multi_hospital_run_is_prepared_here_and_recorded_from_its_log(
    keyed: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.federated.plan import FINAL_WEIGHTS, INITIAL_WEIGHTS, read_weights, write_weights
    from core.federated.runlog import append_event
    from core.federated.signing import arrays_sha256

    # Prepare: the run folder, as the coordinating centre writes it (no site data or private key needed)
    code, data = _vigil(keyed, monkeypatch, capsys, "fl", "prepare", "--sites", ",".join(SITES), "--rounds", "1")
    assert code == 0, data
    run_dir = Path(str(data["run_dir"]))
    assert (run_dir / "plan.json").is_file()
    assert not list((run_dir / "sites").glob("*.json"))
    # ... and the log the ServerApp writes there during `flwr run` (here by hand: the format is the contract)
    weights = read_weights(run_dir / INITIAL_WEIGHTS)
    write_weights(weights, run_dir / FINAL_WEIGHTS)
    digest = arrays_sha256(weights)
    append_event(run_dir, {"event": "started", "run": data["run"], "sites": list(SITES), "rounds": 1})
    updates = [
        {"site": s, "accepted": True, "reason": "", "update_sha256": digest, "n_examples": 3, "update_norm": 0.5}
        for s in SITES
    ]
    append_event(run_dir, {"event": "round", "round": 1, "updates": updates, "aggregate_sha256": digest})
    append_event(run_dir, {"event": "finished", "run": data["run"], "rounds_run": 1, "halted": ""})

    # Execute
    code, recorded = _vigil(keyed, monkeypatch, capsys, "fl", "record", str(data["run"]), "--version", "fl-remote-1")
    again, _ = _vigil(keyed, monkeypatch, capsys, "fl", "record", str(data["run"]))

    # Assert
    assert code == 0, recorded
    assert recorded["status"] == "finished"
    assert recorded["model_registered"] == "fl-remote-1"
    card = models.get_card(keyed.sf, "fl-remote-1")
    assert card.training_data["studies_listed"].startswith("at the sites")
    assert again == 2


def test_a_forged_update_is_refused_and_below_quorum_the_run_fails_closed_and_is_audited(
    keyed: Home, tmp_path: Path
) -> None:
    import dataclasses

    import core
    from core.federated.launcher import LocalFederation, stage_app
    from core.federated.signing import generate_site_key

    # Prepare: riverside's SuperNode signs with a key that is not the one registered for it
    home = keyed.settings.home
    prepared = federated.prepare_run(
        keyed.sf,
        run="fl-forged-1",
        sites_=SITES,
        parent=RANDOM_VERSION,
        rounds=2,
        strategy="fedavg",
        min_sites=2,
        local=federated.LocalSettings(batch_size=4),
        models_dir=home / "models",
        run_dir=home / "fl-runs" / "fl-forged-1",
        keys_dir=home / "fl-keys",
        now=_clock,
        actor="t",
    )
    generate_site_key(tmp_path / "forged.pem")
    nodes = [
        n if n.site != "riverside" else dataclasses.replace(n, key=tmp_path / "forged.pem") for n in prepared.nodes
    ]
    app = stage_app(Path(core.__file__).parent, prepared.run_dir / "app")

    # Execute
    with LocalFederation(work_dir=prepared.run_dir / "flower", sites=nodes, environ=dict(os.environ)) as fed:
        events = fed.run(app, prepared.run_dir, on_event=lambda _e: None, timeout=400)
    record, registered = federated.record_run(
        keyed.sf, prepared, events, version="fl-forged", models_dir=home / "models", actor="t", now=_clock
    )

    # Assert: the round failed closed, nothing registered, the refusal audited with its reason
    assert record.status == "failed"
    assert "quorum" in record.reason
    assert registered is None
    refused = [u for u in record.updates if not u.accepted]
    assert [(u.round, u.site) for u in refused] == [(1, "riverside")]
    assert "signature does not verify" in refused[0].reason
    rejected = [e for e in _entries(keyed.sf) if e.action == AuditAction.FL_UPDATE_REJECTED]
    assert [(e.subject, e.payload["site"]) for e in rejected] == [("fl-forged-1", "riverside")]
    assert _marked() == []


def _installed_as(root: Path, distribution: str, version: str) -> dict[str, str]:
    """An environment whose Python reports ``distribution`` at ``version`` (metadata first on its path)."""
    info = root / f"{distribution}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    return {"PYTHONPATH": str(root)}


def test_nodes_with_another_release_or_preprocessing_are_refused_audited_and_shown_with_their_versions(
    keyed: Home, tmp_path: Path
) -> None:
    import dataclasses

    import core
    from core.federated.compatibility import installed_version
    from core.federated.launcher import LocalFederation, stage_app

    # Prepare: riverside's node runs an older Vigil; northfield's another numpy (so other preprocessing)
    home = keyed.settings.home
    prepared = federated.prepare_run(
        keyed.sf, run="fl-compat-1", sites_=SITES, parent=RANDOM_VERSION, rounds=1, strategy="fedavg", min_sites=1,
        local=federated.LocalSettings(batch_size=4, max_studies=2), models_dir=home / "models",
        run_dir=home / "fl-runs" / "fl-compat-1", keys_dir=home / "fl-keys", now=_clock, actor="t",
    )  # fmt: skip
    env = {
        "riverside": _installed_as(tmp_path / "old-vigil", "vigil", "0.0.9"),
        "northfield": _installed_as(tmp_path / "new-numpy", "numpy", "9.9.9"),
    }
    nodes = [dataclasses.replace(n, environ=env[n.site]) for n in prepared.nodes]
    app = stage_app(Path(core.__file__).parent, prepared.run_dir / "app")

    # Execute
    with LocalFederation(work_dir=prepared.run_dir / "flower", sites=nodes, environ=dict(os.environ)) as fed:
        events = fed.run(app, prepared.run_dir, on_event=lambda _e: None, timeout=400)
    record, _ = federated.record_run(keyed.sf, prepared, events, version=None, models_dir=home / "models",
                                     actor="t", now=_clock)  # fmt: skip

    # Assert: both refused with the reason, the round failed closed, each refusal audited
    assert record.status == "failed"
    reasons = {u.site: u.reason for u in record.updates if not u.accepted}
    assert "the node runs Vigil 0.0.9, the run needs Vigil 0.1.x" in reasons["riverside"]
    assert "preprocessing hash" in reasons["northfield"]
    rejected = [e for e in _entries(keyed.sf) if e.action == AuditAction.FL_UPDATE_REJECTED]
    assert {e.payload["site"] for e in rejected if e.subject == "fl-compat-1"} == set(SITES)
    # Assert: each node's last check-in, with what it reported
    with keyed.sf() as session:
        nodes_seen = {n.site: n for n in federated_runs.list_nodes(session)}
    assert nodes_seen["riverside"].vigil_version == "0.0.9" and not nodes_seen["riverside"].compatible
    assert nodes_seen["northfield"].vigil_version == installed_version("vigil")
    assert nodes_seen["northfield"].flwr_version == installed_version("flwr")
    assert nodes_seen["northfield"].preprocessing_sha256 != prepared.plan.expected_node["preprocessing-sha256"]
    assert nodes_seen["northfield"].reason.startswith("preprocessing hash")
    assert all(n.last_run_key == "fl-compat-1" for n in nodes_seen.values())
    assert _marked() == []


def _refused(
    home: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str]:
    """``vigil ARGV`` expected to fail: its exit code and what it wrote to stderr."""
    for k, v in home.env.items():
        monkeypatch.setenv(k, v)
    code = main([*argv, "--json"])
    return code, capsys.readouterr().err


def test_a_secure_aggregation_run_records_its_sites_and_aggregate_and_never_one_sites_update(
    keyed: Home, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: what SecAgg+ cannot be combined with is refused before anything starts
    secure = ("fl", "run", "--sites", ",".join(SITES), "--rounds", "1", "--secure-aggregation")
    dp = ("--dp-noise-multiplier", "1", "--dp-clipping-norm", "1", "--epsilon-budget", "8")
    for extra, reason in ((("--strategy", "median"), "fedavg strategy only"), (dp, "cannot be combined")):
        code, err = _refused(keyed, monkeypatch, capsys, *secure, *extra)
        assert code == 2
        assert reason in err

    # Execute
    code, data = _vigil(
        keyed, monkeypatch, capsys,
        "fl", "run", "--sites", ",".join(SITES), "--rounds", "1", "--secure-aggregation", "--version", "fl-secure-1",
        "--batch-size", "4", "--timeout", "500",
    )  # fmt: skip

    # Assert: finished, every process gone
    assert code == 0, data
    assert data["status"] == "finished"
    assert _marked() == []
    # Assert: every site took part in every round; no update was seen, so none is hashed
    with keyed.sf() as session:
        record = federated_runs.get_run(session, str(data["run"]))
    assert record is not None
    assert [(u.round, u.site) for u in record.updates] == [(1, s) for s in sorted(SITES)]
    assert all(u.accepted and u.update_sha256 == "" for u in record.updates)
    assert record.config["secure"]["protocol"] == "SecAgg+"
    # Assert: one audit entry per round naming the sites and the aggregate's hash, and no update hash
    rounds = [e for e in _entries(keyed.sf) if e.action == AuditAction.FL_ROUND_AGGREGATED and e.subject == data["run"]]
    assert [e.payload["round"] for e in rounds] == [1]
    for entry in rounds:
        assert entry.payload["secure_aggregation"] == "SecAgg+"
        assert entry.payload["participating_sites"] == sorted(SITES)
        assert "accepted_updates_sha256" not in entry.payload
        assert entry.payload["aggregate_sha256"] == next(
            u.aggregate_sha256 for u in record.updates if u.round == entry.payload["round"]
        )
    # Assert: the server's log of the run names no update, and no site's reply carried its weights
    events = (keyed.settings.home / "fl-runs" / str(data["run"]) / "events.jsonl").read_text(encoding="utf-8")
    assert '"update_sha256": ""' in events
    assert all(json.loads(line).get("secure") for line in events.splitlines() if '"event": "round"' in line)
    # Assert: the aggregate is a registered challenger whose lineage names secure aggregation
    card = models.get_card(keyed.sf, "fl-secure-1")
    assert card.parent_version == RANDOM_VERSION
    assert card.hyperparameters["secure_aggregation"]["protocol"] == "SecAgg+"
    assert "SecAgg+" in card.hyperparameters["aggregation"]
    assert card.hyperparameters["dp"] is None
