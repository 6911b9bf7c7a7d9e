"""The image viewer: window / level, zoom and pan, and the Grad-CAM overlay with its controls.

The viewer is a fragment: moving one of its controls reruns the viewer alone, which only windows,
blends and crops a cached image (``render_view``) and sends it as an uncompressed PNG. The
DICOM file is read once per study and the Grad-CAM map is computed at most once per prediction
(see ``ui.cached``). Reader preferences (zoom, overlay, opacity, colour map) carry over from case
to case; the window starts at each file's own.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

import numpy as np
import numpy.typing as npt
import streamlit as st

from core.services import review
from core.services.permissions import SignedInUser
from core.services.review import COLORMAPS, ZOOM_LEVELS, CaseExplanation, CaseImage, CaseInfo, ViewSettings
from ui import cached, resources, state
from ui.cached import Unavailable

__all__ = ["png_bytes", "render"]

_PREFS: Final = {"view-zoom": 1.0, "view-overlay": True, "view-opacity": 0.35, "view-cmap": "jet"}


@st.fragment
def render(user: SignedInUser, info: CaseInfo) -> None:
    """The case's image with its overlay; an unreadable image shows a message instead."""
    uid = info.study.study_uid
    image = cached.case_image(user, uid)
    if isinstance(image, Unavailable):
        st.error(f"This study's image cannot be shown: {image.reason}", icon=":material/broken_image:")
        st.caption("Nothing else is affected: use Next / Previous, or go back to the worklist.")
        return
    pred = info.prediction
    expl: CaseExplanation | Unavailable | None = None
    if pred is not None and pred.score is not None:
        expl = cached.case_explanation(user, uid, pred.prediction_id)
    has_map = isinstance(expl, CaseExplanation) and not expl.flat
    view = _controls(image, has_map=has_map)
    heatmap = expl.heatmap if isinstance(expl, CaseExplanation) and has_map else None
    rgb = review.render_view(image, heatmap, view)
    st.image(png_bytes(rgb), width="stretch", caption=_caption(view, heatmap is not None))
    _explain_status(user, uid, expl, view)


def _controls(image: CaseImage, *, has_map: bool) -> ViewSettings:
    uid = image.study_uid
    presets = {p.name: p for p in image.presets}
    center_key, width_key, preset_key = f"view-center-{uid}", f"view-width-{uid}", f"view-preset-{uid}"
    st.session_state.setdefault(center_key, image.default.center)
    st.session_state.setdefault(width_key, image.default.width)
    for key, default in _PREFS.items():
        st.session_state.setdefault(key, st.session_state.get(f"vigil.pref.{key}", default))
    c_lo, c_hi, w_hi, step = _bounds(image)
    top = st.columns([3, 2, 2, 2], vertical_alignment="bottom")
    top[0].selectbox("Window preset", list(presets), key=preset_key, on_change=_apply_preset, args=(image,))
    zoom = top[1].select_slider("Zoom", ZOOM_LEVELS, format_func=lambda z: f"{z:g}×", key="view-zoom")
    overlay = top[2].toggle("Overlay", key="view-overlay", disabled=not has_map)
    cmap = top[3].selectbox("Colour map", COLORMAPS, key="view-cmap", disabled=not has_map)
    row = st.columns(3)
    center = row[0].slider("Window centre", c_lo, c_hi, step=step, key=center_key)
    width = row[1].slider("Window width", 1.0, w_hi, step=step, key=width_key)
    opacity = row[2].slider("Overlay opacity", 0.0, 1.0, step=0.05, key="view-opacity", disabled=not has_map)
    pan_x = pan_y = 0.5
    if zoom > 1.0:
        pan = st.columns(2)
        pan_x = pan[0].slider("Pan left ↔ right", 0.0, 1.0, 0.5, 0.05, key=f"view-pan-x-{uid}")
        pan_y = pan[1].slider("Pan up ↕ down", 0.0, 1.0, 0.5, 0.05, key=f"view-pan-y-{uid}")
    for key in _PREFS:
        st.session_state[f"vigil.pref.{key}"] = st.session_state[key]
    return ViewSettings(
        center=float(center),
        width=float(width),
        zoom=float(zoom),
        pan_x=pan_x,
        pan_y=pan_y,
        overlay=overlay,
        opacity=float(opacity),
        cmap=str(cmap),
    )


def png_bytes(rgb: npt.NDArray[np.uint8]) -> bytes:
    """Encode an RGB image as a PNG with stored (uncompressed) deflate blocks.

    Lossless, as a reading tool must be, and about a millisecond for a few hundred pixels a side,
    where a compressing encoder takes 10 to 30 times longer on every widget change (Streamlit's
    own default for arrays is lossy JPEG). The larger file (3 bytes a pixel) only crosses the
    server's local link.

    Parameters
    ----------
    rgb : ndarray of shape (h, w, 3), uint8
    """
    h, w, _ = rgb.shape
    rows = np.zeros((h, 1 + 3 * w), dtype=np.uint8)  # a leading 0 per row: PNG filter "None"
    rows[:, 1:] = rgb.reshape(h, 3 * w)
    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 0))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _apply_preset(image: CaseImage) -> None:
    uid = image.study_uid
    chosen = next(p for p in image.presets if p.name == st.session_state[f"view-preset-{uid}"])
    st.session_state[f"view-center-{uid}"] = chosen.center
    st.session_state[f"view-width-{uid}"] = chosen.width


def _bounds(image: CaseImage) -> tuple[float, float, float, float]:
    """Slider bounds that hold every preset: centre range, largest width, and a step of ~1/400."""
    lo, hi = image.value_range
    centers = [p.center for p in image.presets]
    widths = [p.width for p in image.presets]
    span = max(hi - lo, 1.0)
    step = float(max(1.0, round(span / 400.0)))
    return float(min(lo, *centers)), float(max(hi, *centers)), float(max(2.0 * span, *widths)), step


def _caption(view: ViewSettings, overlaid: bool) -> str:
    parts = [f"Window C {view.center:.0f} / W {view.width:.0f}", f"zoom {view.zoom:g}×"]
    if overlaid and view.overlay:
        parts.append(f"Grad-CAM overlay, opacity {view.opacity:.2f}, {view.cmap}")
    return " · ".join(parts)


def _explain_status(
    user: SignedInUser, uid: str, expl: CaseExplanation | Unavailable | None, view: ViewSettings
) -> None:
    """Say why there is no overlay, or audit (once per visit) that one was shown."""
    if expl is None:
        st.caption("No Grad-CAM overlay: the study has no model score.")
    elif isinstance(expl, Unavailable):
        st.caption(f"No Grad-CAM overlay: {expl.reason}")
    elif expl.flat:
        st.caption("The Grad-CAM map is flat: nothing at the model's target layer raised the score.")
    elif view.overlay and not state.viewed(uid, expl.explanation_id):
        review.record_explanation_viewed(resources.session_factory(), user, uid, expl, now=resources.utc_now)
        state.mark_viewed(uid, expl.explanation_id)
