"""Review-page widgets for explanations: method choice, side-by-side compare, colour maps, trust sentence.

Render functions only: they take core dataclasses and emit ``st.*`` calls. Maps are blended by
``core.services.explanation.blend`` (diverging colour map, weighted by magnitude, for the
signed SHAP maps); computing, caching and auditing stay in ``core.services`` and ``ui.cached``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import streamlit as st

from core.services.explanation import COLORMAPS, DIVERGING_COLORMAPS, ExplainMethod, StoredExplanation, blend
from core.types import FloatArray

__all__ = [
    "ExplanationPanel",
    "colormap_picker",
    "compare_picker",
    "legend",
    "method_picker",
    "panel_rgb",
    "render_panels",
    "trust_note",
    "version_notice",
]

_METHODS: Final = tuple(ExplainMethod)
_HELP: Final = {
    ExplainMethod.GRADCAM: "Where the last convolutional layers saw evidence for the finding (never against).",
    ExplainMethod.GRADIENTSHAP: "Per-pixel evidence for (red) and against (blue) the finding, from gradients along "
    "paths from normal benchmark images to this one.",
    ExplainMethod.KERNELSHAP: "Evidence for (red) and against (blue) the finding per region, from the model's scores "
    "with regions greyed out.",
}


@dataclass(frozen=True, slots=True, eq=False)
class ExplanationPanel:
    """One method's picture with its words: what :func:`render_panels` shows.

    Attributes
    ----------
    method : ExplainMethod
    rgb : ndarray of shape (h, w, 3), uint8
        The windowed image with the map blended over it (see :func:`panel_rgb`).
    trust : str
        The method's trust sentence (``core.services.explain_report.trust_sentences``).
    explanation : StoredExplanation or None
        None when the map could not be made (``unavailable`` then says why).
    unavailable : str or None
    """

    method: ExplainMethod
    rgb: npt.NDArray[np.uint8]
    trust: str
    explanation: StoredExplanation | None = None
    unavailable: str | None = None


def panel_rgb(gray01: FloatArray, shown: StoredExplanation, *, opacity: float, cmap: str) -> npt.NDArray[np.uint8]:
    """Blend ``shown`` over the windowed image ``gray01`` (same grid) with the right kind of colour map."""
    return blend(gray01, shown.heatmap, opacity=opacity, cmap=cmap, signed=shown.signed)


def method_picker(*, key: str, default: ExplainMethod = ExplainMethod.GRADCAM) -> ExplainMethod:
    """Grad-CAM / GradientShap / KernelShap, as a segmented control; returns the choice (default when cleared)."""
    choice = st.segmented_control(
        "Explanation",
        _METHODS,
        default=default,
        format_func=lambda m: m.label,
        key=key,
        help="How the overlay was computed. Each method's trust sentence is shown under the image.",
    )
    return choice if isinstance(choice, ExplainMethod) else default


def compare_picker(*, key: str) -> list[ExplainMethod]:
    """Methods to show side by side (empty: compare off)."""
    chosen = st.multiselect(
        "Compare side by side", _METHODS, default=[], format_func=lambda m: m.label, key=key, max_selections=3
    )
    return list(chosen)


def colormap_picker(method: ExplainMethod, *, key: str) -> str:
    """A colour map of the right kind for ``method``: diverging for signed maps, sequential otherwise."""
    options = DIVERGING_COLORMAPS if method.signed else COLORMAPS
    return str(st.selectbox("Colour map", options, key=f"{key}-{'signed' if method.signed else 'seq'}"))


def legend(method: ExplainMethod) -> None:
    """One caption saying how to read the colours of ``method``'s map."""
    if method.signed:
        st.caption("Red: evidence for a nodule · blue: evidence against · no colour: no evidence either way.")
    else:
        st.caption(
            "Warmer colours: where the model found evidence for a nodule. Grad-CAM never shows evidence against."
        )


def trust_note(method: ExplainMethod, sentence: str) -> None:
    """The plain trust sentence of ``method`` for this model version, beside the overlay."""
    st.caption(f":material/verified: **How far to trust {method.label}** — {sentence}", help=_HELP[method])


def version_notice(shown: StoredExplanation) -> None:
    """A warning when the map was made by another model version than the one that scored the study."""
    if shown.notice is not None:
        st.warning(shown.notice, icon=":material/warning:")


def render_panels(panels: Sequence[ExplanationPanel]) -> None:
    """Side-by-side compare: one column per method with its image, legend, notice and trust sentence."""
    if not panels:
        return
    for col, panel in zip(st.columns(len(panels), gap="small"), panels, strict=True):
        with col:
            st.markdown(f"**{panel.method.label}**")
            if panel.unavailable is not None:
                st.info(panel.unavailable, icon=":material/hide_image:")
            else:
                st.image(panel.rgb, width="stretch", output_format="PNG")
                legend(panel.method)
                if panel.explanation is not None:
                    version_notice(panel.explanation)
            trust_note(panel.method, panel.trust)
