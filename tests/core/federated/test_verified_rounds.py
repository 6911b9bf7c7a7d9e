"""The server verifies every update before Flower's strategy aggregates it; bad ones are refused with the reason."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from core.federated.plan import RunPlan
from core.federated.protocol import ARRAYS, CONFIG, INTEGRITY, METRICS, NUM_EXAMPLES
from core.federated.signing import (
    arrays_sha256,
    generate_site_key,
    load_private_key,
    public_key_pem,
    sign_update,
    update_digest,
)
from core.federated.verified import QuorumLostError, VerifiedStrategy
from core.types import JSONObject
from tests.core.federated.conftest import instruction

ARCH = "a" * 64
GLOBAL = [np.zeros((3, 2), np.float32), np.zeros((4,), np.float32)]
SITES = ("a", "b", "c")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ed25519PrivateKey]:
    out = tmp_path_factory.mktemp("keys")
    for site in SITES:
        generate_site_key(out / site)
    return {site: load_private_key(out / site) for site in SITES}


def _plan(keys: dict[str, Ed25519PrivateKey], min_sites: int, dp: dict[str, float] | None = None) -> RunPlan:
    return RunPlan(
        run="r1",
        parent_version="p",
        sites=SITES,
        public_keys={s: public_key_pem(k).decode() for s, k in keys.items()},
        network={},
        preprocessing={},
        arch_sha256=ARCH,
        rounds=1,
        strategy="fedavg",
        min_sites=min_sites,
        local={},
        dp=dp,
    )


def _reply(  # noqa: PLR0913 - one argument per thing a test corrupts
    site: str,
    arrays: list[np.ndarray],
    key: Ed25519PrivateKey,
    *,
    server_round: int = 1,
    signed_round: int | None = None,
    arch: str = ARCH,
    n: int = 2,
    node: int = 10,
) -> Message:
    digest = update_digest(arrays, site=site, run="r1", server_round=signed_round or server_round, arch_sha256=arch)
    sent = instruction(RecordDict({CONFIG: ConfigRecord({})}), message_type=MessageType.TRAIN, dst_node_id=node)
    content = RecordDict(
        {
            ARRAYS: ArrayRecord(arrays),
            METRICS: MetricRecord({NUM_EXAMPLES: n, "train-loss": 0.5}),
            INTEGRITY: ConfigRecord({"site": site, "arch-sha256": arch, "signature": sign_update(key, digest)}),
        }
    )
    return Message(content=content, reply_to=sent)


def _strategy(
    keys: dict[str, Ed25519PrivateKey], min_sites: int, dp: dict[str, float] | None = None
) -> tuple[VerifiedStrategy, list[JSONObject]]:
    log: list[JSONObject] = []
    strategy = VerifiedStrategy(
        FedAvg(min_train_nodes=3, min_available_nodes=3), plan=_plan(keys, min_sites, dp), log=log.append
    )
    strategy.expect(ArrayRecord(GLOBAL))
    return strategy, log


def _ones(value: float) -> list[np.ndarray]:
    return [np.full(a.shape, value, np.float32) for a in GLOBAL]


def test_good_updates_are_aggregated_and_the_round_logs_every_hash(keys: dict[str, Ed25519PrivateKey]) -> None:
    # Prepare
    strategy, log = _strategy(keys, min_sites=3)
    replies = [_reply("a", _ones(1.0), keys["a"], n=1), _reply("b", _ones(2.0), keys["b"], n=1)]
    replies.append(_reply("c", _ones(4.0), keys["c"], n=2))

    # Execute
    arrays, _ = strategy.aggregate_train(1, replies)

    # Assert: FedAvg weighted by examples, (1 + 2 + 2 * 4) / 4
    assert arrays is not None
    aggregate = arrays.to_numpy_ndarrays()
    np.testing.assert_allclose(aggregate[0], 2.75)
    (entry,) = log
    assert entry["aggregate_sha256"] == arrays_sha256(aggregate)
    assert [u["update_sha256"] for u in entry["updates"]] == [arrays_sha256(_ones(v)) for v in (1.0, 2.0, 4.0)]
    assert all(u["accepted"] for u in entry["updates"])


BAD: dict[str, tuple[Callable[[dict[str, Ed25519PrivateKey]], Message], str]] = {
    "signed by another site's key": (lambda k: _reply("c", _ones(9.0), k["a"]), "signature does not verify"),
    "another architecture": (lambda k: _reply("c", _ones(9.0), k["c"], arch="b" * 64), "architecture hash"),
    "NaNs": (lambda k: _reply("c", [np.full((3, 2), np.nan, np.float32), GLOBAL[1]], k["c"]), "NaN"),
    "wrong shapes": (lambda k: _reply("c", [np.ones((2, 3), np.float32), GLOBAL[1]], k["c"]), "wrong shapes"),
    "replayed from another round": (lambda k: _reply("c", _ones(9.0), k["c"], signed_round=2), "signature"),
    "an unregistered site": (lambda k: _reply("zz", _ones(9.0), k["c"]), "no registered signing key"),
    "a second update from one site": (lambda k: _reply("b", _ones(9.0), k["b"], node=11), "already sent an update"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_update_is_refused_with_its_reason_and_the_round_goes_on(
    keys: dict[str, Ed25519PrivateKey], case: str
) -> None:
    # Prepare
    make, reason = BAD[case]
    strategy, log = _strategy(keys, min_sites=2)
    replies = [_reply("a", _ones(1.0), keys["a"]), _reply("b", _ones(3.0), keys["b"]), make(keys)]

    # Execute
    arrays, _ = strategy.aggregate_train(1, replies)

    # Assert: the aggregate is the two good updates' mean; the bad one is logged refused
    assert arrays is not None
    np.testing.assert_allclose(arrays.to_numpy_ndarrays()[0], 2.0)
    refused = [u for u in log[0]["updates"] if not u["accepted"]]
    assert len(refused) == 1
    assert reason in refused[0]["reason"]


def test_below_quorum_the_round_fails_closed_and_says_why(keys: dict[str, Ed25519PrivateKey]) -> None:
    # Prepare
    strategy, log = _strategy(keys, min_sites=3)
    replies = [_reply("a", _ones(1.0), keys["a"]), _reply("b", _ones(3.0), keys["b"])]
    replies.append(_reply("c", _ones(9.0), keys["c"], arch="b" * 64))

    # Execute / Assert
    with pytest.raises(QuorumLostError, match="2 of 3 updates accepted, the quorum is 3"):
        strategy.aggregate_train(1, replies)
    assert log[0]["aggregate_sha256"] is None
    assert "quorum" in log[0]["failed"]


def test_under_differential_privacy_one_refused_update_fails_the_round(keys: dict[str, Ed25519PrivateKey]) -> None:
    # Prepare: the quorum (2) holds, but the noise is calibrated to all three sites
    dp = {"noise_multiplier": 1.0, "clipping_norm": 1.0, "delta": 1e-5, "epsilon_budget": 10.0}
    strategy, log = _strategy(keys, min_sites=2, dp=dp)
    replies = [_reply("a", _ones(1.0), keys["a"]), _reply("b", _ones(3.0), keys["b"])]
    replies.append(_reply("c", _ones(9.0), keys["c"], arch="b" * 64))
    without_dp, _ = _strategy(keys, min_sites=2)

    # Execute / Assert
    with pytest.raises(QuorumLostError, match="2 of 3 sites' updates accepted: under differential privacy"):
        strategy.aggregate_train(1, replies)
    assert log[0]["aggregate_sha256"] is None and "more privacy" in log[0]["failed"]
    arrays, _ = without_dp.aggregate_train(1, replies)  # the same round without DP aggregates the two
    assert arrays is not None


def test_a_private_key_others_can_read_is_refused(tmp_path: Path) -> None:
    from core.errors import BadInputError

    generate_site_key(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    (tmp_path / "k").chmod(0o644)

    with pytest.raises(BadInputError, match="mode 644"):
        load_private_key(tmp_path / "k")
