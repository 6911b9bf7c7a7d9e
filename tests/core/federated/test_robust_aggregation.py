"""One poisoned site (a scaled, sign-flipped update): FedAvg is dragged away, Flower's robust strategies are not.

Seven sites, six honest: each honest update is the global model plus a shared step and a little
site noise; the poisoned one sends the global model minus ten times its honest step. The error of
an aggregate is its distance to the honest sites' mean step, relative to that step's size. FedAvg
is the positive control (it must degrade, or the test proves nothing about the others).
"""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from core.federated.plan import RunPlan
from core.federated.protocol import ARRAYS, CONFIG, INTEGRITY, METRICS, NUM_EXAMPLES
from core.federated.signing import public_key_pem, sign_update, update_digest
from core.federated.strategies import build_strategy
from core.federated.verified import VerifiedStrategy
from core.types import JSONObject
from tests.core.federated.conftest import instruction

SITES = tuple(f"site{i}" for i in range(7))
ARCH = "f" * 64
SHAPES = ((16, 8), (8,), (4, 4, 3))
POISONED = "site6"


def _updates() -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    base = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    step = [rng.normal(size=s).astype(np.float32) * 0.1 for s in SHAPES]
    honest = {site: [st + rng.normal(size=st.shape).astype(np.float32) * 0.01 for st in step] for site in SITES}
    updates = {site: [b + d for b, d in zip(base, deltas, strict=True)] for site, deltas in honest.items()}
    updates[POISONED] = [b - 10.0 * d for b, d in zip(base, honest[POISONED], strict=True)]
    honest_mean = [np.mean([honest[s][i] for s in SITES if s != POISONED], axis=0) for i in range(len(SHAPES))]
    return base, updates, honest_mean


def _reply(site: str, arrays: list[np.ndarray], key: Ed25519PrivateKey, node: int) -> Message:
    digest = update_digest(arrays, site=site, run="r", server_round=1, arch_sha256=ARCH)
    sent = instruction(RecordDict({CONFIG: ConfigRecord({})}), message_type=MessageType.TRAIN, dst_node_id=node)
    content = RecordDict(
        {
            ARRAYS: ArrayRecord(arrays),
            METRICS: MetricRecord({NUM_EXAMPLES: 10, "train-loss": 0.5}),
            INTEGRITY: ConfigRecord({"site": site, "arch-sha256": ARCH, "signature": sign_update(key, digest)}),
        }
    )
    return Message(content=content, reply_to=sent)


def _relative_error(strategy_name: str) -> float:
    base, updates, honest_mean = _updates()
    keys = {site: Ed25519PrivateKey.generate() for site in SITES}
    plan = RunPlan(
        run="r",
        parent_version="p",
        sites=SITES,
        public_keys={s: public_key_pem(k).decode() for s, k in keys.items()},
        network={},
        preprocessing={},
        arch_sha256=ARCH,
        rounds=1,
        strategy=strategy_name,
        min_sites=len(SITES),
        local={},
        robust={"num_malicious": 1, "trim_beta": 0.2},
    )
    log: list[JSONObject] = []
    inner = build_strategy(strategy_name, n_sites=len(SITES), robust=plan.robust)
    strategy = VerifiedStrategy(inner, plan=plan, log=log.append)
    strategy.expect(ArrayRecord(base))
    replies = [_reply(site, updates[site], keys[site], node) for node, site in enumerate(SITES, start=10)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    step = [a - b for a, b in zip(arrays.to_numpy_ndarrays(), base, strict=True)]
    error = np.sqrt(sum(float(np.sum((s - h) ** 2)) for s, h in zip(step, honest_mean, strict=True)))
    return error / np.sqrt(sum(float(np.sum(h**2)) for h in honest_mean))


def test_fedavg_is_dragged_away_by_the_poisoned_site() -> None:
    # The positive control: one site in seven sending -10x its step moves the mean by ~11/7 of a step.
    assert _relative_error("fedavg") > 1.0


@pytest.mark.parametrize("name", ["median", "trimmed-mean", "krum", "multikrum", "bulyan"])
def test_a_robust_strategy_stays_close_to_the_honest_sites(name: str) -> None:
    assert _relative_error(name) < 0.25
