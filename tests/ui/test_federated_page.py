"""The Federated page, headless (AppTest): who sees what, a launch in the background, and its refusals."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from streamlit.testing.v1 import AppTest

from core.audit.events import AuditAction
from core.services import federated
from core.services.permissions import Role
from core.store import audit_log, federated_runs
from core.store.federated_runs import FlLaunchRecord, FlNodeRecord, FlRunRecord, FlUpdateRecord
from tests.ui.conftest import USERS, texts
from tests.ui.installation import TEST_MODEL_VERSION, Installation, clock
from tests.ui.test_deep_links import open_url

App = Callable[[Role | None], AppTest]
PAGE = "pages/federated.py"
SITES = ("northfield", "riverside")
T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def _open(app: App, role: Role) -> AppTest:
    at = app(role)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _keys(inst: Installation) -> None:
    for site in SITES:
        federated.register_site_key(inst.session_factory(), site, keys_dir=inst.home / "fl-keys", actor="t", now=clock)


def _private_run(inst: Installation) -> None:
    """A recorded DP run in which riverside's node was refused as incompatible, and the nodes' check-ins."""
    updates = (
        FlUpdateRecord(1, "northfield", True, "", "a" * 64, "c" * 64,
                       {"n_examples": 6, "train_loss": 0.61, "update_norm": 1.25, "val-auc": 0.7}),
        FlUpdateRecord(1, "riverside", False, "incompatible node: the node runs Vigil 0.0.9, the run needs "
                       "Vigil 0.1.x", "b" * 64, "c" * 64, {}),
    )  # fmt: skip
    run = FlRunRecord(
        run_key="fl-20270104T090000-abcdef", parent_version=TEST_MODEL_VERSION, model_version=None, sites=SITES,
        rounds=2, strategy="fedavg", status="finished", reason="", started_at=T0, ended_at=T0 + timedelta(minutes=4),
        config={"dp": {"noise_multiplier": 1.1, "clipping_norm": 1.0, "delta": 1e-5, "epsilon_budget": 8.0,
                       "site_budget": 8.0, "spent_before": {"northfield": 0.5, "riverside": 0.0},
                       "epsilon_spent": 2.25}},
        updates=updates,
    )  # fmt: skip
    nodes = [
        FlNodeRecord("northfield", "0.1.0", "1.42.0", "d" * 64, "e" * 64, True, "", run.run_key, T0),
        FlNodeRecord("riverside", "0.0.9", "1.42.0", "d" * 64, "f" * 64, False, "the node runs Vigil 0.0.9, the "
                     "run needs Vigil 0.1.x", run.run_key, T0),
    ]  # fmt: skip
    with inst.session_factory().begin() as session:
        federated_runs.add_run(session, run)
        for node in nodes:
            federated_runs.save_node(session, node)


def test_the_cmio_reads_rounds_refusals_privacy_against_budget_and_node_versions_but_cannot_launch(
    app: App, installation: Installation
) -> None:
    # Prepare
    _keys(installation)
    _private_run(installation)

    # Execute
    at = _open(app, Role.CMIO)

    # Assert: the run, its per-site updates with the refusal's reason, ε against budget, node versions
    runs, updates, privacy, run_nodes, all_nodes = (d.value for d in at.dataframe)
    assert list(runs["run"]) == ["fl-20270104T090000-abcdef"] and list(runs["state"]) == ["finished"]
    assert list(updates["verdict"]) == ["accepted", "refused"]
    assert "Vigil 0.0.9" in updates["reason"][1] and updates["update norm"][0] == 1.25
    assert list(privacy["ε total"]) == [2.75, 2.25] and list(privacy["budget"]) == [8.0, 8.0]
    assert list(run_nodes["Vigil"]) == ["0.1.0", "0.0.9"] and list(run_nodes["status"]) == ["compatible", "refused"]
    assert all_nodes.equals(run_nodes)
    assert len(at.get("plotly_chart")) == 1
    # Assert: read-only, times shown in the display zone (UTC here) to the minute
    assert [b.key for b in at.button] == ["vigil-sign-out"] and "Read-only" in texts(at)
    assert "2027-01-04 09:00 UTC" in list(runs["started"])


def test_a_role_without_the_permission_is_refused_the_page(app: App) -> None:
    # Prepare: the page is not in a radiologist's navigation; its URL still answers, with the refusal
    at = app(Role.RADIOLOGIST)

    # Execute
    open_url(at, "federated")

    # Assert
    assert not at.exception, at.exception
    assert "The Federated page needs the cmio or ml engineer or admin role" in " ".join(e.value for e in at.error)
    assert not at.dataframe


def test_an_engineer_launches_in_the_background_and_sees_the_launchers_refusal_from_the_store(
    app: App, installation: Installation
) -> None:
    # Prepare: a version name that is taken, which `vigil fl run` refuses before anything starts
    _keys(installation)
    at = _open(app, Role.ML_ENGINEER)
    at.text_input(key="fl-version").input(TEST_MODEL_VERSION)

    # Execute: the click returns at once, the launcher runs on its own
    started = time.monotonic()
    at.button(key="FormSubmitter:fl-launch-Launch").click().run()
    returned = time.monotonic() - started

    # Assert: launched, audited as the engineer, in one transaction with the launch row
    assert not at.exception, at.exception
    assert returned < 20
    assert "Launched run fl-" in " ".join(s.value for s in at.success)
    sf = installation.session_factory()
    with sf() as session:
        (launch,) = federated_runs.list_launches(session)
        launched = [e for e in audit_log.iter_entries(session) if e.action == AuditAction.FL_RUN_LAUNCHED]
    assert [(e.actor, e.subject) for e in launched] == [(USERS[Role.ML_ENGINEER], launch.run_key)]
    assert launch.request["sites"] == list(SITES) and launch.pid > 0
    # Assert: the launcher refuses the taken name and says so in the store; the page shows it
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with sf() as session:
            launch = federated_runs.get_launch(session, launch.run_key)  # type: ignore[assignment]
        if launch.state == "ended":
            break
        time.sleep(1)
    assert launch.state == "ended" and "already registered" in launch.reason
    at.run()
    runs = at.dataframe[0].value
    assert list(runs["state"]) == ["not run"] and "already registered" in runs["reason"][0]


def test_a_second_launch_while_one_runs_is_refused_with_the_running_run_named(
    app: App, installation: Installation
) -> None:
    # Prepare: the page is open; then another launcher (alive: this very process) starts a run
    _keys(installation)
    at = _open(app, Role.ADMIN)
    request = {"sites": list(SITES), "rounds": 2, "strategy": "fedavg", "dp": None}
    running = FlLaunchRecord(
        "fl-20270104T100000-123456", os.getpid(), "ml.engineer", "running", "", request, (), T0, T0
    )
    with installation.session_factory().begin() as session:
        federated_runs.add_launch(session, running)

    # Execute
    at.button(key="FormSubmitter:fl-launch-Launch").click().run()

    # Assert: refused, naming the run; nothing more written; the page shows the running run's progress
    assert not at.exception, at.exception
    error = " ".join(e.value for e in at.error)
    assert "Not launched: federated run fl-20270104T100000-123456 is still running" in error
    with installation.session_factory()() as session:
        assert [la.run_key for la in federated_runs.list_launches(session)] == [running.run_key]
    assert "round 0 of 2 logged" in " ".join(i.value for i in at.info)


def test_bad_input_is_refused_naming_the_value(app: App, installation: Installation) -> None:
    # Prepare
    _keys(installation)
    at = _open(app, Role.ML_ENGINEER)
    at.multiselect(key="fl-sites").set_value(["northfield"])
    at.checkbox(key="fl-dp").check()
    at.selectbox(key="fl-strategy").set_value("median")

    # Execute
    at.button(key="FormSubmitter:fl-launch-Launch").click().run()

    # Assert
    assert "Not launched: a federated run needs at least 2 different sites, got 'northfield'" in " ".join(
        e.value for e in at.error
    )
    with installation.session_factory()() as session:
        assert federated_runs.list_launches(session) == []


def test_secure_aggregation_is_offered_and_refused_with_a_robust_strategy(app: App, installation: Installation) -> None:
    # Prepare
    _keys(installation)
    at = _open(app, Role.ML_ENGINEER)
    at.checkbox(key="fl-secure").check()
    at.selectbox(key="fl-strategy").set_value("median")

    # Execute
    at.button(key="FormSubmitter:fl-launch-Launch").click().run()

    # Assert: the page's request reached the service's check; nothing started
    error = " ".join(e.value for e in at.error)
    assert "Not launched: secure aggregation (SecAgg+) runs with plain fedavg only, not with the 'median'" in error
    with installation.session_factory()() as session:
        assert federated_runs.list_launches(session) == []
