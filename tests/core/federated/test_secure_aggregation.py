"""SecAgg+: the server gets the plain mean of the sites' changes (within the quantisation step), never one change.

The protocol here is Flower's own: the real ServerApp side (:func:`core.federated.secure_server.run_secure`,
Flower's ``DefaultWorkflow`` and ``SecAggPlusWorkflow``) talks to the real ClientApp (with Flower's
``secaggplus_mod``) through an in-process grid that hands each message to the node it is addressed
to, so the sites' own changes can be computed beside the run and compared with what it aggregated.
The loopback run through ``vigil fl run`` is in ``tests/test_fl_cli.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType, Metadata, RecordDict
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from core.errors import BadInputError
from core.federated.client_app import app, site_data
from core.federated.compatibility import local_profile
from core.federated.plan import RunPlan
from core.federated.protocol import RoundConfig
from core.federated.secure import SecAggSettings, apply_mean_change, site_change
from core.federated.secure_server import run_secure
from core.federated.signing import arrays_sha256, generate_site_key
from core.federated.task import (
    LocalTrainConfig,
    SiteManifest,
    architecture_sha256,
    integer_entries,
    network_arrays,
    train_local,
    write_site_manifest,
)
from core.federated.verified import QuorumLostError
from core.models.networks import DEFAULT_NETWORK, build_network
from core.models.preprocess import PreprocessParams
from core.types import JSONObject
from tests.core.federated.conftest import SITES, site_examples

SiteFiles = dict[str, tuple[Path, Path, bytes]]
LOCAL: dict[str, Any] = {
    "local_epochs": 1,
    "learning_rate": 3e-4,
    "batch_size": 4,
    "max_studies": 0,
    "val_fraction": 0.25,
    "seed": 0,
}


@pytest.fixture(autouse=True)
def _server_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Flower's ServerApp runtime sets in its process before the app runs (messages read it)."""
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)


class _InProcessGrid(Grid):
    """Delivers each message to the real ClientApp of the node it is addressed to, as a SuperLink would."""

    def __init__(self, contexts: dict[int, Context]) -> None:
        self.contexts = contexts
        self.replies: list[Message] = []

    def set_run(self, run: Any) -> None:
        """Unused: one run."""

    @property
    def run(self) -> Any:
        """The run's id is all the legacy workflow reads."""
        return SimpleNamespace(run_id=1)

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        """A message for one node."""
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        """The connected nodes."""
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Not used: :meth:`send_and_receive` delivers."""
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Not used: :meth:`send_and_receive` delivers."""
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Each node's reply to its message."""
        replies = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            delivered = Message(
                # A copy, as the wire makes one: the workflow sends one content object to every node,
                # and the mod consumes what it reads.
                content=copy.deepcopy(msg.content),
                metadata=Metadata(
                    run_id=1,
                    message_id=uuid.uuid4().hex,
                    src_node_id=0,
                    dst_node_id=node,
                    reply_to_message_id="",
                    group_id=msg.metadata.group_id,
                    created_at=time.time(),
                    ttl=3600.0,
                    message_type=msg.metadata.message_type,
                ),
            )
            replies.append(app(delivered, self.contexts[node]))
        self.replies += replies
        return replies


class _DroppingGrid(_InProcessGrid):
    """An in-process grid where one node stops answering from SecAgg+'s "collect masked vectors" stage on.

    What a hospital whose link fails mid-round looks like to the server: it has shared its keys,
    so the others' masked vectors carry masks paired with it, which the server must unmask from
    the survivors' shares of its key.
    """

    def __init__(self, contexts: dict[int, Context], dropped: int) -> None:
        super().__init__(contexts)
        self.dropped = dropped
        self.gone = False

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """As the base grid, without the dropped node once the masked vectors are asked for."""
        messages = list(messages)
        self.gone = self.gone or any(_stage(m) == Stage.COLLECT_MASKED_VECTORS for m in messages)
        kept = [m for m in messages if not (self.gone and m.metadata.dst_node_id == self.dropped)]
        return super().send_and_receive(kept, timeout=timeout)


def _stage(message: Message) -> str | None:
    record = message.content.config_records.get(RECORD_KEY_CONFIGS)
    return None if record is None else cast(str | None, record.get(Key.STAGE))


def _plan(
    site_files: SiteFiles,
    *,
    public_keys: dict[str, str] | None = None,
    sites: tuple[str, ...] = SITES,
    threshold: int = 2,
) -> RunPlan:
    preprocessing = PreprocessParams().to_dict()
    arch = architecture_sha256(DEFAULT_NETWORK)
    return RunPlan(
        run="secure-1",
        parent_version="p",
        sites=sites,
        public_keys=public_keys or {s: site_files[s][2].decode() for s in sites},
        network=dict(DEFAULT_NETWORK),
        preprocessing=preprocessing,
        arch_sha256=arch,
        rounds=1,
        strategy="fedavg",
        min_sites=2,
        local=LOCAL,
        expected_node={
            k: str(v) for k, v in local_profile(arch_sha256=arch, preprocessing=preprocessing).to_dict().items()
        },
        secure=SecAggSettings(reconstruction_threshold=threshold).to_json(),
    )


