"""The Cornerstone3D viewer in a real browser (distribution Chromium, Playwright).

Two tests, kept few for a 2-core machine:

- the review app served by ``streamlit run serve.py``: a radiologist opens a case, drags window /
  level and zooms with the wheel while the test counts the WebSocket messages the browser sends
  (none may be sent: the interactions run in the browser), then flashes the overlay;
- the built component alone, fed a synthetic image through the Streamlit component protocol,
  with CPU rendering forced (what headless browsers and thin clients without WebGL get): the
  image renders, window / level follows a drag, and a length drawn across a known number of
  pixels reads that many pixel spacings in millimetres, labelled "at detector" because the
  spacing is ImagerPixelSpacing.

Both need the bundle (``scripts/build-viewer``); they are skipped with that instruction otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serve
from tests.ui.installation import DEMO_PASSWORDS, Installation, copy_installation, shared_template
from ui.components.dicom_viewer import BUILD_DIR, is_built

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not is_built(), reason="the viewer is not built: run scripts/build-viewer"),
]

VIEWER_FRAME = "vigil_dicom_viewer"


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[str]:
    """A private installation served on a free loopback port."""
    inst: Installation = copy_installation(shared_template(tmp_path_factory.getbasetemp()), tmp_path)
    with serve(inst, tmp_path / "streamlit.log") as url:
        yield url


def _viewer_frame(page: Any) -> Any:
    for _ in range(240):
        frame = next((f for f in page.frames if VIEWER_FRAME in f.url), None)
        if frame is not None:
            return frame
        page.wait_for_timeout(250)
    raise AssertionError("the viewer's iframe never appeared")


def _drag(page: Any, box: Any, dx: float, dy: float, *, button: str = "left") -> None:
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down(button=button)
    page.mouse.move(x + dx, y + dy, steps=12)
    page.mouse.up(button=button)


def test_window_level_and_zoom_need_no_server_round_trip(served: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Prepare
    url = served
    sent: list[int] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(len(payload))))
            page.goto(url)
            page.get_by_role("textbox", name="Username").fill("radiologist")
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORDS["radiologist"])
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("button", name="Sign out")).to_be_visible()
            page.get_by_role("link", name="Worklist").click()
            page.get_by_role("button", name="Open case").first.click()
            frame = _viewer_frame(page)
            body = frame.locator("body")
            expect(body).to_have_attribute("data-state", "ready")
            expect(page).to_have_url(re.compile(r"[?&]study="))  # the URL follows the case on screen
            overlay = frame.locator("#overlay")
            expect(overlay).to_have_attribute("data-shown", "true")  # on at the start of the case
            page.wait_for_timeout(1500)  # let the page settle: no rerun may be in flight below
            window_before = body.get_attribute("data-window")
            zoom_before = float(body.get_attribute("data-zoom") or "nan")
            box = frame.locator("#viewport").bounding_box()
            assert box is not None

            # Execute: drag window / level, then zoom with the wheel
            before = len(sent)
            assert before > 0, "the WebSocket counter saw nothing: it would not see a rerun either"
            _drag(page, box, 120, -80)
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            for _ in range(3):
                page.mouse.wheel(0, -240)
                page.wait_for_timeout(100)
            page.wait_for_timeout(1000)
            during = len(sent) - before

            # Assert: both changed the picture, and the browser sent nothing to the server
            assert body.get_attribute("data-window") != window_before
            assert float(body.get_attribute("data-zoom") or "nan") != pytest.approx(zoom_before)
            assert during == 0, f"{during} WebSocket messages went to the server during window/level and zoom"

            # Execute: flash the overlay with F (the map hides for a moment, then comes back)
            frame.locator("#flash").focus()
            page.keyboard.press("f")
            expect(body).to_have_attribute("data-flashed", "1")
            expect(overlay).to_have_attribute("data-shown", "true")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dicom-viewer.png"))
        finally:
            browser.close()


_RENDER_SCRIPT = """([rows, columns, spacing]) => {
  const pixels = new Float32Array(rows * columns);
  for (let y = 0; y < rows; y++) for (let x = 0; x < columns; x++) pixels[y * columns + x] = x * 4 + y;
  const map = new Uint8Array(rows * columns);
  for (let y = 40; y < 80; y++) for (let x = 40; x < 80; x++) map[y * columns + x] = 230;
  window.postMessage({type: "streamlit:render", args: {
    study_uid: "1.2.3", rows, columns, pixels: new Uint8Array(pixels.buffer), map,
    presets: [{name: "File default", center: 500, width: 1000}, {name: "Narrow", center: 300, width: 200}],
    spacing: [spacing, spacing], spacing_source: "ImagerPixelSpacing", calibration: "Proj",
    length_unit: "mm at detector",
    spacing_note: "Lengths in mm at detector, from ImagerPixelSpacing", value_unit: "(DX units)",
    modality: "DX", map_label: "Grad-CAM map", map_signed: false, overlay: true, opacity: 0.5,
    threshold: 0.5, height: 400, renderer: "cpu", generation: "g1"}}, "*");
}"""


def test_component_on_cpu_rendering_windows_and_measures_in_mm() -> None:
    from playwright.sync_api import expect, sync_playwright

    # Prepare: the built component opened on its own, an image of 128 x 128 pixels of 0.5 mm
    rows = columns = 128
    spacing = 0.5
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 600, "height": 600})
            page.set_default_timeout(30_000)
            page.goto((BUILD_DIR / "index.html").as_uri())
            page.evaluate(_RENDER_SCRIPT, [rows, columns, spacing])
            body = page.locator("body")
            expect(body).to_have_attribute("data-state", "ready")
            expect(body).to_have_attribute("data-renderer", "cpu")
            expect(page.locator("#overlay")).to_have_attribute("data-shown", "true")
            page.keyboard.press("2")  # the second preset
            expect(body).to_have_attribute("data-window", "300.0/200.0")
            box = page.locator("#viewport").bounding_box()
            assert box is not None

            # Execute: drag window / level; then measure a horizontal line across the image
            _drag(page, box, 60, 30)
            changed = body.get_attribute("data-window")
            page.keyboard.press("m")
            a = page.evaluate(
                "([x, y]) => { const v = window.vigilViewer.viewport, id = window.vigilViewer.imageId;"
                " const u = window.vigilViewer; return v.worldToCanvas(u.toWorld(id, [x, y])); }",
                [20, 64],
            )
            b = page.evaluate(
                "([x, y]) => { const v = window.vigilViewer.viewport, id = window.vigilViewer.imageId;"
                " const u = window.vigilViewer; return v.worldToCanvas(u.toWorld(id, [x, y])); }",
                [100, 64],
            )
            page.mouse.move(box["x"] + a[0], box["y"] + a[1])
            page.mouse.down()
            page.mouse.move(box["x"] + b[0], box["y"] + b[1], steps=10)
            page.mouse.up()
            expect(body).to_have_attribute("data-length", re.compile(r"^\d"))

            # Assert
            assert changed != "300.0/200.0"
            length_mm = float(body.get_attribute("data-length") or "nan")
            assert length_mm == pytest.approx(80 * spacing, abs=2 * spacing)  # within two pixel spacings
            # A film with ImagerPixelSpacing only: the length says it is at the detector, as does the note.
            assert page.locator("#length").inner_text() == f"Length {length_mm:.1f} mm at detector"
            assert body.get_attribute("data-length-unit") == "mm at detector"
            # Cornerstone's label on the canvas settles on the same length, marked as a projection ("Proj").
            page.wait_for_function(
                "(want) => { const s = Object.values(window.vigilViewer.lastAnnotation.data.cachedStats)[0];"
                " return Math.abs(s.length - want) < 0.01; }",
                arg=length_mm,
                timeout=10_000,
            )
            tool = page.evaluate("() => Object.values(window.vigilViewer.lastAnnotation.data.cachedStats)[0]")
            assert tool["unit"] == "mm Proj"
            assert "at detector, from ImagerPixelSpacing" in page.locator("#spacing").inner_text()
        finally:
            browser.close()
