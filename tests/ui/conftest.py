"""AppTest fixtures: a private copy of a small installation per test, and apps signed in as any role."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.services.auth import DEMO_USERS
from core.services.permissions import Role, SignedInUser
from tests.ui.installation import Installation, copy_installation, shared_template
from ui.bench import count_elements, use_navigation_mode

APP = str(Path(__file__).resolve().parents[2] / "app.py")
#: The demo account of each role.
USERS = {d.role: d.username for d in DEMO_USERS}
__all__ = ["APP", "USERS", "count_elements", "texts"]


@pytest.fixture(autouse=True)
def _navigation_mode() -> None:
    # AppTest would otherwise rerun a page file alone, without app.py (see ui.bench).
    use_navigation_mode()


@pytest.fixture
def installation(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Installation]:
    inst = copy_installation(shared_template(tmp_path_factory.getbasetemp()), tmp_path)
    for key, value in inst.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("VIGIL_CONFIG", raising=False)
    yield inst
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def app(installation: Installation) -> Callable[[Role | None], AppTest]:
    """``app(role)``: the app, run once, signed in as that role's demo user (None: anonymous)."""

    def make(role: Role | None) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        if role is not None:
            at.session_state["vigil.user"] = SignedInUser(USERS[role], role)
        return at.run()

    return make


def texts(at: AppTest) -> str:
    """All text the app rendered, for "this must not appear" checks."""
    parts: list[str] = []

    def walk(node: object) -> None:
        for attr in ("value", "label", "body"):
            value = getattr(node, attr, None)
            if isinstance(value, str):
                parts.append(value)
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def viewer_args_sent(at: AppTest) -> dict[str, Any]:
    """The JSON arguments the Cornerstone3D viewer component was sent (pixels and map aside)."""
    found: list[dict[str, Any]] = []

    def walk(node: object) -> None:
        if type(node).__name__ == "UnknownElement" and getattr(node, "type", "") == "component_instance":
            found.append(json.loads(node.proto.json_args))  # type: ignore[attr-defined]
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    assert len(found) == 1, f"expected one viewer, found {len(found)}"
    return found[0]
