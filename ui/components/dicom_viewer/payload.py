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
from core.imaging.spacing import MeasurementSpacing, SpacingBasis, SpacingSource
from core.services.case_view import CaseView, PriorView
from core.services.explanation import ExplainMethod, StoredExplanation
from core.services.review import CaseInfo
from core.types import FloatArray, JSONObject

__all__ = [
    "CORNERSTONE_CALIBRATION",
    "DEFAULT_OPACITY",
    "DEFAULT_THRESHOLD",
    "LENGTH_UNITS",
    "ViewerArgs",
    "encode_map",
    "film_label",
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
    prior_pixels : bytes or None
        The prior film's ``rows * columns`` float32 values (``fields["prior"]`` describes it), or
        None when no prior is compared.
    """

    fields: JSONObject
    pixels: bytes
    map_bytes: bytes | None
    prior_pixels: bytes | None = None


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


#: The unit written after a measured length, by what the length means (``core.imaging.spacing``).
LENGTH_UNITS: Final = {
    SpacingBasis.PATIENT: "mm",
    SpacingBasis.DETECTOR: "mm at detector",
    SpacingBasis.GEOMETRY: "mm calibrated (geometry)",
    SpacingBasis.FIDUCIAL: "mm calibrated (fiducial)",
    SpacingBasis.CALIBRATED: "mm calibrated",
    SpacingBasis.UNKNOWN: "mm (basis unknown)",
}
#: Cornerstone3D's calibration type for each basis: its length tool writes it after "mm" on the
#: canvas ("mm Proj", "mm ERMF", ...), as OHIF does. The patient plane needs none.
CORNERSTONE_CALIBRATION: Final = {
    SpacingBasis.PATIENT: "",
    SpacingBasis.DETECTOR: "Proj",
    SpacingBasis.GEOMETRY: "ERMF",
    SpacingBasis.FIDUCIAL: "Calibrated",
    SpacingBasis.CALIBRATED: "Calibrated",
    SpacingBasis.UNKNOWN: "Unknown",
}


def spacing_note(spacing: MeasurementSpacing | None) -> str:
    """The sentence that says what a measured length means and which attribute it comes from."""
    if spacing is None:
        return "No PixelSpacing or ImagerPixelSpacing in the file: lengths are in pixels"
    values = f"{spacing.row_mm:.3g} × {spacing.col_mm:.3g} mm"
    basis = spacing.basis
    if spacing.source is SpacingSource.IMAGER_PIXEL_SPACING:
        return (
            f"Lengths in mm at detector, from ImagerPixelSpacing ({values}): not corrected for magnification, "
            "so larger than in the patient"
        )
    return {
        SpacingBasis.PATIENT: f"Lengths in mm in the patient, from PixelSpacing ({values})",
        SpacingBasis.DETECTOR: (
            f"Lengths in mm at detector: PixelSpacing ({values}) equals ImagerPixelSpacing and no calibration "
            "is stated, so it is not corrected for magnification and lengths are larger than in the patient"
        ),
        SpacingBasis.GEOMETRY: (
            f"Lengths in mm calibrated for geometric magnification (PixelSpacingCalibrationType GEOMETRY, "
            f"PixelSpacing {values}): true near the central ray at the depth the sender assumed"
        ),
        SpacingBasis.FIDUCIAL: (
            f"Lengths in mm calibrated against an object of known size (PixelSpacingCalibrationType FIDUCIAL, "
            f"PixelSpacing {values}): true near the central ray at that object's depth"
        ),
        SpacingBasis.CALIBRATED: (
            f"Lengths in mm calibrated by the sender: PixelSpacing ({values}) differs from ImagerPixelSpacing, "
            "and how it was corrected is not stated"
        ),
        SpacingBasis.UNKNOWN: (
            f"Lengths in mm from PixelSpacing ({values}), basis unknown: the file states neither "
            "ImagerPixelSpacing nor a calibration type, so these may be detector or patient lengths"
        ),
    }[basis]


def length_unit(spacing: MeasurementSpacing | None) -> str:
    """The unit written after a measured length: "px" without a spacing, else :data:`LENGTH_UNITS`."""
    return "px" if spacing is None else LENGTH_UNITS[spacing.basis]


def film_label(role: str, info: CaseInfo) -> str:
    """``Prior · 2025-02-06 · AI score 0.35``: what a film beside another is, its date and the model's score.

    Parameters
    ----------
    role : str
        "Current" or "Prior".
    info : CaseInfo
        The film's study header and the serving model's prediction for it.
    """
    day = info.study.study_date.isoformat() if info.study.study_date else "no date"
    pred = info.prediction
    if pred is None:
        score = "no AI score"
    elif pred.score is None:
        score = f"not scored by {pred.model_version}"
    else:
        score = f"AI score {pred.score:.2f}{' (positive)' if pred.label else ''}"
    return f"{role} · {day} · {score}"


def _prior_fields(prior: PriorView) -> tuple[JSONObject, bytes]:
    """The prior film's grid, spacing words and label, and its pixels."""
    if prior.image is None:
        raise BadInputError(f"prior study {prior.study_uid} has no image to show: {prior.image_problem}")
    rows, columns = prior.image.pixels.shape
    spacing = prior.info.study.spacing
    fields: JSONObject = {
        "study_uid": prior.study_uid,
        "rows": int(rows),
        "columns": int(columns),
        "spacing": list(spacing.mm) if spacing else None,
        "length_unit": length_unit(spacing),
        "calibration": CORNERSTONE_CALIBRATION[spacing.basis] if spacing else "",
        "label": film_label("Prior", prior.info),
        "value_unit": _unit(prior.info.study.modality),
    }
    return fields, encode_pixels(prior.image.pixels)


def _unit(modality: str) -> str:
    return "HU" if modality.upper() == "CT" else f"({modality or 'modality'} units)"


def viewer_args(
    view: CaseView,
    method: ExplainMethod | None,
    *,
    overlay: bool,
    renderer: str = "auto",
    prior: PriorView | None = None,
) -> ViewerArgs:
    """The component's arguments for ``view`` showing ``method``'s map (None: no map).

    ``prior``, when given, is shown beside the current film with the same window / level (and no
    explanation map: the map belongs to the current film's score).

    Raises
    ------
    BadInputError
        The view or the prior has no image, or ``renderer`` is neither "auto" nor "cpu".
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
        "spacing_basis": str(study.spacing.basis) if study.spacing else None,
        "calibration": CORNERSTONE_CALIBRATION[study.spacing.basis] if study.spacing else "",
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
        "label": film_label("Current", view.info),
        "prior": None,
    }
    prior_pixels = None
    if prior is not None:
        fields["prior"], prior_pixels = _prior_fields(prior)
    map_bytes = encode_map(shown.heatmap, signed=signed) if shown is not None else None
    return ViewerArgs(fields, encode_pixels(view.image.pixels), map_bytes, prior_pixels)
