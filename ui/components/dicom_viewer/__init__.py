"""The Cornerstone3D DICOM viewer as a Streamlit custom component.

The frontend (``frontend/``: sources, ``package.json`` and ``package-lock.json``) is built by
``scripts/build-viewer`` into ``build/``, which git ignores: no bundle is committed. Window /
level, zoom, pan, measuring, the pixel probe and the explanation layer all run in the browser,
so none of them reruns the Streamlit script.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final

import streamlit as st
import streamlit.components.v1 as components

from ui.components.dicom_viewer.payload import ViewerArgs

__all__ = ["BUILD_DIR", "ViewerNotBuiltError", "is_built", "render"]

BUILD_DIR: Final = Path(__file__).resolve().parent / "build"
_REQUIRED: Final = ("index.html", "viewer.js", "viewer.css")


class ViewerNotBuiltError(RuntimeError):
    """The component's bundle is missing: the set-up commands were not run (or the build failed)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            f"the image viewer is not built ({', '.join(missing)} missing under {BUILD_DIR}): "
            "run scripts/build-viewer (scripts/setup-venv runs it)"
        )


def _missing() -> list[str]:
    return [name for name in _REQUIRED if not (BUILD_DIR / name).is_file()]


def is_built() -> bool:
    """Whether ``scripts/build-viewer`` has produced the bundle."""
    return not _missing()


@functools.cache
def _component() -> Any:
    missing = _missing()
    if missing:
        raise ViewerNotBuiltError(missing)
    return components.declare_component("vigil_dicom_viewer", path=str(BUILD_DIR))


def render(args: ViewerArgs, *, key: str) -> None:
    """Show the viewer; a missing bundle is an error on the page that says how to build it.

    ``key`` should name the study, so each case starts from the viewer's defaults (overlay shown,
    threshold and opacity reset) instead of the previous case's state.
    """
    try:
        component = _component()
    except ViewerNotBuiltError as exc:
        st.error(str(exc), icon=":material/build:")
        return
    component(
        pixels=args.pixels, map=args.map_bytes, prior_pixels=args.prior_pixels, key=key, default=None, **args.fields
    )
