"""What one worker process does to one file: the ingest gate, then the model's preprocessing.

Runs in a worker process (:mod:`core.pipeline.pool`), so everything here is a module-level
function of picklable arguments, and what it returns is what crosses back to the main process:
the file's bytes, header and hash, and the 1 x S x S model input, never the decoded pixels (a
2,048² film is 16 MB of float32; its model input is 200 kB).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.errors import DicomRejectedError
from core.imaging.gate import check_file
from core.imaging.image import DicomMeta
from core.models.card import IntendedUse
from core.models.inference import input_sha256
from core.models.intended_use import check_intended_use
from core.models.preprocess import PreprocessParams, preprocess
from core.types import FloatArray

__all__ = ["GateFailure", "Prepared", "WorkOrder", "gate_only", "init_worker", "prepare"]


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """How the workers treat every file of one run.

    Attributes
    ----------
    max_file_bytes : int
        Files larger than this are rejected unread (``Settings.max_file_bytes``).
    preprocessing : PreprocessParams or None
        The serving model card's; None gates only (no model input is made).
    intended_use : IntendedUse or None
        The serving model card's: an image outside it is never preprocessed (as in
        :func:`core.models.inference.predict_images`).
    """

    max_file_bytes: int
    preprocessing: PreprocessParams | None = None
    intended_use: IntendedUse | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A file that passed the gate, ready to store and score (a :class:`core.services.ingestion.GatedFile`).

    Attributes
    ----------
    path : Path
        Where it was read from.
    sha256 : str
        Hex SHA-256 of ``data``.
    data : bytes
        The bytes the gate read and hashed: what the store keeps.
    meta : DicomMeta
        Its header.
    model_input : ndarray of shape (1, S, S), float32, or None
        :func:`core.models.preprocess.preprocess` of the pixels; None when not asked for or
        when the image is outside the intended use.
    input_sha256 : str or None
        :func:`core.models.inference.input_sha256` of ``model_input``.
    refusal : str or None
        Why the image is outside the model's intended use; None when inside.
    """

    path: Path
    sha256: str
    data: bytes = field(repr=False)
    meta: DicomMeta
    model_input: FloatArray | None = field(default=None, repr=False)
    input_sha256: str | None = None
    refusal: str | None = None


@dataclass(frozen=True, slots=True)
class GateFailure:
    """A file the gate refused, with its one-sentence reason (what ``DicomRejectedError`` carried)."""

    path: Path
    reason: str


def init_worker() -> None:
    """Pin the worker to one intra-op thread: the pool's processes are the parallelism.

    Without it every worker's torch (used by the resampling) would start one thread per core,
    and N workers would fight over N cores with N² threads.
    """
    torch.set_num_threads(1)


def prepare(path: Path, order: WorkOrder) -> Prepared | GateFailure:
    """Gate ``path`` and, when the order asks, make its model input.

    Parameters
    ----------
    path : Path
        Any path; the gate refuses what is not a regular single-frame greyscale DICOM image.
    order : WorkOrder

    Returns
    -------
    Prepared or GateFailure
        The same acceptance and the same reasons as :func:`core.imaging.gate.check_file`.
    """
    try:
        accepted = check_file(path, max_bytes=order.max_file_bytes)
    except DicomRejectedError as exc:
        return GateFailure(path, exc.reason)
    prepared = Prepared(path=path, sha256=accepted.sha256, data=accepted.data, meta=accepted.meta)
    if order.preprocessing is None:
        return prepared
    refusal = check_intended_use(accepted.meta, order.intended_use) if order.intended_use is not None else None
    if refusal is not None:
        return Prepared(path, accepted.sha256, accepted.data, accepted.meta, refusal=refusal)
    x = preprocess(accepted.image.pixels, order.preprocessing)
    return Prepared(path, accepted.sha256, accepted.data, accepted.meta, x, input_sha256(x))


def gate_only(path: Path, order: WorkOrder) -> str | None:
    """The decode floor's unit of work: gate ``path`` and return its SHA-256 (None when refused).

    Nothing but the hash crosses back, so the floor measures decoding alone.
    """
    try:
        return check_file(path, max_bytes=order.max_file_bytes).sha256
    except DicomRejectedError:
        return None
