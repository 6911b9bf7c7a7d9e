"""The change-control loop on the committed cohort: hold-out, retrain, gate, signature, promote, predict, roll back.

One installation is built for the module (``vigil init``'s use case, the labels of record loaded,
a hold-out locked) and a real challenger fine-tuned from the bundled model; the tests then act on
it in order, as an ML engineer and a CMIO would. The plan used for promotion here is a lenient
one written by the test (a one-epoch challenger is not expected to beat the champion); the
bundled plan's verdict on a real retrain is in the README.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch

from core.audit.events import AuditAction
from core.config import Settings
from core.errors import (
    DeploymentRefusedError,
    HoldoutLeakError,
    ModelTamperedError,
    SignatureFailedError,
    WeightsIntegrityError,
)
from core.models.card import write_card
from core.models.finetune import FinetuneConfig
from core.models.loading import sha256_file
from core.registry.lineage import trained_uids
from core.registry.plan import ChangePlan, parse_plan
from core.sampledata import MANIFEST_NAME
from core.services import change_control, deployment, holdout, models, outcomes, prediction, retrain, setup
from core.services.store import open_store
from core.store import audit_log, model_versions
from core.store.deployments import DeploymentRecord
from core.store.engine import SessionFactory
from tests.factories import LENIENT_PLAN_TOML

BUNDLED = "cxr-nodule-1.0.0"
CHALLENGER = "cxr-nodule-ft1"


class Clock:
    """A clock the tests move forward: every act happens at a known, later time."""

    def __init__(self) -> None:
        self.t = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@dataclass
class Loop:
    settings: Settings
    sf: SessionFactory
    clock: Clock

    @property
    def models_dir(self) -> Path:
        return self.settings.home / "models"


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Loop:
    home = tmp_path_factory.mktemp("loop")
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'vigil.db'}")
    clock = Clock()
    setup.initialize(settings, actor="t", now=clock)
    sf = open_store(settings)
    outcomes.load_ground_truth(sf, settings.sample_data_dir / MANIFEST_NAME, actor="t", now=clock)
    holdout.lock_holdout(sf, fraction=0.3, seed=0, actor="mlengineer", now=clock)
    torch.manual_seed(0)
    retrain.retrain(
        sf,
        BUNDLED,
        version=CHALLENGER,
        seed=0,
        config=FinetuneConfig(epochs=1, float64=False),
        models_dir=home / "models",
        work_dir=home / "training",
        actor="mlengineer",
        now=clock,
    )
    return Loop(settings, sf, clock)


def _lenient() -> ChangePlan:
    return parse_plan(LENIENT_PLAN_TOML.encode(), source="<test>")


def _actions(sf: SessionFactory) -> list[str]:
    with sf() as session:
        return [str(e.action) for e in audit_log.iter_entries(session)]


def test_the_challenger_is_registered_with_its_lineage_and_never_saw_the_holdout(loop: Loop) -> None:
    with loop.sf() as session:
        rec = model_versions.get_by_version(session, CHALLENGER)
    card = rec.card
    locked = {c.study_uid for c in holdout.holdout_cases(loop.sf)}
    trained = trained_uids([card])
    assert card["parent_version"] == BUNDLED and rec.address_matches()
    assert locked and trained and not locked & trained
    assert {AuditAction.HOLDOUT_LOCKED.value, AuditAction.MODEL_TRAINED.value} <= set(_actions(loop.sf))


def test_the_gate_runs_on_the_holdout_and_is_stored_and_audited(loop: Loop) -> None:
    result = change_control.validate_change(
        loop.sf, CHALLENGER, plan=_lenient(), models_dir=loop.models_dir, actor="mlengineer", now=loop.clock
    )
    cases = holdout.holdout_cases(loop.sf)
    assert result.report.n == len(cases) and result.report.passed, result.report.failed
    assert result.champion == BUNDLED and len(result.report.sites) >= 2
    assert _actions(loop.sf)[-2:] == [AuditAction.HOLDOUT_USED.value, AuditAction.CHANGE_VALIDATED.value]


def test_a_second_look_at_the_same_holdout_is_counted_and_said(loop: Loop) -> None:
    from core.services.deployment import validation_html
    from core.services.permissions import Role, SignedInUser

    again = change_control.validate_change(
        loop.sf, CHALLENGER, plan=_lenient(), models_dir=loop.models_dir, actor="mlengineer", now=loop.clock
    )
    html = validation_html(loop.sf, SignedInUser("auditor", Role.AUDITOR), again.record.id)
    assert again.record.report["holdout_earlier_uses"] >= 1
    assert "earlier gate run" in html and CHALLENGER in html


def test_a_gate_scoped_to_one_site_judges_its_studies_only_and_counts_as_a_look(loop: Loop) -> None:
    from core.services.deployment import validation_html
    from core.services.permissions import Role, SignedInUser
    from core.store import change_validations

    # Prepare: the deployment site with the most hold-out studies
    cases = holdout.holdout_cases(loop.sf)
    counts = {c.site: sum(1 for x in cases if x.site == c.site) for c in cases if c.site != "benchmark"}
    site = max(sorted(counts), key=lambda name: counts[name])

    # Execute
    scoped = change_control.validate_change(
        loop.sf, CHALLENGER, plan=_lenient(), models_dir=loop.models_dir, actor="mlengineer", now=loop.clock,
        scope=[site],
    )  # fmt: skip

    # Assert: that site's studies only, the whole hold-out's hash, the scope stored, audited and shown
    assert scoped.report.n == counts[site] and [s.site for s in scoped.report.sites] == [site]
    assert scoped.holdout_sha256 == holdout.holdout_sha256(c.study_uid for c in cases)
    assert scoped.record.scope == (site,) and scoped.to_dict()["scope"] == [site]
    assert scoped.record.report["holdout_earlier_uses"] >= 2  # the two whole-hold-out runs above
    with loop.sf() as session:
        used, validated = list(audit_log.iter_entries(session))[-2:]
        champion, challenger = (model_versions.get_by_version(session, v).id for v in (BUNDLED, CHALLENGER))
        fleet = change_validations.latest_for(session, challenger, champion)
        here = change_validations.latest_for(session, challenger, champion, site=site)
    assert (used.payload["scope"], used.payload["per_site"]) == ([site], {site: counts[site]})
    assert validated.payload["scope"] == [site]
    assert fleet is not None and fleet.scope is None and fleet.id < scoped.record.id
    assert here is not None and here.id == scoped.record.id
    html = validation_html(loop.sf, SignedInUser("auditor", Role.AUDITOR), scoped.record.id)
    assert f"Scoped to {site}." in html


def test_a_wrong_password_or_a_role_that_may_not_approve_switches_nothing(loop: Loop) -> None:
    for signer, password in [("cmio", "not the password"), ("radiologist", "vigil-demo-radiologist")]:
        with pytest.raises(SignatureFailedError, match=signer):
            _promote(loop, CHALLENGER, signer=signer, password=password, actor=signer)
        with loop.sf() as session:
            serving = model_versions.serving(session)
        assert serving is not None and serving.version == BUNDLED
        assert _actions(loop.sf)[-1] == AuditAction.SIGNATURE_FAILED.value


def test_promote_predict_and_roll_back(loop: Loop) -> None:
    before = loop.clock.t
    record = _promote(loop, CHALLENGER, actor="cmio")
    serving = models.load_serving(loop.sf, models_dir=loop.models_dir, device=torch.device("cpu"))
    report = prediction.predict_pending(loop.sf, serving, site="riverside", batch_size=16, actor="t", now=loop.clock)
    back = deployment.rollback(loop.sf, reason="test", models_dir=loop.models_dir, actor="cmio", now=loop.clock)
    with loop.sf() as session:
        restored = model_versions.serving(session)
    then = deployment.served_at(loop.sf, site="riverside", at=before)
    during = deployment.served_at(loop.sf, site="riverside", at=record.switched_at)

    assert record.signer == "cmio" and record.signature_meaning == deployment.SIGNATURE_MEANING
    assert record.slot == "green" and record.previous_version == BUNDLED
    assert report.model_version == CHALLENGER and report.scored > 0 and not report.superseded
    assert back.version == BUNDLED and back.action == "rollback"
    assert restored is not None and restored.weights_sha256 == sha256_file(loop.models_dir / BUNDLED / f"{BUNDLED}.pt")
    assert then.deployment is not None and then.deployment.version == BUNDLED
    assert during.deployment is not None and during.deployment.version == CHALLENGER
    with pytest.raises(DeploymentRefusedError, match="rollback"):
        deployment.rollback(loop.sf, reason="again", models_dir=loop.models_dir, actor="cmio", now=loop.clock)


def test_a_challenger_trained_on_holdout_studies_is_refused_by_the_gate(loop: Loop) -> None:
    leaky = _register_variant(loop, "leaky", lambda card: _with_holdout_row(loop, card))
    with pytest.raises(HoldoutLeakError, match="hold-out"):
        change_control.validate_change(
            loop.sf, leaky, plan=_lenient(), models_dir=loop.models_dir, actor="t", now=loop.clock
        )


def test_a_tampered_weights_file_is_refused_at_promotion(loop: Loop) -> None:
    name = _register_variant(loop, "tampered", lambda card: card)
    weights = loop.models_dir / name / f"{name}.pt"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises((WeightsIntegrityError, ModelTamperedError)):
        _promote(loop, name)
    with loop.sf() as session:
        serving = model_versions.serving(session)
    assert serving is not None and serving.version == BUNDLED


def test_promoting_without_a_passing_gate_is_refused(loop: Loop) -> None:
    name = _register_variant(loop, "ungated", lambda card: card)
    with pytest.raises(DeploymentRefusedError, match="validate-change"):
        _promote(loop, name)


def _with_holdout_row(loop: Loop, card: dict[str, object]) -> dict[str, object]:
    uid = holdout.holdout_cases(loop.sf)[0].study_uid
    training = dict(card["training_data"])  # type: ignore[arg-type]
    training["studies"] = [*training.get("studies", []), [uid, "0" * 64, "riverside", 1, "ground_truth", "train"]]
    return {**card, "training_data": training}


def _register_variant(loop: Loop, suffix: str, edit: Callable[[dict[str, object]], dict[str, object]]) -> str:
    """Register a copy of the bundled model with nudged weights (a new content address) and an edited card."""
    from core.models.card import ModelCard

    name = f"{BUNDLED}-{suffix}"
    source = loop.settings.home / "variants" / name
    source.mkdir(parents=True)
    state = torch.load(loop.models_dir / BUNDLED / f"{BUNDLED}.pt", weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + 1e-3
    torch.save(state, source / f"{name}.pt")
    base = models.get_card(loop.sf, BUNDLED).to_dict()
    card = edit(
        {
            **base,
            "version": name,
            "parent_version": BUNDLED,
            "weights": {"path": f"{name}.pt", "sha256": sha256_file(source / f"{name}.pt")},
        }
    )
    write_card(ModelCard.from_dict(card), source / "card.json")
    models.register_model(
        loop.sf, ModelCard.from_dict(card), source_dir=source, models_dir=loop.models_dir, actor="t", now=loop.clock
    )
    return name


def _promote(
    loop: Loop, name: str, *, signer: str = "cmio", password: str = "vigil-demo-cmio", actor: str = "t"
) -> DeploymentRecord:
    (record,) = deployment.promote(  # fleet-wide: one switch
        loop.sf, name, signer=signer, password=password, models_dir=loop.models_dir, actor=actor, now=loop.clock
    )
    return record


def test_a_confirmed_drift_incident_proposes_a_retraining_until_one_answers_it(loop: Loop) -> None:
    from datetime import date

    from core.services import monitoring_incidents
    from core.store import incidents, sites

    with loop.sf.begin() as session:
        site_id = sites.get_site(session, "riverside").id
        incident = incidents.add_incident(
            session,
            incidents.IncidentIn(site_id, "image", date(2026, 11, 20), None, "SYNTHETIC: detector update at riverside"),
            opened_by="system",
            now=loop.clock(),
        )
    assert retrain.retrain_proposals(loop.sf) == []  # open, not yet confirmed by a person
    monitoring_incidents.acknowledge_incident(loop.sf, incident.id, by="cmio", note="confirmed", now=loop.clock)

    proposed = retrain.retrain_proposals(loop.sf)
    retrain.retrain(
        loop.sf,
        BUNDLED,
        version="cxr-nodule-ft2",
        seed=1,
        config=FinetuneConfig(epochs=1, float64=False),
        models_dir=loop.models_dir,
        work_dir=loop.settings.home / "training",
        actor="mlengineer",
        now=loop.clock,
        for_incident=incident.id,
    )

    assert [(p.incident_id, p.site, p.parent) for p in proposed] == [(incident.id, "riverside", BUNDLED)]
    assert retrain.retrain_proposals(loop.sf) == []
    with loop.sf() as session:
        trained = [e for e in audit_log.iter_entries(session) if str(e.action) == AuditAction.MODEL_TRAINED.value]
    assert trained[-1].payload["for_incident"] == incident.id
