"""Architecture rules the import linter cannot see: pages only render (R1), and the UI path never reads masks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ui.navigation import PAGES

ROOT = Path(__file__).resolve().parent.parent
PAGE_FILES = sorted((ROOT / "pages").glob("*.py"))
ALLOWED = ("streamlit", "ui", "core.services", "core.types", "__future__", "datetime")
#: Ground truth for evaluation only: nothing a reader's screen is built from may touch it.
MASK_NAMES = ("read_masks", "MASKS_NAME", "masks.npz", "lesion_mask")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _ui_path_files() -> list[Path]:
    services = [ROOT / "core" / "services" / f"{name}.py" for name in ("review", "worklist", "feedback", "auth")]
    return [ROOT / "app.py", *PAGE_FILES, *sorted((ROOT / "ui").rglob("*.py")), *services]


@pytest.mark.parametrize("page", PAGE_FILES, ids=lambda p: p.name)
def test_pages_only_render(page: Path) -> None:
    bad = {m for m in _imports(page) if not any(m == a or m.startswith(a + ".") for a in ALLOWED)}
    assert not bad, f"{page.name} imports {sorted(bad)}; move the work into core.services or ui"


@pytest.mark.parametrize("page", PAGE_FILES, ids=lambda p: p.name)
def test_pages_are_short_named_and_guard_themselves(page: Path) -> None:
    tree = ast.parse(page.read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    assert docstring and "\n" not in docstring.strip(), f"{page.name} needs a one-line docstring naming the screen"
    assert len(page.read_text(encoding="utf-8").splitlines()) <= 100
    # The first statement after the imports asks auth.require_page(): no data before the guard.
    body = [n for n in tree.body if not isinstance(n, ast.Import | ast.ImportFrom | ast.Expr)]
    first = body[0]
    assert isinstance(first, ast.Assign) and isinstance(first.value, ast.Call)
    assert ast.unparse(first.value.func) == "auth.require_page", f"{page.name} must call auth.require_page() first"


def test_every_page_file_is_routed_and_every_route_exists() -> None:
    routed = {spec.path for spec in PAGES}
    on_disk = {str(p.relative_to(ROOT)) for p in PAGE_FILES}
    assert routed == on_disk


def test_only_ui_and_the_entry_points_import_streamlit() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in sorted((ROOT / "core").rglob("*.py"))
        if any(m == "streamlit" or m.startswith(("streamlit.", "ui.")) or m == "ui" for m in _imports(p))
    ]
    assert offenders == []


@pytest.mark.parametrize("path", _ui_path_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_reader_path_never_touches_the_lesion_mask(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert not [n for n in MASK_NAMES if n in source], f"{path.relative_to(ROOT)} refers to the lesion mask"
