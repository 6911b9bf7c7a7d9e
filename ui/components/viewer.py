"""The image viewer: window / level, zoom and pan, and the explanation overlay with its controls.

The viewer is a fragment: moving one of its controls reruns the viewer alone, which only windows,
blends and crops a cached image (``render_view``) and sends it as an uncompressed PNG. The
DICOM file is read once per study and each method's map (Grad-CAM, GradientShap, KernelShap) is
computed at most once per prediction (see ``ui.cached``). Reader preferences (method, zoom,
overlay, opacity, colour maps) carry over from case to case; the window starts at each file's own.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from typing import Final

import numpy as np
import numpy.typing as npt
import streamlit as st

from core.services import explanation, review
from core.services.explanation import ExplainMethod, StoredExplanation
from core.services.permissions import SignedInUser
from core.services.review import COLORMAPS, DIVERGING_COLORMAPS, ZOOM_LEVELS, CaseImage, CaseInfo, ViewSettings
from ui import cached, explanations, resources, state
from ui.cached import Unavailable
from ui.explanations import ExplanationPanel

__all__ = ["png_bytes", "render"]

_PREFS: Final = {
    "view-zoom": 1.0,
    "view-overlay": True,
    "view-opacity": 0.35,
    "view-cmap": "jet",
    "view-cmap-signed": "coolwarm",
}

Shown = StoredExplanation | Unavailable


@st.fragment
def render(user: SignedInUser, info: CaseInfo) -> None:
    """The case's image with its overlay (or a side-by-side compare); an unreadable image shows a message."""
    uid = info.study.study_uid
    image = cached.case_image(user, uid)
    if isinstance(image, Unavailable):
        st.error(f"This study's image cannot be shown: {image.reason}", icon=":material/broken_image:")
        st.caption("Nothing else is affected: use Next / Previous, or go back to the worklist.")
        return
    _restore_prefs()
    pick = st.columns([3, 2], vertical_alignment="bottom")
    with pick[0]:
        method = explanations.method_picker(key="view-method")
    with pick[1]:
        compare = explanations.compare_picker(key="view-compare")
    methods = compare if len(compare) >= 2 else [method]
    shown = {m: _explanation(user, info, m) for m in methods}
    view = _controls(image, method=method, has_map=any(_has_map(e) for e in shown.values()))
    _save_prefs()
    trust = cached.reads(user).trust_sentences(_version(info, shown)) if shown else {}
    if len(methods) == 1:
        expl = shown[method]
        heat = expl.heatmap if isinstance(expl, StoredExplanation) and _has_map(expl) else None
        rgb = review.render_view(image, heat, view, signed=method.signed)
        st.image(png_bytes(rgb), width="stretch", caption=_caption(view, method, heat is not None))
        if heat is not None and view.overlay:
            explanations.legend(method)
        if isinstance(expl, StoredExplanation):
            explanations.version_notice(expl)
        _status(method, expl)
        explanations.trust_note(method, _sentence(trust, method, info, expl))
    else:
        explanations.render_panels(
            [_panel(image, view, m, shown[m], _sentence(trust, m, info, shown[m])) for m in methods]
        )
    if view.overlay:
        _audit_views(user, uid, shown.values())


def _explanation(user: SignedInUser, info: CaseInfo, method: ExplainMethod) -> Shown:
    pred = info.prediction
    if pred is None or pred.score is None:
        return Unavailable("the study has no model score.")
    return cached.method_explanation(user, info.study.study_uid, pred.prediction_id, method)


def _has_map(expl: Shown) -> bool:
    return isinstance(expl, StoredExplanation) and bool(np.any(expl.heatmap))


def _version(info: CaseInfo, shown: dict[ExplainMethod, Shown]) -> str:
    """The model version whose report applies: the one that made the maps, else the one that scored."""
    made = [e.model_version for e in shown.values() if isinstance(e, StoredExplanation)]
    if made:
        return made[0]
    return info.prediction.model_version if info.prediction is not None else ""