def _contexts(site_files: SiteFiles, sites: tuple[str, ...] = SITES) -> dict[int, Context]:
    return {
        100 + i: Context(
            run_id=1,
            node_id=100 + i,
            node_config={
                "site": site,
                "data-manifest": str(site_files[site][0]),
                "signing-key": str(site_files[site][1]),
            },
            state=RecordDict(),
            run_config={},
        )
        for i, site in enumerate(sites)
    }


def _round_config(plan: RunPlan) -> RoundConfig:
    return RoundConfig(
        run=plan.run,
        network=plan.network,
        preprocessing=plan.preprocessing,
        local_epochs=1,
        learning_rate=3e-4,
        batch_size=4,
        max_studies=0,
        val_fraction=0.25,
        seed=0,
    )


def _initial() -> list[np.ndarray]:
    import torch

    torch.manual_seed(0)
    return network_arrays(build_network(dict(DEFAULT_NETWORK)))


def test_the_secure_aggregate_is_the_plain_mean_of_the_sites_changes_and_no_change_reaches_the_server(
    site_files: SiteFiles,
) -> None:
    # Prepare
    plan = _plan(site_files)
    initial = _initial()
    integer = integer_entries(DEFAULT_NETWORK)
    contexts = _contexts(site_files)
    cfg = _round_config(plan)
    changes = list(_changes(plan, contexts, initial).values())
    plain = apply_mean_change(
        initial, [np.mean(arrays, axis=0) for arrays in zip(*changes, strict=True)], integer=integer
    )
    events: list[JSONObject] = []
    grid = _InProcessGrid(contexts)

    # Execute
    final = run_secure(
        grid,
        Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
        plan=plan,
        config=dict(cfg.to_record()),
        initial=initial,
        integer=integer,
        log=events.append,
    )

    # Assert: the plain mean, to within SecAgg+'s quantisation (one step per site at most)
    bound = len(SITES) * SecAggSettings(reconstruction_threshold=2).step
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(final, plain, strict=True)) <= bound
    assert max(float(np.max(np.abs(c))) for arrays in changes for c in arrays) > 100 * bound  # the sites did move
    # Assert: integer buffers are the global model's, exactly
    assert all(np.array_equal(f, i) for f, i, is_int in zip(final, initial, integer, strict=True) if is_int)
    # Assert: the round is logged with its sites and the aggregate's hash, and nothing of any one site's change
    (round_event,) = [e for e in events if e["event"] == "round"]
    assert round_event["secure"] is True
    assert round_event["aggregate_sha256"] == arrays_sha256(final)
    assert sorted(str(u["site"]) for u in cast(list[JSONObject], round_event["updates"]) if u["accepted"]) == sorted(
        SITES
    )
    logged = json.dumps(events)
    for arrays in changes:
        assert arrays_sha256(arrays) not in logged
    # Assert: no training reply a site sent held an array (the masked vector travels as bytes, masked)
    train_replies = [r for r in grid.replies if r.metadata.message_type == MessageType.TRAIN]
    assert len(train_replies) == 4 * len(SITES)  # SecAgg+'s four stages
    assert all(len(array) == 0 for r in train_replies for array in r.content.array_records.values())
    # Assert: the sites' validation aggregates are logged as in the plain mode
    assert sorted(cast(JSONObject, next(e for e in events if e["event"] == "evaluate")["sites"])) == sorted(SITES)


def test_a_participation_that_does_not_verify_fails_the_round_closed(site_files: SiteFiles) -> None:
    # Prepare: riverside's registered key is northfield's, so riverside's signature cannot verify
    keys = {"northfield": site_files["northfield"][2].decode(), "riverside": site_files["northfield"][2].decode()}
    plan = _plan(site_files, public_keys=keys)
    events: list[JSONObject] = []

    # Execute
    with pytest.raises(QuorumLostError, match="riverside"):
        run_secure(
            _InProcessGrid(_contexts(site_files)),
            Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
            plan=plan,
            config=dict(_round_config(plan).to_record()),
            initial=_initial(),
            integer=integer_entries(DEFAULT_NETWORK),
            log=events.append,
        )

    # Assert: logged as failed, with no aggregate and the reason
    (round_event,) = [e for e in events if e["event"] == "round"]
    assert round_event["aggregate_sha256"] is None
    assert "signature does not verify" in str(round_event["failed"])


