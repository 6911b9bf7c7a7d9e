"""The server's check of one site update before it may be aggregated (no Flower, no I/O).

An update is refused, with the reason, when its site has no registered key, its signature does not
verify, its node is incompatible (another Vigil or Flower release, another architecture, another
preprocessing: :mod:`core.federated.compatibility`), its arrays are not the global model's shapes,
or it holds a NaN or an infinity. The order matters only for the reason given: a bad signature is
reported before anything the unsigned content claims.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from core.federated.compatibility import NodeProfile, incompatibility
from core.federated.signing import arrays_sha256, update_digest, verify_update
from core.types import JSONObject

__all__ = ["UpdateVerdict", "check_update", "quorum"]


@dataclass(frozen=True, slots=True)
class UpdateVerdict:
    """What the server decided about one site's update.

    Attributes
    ----------
    site : str
    accepted : bool
    reason : str
        Why it was refused; ``""`` when accepted.
    update_sha256 : str
        :func:`~core.federated.signing.arrays_sha256` of the arrays as received.
    """

    site: str
    accepted: bool
    reason: str
    update_sha256: str

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "site": self.site,
            "accepted": self.accepted,
            "reason": self.reason,
            "update_sha256": self.update_sha256,
        }


def check_update(  # noqa: PLR0913 - keyword-only; one argument per fact the check compares
    arrays: Sequence[np.ndarray],
    *,
    site: str,
    signature: bytes,
    arch_sha256: str,
    run: str,
    server_round: int,
    expected_arch: str,
    expected_shapes: Sequence[tuple[int, ...]],
    public_keys: Mapping[str, bytes],
    node: NodeProfile | None = None,
    expected_node: NodeProfile | None = None,
) -> UpdateVerdict:
    """Accept or refuse ``arrays`` from ``site`` for ``server_round`` of ``run``.

    Parameters
    ----------
    arrays : sequence of ndarray
        The update as received.
    signature : bytes
        The site's Ed25519 signature over :func:`~core.federated.signing.update_digest`.
    arch_sha256 : str
        The architecture hash the site reports.
    expected_arch : str
        The global model's architecture hash.
    expected_shapes : sequence of tuple of int
        The global model's array shapes, in order.
    public_keys : mapping of str to bytes
        Registered public keys (PEM) by site.
    node : NodeProfile, optional
        The profile the node reports (signed with the update); None from a node that reports none.
    expected_node : NodeProfile, optional
        The run's expected profile; None checks the architecture hash only.
    """
    digest_of = arrays_sha256(arrays)

    def refuse(reason: str) -> UpdateVerdict:
        return UpdateVerdict(site, False, reason, digest_of)

    if site not in public_keys:
        return refuse(f"site {site!r} has no registered signing key")
    digest = update_digest(
        arrays,
        site=site,
        run=run,
        server_round=server_round,
        arch_sha256=arch_sha256,
        node=None if node is None else node.to_dict(),
    )
    if not verify_update(public_keys[site], digest, signature):
        return refuse(f"the signature does not verify with site {site!r}'s registered key")
    reported = node or NodeProfile("", "", arch_sha256, "")
    expected = expected_node or NodeProfile("", "", expected_arch, "")
    # The architecture is always checked against the global model's, whatever else the plan expects.
    reason = incompatibility(
        NodeProfile(reported.vigil_version, reported.flwr_version, arch_sha256, reported.preprocessing_sha256),
        NodeProfile(expected.vigil_version, expected.flwr_version, expected_arch, expected.preprocessing_sha256),
    )
    if reason:
        return refuse(f"incompatible node: {reason}")
    shapes = [tuple(int(d) for d in np.shape(a)) for a in arrays]
    if shapes != [tuple(s) for s in expected_shapes]:
        wrong = next(
            (i for i, (a, b) in enumerate(zip(shapes, expected_shapes, strict=False)) if a != tuple(b)),
            min(len(shapes), len(expected_shapes)),
        )
        return refuse(
            f"{len(shapes)} arrays of the wrong shapes (first difference at array {wrong}); "
            f"the model has {len(expected_shapes)}"
        )
    bad = next((i for i, a in enumerate(arrays) if not bool(np.isfinite(a).all())), None)
    if bad is not None:
        return refuse(f"array {bad} holds NaN or infinite values")
    return UpdateVerdict(site, True, "", digest_of)


def quorum(accepted: int, *, minimum: int) -> bool:
    """Whether ``accepted`` updates are enough to aggregate a round (``minimum`` >= 1)."""
    return accepted >= max(1, minimum)
