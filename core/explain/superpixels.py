"""Superpixels: the features KernelShap switches on and off (SLIC, Achanta et al., TPAMI 2012).

Pixels are far too many features for KernelShap (tens of thousands on a 224 x 224 input);
superpixels group them into a few dozen regions that follow image edges, so a region either
holds a nodule or does not. SLIC is deterministic: the same image gives the same regions.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import slic

from core.errors import BadInputError
from core.types import FloatArray, IntArray

__all__ = ["grid_labels", "slic_superpixels"]


def slic_superpixels(image01: FloatArray, *, n_segments: int, compactness: float) -> IntArray:
    """Label each pixel of a greyscale image with its SLIC superpixel.

    Parameters
    ----------
    image01 : ndarray of shape (H, W), float
        The preprocessed model input, intensities in [0, 1].
    n_segments : int
        Approximate number of superpixels (SLIC's grid of seeds), >= 2.
    compactness : float
        Trade-off between intensity similarity and square shape (> 0); on [0, 1] intensities,
        about 0.1-0.5 follows edges while keeping regions compact.

    Returns
    -------
    ndarray of shape (H, W), int64
        Labels ``0 .. k - 1``, each used at least once (``k`` is close to ``n_segments``). When
        SLIC finds fewer than ``n_segments / 4`` regions (no edges to follow), a regular grid
        of about ``n_segments`` blocks (:func:`grid_labels`).

    Examples
    --------
    >>> img = np.zeros((16, 16)); img[:, 8:] = 1.0
    >>> labels = slic_superpixels(img, n_segments=4, compactness=0.1)
    >>> labels.shape, int(labels.min()), set(labels[:, :8].ravel()).isdisjoint(labels[:, 8:].ravel())
    ((16, 16), 0, True)
    """
    if image01.ndim != 2:
        raise BadInputError(f"superpixels need a 2-D image, got shape {image01.shape}")
    if n_segments < 2:
        raise BadInputError(f"n_segments must be >= 2, got {n_segments}")
    if not compactness > 0:
        raise BadInputError(f"compactness must be > 0, got {compactness}")
    labels = slic(
        np.asarray(image01, dtype=np.float64),
        n_segments=n_segments,
        compactness=compactness,
        channel_axis=None,
        start_label=0,
        enforce_connectivity=True,
    )
    # Make labels contiguous: captum counts features as max(label) + 1.
    _, inverse = np.unique(labels, return_inverse=True)
    out: IntArray = inverse.reshape(labels.shape).astype(np.int64)
    if int(out.max()) + 1 < max(2, n_segments // 4):
        # On texture without edges (pure noise) SLIC's connectivity step can merge everything
        # into one region; a regular grid still gives KernelShap features to switch.
        return grid_labels(image01.shape[0], image01.shape[1], n_segments=n_segments)
    return out


def grid_labels(rows: int, cols: int, *, n_segments: int) -> IntArray:
    """Square-ish blocks, about ``n_segments`` of them, labelled in raster order.

    >>> grid_labels(4, 4, n_segments=4).tolist()
    [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    """
    side = max(1, round(float(np.sqrt(n_segments))))
    r = np.minimum(np.arange(rows) * side // max(rows, 1), side - 1)
    c = np.minimum(np.arange(cols) * side // max(cols, 1), side - 1)
    out: IntArray = (r[:, None] * side + c[None, :]).astype(np.int64)
    return out
