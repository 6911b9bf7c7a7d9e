"""The Deployment page, headless (AppTest): what each role sees, a signed promotion, a rollback.

The challenger here is the installation's random model with nudged weights, and its passing gate
run is stored directly: the gate itself runs for real in ``tests/core/services``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.models.card import ModelCard, write_card
from core.models.loading import sha256_file
from core.sampledata import MANIFEST_NAME
from core.services import deployment, holdout, models, outcomes
from core.services.permissions import Role, SignedInUser
from core.store import audit_log, change_validations, model_versions
from core.store.engine import SessionFactory
from tests.factories import LENIENT_PLAN_TOML
from tests.ui.conftest import USERS, count_elements
from tests.ui.installation import DEMO_PASSWORDS, TEST_MODEL_VERSION, Installation, clock

App = Callable[[Role | None], AppTest]
PAGE = "pages/deployment.py"
CHALLENGER = "test-random-0.2"


def _open(app: App, role: Role) -> AppTest:
    at = app(role)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _challenger_with_a_passing_gate(
    inst: Installation, name: str = CHALLENGER, nudge: float = 1e-3, scope: list[str] | None = None
) -> None:
    sf = inst.session_factory()
    models_dir = inst.home / "models"
    source = inst.home / f"variant-{name}"
    source.mkdir()
    state = torch.load(models_dir / TEST_MODEL_VERSION / "weights.pt", weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + nudge
    torch.save(state, source / "weights.pt")
    base = models.get_card(sf, TEST_MODEL_VERSION).to_dict()
    card = ModelCard.from_dict(
        {
            **base,
            "version": name,
            "parent_version": TEST_MODEL_VERSION,
            "weights": {"path": "weights.pt", "sha256": sha256_file(source / "weights.pt")},
        }
    )
    write_card(card, source / "card.json")
    models.register_model(sf, card, source_dir=source, models_dir=models_dir, actor="t", now=clock)
    with sf.begin() as session:
        champion = model_versions.get_by_version(session, TEST_MODEL_VERSION)
        challenger = model_versions.get_by_version(session, name)
        change_validations.add(
            session,
            challenger_id=challenger.id,
            champion_id=champion.id,
            plan_id="test",
            plan_version="1",
            plan_sha256="0" * 64,
            holdout_sha256="1" * 64,
            passed=True,
            significant_change=False,
            report={"passed": True, "failed": [], "criteria": [], "sites": [], "scope": scope},
            actor="t",
            now=clock(),
        )


def _serving(inst: Installation) -> str:
    with inst.session_factory()() as session:
        rec = model_versions.serving(session)
    assert rec is not None
    return rec.version


def test_each_role_that_may_sees_the_serving_version_and_the_history(app: App) -> None:
    for role in (Role.CMIO, Role.ML_ENGINEER, Role.ADMIN, Role.AUDITOR):
        at = _open(app, role)
        assert [t.value for t in at.title] == ["Deployment"]
        assert at.metric[0].value == TEST_MODEL_VERSION
        assert count_elements(at) <= 200
        forms = {b.label for b in at.button}
        assert ("Sign and promote" in forms) is False  # nothing has passed a gate yet


def test_the_cmio_signs_a_promotion_and_a_wrong_password_switches_nothing(app: App, installation: Installation) -> None:
    _challenger_with_a_passing_gate(installation)
    at = _open(app, Role.CMIO)
    at.text_input[0].set_value("not my password")
    next(b for b in at.button if b.label == "Sign and promote").click().run()
    assert "signature by 'cmio' refused" in " ".join(e.value for e in at.error)
    assert _serving(installation) == TEST_MODEL_VERSION

    at.text_input[0].set_value(DEMO_PASSWORDS["cmio"])
    next(b for b in at.button if b.label == "Sign and promote").click().run()

    assert not at.exception, at.exception
    assert _serving(installation) == CHALLENGER
    assert f"{CHALLENGER} now serves" in " ".join(s.value for s in at.success)
    assert at.metric[0].value == CHALLENGER  # the page shows the new state, not the old one
    with installation.session_factory()() as session:
        last = audit_log.last_entry(session)
    assert last is not None and str(last.action) == "model_promoted" and last.actor == "cmio"


def test_an_ml_engineer_rolls_back_but_cannot_promote(app: App, installation: Installation) -> None:
    _challenger_with_a_passing_gate(installation)
    signer = _open(app, Role.CMIO)
    signer.text_input[0].set_value(DEMO_PASSWORDS["cmio"])
    next(b for b in signer.button if b.label == "Sign and promote").click().run()

    at = _open(app, Role.ML_ENGINEER)
    assert "Sign and promote" not in {b.label for b in at.button}
    rollback = next(s for s in at.selectbox if s.label == "Roll back")
    assert rollback.value == "every site without its own switch"  # the fleet's promotion is the one to undo
    at.text_input[0].set_value("readers report missed nodules")
    next(b for b in at.button if b.label == "Roll back").click().run()

    assert not at.exception, at.exception
    assert _serving(installation) == TEST_MODEL_VERSION
    assert "Rolled back" in " ".join(s.value for s in at.success)


def test_sites_are_not_offered_where_per_site_deployment_is_switched_off(
    app: App, installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text("per_site_deployment = false\n", encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    _challenger_with_a_passing_gate(installation)
    at = _open(app, Role.CMIO)
    assert not [m for m in at.multiselect if m.label == "Sites"]  # switched off: fleet-wide only


def test_the_cmio_promotes_one_site_and_the_page_shows_each_site_serving(
    app: App, installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Prepare: the default installation (per-site deployment is on)
    _challenger_with_a_passing_gate(installation)
    at = _open(app, Role.CMIO)
    picker = next(m for m in at.multiselect if m.label == "Sites")
    site = picker.options[0]

    # Execute
    picker.set_value([site])
    at.text_input[0].set_value(DEMO_PASSWORDS["cmio"])
    next(b for b in at.button if b.label == "Sign and promote").click().run()

    # Assert: only that site switched; the table of sites and the history say so
    assert not at.exception, at.exception
    assert _serving(installation) == TEST_MODEL_VERSION  # the fleet-wide version is unchanged
    assert f"{CHALLENGER} now serves {site} (slot green); signed by cmio (cmio)." in [s.value for s in at.success]
    table = next(d.value for d in at.dataframe if "by" in d.value.columns and "site" in d.value.columns)
    serving = dict(zip(table["site"], table["serving"], strict=True))
    assert serving[site] == CHALLENGER and set(serving.values()) == {CHALLENGER, TEST_MODEL_VERSION}
    history = next(d.value for d in at.dataframe if "signed by" in d.value.columns)
    assert list(history["site"])[0] == site and list(history["signed by"])[0] == "cmio (cmio)"
    rollback = next(s for s in at.selectbox if s.label == "Roll back")
    assert rollback.options == [f"{site}: back to {TEST_MODEL_VERSION}"]


def test_the_gate_report_downloads_as_html(app: App, installation: Installation) -> None:
    _challenger_with_a_passing_gate(installation)
    at = _open(app, Role.AUDITOR)
    assert any("validation" in str(s.options) for s in at.selectbox) or at.selectbox
    assert "Sign and promote" not in {b.label for b in at.button}


def _ready_to_gate(installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SessionFactory:
    """Labels of record, a locked hold-out and a lenient plan (configured): a gate run can pass."""
    sf = installation.session_factory()
    outcomes.load_ground_truth(sf, installation.cohort_dir / MANIFEST_NAME, actor="t", now=clock)
    holdout.lock_holdout(sf, fraction=0.5, seed=0, actor="t", now=clock)
    (tmp_path / "plan.toml").write_text(LENIENT_PLAN_TOML, encoding="utf-8")
    config = tmp_path / "vigil.toml"
    config.write_text(f'[vigil]\nchange_control_plan = "{tmp_path / "plan.toml"}"\n', encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    return sf


def test_the_gate_scoped_to_chosen_sites_judges_their_studies_only(
    app: App, installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Prepare
    sf = _ready_to_gate(installation, monkeypatch, tmp_path)
    _challenger_with_a_passing_gate(installation)
    at = _open(app, Role.ML_ENGINEER)
    only = next(m for m in at.multiselect if m.label == "Judge for these sites only")
    with_studies = {c.site for c in holdout.holdout_cases(sf)}
    site = next(o for o in only.options if o in with_studies)

    # Execute
    only.set_value([site])
    next(b for b in at.button if b.label == "Run the gate").click().run()

    # Assert: the stored run judged that site alone, and the page says so
    assert not at.exception, at.exception
    shown = [str(m.value) for m in (*at.success, *at.warning)]
    assert any(f"against {TEST_MODEL_VERSION}, scoped to {site}," in m for m in shown), shown
    with sf() as session:
        newest = change_validations.list_all(session)[0]
    assert newest.scope == (site,) and [s["site"] for s in newest.report["sites"]] == [site]  # type: ignore[index, union-attr]


def test_the_gate_runs_against_the_version_serving_a_site_with_its_own_switch(
    app: App, installation: Installation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Prepare: labels and a locked hold-out, a lenient plan, the challenger serving one site alone
    sf = _ready_to_gate(installation, monkeypatch, tmp_path)
    _challenger_with_a_passing_gate(installation)
    alone = _open(app, Role.ML_ENGINEER)
    offered_alone = [s.label for s in alone.selectbox]
    cmio = SignedInUser(USERS[Role.CMIO], Role.CMIO)
    site = _open(app, Role.CMIO).multiselect[0].options[0]
    deployment.promote_as(
        sf, cmio, CHALLENGER, DEMO_PASSWORDS["cmio"], models_dir=installation.home / "models", now=clock, sites=[site]
    )

    # Execute: the ML engineer judges the fleet's version against what now serves that site
    at = _open(app, Role.ML_ENGINEER)
    against = next(s for s in at.selectbox if s.label == "Against the version serving")
    options = list(against.options)
    against.set_value(f"{site} ({CHALLENGER}, its own switch)")
    next(s for s in at.selectbox if s.label == "Challenger").set_value(TEST_MODEL_VERSION)
    next(b for b in at.button if b.label == "Run the gate").click().run()

    # Assert: offered only once a site has its own switch; the run stored is against the site's version
    assert not at.exception, at.exception
    assert "Against the version serving" not in offered_alone
    assert options == [
        f"every site without its own switch ({TEST_MODEL_VERSION})",
        f"{site} ({CHALLENGER}, its own switch)",
    ]
    shown = [str(m.value) for m in (*at.success, *at.warning)]
    assert any(f"of {TEST_MODEL_VERSION} against {CHALLENGER} (serving {site})" in m for m in shown), shown
    with sf() as session:
        newest = change_validations.list_all(session)[0]
        names = {i: model_versions.get_by_version(session, v).id for i, v in ((0, TEST_MODEL_VERSION), (1, CHALLENGER))}
    assert (newest.challenger_id, newest.champion_id) == (names[0], names[1])
