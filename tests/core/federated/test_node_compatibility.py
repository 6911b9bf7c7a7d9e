"""Each node reports its releases and hashes with every reply; the server refuses an incompatible one, saying why."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from core.federated.compatibility import NodeProfile, incompatibility, local_profile, preprocessing_sha256
from core.federated.plan import RunPlan
from core.federated.protocol import ARRAYS, CONFIG, INTEGRITY, METRICS, NUM_EXAMPLES
from core.federated.signing import generate_site_key, load_private_key, public_key_pem, sign_update, update_digest
from core.federated.verified import VerifiedStrategy
from core.models.preprocess import PreprocessParams
from core.services.federated_live import nodes_from_events
from core.types import JSONObject
from tests.core.federated.conftest import instruction

ARCH = "a" * 64
GLOBAL = [np.zeros((3, 2), np.float32)]
EXPECTED = NodeProfile("0.1.0", "1.42.0", ARCH, "p" * 64)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ed25519PrivateKey]:
    out = tmp_path_factory.mktemp("keys")
    for site in ("a", "b"):
        generate_site_key(out / site)
    return {site: load_private_key(out / site) for site in ("a", "b")}


def _reply(site: str, key: Ed25519PrivateKey, profile: NodeProfile) -> Message:
    arrays = [np.ones((3, 2), np.float32)]
    node = profile.to_dict()
    digest = update_digest(arrays, site=site, run="r1", server_round=1, arch_sha256=profile.arch_sha256, node=node)
    sent = instruction(RecordDict({CONFIG: ConfigRecord({})}), message_type=MessageType.TRAIN)
    signature = sign_update(key, digest)
    integrity = ConfigRecord({"site": site, **{k: str(v) for k, v in node.items()}, "signature": signature})
    content = RecordDict({ARRAYS: ArrayRecord(arrays), METRICS: MetricRecord({NUM_EXAMPLES: 1}), INTEGRITY: integrity})
    return Message(content=content, reply_to=sent)


def _strategy(keys: dict[str, Ed25519PrivateKey]) -> tuple[VerifiedStrategy, list[JSONObject]]:
    plan = RunPlan(
        run="r1", parent_version="p", sites=("a", "b"),
        public_keys={s: public_key_pem(k).decode() for s, k in keys.items()},
        network={}, preprocessing={}, arch_sha256=ARCH, rounds=1, strategy="fedavg", min_sites=1, local={},
        expected_node={k: str(v) for k, v in EXPECTED.to_dict().items()},
    )  # fmt: skip
    log: list[JSONObject] = []
    strategy = VerifiedStrategy(FedAvg(min_train_nodes=1, min_available_nodes=1), plan=plan, log=log.append)
    strategy.expect(ArrayRecord(GLOBAL))
    return strategy, log


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"vigil_version": "0.2.0"}, "the node runs Vigil 0.2.0, the run needs Vigil 0.1.x"),
        ({"flwr_version": "1.41.2"}, "the node runs Flower 1.41.2, the run needs Flower 1.42.x"),
        ({"preprocessing_sha256": "q" * 64}, "preprocessing hash qqqqqqqqqqqqqqqq… differs"),
    ],
)
def test_an_incompatible_node_is_refused_with_the_reason_and_the_round_goes_on_without_it(
    keys: dict[str, Ed25519PrivateKey], change: dict[str, str], reason: str
) -> None:
    # Prepare: site b's node reports another release or preprocessing, signed like any reply
    strategy, log = _strategy(keys)
    replies = [_reply("a", keys["a"], EXPECTED), _reply("b", keys["b"], dataclasses.replace(EXPECTED, **change))]

    # Execute
    arrays, _ = strategy.aggregate_train(1, replies)

    # Assert: a aggregated alone (quorum 1); b refused, its reported profile logged for its node status
    assert arrays is not None
    a, b = cast(list[dict[str, Any]], log[0]["updates"])
    assert a["accepted"] and not b["accepted"]
    assert b["reason"].startswith("incompatible node: ") and reason in b["reason"]
    assert b["node"] == dataclasses.replace(EXPECTED, **change).to_dict()


def test_a_patch_release_is_compatible_and_a_node_that_reports_nothing_is_not() -> None:
    assert incompatibility(dataclasses.replace(EXPECTED, vigil_version="0.1.7"), EXPECTED) == ""
    silent = NodeProfile.from_dict({})
    assert "Vigil (not reported)" in incompatibility(silent, EXPECTED)
    # A plan written before nodes reported a profile checks the architecture only
    assert incompatibility(silent, NodeProfile("", "", "", "")) == ""


def test_the_preprocessing_hash_follows_the_parameters() -> None:
    params = PreprocessParams().to_dict()
    assert preprocessing_sha256(params) == preprocessing_sha256(dict(params))
    assert preprocessing_sha256(params) != preprocessing_sha256({**params, "size": PreprocessParams().size + 1})
    assert local_profile(arch_sha256=ARCH, preprocessing=params).vigil_version == "0.1.0"


def test_each_sites_last_check_in_is_its_latest_reply_with_the_verdict() -> None:
    # Prepare: round 1 refuses b as incompatible; the evaluation after it hears from a only
    at1, at2 = "2027-01-01T10:00:00+00:00", "2027-01-01T10:05:00+00:00"
    old_b = dataclasses.replace(EXPECTED, vigil_version="0.0.9").to_dict()
    events: list[JSONObject] = [
        {"event": "round", "round": 1, "at": at1, "updates": [
            {"site": "a", "accepted": True, "reason": "", "node": EXPECTED.to_dict()},
            {"site": "b", "accepted": False, "reason": "incompatible node: the node runs Vigil 0.0.9, …",
             "node": old_b},
        ]},
        {"event": "evaluate", "round": 1, "at": at2, "sites": {}, "nodes": {"a": EXPECTED.to_dict()}},
    ]  # fmt: skip

    # Execute
    a, b = nodes_from_events(
        events, run_key="r1", expected=EXPECTED.to_dict(), seen_at=datetime(2030, 1, 1, tzinfo=UTC)
    )

    # Assert
    assert (a.site, a.compatible, a.last_seen_at.isoformat()) == ("a", True, at2)
    assert (b.site, b.compatible, b.vigil_version, b.last_seen_at.isoformat()) == ("b", False, "0.0.9", at1)
    assert b.reason.startswith("the node runs Vigil 0.0.9")