def test_a_change_beyond_the_clipping_range_is_refused_by_the_site_not_clipped() -> None:
    # Prepare
    old = [np.zeros((2, 2), np.float32), np.zeros((), np.float32)]
    new = [np.full((2, 2), 0.5, np.float32), np.array(7.0, np.float32)]

    # Execute / Assert
    with pytest.raises(BadInputError, match=r"array 0 changed by 0\.5"):
        site_change(new, old, integer=(False, True), clipping_range=0.25)
    sent = site_change(new, old, integer=(False, True), clipping_range=1.0)
    assert np.array_equal(sent[1], np.zeros((), np.float32))  # the counter is not sent


def test_secagg_settings_refuse_a_threshold_below_two_and_a_bad_clipping_range() -> None:
    with pytest.raises(BadInputError, match="at least 2"):
        SecAggSettings(reconstruction_threshold=1)
    with pytest.raises(BadInputError, match="clipping range"):
        SecAggSettings(reconstruction_threshold=2, clipping_range=float("nan"))


def test_a_plan_refuses_secure_aggregation_with_a_robust_strategy_or_differential_privacy(
    site_files: SiteFiles,
) -> None:
    plan = _plan(site_files).to_json()
    with pytest.raises(BadInputError, match="'median' strategy"):
        RunPlan.from_json({**plan, "strategy": "median"})
    dp = {"noise_multiplier": 1.0, "clipping_norm": 1.0, "delta": 1e-5, "epsilon_budget": 8.0}
    with pytest.raises(BadInputError, match="differential privacy"):
        RunPlan.from_json({**plan, "dp": dp})


THREE = (*SITES, "eastgate")


@pytest.fixture(scope="module")
def three_sites(fl_cohort: Path, site_files: SiteFiles, tmp_path_factory: pytest.TempPathFactory) -> SiteFiles:
    """The two sites' files and a third site's, from the same cohort."""
    out = tmp_path_factory.mktemp("fl-third")
    manifest, key = out / "eastgate.json", out / "eastgate.pem"
    write_site_manifest(SiteManifest("eastgate", site_examples(fl_cohort, "eastgate"), frozenset()), manifest)
    return {**site_files, "eastgate": (manifest, key, generate_site_key(key))}


def _changes(plan: RunPlan, contexts: dict[int, Context], initial: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Each site's own clipped change, computed beside the run as its ClientApp computes it."""
    cfg, local = _round_config(plan), LocalTrainConfig(epochs=1, learning_rate=3e-4, batch_size=4, seed=0)
    return {
        str(ctx.node_config["site"]): site_change(
            train_local(plan.network, initial, site_data(ctx, cfg, part="train"), local, server_round=1).weights,
            initial,
            integer=integer_entries(DEFAULT_NETWORK),
            clipping_range=8.0,
        )
        for ctx in contexts.values()
    }


@pytest.mark.parametrize(("threshold", "survives"), [(2, True), (3, False)])
def test_a_site_dropping_mid_round_is_unmasked_above_the_threshold_and_fails_the_round_below_it(
    three_sites: SiteFiles, threshold: int, survives: bool
) -> None:
    # Prepare: three sites, quorum 2; eastgate (node 102) drops after sharing its keys
    plan = dataclasses.replace(_plan(three_sites, sites=THREE, threshold=threshold), min_sites=2)
    contexts = _contexts(three_sites, THREE)
    initial, integer = _initial(), integer_entries(DEFAULT_NETWORK)
    grid = _DroppingGrid(contexts, dropped=102)
    events: list[JSONObject] = []

    def run() -> list[np.ndarray]:
        return run_secure(
            grid,
            Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}),
            plan=plan,
            config=dict(_round_config(plan).to_record()),
            initial=initial,
            integer=integer,
            log=events.append,
        )

    # Execute / Assert: below the threshold the round fails closed, logged with no aggregate
    if not survives:
        with pytest.raises(QuorumLostError, match="fewer sites than the reconstruction threshold"):
            run()
        (failed,) = [e for e in events if e["event"] == "round"]
        assert failed["aggregate_sha256"] is None and grid.gone
        return
    final = run()

    # Assert: above it, the mean of the two survivors' changes (eastgate's masks removed, its change absent)
    changes = _changes(plan, contexts, initial)
    survivors = [changes["northfield"], changes["riverside"]]
    plain = apply_mean_change(
        initial, [np.mean(arrays, axis=0) for arrays in zip(*survivors, strict=True)], integer=integer
    )
    bound = 2 * SecAggSettings(reconstruction_threshold=2).step
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(final, plain, strict=True)) <= bound
    (round_event,) = [e for e in events if e["event"] == "round"]
    accepted = sorted(str(u["site"]) for u in cast(list[JSONObject], round_event["updates"]) if u["accepted"])
    assert accepted == ["northfield", "riverside"] and round_event["aggregate_sha256"] == arrays_sha256(final)
