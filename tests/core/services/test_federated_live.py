"""Launching a federated run in the background, one at a time; its progress and its nodes' check-ins in the store."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.audit.events import AuditAction
from core.errors import BadInputError
from core.services import federated, federated_live, sites
from core.services.federated_live import LaunchRequest
from core.services.permissions import Role, SignedInUser
from core.store import audit_log, federated_runs, users
from core.store.engine import SessionFactory
from core.store.federated_runs import FlLaunchRecord

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
SITES = ("northfield", "riverside")
ENGINEER = SignedInUser("eng", Role.ML_ENGINEER)


def _now() -> datetime:
    return datetime.now(UTC)


def _launch(run_key: str, pid: int) -> FlLaunchRecord:
    return FlLaunchRecord(run_key, pid, "eng", "running", "", {"sites": list(SITES), "rounds": 1}, (), T0, T0)


def _exited_pid() -> int:
    proc = subprocess.Popen(["true"])  # noqa: S607 - a process that has come and gone
    proc.wait()
    return proc.pid


def _installation(sf: SessionFactory, keys_dir: Path) -> None:
    with sf.begin() as session:
        users.add_user(session, username="eng", role=Role.ML_ENGINEER.value, password_hash="x", now=T0)
    for site in SITES:
        sites.add_site(sf, site, benchmark=False, actor="t", now=_now)
        federated.register_site_key(sf, site, keys_dir=keys_dir, actor="t", now=_now)


def test_a_launcher_that_died_without_recording_is_retired_and_no_longer_blocks(
    session_factory: SessionFactory,
) -> None:
    # Prepare
    with session_factory.begin() as session:
        federated_runs.add_launch(session, _launch("fl-20270104T090000-aaaaaa", _exited_pid()))

    # Execute
    running = federated_live.running_launch(session_factory, now=T0 + timedelta(minutes=1))

    # Assert
    assert running is None
    with session_factory() as session:
        launch = federated_runs.get_launch(session, "fl-20270104T090000-aaaaaa")
    assert launch is not None and launch.state == "ended"
    assert "ended without recording the run" in launch.reason


def test_a_second_launcher_is_refused_while_one_is_alive_and_a_launcher_may_claim_its_own_launch(
    session_factory: SessionFactory,
) -> None:
    # Prepare: a launch whose process is alive (this one)
    with session_factory.begin() as session:
        federated_runs.add_launch(session, _launch("fl-20270104T090000-bbbbbb", os.getpid()))

    # Execute / Assert: another run is refused, naming the running one; the launch's own launcher is not
    with pytest.raises(BadInputError, match="fl-20270104T090000-bbbbbb is still running"):
        federated_live.claim_launch(
            session_factory, "fl-20270104T100000-cccccc", pid=1, actor="cli:x", request={}, now=T0
        )
    federated_live.claim_launch(
        session_factory, "fl-20270104T090000-bbbbbb", pid=os.getpid(), actor="eng", request={}, now=T0
    )
    with session_factory() as session:
        assert [la.run_key for la in federated_runs.list_launches(session)] == ["fl-20270104T090000-bbbbbb"]


def test_progress_keeps_the_log_and_each_nodes_latest_check_in_only(session_factory: SessionFactory) -> None:
    # Prepare
    run = "fl-20270104T090000-dddddd"
    with session_factory.begin() as session:
        federated_runs.add_launch(session, _launch(run, os.getpid()))
    profile = {"vigil-version": "0.1.0", "flwr-version": "1.42.0", "arch-sha256": "a" * 64,
               "preprocessing-sha256": "p" * 64}  # fmt: skip
    late = (T0 + timedelta(minutes=5)).isoformat()
    early = T0.isoformat()
    evaluate = {"event": "evaluate", "round": 1, "at": late, "sites": {}, "nodes": {"northfield": profile}}
    stale = {"event": "evaluate", "round": 0, "at": early, "sites": {},
             "nodes": {"northfield": {**profile, "vigil-version": "0.0.1"}}}  # fmt: skip

    # Execute: the newer check-in, then an older one arriving late
    federated_live.note_progress(session_factory, run, [evaluate], expected=profile, now=T0)
    federated_live.note_progress(session_factory, run, [evaluate, stale], expected=profile, now=T0)

    # Assert: the log so far is stored; the node keeps its newest check-in
    with session_factory() as session:
        launch = federated_runs.get_launch(session, run)
        (node,) = federated_runs.list_nodes(session)
    assert launch is not None and [e["round"] for e in launch.events] == [1, 0]
    assert (node.site, node.vigil_version, node.compatible, node.last_seen_at) == (
        "northfield",
        "0.1.0",
        True,
        T0 + timedelta(minutes=5),
    )


def test_a_launch_starts_its_process_audits_and_is_retired_once_the_process_is_gone(
    session_factory: SessionFactory, tmp_path: Path
) -> None:
    # Prepare: a "vigil" that exits at once without recording anything
    _installation(session_factory, tmp_path / "keys")
    request = LaunchRequest(sites=SITES, rounds=2, strategy="median")

    # Execute
    run = federated_live.launch_run(
        session_factory, ENGINEER, request, vigil=Path("/bin/true"), environ=dict(os.environ),
        logs_dir=tmp_path / "logs", now=_now, spawn=federated_live.spawn_detached,
    )  # fmt: skip

    # Assert: the launch and its audit entry; the process's pid recorded
    with session_factory() as session:
        launch = federated_runs.get_launch(session, run)
        entries = [e for e in audit_log.iter_entries(session) if e.action == AuditAction.FL_RUN_LAUNCHED]
    assert launch is not None and launch.pid > 0 and launch.request["strategy"] == "median"
    assert [(e.actor, e.subject, e.payload["request"]["rounds"]) for e in entries] == [("eng", run, 2)]
    # Assert: once the process is gone (reaped), the launch no longer blocks the next
    deadline = time.monotonic() + 30
    while federated_live.running_launch(session_factory, now=_now()) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert federated_live.running_launch(session_factory, now=_now()) is None


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (LaunchRequest(sites=("northfield",), rounds=1), "at least 2 different sites, got 'northfield'"),
        (LaunchRequest(sites=SITES, rounds=0), "at least 1 round, got 0"),
        (LaunchRequest(sites=SITES, rounds=1, strategy="mean"), "got 'mean'"),
        (LaunchRequest(sites=SITES, rounds=1, min_sites=3), "between 1 and 2 sites, got 3"),
        (LaunchRequest(sites=SITES, rounds=1, dp_noise_multiplier=1.0), "positive noise multiplier"),
        (
            LaunchRequest(
                sites=SITES,
                rounds=1,
                strategy="krum",
                dp_noise_multiplier=1.0,
                dp_clipping_norm=1.0,
                epsilon_budget=8.0,
            ),  # fmt: skip
            "fedavg strategy only, got 'krum'",
        ),
        (LaunchRequest(sites=("northfield", "nowhere"), rounds=1), "nowhere"),
        (
            LaunchRequest(sites=SITES, rounds=1, strategy="krum", secure_aggregation=True),
            "plain fedavg only, not with the 'krum' strategy",
        ),
        (
            LaunchRequest(
                sites=SITES,
                rounds=1,
                dp_noise_multiplier=1.0,
                dp_clipping_norm=1.0,
                epsilon_budget=8.0,
                secure_aggregation=True,
            ),  # fmt: skip
            "not with differential privacy",
        ),
        (
            LaunchRequest(sites=SITES, rounds=1, secure_aggregation=True, secagg_threshold=3),
            "between 2 and 2 sites, got 3",
        ),
        (LaunchRequest(sites=SITES, rounds=1, secagg_threshold=2), "needs secure aggregation"),
    ],
)
def test_a_bad_request_is_refused_naming_the_value_and_nothing_is_written(
    session_factory: SessionFactory, tmp_path: Path, request_: LaunchRequest, named: str
) -> None:
    # Prepare
    _installation(session_factory, tmp_path / "keys")

    def no_spawn(*_args: object) -> int:
        raise AssertionError("a refused request starts nothing")

    # Execute
    with pytest.raises(Exception, match=named):
        federated_live.launch_run(
            session_factory, ENGINEER, request_, vigil=Path("/bin/true"), environ={}, logs_dir=tmp_path,
            now=_now, spawn=no_spawn,
        )  # fmt: skip

    # Assert
    with session_factory() as session:
        assert federated_runs.list_launches(session) == []


def test_a_secure_request_runs_as_the_command_line_would_parse_it() -> None:
    # Prepare
    from core.cli import build_parser

    request = LaunchRequest(sites=SITES, rounds=2, secure_aggregation=True, secagg_threshold=2)

    # Execute
    args = build_parser().parse_args(request.argv("fl-20270101T120000-0a1b2c", "eng"))

    # Assert: the flags vigil fl run acts on, and the launch's record of them
    assert (args.secure_aggregation, args.secagg_threshold, args.strategy) == (True, 2, "fedavg")
    assert request.to_json()["secure_aggregation"] == {"threshold": 2}
    assert LaunchRequest(sites=SITES, rounds=1).to_json()["secure_aggregation"] is None