def _sentence(trust: dict[ExplainMethod, str], method: ExplainMethod, info: CaseInfo, expl: Shown) -> str:
    if method in trust:
        return trust[method]
    version = expl.model_version if isinstance(expl, StoredExplanation) else _version(info, {})
    return f"No faithfulness report for this model version yet: run `vigil explain-report {version}`."


def _panel(image: CaseImage, view: ViewSettings, method: ExplainMethod, expl: Shown, trust: str) -> ExplanationPanel:
    """One compare column: the same window, zoom and opacity, with this method's map and colour map."""
    cmap = str(st.session_state["view-cmap-signed" if method.signed else "view-cmap"])
    settings = ViewSettings(
        view.center, view.width, view.zoom, view.pan_x, view.pan_y, view.overlay, view.opacity, cmap
    )
    if not isinstance(expl, StoredExplanation):
        return ExplanationPanel(method, review.render_view(image, None, settings), trust, None, _why(method, expl))
    if not _has_map(expl):
        flat = _why(method, expl)
        return ExplanationPanel(method, review.render_view(image, None, settings), trust, expl, flat)
    rgb = review.render_view(image, expl.heatmap, settings, signed=method.signed)
    return ExplanationPanel(method, rgb, trust, expl)


def _why(method: ExplainMethod, expl: Shown) -> str:
    if isinstance(expl, Unavailable):
        return f"No {method.label} overlay: {expl.reason}"
    return f"The {method.label} map is flat: nothing raised or lowered the model's score."


def _status(method: ExplainMethod, expl: Shown) -> None:
    """Say why there is no overlay."""
    if isinstance(expl, Unavailable) or not _has_map(expl):
        st.caption(_why(method, expl))


def _audit_views(user: SignedInUser, uid: str, shown: Iterable[Shown]) -> None:
    """Audit, once per session, case and explanation (so once per method), that a map was shown."""
    for expl in shown:
        if isinstance(expl, StoredExplanation) and _has_map(expl) and not state.viewed(uid, expl.explanation_id):
            explanation.record_viewed(resources.session_factory(), user, expl, now=resources.utc_now)
            state.mark_viewed(uid, expl.explanation_id)


def _restore_prefs() -> None:
    for key, default in _PREFS.items():
        st.session_state.setdefault(key, st.session_state.get(f"vigil.pref.{key}", default))


def _save_prefs() -> None:
    for key in _PREFS:
        st.session_state[f"vigil.pref.{key}"] = st.session_state[key]


def _controls(image: CaseImage, *, method: ExplainMethod, has_map: bool) -> ViewSettings:
    uid = image.study_uid
    presets = {p.name: p for p in image.presets}
    center_key, width_key, preset_key = f"view-center-{uid}", f"view-width-{uid}", f"view-preset-{uid}"
    st.session_state.setdefault(center_key, image.default.center)
    st.session_state.setdefault(width_key, image.default.width)
    c_lo, c_hi, w_hi, step = _bounds(image)
    top = st.columns([3, 2, 2, 2], vertical_alignment="bottom")
    top[0].selectbox("Window preset", list(presets), key=preset_key, on_change=_apply_preset, args=(image,))
    zoom = top[1].select_slider("Zoom", ZOOM_LEVELS, format_func=lambda z: f"{z:g}×", key="view-zoom")
    overlay = top[2].toggle("Overlay", key="view-overlay", disabled=not has_map)
    if method.signed:
        cmap = top[3].selectbox("Colour map", DIVERGING_COLORMAPS, key="view-cmap-signed", disabled=not has_map)
    else:
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


def _caption(view: ViewSettings, method: ExplainMethod, overlaid: bool) -> str:
    parts = [f"Window C {view.center:.0f} / W {view.width:.0f}", f"zoom {view.zoom:g}×"]
    if overlaid and view.overlay:
        parts.append(f"{method.label} overlay, opacity {view.opacity:.2f}, {view.cmap}")
    return " · ".join(parts)
