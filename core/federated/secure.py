"""Secure aggregation (SecAgg+): its settings, and what a site masks and the server rebuilds (no Flower here).

Under Flower's SecAgg+ protocol each site adds pairwise and private masks to its quantised update,
and the server can unmask only the sum of the updates of at least ``reconstruction_threshold``
sites: it never sees one site's update. What a site puts into the protocol is its *change* to
the global model (its trained weights less the round's global weights), not the weights: changes
are small, so the protocol's fixed clipping range (``clipping_range``, in parameter units) holds
them, and its quantisation step (``2 * clipping_range / quantization_range`` per site) is a small
fraction of them. The server adds the unmasked mean change to the global model.

Every site weighs the same (weight 1, as under differential privacy): SecAgg+ multiplies each
update by ``weight / max_weight`` before quantising, so unequal weights would cost the smaller
sites precision, and a site's study count would otherwise steer the mean unseen.

Integer buffers (BatchNorm's ``num_batches_tracked``) are counters, not weights: a site sends a
zero change for them and the server keeps the global model's value exactly, since a counter
dequantised to 4.999996 would be truncated to 4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from core.errors import BadInputError
from core.types import JSONObject

__all__ = ["MODULUS_RANGE", "SecAggSettings", "apply_mean_change", "default_threshold", "site_change"]

#: SecAgg+'s mask modulus (Flower's default, 2**32); the quantisation range must be below it.
MODULUS_RANGE: Final = 2**32


def default_threshold(quorum: int) -> int:
    """The reconstruction threshold when none is asked for: the run's quorum, and never below 2."""
    return max(2, quorum)


@dataclass(frozen=True, slots=True)
class SecAggSettings:
    """How a run's SecAgg+ rounds are set up.

    Attributes
    ----------
    reconstruction_threshold : int
        Sites whose key shares the server needs to unmask the sum, at least 2; also the fewest
        sites a round may complete with (a site dropping after it sent its masked update is
        unmasked from the others' shares). The server learns nothing of one site's update unless
        it colludes with this many sites less one.
    clipping_range : float
        Each parameter's change is sent within ``[-clipping_range, clipping_range]``; a site whose
        change exceeds it refuses to send (nothing is clipped silently). Default 8.
    quantization_range : int
        Quantisation levels over the clipping range (Flower's default ``2**22``): the change is
        sent to within ``2 * clipping_range / quantization_range`` (3.8e-6 at the defaults).
    timeout_s : float
        Seconds the server waits for each stage's replies before going on without the missing sites.
    """

    reconstruction_threshold: int
    clipping_range: float = 8.0
    quantization_range: int = 2**22
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.reconstruction_threshold < 2:
            raise BadInputError(
                f"SecAgg+ needs a reconstruction threshold of at least 2 sites, got {self.reconstruction_threshold}"
            )
        if not (math.isfinite(self.clipping_range) and self.clipping_range > 0):
            raise BadInputError(f"the SecAgg+ clipping range must be a positive number, got {self.clipping_range}")
        if not 2 <= self.quantization_range < MODULUS_RANGE:
            raise BadInputError(
                f"the SecAgg+ quantization range must be between 2 and 2**32 - 1, got {self.quantization_range}"
            )
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise BadInputError(f"the SecAgg+ stage timeout must be positive seconds, got {self.timeout_s}")

    @property
    def step(self) -> float:
        """The quantisation step of one site's change, in parameter units."""
        return 2 * self.clipping_range / self.quantization_range

    def to_json(self) -> JSONObject:
        """JSON-ready (the plan's ``secure``)."""
        return {
            "protocol": "SecAgg+",
            "reconstruction_threshold": self.reconstruction_threshold,
            "clipping_range": self.clipping_range,
            "quantization_range": self.quantization_range,
            "modulus_range": MODULUS_RANGE,
            "timeout_s": self.timeout_s,
            "site_weights": "equal",
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> SecAggSettings:
        """Read :meth:`to_json`."""
        return cls(
            reconstruction_threshold=int(doc["reconstruction_threshold"]),
            clipping_range=float(doc["clipping_range"]),
            quantization_range=int(doc["quantization_range"]),
            timeout_s=float(doc.get("timeout_s", 600.0)),
        )


def site_change(
    trained: Sequence[np.ndarray],
    global_: Sequence[np.ndarray],
    *,
    integer: Sequence[bool],
    clipping_range: float,
) -> list[np.ndarray]:
    """What a site puts into SecAgg+: ``trained - global_`` per array, float32; zero for integer buffers.

    Parameters
    ----------
    trained, global_ : sequence of ndarray
        The site's trained weights and the round's global weights, in ``state_dict`` order.
    integer : sequence of bool
        Which arrays are integer buffers (:func:`core.federated.task.integer_entries`).
    clipping_range : float
        The protocol's clipping range.

    Raises
    ------
    BadInputError
        Mismatched arrays, or a change outside ``[-clipping_range, clipping_range]`` (named: which
        array, how large), which the protocol would otherwise clip without a word.
    """
    if not len(trained) == len(global_) == len(integer):
        raise BadInputError(
            f"{len(trained)} trained arrays, {len(global_)} global arrays and {len(integer)} kinds do not match"
        )
    out = []
    for i, (new, old, is_int) in enumerate(zip(trained, global_, integer, strict=True)):
        old_arr = np.asarray(old, dtype=np.float32)
        if is_int:
            out.append(np.zeros_like(old_arr))
            continue
        change = np.asarray(new, dtype=np.float32) - old_arr
        largest = float(np.max(np.abs(change))) if change.size else 0.0
        if not largest <= clipping_range:
            raise BadInputError(
                f"array {i} changed by {largest:.4g}, beyond the SecAgg+ clipping range {clipping_range:g}: "
                "start the run with a larger clipping range (or a smaller learning rate)"
            )
        out.append(change)
    return out


def apply_mean_change(
    global_: Sequence[np.ndarray], mean_change: Sequence[np.ndarray], *, integer: Sequence[bool]
) -> list[np.ndarray]:
    """The next global model: ``global_ + mean_change`` (float32), integer buffers kept as they were.

    Raises
    ------
    BadInputError
        Mismatched numbers or shapes of arrays.
    """
    if not len(global_) == len(mean_change) == len(integer):
        raise BadInputError(f"{len(mean_change)} aggregated arrays for a model of {len(global_)}")
    out = []
    for i, (old, change, is_int) in enumerate(zip(global_, mean_change, integer, strict=True)):
        old_arr = np.asarray(old, dtype=np.float32)
        if np.shape(change) != old_arr.shape:
            raise BadInputError(f"aggregated array {i} has shape {np.shape(change)}, the model needs {old_arr.shape}")
        out.append(old_arr.copy() if is_int else (old_arr + np.asarray(change, dtype=np.float32)))
    return out
