"""What crosses the wire between the server and a site: record keys and the records a site sends.

One place names every key, so the test that inspects what leaves a site and the server that
reads it agree. A site's reply holds exactly three records: ``arrays`` (an ArrayRecord of the
global model's shapes), ``metrics`` (a MetricRecord of scalar aggregates) and ``integrity`` (a
ConfigRecord: the site's name, its node's profile (Vigil and Flower versions, architecture and
preprocessing hashes: :mod:`core.federated.compatibility`) and its signature over all of it). An
evaluation reply's integrity record carries the site's name and the same profile, unsigned: it
is the node's check-in, read for health only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from core.federated.compatibility import NodeProfile
from core.federated.task import LocalEvaluation, LocalUpdate

__all__ = [
    "ARRAYS",
    "CONFIG",
    "INTEGRITY",
    "INTEGRITY_KEYS",
    "METRICS",
    "NUM_EXAMPLES",
    "UNIT_WEIGHT",
    "RoundConfig",
    "evaluation_reply",
    "train_reply",
]

ARRAYS: Final = "arrays"
CONFIG: Final = "config"
METRICS: Final = "metrics"
INTEGRITY: Final = "integrity"
#: Flower's weighting key (its strategies' default ``weighted_by_key``).
NUM_EXAMPLES: Final = "num-examples"
#: Always 1: the weighting key under differential privacy, whose accounting needs equal site weights.
UNIT_WEIGHT: Final = "unit-weight"
#: Everything a site's integrity record may hold.
INTEGRITY_KEYS: Final = frozenset(
    {"site", "signature", "vigil-version", "flwr-version", "arch-sha256", "preprocessing-sha256"}
)


@dataclass(frozen=True, slots=True)
class RoundConfig:
    """The settings the server sends with each round (a ConfigRecord on the wire).

    Attributes
    ----------
    run : str
        Vigil's run id, bound into every signature.
    network : dict
        The model card's ``network`` (class and kwargs) every site builds.
    preprocessing : dict
        The model card's preprocessing parameters.
    local_epochs, batch_size, max_studies, seed : int
    learning_rate, val_fraction : float
    """

    run: str
    network: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    local_epochs: int
    learning_rate: float
    batch_size: int
    max_studies: int
    val_fraction: float
    seed: int

    def to_record(self) -> ConfigRecord:
        """As a ConfigRecord (the two dicts as JSON text)."""
        return ConfigRecord(
            {
                "vigil-run": self.run,
                "network": json.dumps(dict(self.network), sort_keys=True),
                "preprocessing": json.dumps(dict(self.preprocessing), sort_keys=True),
                "local-epochs": self.local_epochs,
                "learning-rate": self.learning_rate,
                "batch-size": self.batch_size,
                "max-studies": self.max_studies,
                "val-fraction": self.val_fraction,
                "seed": self.seed,
            }
        )

    @classmethod
    def from_record(cls, record: ConfigRecord) -> RoundConfig:
        """Read what :meth:`to_record` wrote."""
        return cls(
            run=str(record["vigil-run"]),
            network=json.loads(str(record["network"])),
            preprocessing=json.loads(str(record["preprocessing"])),
            local_epochs=int(record["local-epochs"]),  # type: ignore[arg-type]
            learning_rate=float(record["learning-rate"]),  # type: ignore[arg-type]
            batch_size=int(record["batch-size"]),  # type: ignore[arg-type]
            max_studies=int(record["max-studies"]),  # type: ignore[arg-type]
            val_fraction=float(record["val-fraction"]),  # type: ignore[arg-type]
            seed=int(record["seed"]),  # type: ignore[arg-type]
        )


def train_reply(update: LocalUpdate, *, site: str, node: NodeProfile, signature: bytes) -> RecordDict:
    """A site's reply to a training round: its weights, two aggregates, its node's profile and its signature."""
    return RecordDict(
        {
            ARRAYS: ArrayRecord([np.asarray(w, dtype=np.float32) for w in update.weights]),
            METRICS: MetricRecord(
                {NUM_EXAMPLES: update.n_examples, UNIT_WEIGHT: 1, "train-loss": float(update.train_loss)}
            ),
            INTEGRITY: ConfigRecord({"site": site, **_profile(node), "signature": signature}),
        }
    )


def _profile(node: NodeProfile) -> dict[str, str]:
    return {k: str(v) for k, v in node.to_dict().items()}


def evaluation_reply(evaluation: LocalEvaluation, *, site: str, node: NodeProfile) -> RecordDict:
    """A site's reply to an evaluation round: aggregates only."""
    return RecordDict(
        {
            METRICS: MetricRecord(
                {
                    NUM_EXAMPLES: evaluation.n_examples,
                    UNIT_WEIGHT: 1,
                    "n-positive": evaluation.n_positive,
                    "val-auc": float(evaluation.auc),
                    "val-loss": float(evaluation.loss),
                }
            ),
            INTEGRITY: ConfigRecord({"site": site, **_profile(node)}),
        }
    )
