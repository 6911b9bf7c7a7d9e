"""The Flower ClientApp a SuperNode runs at each site: wiring only, the work is in :mod:`core.federated.task`.

A SuperNode is started with its site's node config (``flower-supernode --node-config``):

- ``site``: the site's registered name;
- ``data-manifest``: the site's manifest of labelled studies (written by ``vigil fl site-data``
  or, on one machine, by ``vigil fl run``), which stays at the site;
- ``signing-key``: the site's Ed25519 private key (mode 0600).

Only the records built by :mod:`core.federated.protocol` leave the site, or, in a SecAgg+ run,
those built by :mod:`core.federated.secure_client`, whose change Flower's ``secaggplus_mod`` masks.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from core.federated import secure_client
from core.federated.compatibility import NodeProfile, local_profile
from core.federated.protocol import ARRAYS, CONFIG, RoundConfig, evaluation_reply, train_reply
from core.federated.secure import site_change
from core.federated.signing import load_private_key, sign_update, update_digest
from core.federated.task import (
    LocalTrainConfig,
    SiteData,
    architecture_sha256,
    evaluate_local,
    integer_entries,
    load_site_data,
    read_site_manifest,
    split_site,
    train_local,
)
from core.models.preprocess import PreprocessParams

__all__ = ["app", "node_profile", "secure_train", "site_data"]

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


@app.train(mods=[secure_client.secaggplus_when_asked])
def train(msg: Message, context: Context) -> Message:
    """Train the global model on this site's studies; reply with signed weights and aggregates."""
    if secure_client.is_secure_fit(msg):
        return secure_train(msg, context)
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


def secure_train(msg: Message, context: Context) -> Message:
    """A SecAgg+ round: train, reply with the change to be masked and the signed participation."""
    ins = secure_client.fit_request(msg)
    cfg = ins.config
    site = str(context.node_config["site"])
    key = load_private_key(Path(str(context.node_config["signing-key"])))
    data = site_data(context, cfg, part="train")
    local = LocalTrainConfig(
        epochs=cfg.local_epochs, learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, seed=cfg.seed
    )
    update = train_local(cfg.network, ins.weights, data, local, server_round=ins.server_round)
    change = site_change(
        update.weights, ins.weights, integer=integer_entries(cfg.network), clipping_range=ins.clipping_range
    )
    node = node_profile(cfg)
    # No arrays in the digest: the server never sees this site's change, only that it took part.
    digest = update_digest(
        [], site=site, run=cfg.run, server_round=ins.server_round, arch_sha256=node.arch_sha256, node=node.to_dict()
    )
    return secure_client.fit_reply(
        msg,
        change=change,
        site=site,
        node=node,
        signature=sign_update(key, digest),
        n_examples=update.n_examples,
        train_loss=update.train_loss,
    )


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Score the global model on this site's validation studies; reply with aggregates."""
    if secure_client.is_secure_evaluate(msg):
        cfg, weights = secure_client.evaluate_request(msg)
        evaluation = evaluate_local(cfg.network, weights, site_data(context, cfg, part="val"))
        site = str(context.node_config["site"])
        return secure_client.evaluate_reply(msg, evaluation, site=site, node=node_profile(cfg))
    cfg = RoundConfig.from_record(msg.content.config_records[CONFIG])
    data = site_data(context, cfg, part="val")
    weights = msg.content.array_records[ARRAYS].to_numpy_ndarrays()
    evaluation = evaluate_local(cfg.network, weights, data)
    content = evaluation_reply(evaluation, site=str(context.node_config["site"]), node=node_profile(cfg))
    return Message(content=content, reply_to=msg)


def node_profile(cfg: RoundConfig) -> NodeProfile:
    """What this node reports about itself: its installed versions and the hashes of what it builds."""
    return local_profile(arch_sha256=architecture_sha256(cfg.network), preprocessing=cfg.preprocessing)
