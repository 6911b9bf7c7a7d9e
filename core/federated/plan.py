"""A federated run's plan: everything the ServerApp needs, written once by the coordinating centre.

The plan is a JSON file in the run's folder (``plan.json``), next to the global model's starting
weights (``initial.npz``); the ServerApp reads both and writes its progress (``events.jsonl``)
and the aggregated weights (``final.npz``) beside them. Flower's run config carries only the
folder's path, so one file records what the run was asked to do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from core.errors import BadInputError
from core.types import JSONObject

__all__ = [
    "FINAL_WEIGHTS",
    "INITIAL_WEIGHTS",
    "PLAN_FILE",
    "STRATEGIES",
    "RunPlan",
    "read_plan",
    "read_weights",
    "write_plan",
    "write_weights",
]

PLAN_FILE: Final = "plan.json"
INITIAL_WEIGHTS: Final = "initial.npz"
FINAL_WEIGHTS: Final = "final.npz"
#: ``--strategy`` names: Flower's message-API strategies of the installed version.
STRATEGIES: Final = ("fedavg", "median", "trimmed-mean", "krum", "multikrum", "bulyan")


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a run does.

    Attributes
    ----------
    run : str
        Vigil's run id (bound into every site signature).
    parent_version : str
        The registered model the run starts from.
    sites : tuple of str
        The sites expected to take part.
    public_keys : dict of str to str
        Each site's registered Ed25519 public key (PEM).
    network, preprocessing : dict
        The parent card's fields, sent to every site.
    arch_sha256 : str
        The global model's architecture hash (:func:`core.federated.task.architecture_sha256`).
    rounds : int
    strategy : str
        One of :data:`STRATEGIES`.
    min_sites : int
        Quorum: accepted updates a round needs; below it the round fails closed.
    local : dict
        Local training settings (``local_epochs``, ``learning_rate``, ``batch_size``,
        ``max_studies``, ``val_fraction``, ``seed``).
    robust : dict
        Strategy parameters (``trim_beta``, ``num_malicious``).
    dp : dict or None
        Client-level differential privacy (``noise_multiplier``, ``clipping_norm``, ``delta``,
        ``epsilon_budget``), or None.
    secure : dict or None
        Secure aggregation with Flower's SecAgg+ (:class:`core.federated.secure.SecAggSettings`
        as JSON: ``clipping_range``, ``quantization_range``, ``reconstruction_threshold``), or None.
        FedAvg only, without differential privacy: Flower runs SecAgg+ through its legacy workflow,
        which neither its message-API strategies nor its privacy accountant join.
    expected_node : dict
        The node profile every site must report
        (:meth:`core.federated.compatibility.NodeProfile.to_dict`, computed where the run is
        prepared); empty in plans written before nodes reported one, which then check the
        architecture hash only.
    """

    run: str
    parent_version: str
    sites: tuple[str, ...]
    public_keys: Mapping[str, str]
    network: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    arch_sha256: str
    rounds: int
    strategy: str
    min_sites: int
    local: Mapping[str, Any]
    robust: Mapping[str, Any] = field(default_factory=dict)
    dp: Mapping[str, Any] | None = None
    expected_node: Mapping[str, str] = field(default_factory=dict)
    secure: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise BadInputError(f"a run needs at least 1 round, got {self.rounds}")
        if self.strategy not in STRATEGIES:
            raise BadInputError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not 1 <= self.min_sites <= len(self.sites):
            raise BadInputError(f"quorum must be between 1 and {len(self.sites)} sites, got {self.min_sites}")
        if self.secure is not None and (self.strategy != "fedavg" or self.dp is not None):
            mode = "differential privacy" if self.dp is not None else f"the {self.strategy!r} strategy"
            raise BadInputError(f"secure aggregation (SecAgg+) runs with plain fedavg only, not with {mode}")

    def to_json(self) -> JSONObject:
        """JSON-ready (sites as a list)."""
        return {
            "run": self.run,
            "parent_version": self.parent_version,
            "sites": list(self.sites),
            "public_keys": dict(self.public_keys),
            "network": dict(self.network),
            "preprocessing": dict(self.preprocessing),
            "arch_sha256": self.arch_sha256,
            "rounds": self.rounds,
            "strategy": self.strategy,
            "min_sites": self.min_sites,
            "local": dict(self.local),
            "robust": dict(self.robust),
            "dp": None if self.dp is None else dict(self.dp),
            "expected_node": dict(self.expected_node),
            "secure": None if self.secure is None else dict(self.secure),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RunPlan:
        """Rebuild from :meth:`to_json`."""
        return cls(
            run=str(doc["run"]),
            parent_version=str(doc["parent_version"]),
            sites=tuple(str(s) for s in doc["sites"]),
            public_keys={str(k): str(v) for k, v in doc["public_keys"].items()},
            network=dict(doc["network"]),
            preprocessing=dict(doc["preprocessing"]),
            arch_sha256=str(doc["arch_sha256"]),
            rounds=int(doc["rounds"]),
            strategy=str(doc["strategy"]),
            min_sites=int(doc["min_sites"]),
            local=dict(doc["local"]),
            robust=dict(doc.get("robust") or {}),
            dp=None if doc.get("dp") is None else dict(doc["dp"]),
            expected_node={str(k): str(v) for k, v in (doc.get("expected_node") or {}).items()},
            secure=None if doc.get("secure") is None else dict(doc["secure"]),
        )


def write_plan(plan: RunPlan, run_dir: Path) -> Path:
    """Write ``plan.json`` into ``run_dir`` (created if needed); return its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / PLAN_FILE
    path.write_text(json.dumps(plan.to_json(), indent=1, sort_keys=True), encoding="utf-8")
    return path


def read_plan(run_dir: Path) -> RunPlan:
    """Read ``plan.json`` from ``run_dir``.

    Raises
    ------
    BadInputError
        Missing or unreadable.
    """
    path = run_dir / PLAN_FILE
    try:
        return RunPlan.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        raise BadInputError(f"run plan {str(path)!r} cannot be read: {exc}") from exc


def write_weights(arrays: Sequence[np.ndarray], path: Path) -> None:
    """Save arrays, in order, as ``arr_0``, ``arr_1``, ... of an ``.npz`` file."""
    with path.open("wb") as fh:
        np.savez(fh, *[np.asarray(a) for a in arrays])


def read_weights(path: Path) -> list[np.ndarray]:
    """Arrays saved by :func:`write_weights`, in order."""
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]
