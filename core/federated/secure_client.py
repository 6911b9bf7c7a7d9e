"""The ClientApp's SecAgg+ side: Flower's ``secaggplus_mod``, and the legacy messages its workflow speaks.

SecAgg+ runs through Flower's legacy workflow, whose instructions and replies are the legacy
``FitIns``/``FitRes`` and ``EvaluateIns``/``EvaluateRes`` records. The same ClientApp serves both
modes: :func:`secaggplus_when_asked` hands a message to ``secaggplus_mod`` only when it carries
the protocol's configuration, and the handlers in :mod:`core.federated.client_app` read and
answer the legacy records only when they are what arrived.

What leaves the site under SecAgg+: the mod's masked, quantised change (never the change itself:
the mod empties the reply's arrays), and in clear the same aggregates as in the plain mode (study
count, training loss, validation figures), the node's profile and the site's signature over its
participation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, EvaluateRes, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat

from core.federated.compatibility import NodeProfile
from core.federated.protocol import NUM_EXAMPLES, UNIT_WEIGHT, RoundConfig
from core.federated.secure_server import CLIPPING_KEY
from core.federated.task import LocalEvaluation

__all__ = [
    "SecureFit",
    "evaluate_reply",
    "evaluate_request",
    "fit_reply",
    "fit_request",
    "is_secure_evaluate",
    "is_secure_fit",
    "secaggplus_when_asked",
]

_FIT_ARRAYS = "fitins.parameters"
_EVALUATE_ARRAYS = "evaluateins.parameters"
_OK = Status(code=Code.OK, message="")


def secaggplus_when_asked(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Flower's ``secaggplus_mod`` for a SecAgg+ round's messages; any other message passes untouched."""
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)


def is_secure_fit(msg: Message) -> bool:
    """Whether ``msg`` is a SecAgg+ round's training instruction (a legacy ``FitIns``)."""
    return _FIT_ARRAYS in msg.content.array_records


def is_secure_evaluate(msg: Message) -> bool:
    """Whether ``msg`` is a legacy ``EvaluateIns`` (the SecAgg+ mode's evaluation)."""
    return _EVALUATE_ARRAYS in msg.content.array_records


@dataclass(frozen=True, slots=True)
class SecureFit:
    """A SecAgg+ training instruction as the site reads it.

    Attributes
    ----------
    config : RoundConfig
    server_round : int
    weights : list of ndarray
        The round's global model.
    clipping_range : float
        The protocol's clipping range for the site's change.
    """

    config: RoundConfig
    server_round: int
    weights: list[np.ndarray]
    clipping_range: float


def fit_request(msg: Message) -> SecureFit:
    """Read a legacy ``FitIns``."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    config: dict[str, Any] = dict(fitins.config)
    return SecureFit(
        RoundConfig.from_record(ConfigRecord(config)),
        int(config["server-round"]),
        parameters_to_ndarrays(fitins.parameters),
        float(config[CLIPPING_KEY]),
    )


def fit_reply(  # noqa: PLR0913 - keyword-only; one argument per part of the reply
    msg: Message,
    *,
    change: list[np.ndarray],
    site: str,
    node: NodeProfile,
    signature: bytes,
    n_examples: int,
    train_loss: float,
) -> Message:
    """A legacy ``FitRes`` holding the site's change (which ``secaggplus_mod`` masks, then removes).

    Its weight is 1 (every site weighs the same: :mod:`core.federated.secure`); the study count
    travels as an aggregate, as in the plain mode.
    """
    metrics: dict[str, Any] = {
        "site": site,
        **{k: str(v) for k, v in node.to_dict().items()},
        "signature": signature,
        "n-examples": int(n_examples),
        "train-loss": float(train_loss),
    }
    fitres = FitRes(status=_OK, parameters=ndarrays_to_parameters(change), num_examples=1, metrics=metrics)
    return Message(content=compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)


def evaluate_request(msg: Message) -> tuple[RoundConfig, list[np.ndarray]]:
    """Read a legacy ``EvaluateIns``: the round's settings and the global model."""
    ins = compat.recorddict_to_evaluateins(msg.content, keep_input=True)
    return RoundConfig.from_record(ConfigRecord(dict(ins.config))), parameters_to_ndarrays(ins.parameters)


def evaluate_reply(msg: Message, evaluation: LocalEvaluation, *, site: str, node: NodeProfile) -> Message:
    """A legacy ``EvaluateRes``: the same aggregates as the plain mode's evaluation reply."""
    metrics: dict[str, Any] = {
        "site": site,
        **{k: str(v) for k, v in node.to_dict().items()},
        NUM_EXAMPLES: evaluation.n_examples,
        UNIT_WEIGHT: 1,
        "n-positive": evaluation.n_positive,
        "val-auc": float(evaluation.auc),
        "val-loss": float(evaluation.loss),
    }
    loss = float(evaluation.loss)
    res = EvaluateRes(status=_OK, loss=loss, num_examples=max(1, evaluation.n_examples), metrics=metrics)
    return Message(content=compat.evaluateres_to_recorddict(res), reply_to=msg)
