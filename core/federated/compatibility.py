"""Node health and compatibility: what each site's node reports about itself, and the server's check.

Averaging weights is only sound when every site builds the same network, feeds it images
prepared the same way, and speaks the same protocol. So each node reports, with every reply,
its installed Vigil and Flower versions, the architecture hash of the network it built, and a
preprocessing hash: the parameters it applied, the preprocessing code and the versions of the
libraries that run it (a resampling difference between torch releases changes the images a
site trains on as surely as a changed parameter does). The coordinating centre computes the
same profile when it prepares the run; a node whose profile differs is refused with the reason.

No Flower import here: :mod:`core.federated.protocol` puts the profile on the wire.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from core.audit.chain import canonical_json
from core.models import preprocess
from core.types import JSONObject

__all__ = [
    "PREPROCESSING_LIBRARIES",
    "NodeProfile",
    "incompatibility",
    "installed_version",
    "local_profile",
    "preprocessing_sha256",
]

#: The distributions whose behaviour the preprocessing depends on (numpy percentiles, torch resampling).
PREPROCESSING_LIBRARIES: Final = ("numpy", "torch")


@dataclass(frozen=True, slots=True)
class NodeProfile:
    """What a node reports about itself (and what the server expects of it).

    Attributes
    ----------
    vigil_version, flwr_version : str
        Installed distribution versions (``"unknown"`` when not installed as a distribution).
    arch_sha256 : str
        :func:`core.federated.task.architecture_sha256` of the network the node built.
    preprocessing_sha256 : str
        :func:`preprocessing_sha256` of the preprocessing the node applies.
    """

    vigil_version: str
    flwr_version: str
    arch_sha256: str
    preprocessing_sha256: str

    def to_dict(self) -> JSONObject:
        """JSON-ready; the keys are those of the reply's integrity record and of the plan."""
        return {
            "vigil-version": self.vigil_version,
            "flwr-version": self.flwr_version,
            "arch-sha256": self.arch_sha256,
            "preprocessing-sha256": self.preprocessing_sha256,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> NodeProfile:
        """Read what :meth:`to_dict` wrote; a missing field reads ``""`` (an old node reports nothing)."""
        return cls(
            vigil_version=str(doc.get("vigil-version", "")),
            flwr_version=str(doc.get("flwr-version", "")),
            arch_sha256=str(doc.get("arch-sha256", "")),
            preprocessing_sha256=str(doc.get("preprocessing-sha256", "")),
        )


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution``, or ``"unknown"``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def preprocessing_sha256(params: Mapping[str, Any]) -> str:
    """SHA-256 of the preprocessing parameters, the preprocessing code and its libraries' versions.

    Parameters
    ----------
    params : mapping
        The model card's ``preprocessing`` (:class:`core.models.preprocess.PreprocessParams` fields).
    """
    code = hashlib.sha256(Path(preprocess.__file__).read_bytes()).hexdigest()
    libraries = {name: installed_version(name) for name in PREPROCESSING_LIBRARIES}
    return hashlib.sha256(canonical_json({"params": dict(params), "code": code, "libraries": libraries})).hexdigest()


def local_profile(*, arch_sha256: str, preprocessing: Mapping[str, Any]) -> NodeProfile:
    """The running machine's profile for a network hashing to ``arch_sha256`` and ``preprocessing``."""
    return NodeProfile(
        vigil_version=installed_version("vigil"),
        flwr_version=installed_version("flwr"),
        arch_sha256=arch_sha256,
        preprocessing_sha256=preprocessing_sha256(preprocessing),
    )


def _release(version: str) -> tuple[str, ...]:
    """Major and minor: releases that share them keep the wire format (Vigil's replies, Flower's messages)."""
    return tuple(version.split(".")[:2])


def incompatibility(reported: NodeProfile, expected: NodeProfile) -> str:
    """Why a node reporting ``reported`` cannot take part in a run expecting ``expected``; ``""`` if it can.

    An expected field left empty (a plan written before nodes reported it) is not checked.
    Versions must agree in major and minor release; the hashes must be equal.
    """
    for name, got, want in (
        ("Vigil", reported.vigil_version, expected.vigil_version),
        ("Flower", reported.flwr_version, expected.flwr_version),
    ):
        if want and _release(got) != _release(want):
            return f"the node runs {name} {got or '(not reported)'}, the run needs {name} {'.'.join(_release(want))}.x"
    if expected.arch_sha256 and reported.arch_sha256 != expected.arch_sha256:
        return (
            f"model architecture hash {reported.arch_sha256[:16]}… differs from the global model's "
            f"{expected.arch_sha256[:16]}…"
        )
    if expected.preprocessing_sha256 and reported.preprocessing_sha256 != expected.preprocessing_sha256:
        return (
            f"preprocessing hash {reported.preprocessing_sha256[:16] or '(not reported)'}… differs from the run's "
            f"{expected.preprocessing_sha256[:16]}… (parameters, preprocessing code or numpy/torch versions)"
        )
    return ""
