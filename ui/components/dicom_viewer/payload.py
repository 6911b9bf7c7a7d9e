"""What the browser viewer is sent: pure functions from core dataclasses to the component's arguments.

The image crosses as float32 pixels in modality units (``core.imaging`` has applied the modality
LUT and inverted MONOCHROME1), so the browser never parses DICOM and never fetches a file by
URL: the bytes come from ``core.services`` like every other read. Explanation maps cross as one
byte a pixel, which is finer than any colour map can show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from core.errors import BadInputError
from core.imaging.spacing import MeasurementSpacing
from core.services.case_view import CaseView
from core.services.explanation import ExplainMethod, StoredExplanation
from core.types import FloatArray, JSONObject

__all__ = [
    "DEFAULT_OPACITY",
    "DEFAULT_THRESHOLD",
    "ViewerArgs",
    "encode_map",
    "encode_pixels",
    "length_unit",
    "spacing_note",
    "viewer_args",
]

#: Weight of the map colour where the map is shown.
DEFAULT_OPACITY: Final = 0.5
#: Map values below which nothing is tinted: unremarkable lung stays grey. Grad-CAM is in [0, 1];
#: for the signed SHAP maps the threshold applies to the magnitude.
DEFAULT_THRESHOLD: Final = {False: 0.5, True: 0.3}
#: Height of the image area in CSS pixels: with the header and controls the whole film fits a
#: 1000-px-high reading screen.
VIEWPORT_HEIGHT_PX: Final = 560


@dataclass(frozen=True, slots=True)
class ViewerArgs:
    """The component's arguments, split into the JSON part and the two binary buffers.

    Attributes
    ----------
    fields : dict
        JSON-ready values (study UID, grid, presets, spacing, map settings).
    pixels : bytes
        ``rows * columns`` little-endian float32 values in modality units.
    map_bytes : bytes or None
        ``rows * columns`` uint8 map values, or None without a map.
    """

    fields: JSONObject
    pixels: bytes
    map_bytes: bytes | None


def encode_pixels(pixels: FloatArray) -> bytes:
    """Little-endian float32 bytes of ``pixels`` (rows, columns); NaN and inf become the smallest finite value.

    Raises
    ------
    BadInputError
        ``pixels`` is not 2-D or has no finite value.
    """
    if pixels.ndim != 2:
        raise BadInputError(f"the viewer shows 2-D images, got an array of shape {pixels.shape}")
    finite = np.isfinite(pixels)
    if not finite.any():
        raise BadInputError("the image has no finite pixel value to show")
    low = float(pixels[finite].min())
    clean = np.where(finite, pixels, low).astype("<f4", copy=False)
    return np.ascontiguousarray(clean).tobytes()


def encode_map(heatmap: FloatArray, *, signed: bool) -> bytes:
    """One byte a pixel: ``round(255 v)`` for maps in [0, 1], ``128 + round(127 v)`` for signed maps in [-1, 1].

    Raises
    ------
    BadInputError
        A value outside the map's range (named), which would otherwise be clipped silently.
    """
    low = -1.0 if signed else 0.0
    values = np.nan_to_num(heatmap.astype(np.float64), nan=0.0)
    if values.size and (values.min() < low - 1e-6 or values.max() > 1.0 + 1e-6):
        raise BadInputError(
            f"explanation map values must lie in [{low:g}, 1], got [{values.min():.3g}, {values.max():.3g}]"
        )
    scaled = 128.0 + 127.0 * values if signed else 255.0 * values
    return np.ascontiguousarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8)).tobytes()


def spacing_note(spacing: MeasurementSpacing | None) -> str:
    """The sentence that says which attribute lengths are measured from (and "at detector" when they are)."""
    if spacing is None:
        return "No PixelSpacing or ImagerPixelSpacing in the file: lengths are in pixels"
    values = f"{spacing.row_mm:.3g} × {spacing.col_mm:.3g} mm"
    if spacing.source.at_detector:
        return (
            f"Lengths in mm at detector, from ImagerPixelSpacing ({values}): not corrected for magnification, "
            "so larger than in the patient"
        )
    return f"Lengths in mm from PixelSpacing ({values})"


def length_unit(spacing: MeasurementSpacing | None) -> str:
    """The unit written after a measured length: "mm", "mm at detector" or "px"."""
    if spacing is None:
        return "px"
    return "mm at detector" if spacing.source.at_detector else "mm"


def _unit(modality: str) -> str:
    return "HU" if modality.upper() == "CT" else f"({modality or 'modality'} units)"


def viewer_args(view: CaseView, method: ExplainMethod | None, *, overlay: bool, renderer: str = "auto") -> ViewerArgs:
    """The component's arguments for ``view`` showing ``method``'s map (None: no map).

    Raises
    ------
    BadInputError
        The view has no image, or ``renderer`` is neither "auto" nor "cpu".
    """
    if view.image is None:
        raise BadInputError(f"study {view.study_uid} has no image to show: {view.image_problem}")
    if renderer not in ("auto", "cpu"):
        raise BadInputError(f"renderer must be 'auto' or 'cpu', got {renderer!r}")
    rows, columns = view.image.pixels.shape
    shown: StoredExplanation | None = view.maps.get(method) if method is not None else None
    signed = bool(shown is not None and shown.signed)
    study = view.info.study
    fields: JSONObject = {
        "study_uid": view.study_uid,
        "rows": int(rows),
        "columns": int(columns),
        "presets": [{"name": p.name, "center": p.center, "width": p.width} for p in view.image.presets],
        "spacing": list(study.spacing.mm) if study.spacing else None,
        "spacing_source": str(study.spacing.source) if study.spacing else None,
        "spacing_note": spacing_note(study.spacing),
        "length_unit": length_unit(study.spacing),
        "value_unit": _unit(study.modality),
        "modality": study.modality or "OT",
        "map_label": f"{method.label} map" if shown is not None and method is not None else "",
        "map_signed": signed,
        "overlay": overlay,
        "opacity": DEFAULT_OPACITY,
        "threshold": DEFAULT_THRESHOLD[signed],
        "height": VIEWPORT_HEIGHT_PX,
        "renderer": renderer,
        # A new map for the same study must reload the viewer's layer, not keep the old one.
        "generation": shown.sha256 if shown is not None else "",
    }
    map_bytes = encode_map(shown.heatmap, signed=signed) if shown is not None else None
    return ViewerArgs(fields, encode_pixels(view.image.pixels), map_bytes)
