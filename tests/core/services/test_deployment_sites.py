"""Per-site promotion and rollback, the printed full name on the signature, and "what served site X at T".

On a small installation (the random test model, two studies per site): a challenger with a
passing gate is promoted for one site only, then rolled back there; predictions follow the
version serving each study's site; bad input names the value and switches nothing.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from core.audit.events import AuditAction
from core.errors import BadInputError, DeploymentRefusedError, UnknownSiteError
from core.services import auth, deployment, models, prediction
from core.store import audit_log, deployments, model_versions, predictions, site_calibrators, sites, studies
from core.store.engine import SessionFactory
from core.store.site_calibrators import SiteCalibratorIn
from tests.cli_home import run_json
from tests.ui.installation import TEST_MODEL_VERSION, Installation, clock, copy_installation
from tests.ui.installation import shared_template as _template
from tests.ui.test_deployment_page import CHALLENGER, _challenger_with_a_passing_gate

SIGNER, SIGNER_NAME, PASSWORD = "dr.mio", "Dr Carla Mio", "a long enough signer password"


@pytest.fixture
def inst(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[Installation]:
    installation = copy_installation(_template(tmp_path_factory.getbasetemp()), tmp_path)
    _challenger_with_a_passing_gate(installation)
    sf = installation.session_factory()
    auth.add_user(sf, SIGNER, "cmio", PASSWORD, actor="t", now=clock, full_name=SIGNER_NAME)
    yield installation


def _site_names(sf: SessionFactory) -> list[str]:
    with sf() as session:
        return [s.name for s in sites.list_sites(session)]


def _promote(inst: Installation, *site_names: str) -> tuple[deployments.DeploymentRecord, ...]:
    return deployment.promote(
        inst.session_factory(),
        CHALLENGER,
        signer=SIGNER,
        password=PASSWORD,
        models_dir=inst.home / "models",
        actor=SIGNER,
        now=clock,
        sites=site_names,
        per_site_allowed=True,
    )


def _serving(sf: SessionFactory) -> dict[str, str | None]:
    fleet, per_site = deployment.serving_now(sf)
    return {"fleet": fleet and fleet.version, **{s.site: s.deployment and s.deployment.version for s in per_site}}


def test_promoting_one_site_switches_only_it_under_a_signature_with_the_printed_name(inst: Installation) -> None:
    # Prepare
    sf = inst.session_factory()
    first, *others = _site_names(sf)

    # Execute
    (record,) = _promote(inst, first)

    # Assert: that site serves the challenger; the fleet and every other site keep the old version
    assert (record.site, record.version, record.previous_version, record.slot) == (
        first,
        CHALLENGER,
        TEST_MODEL_VERSION,
        "green",
    )
    assert (record.signer, record.signer_name) == (SIGNER, SIGNER_NAME)
    assert _serving(sf) == {"fleet": TEST_MODEL_VERSION, first: CHALLENGER, **dict.fromkeys(others, TEST_MODEL_VERSION)}
    with sf() as session:
        entry = audit_log.last_entry(session)
    assert entry is not None and str(entry.action) == AuditAction.MODEL_PROMOTED.value
    manifest = entry.payload["signature"]
    assert entry.payload["sites"] == [first]
    assert (manifest["printed_name"], manifest["signer"], manifest["sites"]) == (SIGNER_NAME, SIGNER, [first])  # type: ignore[index]
    assert manifest["replaces"] == {first: TEST_MODEL_VERSION}  # type: ignore[index]


def test_a_site_rollback_returns_that_site_only_and_cannot_repeat(inst: Installation) -> None:
    # Prepare
    sf = inst.session_factory()
    first, second, *_ = _site_names(sf)
    _promote(inst, first, second)

    # Execute
    back = deployment.rollback(
        sf, reason="readers at this site disagree", models_dir=inst.home / "models", actor="t", now=clock, site=first
    )

    # Assert
    assert (back.site, back.version, back.action) == (first, TEST_MODEL_VERSION, "rollback")
    assert _serving(sf)[first] == TEST_MODEL_VERSION and _serving(sf)[second] == CHALLENGER
    with sf() as session:
        entry = audit_log.last_entry(session)
    assert entry is not None and entry.payload["sites"] == [first]
    with pytest.raises(DeploymentRefusedError, match="because of a rollback"):
        deployment.rollback(sf, reason="again", models_dir=inst.home / "models", actor="t", now=clock, site=first)


def test_a_fleet_promotion_leaves_a_site_with_its_own_switch(inst: Installation) -> None:
    # Prepare: the challenger for one site, then the fleet back-and-forth is not possible without a
    # second gate, so roll the site back and promote fleet-wide
    sf = inst.session_factory()
    first, second, *_ = _site_names(sf)
    _promote(inst, first)
    deployment.rollback(sf, reason="r", models_dir=inst.home / "models", actor="t", now=clock, site=first)

    # Execute
    (fleet,) = _promote(inst)

    # Assert: the site pinned by its rollback keeps the old version
    assert fleet.site is None and fleet.slot == "green"
    assert _serving(sf)[first] == TEST_MODEL_VERSION and _serving(sf)[second] == CHALLENGER


@pytest.mark.parametrize(
    ("names", "error", "message"),
    [
        (["nowhere"], UnknownSiteError, "'nowhere'"),
        (["{0}", "{0}"], BadInputError, "named more than once"),
        (["{0}", "  "], BadInputError, "blank"),
    ],
)
def test_bad_sites_are_named_and_nothing_switches(
    inst: Installation, names: list[str], error: type[Exception], message: str
) -> None:
    # Prepare
    sf = inst.session_factory()
    first = _site_names(sf)[0]
    with sf() as session:
        before = (len(deployments.history(session)), audit_log.last_entry(session))

    # Execute
    with pytest.raises(error, match=message.format(first)):
        _promote(inst, *(n.format(first) for n in names))

    # Assert
    with sf() as session:
        assert (len(deployments.history(session)), audit_log.last_entry(session)) == before


def test_rolling_back_a_site_with_nothing_to_roll_back_names_it(inst: Installation) -> None:
    sf = inst.session_factory()
    first = _site_names(sf)[0]
    with pytest.raises(DeploymentRefusedError, match=f"site '{first}' has no switch of its own"):
        deployment.rollback(sf, reason="r", models_dir=inst.home / "models", actor="t", now=clock, site=first)
    with pytest.raises(UnknownSiteError, match="'nowhere'"):
        deployment.rollback(sf, reason="r", models_dir=inst.home / "models", actor="t", now=clock, site="nowhere")


def test_served_at_names_the_version_and_the_site_calibrator_in_effect(inst: Installation) -> None:
    # Prepare: two calibrators of the challenger at the site approved one after the other, around a promotion
    sf = inst.session_factory()
    first = _site_names(sf)[0]
    before = clock()
    (record,) = _promote(inst, first)
    t1, t2 = record.switched_at + timedelta(hours=1), record.switched_at + timedelta(hours=2)
    with sf.begin() as session:
        site_id = sites.get_site(session, first).id
        version_id = model_versions.get_by_version(session, CHALLENGER).id
        ids = [
            site_calibrators.add_calibrator(session, _calibrator(version_id, site_id), now=record.switched_at).id
            for _ in range(3)
        ]
        site_calibrators.approve_calibrator(session, ids[0], approved_by="t", now=t1)
        site_calibrators.approve_calibrator(session, ids[1], approved_by="t", now=t2)  # retires the first

    # Execute
    answers = [
        deployment.served_at(sf, site=first, at=moment)
        for moment in (before, record.switched_at, t1, t2 - timedelta(microseconds=1), t2)
    ]

    # Assert: exact at each boundary; the third (never approved) never was in effect
    assert [a.deployment.version if a.deployment else None for a in answers] == [
        TEST_MODEL_VERSION,
        CHALLENGER,
        CHALLENGER,
        CHALLENGER,
        CHALLENGER,
    ]
    assert [a.calibrator.id if a.calibrator else None for a in answers] == [None, None, ids[0], ids[0], ids[1]]
    assert answers[-1].to_dict()["calibrator"]["in_effect_since"] == t2.isoformat()  # type: ignore[index]


def test_each_study_is_scored_by_the_version_serving_its_site(inst: Installation) -> None:
    # Prepare: one site switched to the challenger; nothing scored by it yet
    sf = inst.session_factory()
    first = _site_names(sf)[0]
    _promote(inst, first)

    # Execute
    reports = prediction.predict_serving(
        sf,
        lambda v: models.load_named(sf, v, models_dir=inst.home / "models"),
        site=None,
        batch_size=4,
        actor="t",
        now=clock,
    )

    # Assert: the challenger scored exactly the switched site's studies, and nothing else is pending
    with sf() as session:
        challenger = model_versions.get_by_version(session, CHALLENGER).id
        scored = {p.instance_id for p in predictions.list_predictions(session) if p.model_version_id == challenger}
        at_site = {
            i.id
            for s in studies.list_studies(session, site=first)
            for i in studies.list_instances(session, s.study_uid)
        }
    assert scored == at_site and scored
    assert sum(r.scored + r.skipped for r in reports if r.model_version == CHALLENGER) == len(at_site)
    assert not any(r.superseded for r in reports)


def _calibrator(version_id: int, site_id: int) -> SiteCalibratorIn:
    return SiteCalibratorIn(
        model_version_id=version_id,
        site_id=site_id,
        method="platt",
        params={"a": 1.0, "b": 0.0},
        n_cases=10,
        n_folds=2,
        ece_before=0.1,
        ece_after=0.05,
        brier_before=0.2,
        brier_after=0.15,
        created_by="t",
    )


def test_a_new_user_needs_a_full_name_that_is_named_when_bad(inst: Installation) -> None:
    sf = inst.session_factory()
    for bad, message in [("   ", "full name is required"), ("Dr\nX", "control character"), ("x" * 129, "at most 128")]:
        with pytest.raises(BadInputError, match=message):
            auth.add_user(sf, "dr.new", "radiologist", PASSWORD, actor="t", now=clock, full_name=bad)
    names = {u.username: u.full_name for u in auth.list_users(sf)}
    assert "dr.new" not in names
    assert names["cmio"] == "cmio" and names[SIGNER] == SIGNER_NAME  # demo users print their username


def test_the_cli_promotes_a_site_answers_what_served_it_and_rolls_it_back(
    inst: Installation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    for key, value in inst.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)  # per-site deployment is on by default
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    first = _site_names(inst.session_factory())[0]

    # Execute
    promoted = run_json(
        capsys, "deploy", "promote", CHALLENGER, "--signer", SIGNER, "--password-stdin", "--site", first
    )
    status = run_json(capsys, "deploy", "status")
    at = promoted[1]["deployments"][0]["switched_at"]  # type: ignore[index]
    served = run_json(capsys, "deploy", "history", "--site", first, "--at", str(at))
    back = run_json(capsys, "deploy", "rollback", "--reason", "undo", "--site", first)

    # Assert
    assert promoted[0] == 0 and [d["site"] for d in promoted[1]["deployments"]] == [first]  # type: ignore[attr-defined]
    assert promoted[1]["deployments"][0]["signer_name"] == SIGNER_NAME  # type: ignore[index]
    assert status[1]["serving"] == TEST_MODEL_VERSION
    assert status[1]["sites"][first] == {  # type: ignore[index]
        "serving": CHALLENGER,
        "slot": "green",
        "own_switch": True,
        "rollback_to": TEST_MODEL_VERSION,
    }
    assert served[0] == 0 and (served[1]["model_version"], served[1]["scope"], served[1]["calibrator"]) == (
        CHALLENGER,
        "site",
        None,
    )
    assert back[0] == 0 and (back[1]["site"], back[1]["model_version"]) == (first, TEST_MODEL_VERSION)


def test_a_version_that_serves_no_site_records_nothing_and_says_superseded(inst: Installation) -> None:
    # Prepare: the challenger is registered and gated but serves nowhere
    sf = inst.session_factory()
    model = models.load_named(sf, CHALLENGER, models_dir=inst.home / "models")

    # Execute
    report = prediction.predict_pending(sf, model, site=None, batch_size=4, actor="t", now=clock)

    # Assert
    with sf() as session:
        challenger = model_versions.get_by_version(session, CHALLENGER).id
        stored = predictions.list_predictions(session, model_version_id=challenger)
    assert report.superseded and report.scored == 0 and stored == []


def test_a_promotion_naming_sites_is_refused_where_per_site_deployment_is_switched_off(
    inst: Installation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: an installation that switched per-site deployment off (it is on by default)
    for key, value in inst.env.items():
        monkeypatch.setenv(key, value)
    config = inst.home / "fleet-only.toml"
    config.write_text("per_site_deployment = false\n", encoding="utf-8")
    monkeypatch.setenv("VIGIL_CONFIG", str(config))
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    first = _site_names(inst.session_factory())[0]

    # Execute
    code, _, err = run_json(
        capsys, "deploy", "promote", CHALLENGER, "--signer", SIGNER, "--password-stdin", "--site", first
    )

    # Assert: refused with the reason, and nothing switched
    assert code == 2 and "per_site_deployment = false" in err and "promote fleet-wide" in err, err
    assert run_json(capsys, "deploy", "status")[1]["serving"] == TEST_MODEL_VERSION


def test_a_gate_scoped_to_a_site_clears_a_promotion_there_and_nowhere_else(inst: Installation) -> None:
    # Prepare: a second challenger whose only passing gate judged the first site's studies alone
    sf = inst.session_factory()
    first, second, *_ = _site_names(sf)
    _challenger_with_a_passing_gate(inst, "cxr-scoped", nudge=2e-3, scope=[first])

    def promote(*site_names: str) -> tuple[deployments.DeploymentRecord, ...]:
        return deployment.promote(
            sf, "cxr-scoped", signer=SIGNER, password=PASSWORD, models_dir=inst.home / "models", actor=SIGNER,
            now=clock, sites=site_names, per_site_allowed=True,
        )  # fmt: skip

    # Execute and assert: refused fleet-wide and at another site, naming the command; switched at the first
    with pytest.raises(DeploymentRefusedError, match=r"not been validated .*scoped to some sites clears those"):
        promote()
    with pytest.raises(DeploymentRefusedError, match=f"not been validated .* at '{second}'.*--site {second}"):
        promote(second)
    (record,) = promote(first)
    assert (record.site, record.version) == (first, "cxr-scoped")


def test_a_scope_served_by_two_versions_or_with_a_site_or_empty_is_refused_before_scoring(
    inst: Installation,
) -> None:
    from core.registry.plan import read_plan
    from core.services import change_control

    # Prepare: the first site switched alone, so the scope's two sites are served by two versions
    sf = inst.session_factory()
    first, second, *_ = _site_names(sf)
    _promote(inst, first)

    def gate(**kwargs: object) -> object:
        return change_control.validate_change(
            sf, "cxr-other", plan=read_plan(change_control.DEFAULT_PLAN_PATH), models_dir=inst.home / "models",
            actor="t", now=clock, **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip

    _challenger_with_a_passing_gate(inst, "cxr-other", nudge=3e-3)
    with sf() as session:
        before = audit_log.last_entry(session)

    # Execute and assert
    with pytest.raises(BadInputError, match=f"served by different versions \\({first}: {CHALLENGER}, {second}: "):
        gate(scope=[second, first])
    with pytest.raises(BadInputError, match="a scope or a site, not both"):
        gate(scope=[first], site=first)
    with pytest.raises(BadInputError, match=r"at least one site, got \[' '\]"):
        gate(scope=[" "])
    with pytest.raises(UnknownSiteError, match="nowhere"):
        gate(scope=["nowhere"])
    with sf() as session:
        assert audit_log.last_entry(session) == before
