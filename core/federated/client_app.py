"""The Flower ClientApp a SuperNode runs at each site: wiring only, the work is in :mod:`core.federated.task`.

A SuperNode is started with its site's node config (``flower-supernode --node-config``):

- ``site``: the site's registered name;
- ``data-manifest``: the site's manifest of labelled studies (written by ``vigil fl site-data``
  or, on one machine, by ``vigil fl run``), which stays at the site;
- ``signing-key``: the site's Ed25519 private key (mode 0600).

Only the records built by :mod:`core.federated.protocol` leave the site.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from core.federated.compatibility import NodeProfile, local_profile
from core.federated.protocol import ARRAYS, CONFIG, RoundConfig, evaluation_reply, train_reply
from core.federated.signing import load_private_key, sign_update, update_digest
from core.federated.task import (
    LocalTrainConfig,
    SiteData,
    architecture_sha256,
    evaluate_local,
    load_site_data,
    read_site_manifest,
    split_site,
    train_local,
)
from core.models.preprocess import PreprocessParams

__all__ = ["app", "node_profile", "site_data"]

app = ClientApp()


def site_data(context: Context, cfg: RoundConfig, *, part: str) -> SiteData:
    """The site's training (``part="train"``) or validation (``"val"``) films for this run's settings."""
    manifest = read_site_manifest(Path(str(context.node_config["data-manifest"])))
    site = str(context.node_config["site"])
    train, val = split_site(
        manifest.examples, max_studies=cfg.max_studies, val_fraction=cfg.val_fraction, seed=cfg.seed
    )
    chosen = train if part == "train" else val
    return load_site_data(site, chosen, manifest.holdout_uids, PreprocessParams.from_dict(dict(cfg.preprocessing)))


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the global model on this site's studies; reply with signed weights and aggregates."""
    cfg = RoundConfig.from_record(msg.content.config_records[CONFIG])
    server_round = int(msg.content.config_records[CONFIG]["server-round"])  # type: ignore[arg-type]
    site = str(context.node_config["site"])
    key = load_private_key(Path(str(context.node_config["signing-key"])))
    data = site_data(context, cfg, part="train")
    local = LocalTrainConfig(
        epochs=cfg.local_epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, seed=cfg.seed
    )
    weights = msg.content.array_records[ARRAYS].to_numpy_ndarrays()
    update = train_local(cfg.network, weights, data, local, server_round=server_round)
    node = node_profile(cfg)
    digest = update_digest(
        update.weights,
        site=site,
        run=cfg.run,
        server_round=server_round,
        arch_sha256=node.arch_sha256,
        node=node.to_dict(),
    )
    content = train_reply(update, site=site, node=node, signature=sign_update(key, digest))
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Score the global model on this site's validation studies; reply with aggregates."""
    cfg = RoundConfig.from_record(msg.content.config_records[CONFIG])
    data = site_data(context, cfg, part="val")
    weights = msg.content.array_records[ARRAYS].to_numpy_ndarrays()
    evaluation = evaluate_local(cfg.network, weights, data)
    content = evaluation_reply(evaluation, site=str(context.node_config["site"]), node=node_profile(cfg))
    return Message(content=content, reply_to=msg)


def node_profile(cfg: RoundConfig) -> NodeProfile:
    """What this node reports about itself: its installed versions and the hashes of what it builds."""
    return local_profile(arch_sha256=architecture_sha256(cfg.network), preprocessing=cfg.preprocessing)
