"""What leaves a site: the real ClientApp's replies hold weights of the model's shapes and scalar aggregates only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, MessageType, RecordDict

from core.federated.client_app import app
from core.federated.compatibility import local_profile
from core.federated.protocol import ARRAYS, CONFIG, INTEGRITY, INTEGRITY_KEYS, METRICS, RoundConfig
from core.federated.signing import update_digest, verify_update
from core.federated.task import architecture_sha256, network_arrays, read_site_manifest
from core.models.networks import DEFAULT_NETWORK, build_network
from core.models.preprocess import PreprocessParams
from tests.core.federated.conftest import instruction

SITE = "riverside"


def _round(server_round: int) -> ConfigRecord:
    config = RoundConfig(
        run="run-1",
        network=DEFAULT_NETWORK,
        preprocessing=PreprocessParams().to_dict(),
        local_epochs=1,
        learning_rate=3e-4,
        batch_size=4,
        max_studies=0,
        val_fraction=0.25,
        seed=0,
    ).to_record()
    config["server-round"] = server_round
    return config


def _context(site_files: dict[str, tuple[Path, Path, bytes]]) -> Context:
    manifest, key, _ = site_files[SITE]
    node_config: dict[str, bool | float | int | str] = {
        "site": SITE,
        "data-manifest": str(manifest),
        "signing-key": str(key),
    }
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config={})


def _leaks(text: str, site_files: dict[str, tuple[Path, Path, bytes]]) -> list[str]:
    """Per-study identifiers of the site found in ``text``."""
    manifest = read_site_manifest(site_files[SITE][0])
    needles = [e.study_uid for e in manifest.examples] + [str(e.path) for e in manifest.examples]
    needles += [e.sha256 for e in manifest.examples]
    return [n for n in needles if n in text]


def test_a_training_reply_carries_only_model_shaped_arrays_scalar_aggregates_and_a_valid_signature(
    site_files: dict[str, tuple[Path, Path, bytes]],
) -> None:
    # Prepare
    start = network_arrays(build_network(DEFAULT_NETWORK))
    msg = instruction(RecordDict({ARRAYS: ArrayRecord(start), CONFIG: _round(3)}), message_type=MessageType.TRAIN)

    # Execute
    reply = app(msg, _context(site_files))

    # Assert: three records, of known kinds and keys
    content = reply.content
    assert set(content.keys()) == {ARRAYS, METRICS, INTEGRITY}
    arrays = content.array_records[ARRAYS].to_numpy_ndarrays()
    assert [a.shape for a in arrays] == [a.shape for a in start]
    metrics = dict(content.metric_records[METRICS])
    assert set(metrics) == {"num-examples", "unit-weight", "train-loss"}
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    integrity = dict(content.config_records[INTEGRITY])
    assert set(integrity) == INTEGRITY_KEYS
    # Assert: nothing per study in the non-array records
    text = json.dumps({**metrics, **{k: v for k, v in integrity.items() if k != "signature"}})
    assert _leaks(text, site_files) == []
    # Assert: the signature binds the arrays to this site, run and round
    node = {k: v for k, v in integrity.items() if k not in ("site", "signature")}
    digest = update_digest(
        arrays, site=SITE, run="run-1", server_round=3, arch_sha256=architecture_sha256(DEFAULT_NETWORK), node=node
    )
    assert verify_update(site_files[SITE][2], digest, integrity["signature"])
    other_round = update_digest(
        arrays, site=SITE, run="run-1", server_round=4, arch_sha256=integrity["arch-sha256"], node=node
    )
    assert not verify_update(site_files[SITE][2], other_round, integrity["signature"])
    # Assert: the node's profile is signed too, so a node cannot claim another release unnoticed
    claimed = update_digest(
        arrays, site=SITE, run="run-1", server_round=3, arch_sha256=integrity["arch-sha256"],
        node={**node, "vigil-version": "9.9.9"},
    )  # fmt: skip
    assert not verify_update(site_files[SITE][2], claimed, integrity["signature"])
    assert (
        node
        == local_profile(
            arch_sha256=architecture_sha256(DEFAULT_NETWORK), preprocessing=PreprocessParams().to_dict()
        ).to_dict()
    )


def test_an_evaluation_reply_carries_scalar_aggregates_only(site_files: dict[str, tuple[Path, Path, bytes]]) -> None:
    # Prepare
    start = network_arrays(build_network(DEFAULT_NETWORK))
    msg = instruction(RecordDict({ARRAYS: ArrayRecord(start), CONFIG: _round(1)}), message_type=MessageType.EVALUATE)

    # Execute
    reply = app(msg, _context(site_files))

    # Assert
    content = reply.content
    assert set(content.keys()) == {METRICS, INTEGRITY}
    metrics = dict(content.metric_records[METRICS])
    assert set(metrics) == {"num-examples", "unit-weight", "n-positive", "val-auc", "val-loss"}
    assert all(isinstance(v, (int, float)) for v in metrics.values())
    # The evaluation reply is the node's check-in: its site and profile, nothing per study
    integrity = dict(content.config_records[INTEGRITY])
    assert set(integrity) == INTEGRITY_KEYS - {"signature"}
    assert integrity["site"] == SITE
    assert _leaks(json.dumps(integrity), site_files) == []
    assert not content.array_records
    assert _leaks(json.dumps(metrics, default=str), site_files) == []
    assert np.isfinite(metrics["val-loss"])
