"""A prior study side by side with the case, in Chromium (distribution build, Playwright).

Two tests, kept few for a 2-core machine:

- the review app: the sample cohort has no repeat patients, so the fixture ingests a SYNTHETIC
  prior (a live study's phantom re-saved under new UIDs, an accession ``SYN-P<days>-…``, the same
  PatientID and a date 400 days earlier, its description saying it is a test fixture) and scores
  it with the installation's model. The case opens as before (no second film, "Compare with
  prior" off); switched on, both films are shown, each labelled with its date and AI score;
- the built component alone (CPU rendering): window / level set on either film is the other's
  too, the pixel probe reads the prior's own film in its own units, and removing the prior gives
  the case its whole width back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, serve
from tests.e2e.synthetic_prior import Pair, add_synthetic_prior
from tests.ui.installation import DEMO_PASSWORDS, copy_installation, shared_template
from ui.components.dicom_viewer import BUILD_DIR, is_built

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not is_built(), reason="the viewer is not built: run scripts/build-viewer"),
]

VIEWER = "iframe[src*=vigil_dicom_viewer]"


@pytest.fixture
def served(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[tuple[str, Pair]]:
    """A private installation with one synthetic prior, served on a free loopback port."""
    inst = copy_installation(shared_template(tmp_path_factory.getbasetemp()), tmp_path)
    pair = add_synthetic_prior(inst, tmp_path / "prior")
    with serve(inst, tmp_path / "streamlit.log") as url:
        yield url, pair


def test_a_case_with_a_prior_shows_both_films_labelled_when_asked(served: tuple[str, Pair]) -> None:
    from playwright.sync_api import expect, sync_playwright

    # Prepare
    url, pair = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(60_000)
            expect.set_options(timeout=60_000)
            page.goto(f"{url}/case_review?study={pair.current_uid}")
            page.get_by_role("textbox", name="Username").fill("radiologist")
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORDS["radiologist"])
            page.get_by_role("button", name="Sign in").click()
            frame = page.frame_locator(VIEWER)
            body = frame.locator("body")
            expect(body).to_have_attribute("data-study", pair.current_uid)
            expect(body).to_have_attribute("data-state", "ready")

            # Assert: the case opens as it always did, the comparison offered but off
            switch = page.get_by_role("switch", name=re.compile(r"^Compare with prior"))
            expect(switch).not_to_be_checked()
            expect(frame.locator("#pane-prior")).to_be_hidden()
            expect(frame.locator("#label-current")).to_be_hidden()
            window = body.get_attribute("data-window")

            # Execute
            page.get_by_text(re.compile(r"^Compare with prior")).click()

            # Assert: both films, each with its date and AI score; one window / level for both
            expect(body).to_have_attribute("data-prior", pair.prior_uid)
            expect(frame.locator("#label-current")).to_have_text(pair.current_label)
            expect(frame.locator("#label-prior")).to_have_text(pair.prior_label)
            expect(frame.locator("#pane-prior")).to_be_visible()
            viewer = page.locator(VIEWER).element_handle().content_frame()
            assert viewer is not None
            assert viewer.evaluate(_WINDOWS_AGREE)
            expect(body).to_have_attribute("data-window", window or "")  # the reader's window, kept
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "compare-with-prior.png"))
        finally:
            browser.close()
    assert re.fullmatch(r"Prior · \d{4}-\d\d-\d\d · AI score \d\.\d\d( \(positive\))?", pair.prior_label)


_WINDOWS_AGREE = """() => {
  const v = window.vigilViewer;
  const a = v.viewport.getProperties().voiRange, b = v.priorViewport.getProperties().voiRange;
  return Math.abs(a.lower - b.lower) < 1e-6 && Math.abs(a.upper - b.upper) < 1e-6;
}"""

_RENDER = """([withPrior]) => {
  const film = (rows, columns, slope) => {
    const pixels = new Float32Array(rows * columns);
    for (let y = 0; y < rows; y++) for (let x = 0; x < columns; x++) pixels[y * columns + x] = slope * x + y;
    return new Uint8Array(pixels.buffer);
  };
  const prior = withPrior ? {study_uid: "1.2.9", rows: 96, columns: 80, spacing: [0.6, 0.6],
    length_unit: "mm at detector", calibration: "Proj", label: "Prior · 2025-01-02 · AI score 0.12",
    value_unit: "(CR units)"} : null;
  window.postMessage({type: "streamlit:render", args: {
    study_uid: "1.2.3", rows: 128, columns: 128, pixels: film(128, 128, 4), map: null,
    prior_pixels: withPrior ? film(96, 80, 3) : null, prior,
    label: "Current · 2026-02-03 · AI score 0.91 (positive)",
    presets: [{name: "File default", center: 500, width: 1000}, {name: "Narrow", center: 300, width: 200}],
    spacing: [0.5, 0.5], spacing_source: "PixelSpacing=ImagerPixelSpacing", calibration: "Proj",
    length_unit: "mm at detector", spacing_note: "Lengths in mm at detector", value_unit: "(DX units)",
    modality: "DX", map_label: "", map_signed: false, overlay: true, opacity: 0.5,
    threshold: 0.5, height: 400, renderer: "cpu", generation: ""}}, "*");
}"""


def _window(page: Any, which: str) -> tuple[float, float]:
    lower, upper = page.evaluate(
        f"() => {{ const r = window.vigilViewer.{which}.getProperties().voiRange; return [r.lower, r.upper]; }}"
    )
    return float(lower), float(upper)


def test_component_keeps_one_window_for_both_films_and_gives_the_width_back() -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # Prepare: the component alone, a case and its prior
            page = browser.new_page(viewport={"width": 900, "height": 600})
            page.set_default_timeout(30_000)
            page.goto((BUILD_DIR / "index.html").as_uri())
            page.evaluate(_RENDER, [True])
            body = page.locator("body")
            expect(body).to_have_attribute("data-prior", "1.2.9")
            expect(page.locator("#label-prior")).to_have_text("Prior · 2025-01-02 · AI score 0.12")
            expect(page.locator("#label-current")).to_have_text("Current · 2026-02-03 · AI score 0.91 (positive)")
            opened = (_window(page, "viewport"), _window(page, "priorViewport"))
            half = page.locator("#viewport").bounding_box()
            prior_box = page.locator("#viewport-prior").bounding_box()
            assert half is not None and prior_box is not None

            # Execute: a preset key, then a window / level drag on the prior film
            page.keyboard.press("2")
            preset = (_window(page, "viewport"), _window(page, "priorViewport"))
            x, y = prior_box["x"] + prior_box["width"] / 2, prior_box["y"] + prior_box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 50, y + 30, steps=10)
            page.mouse.up()
            page.wait_for_timeout(300)
            dragged = (_window(page, "viewport"), _window(page, "priorViewport"))
            page.mouse.move(x + 7, y + 5)
            probed = page.locator("#probe").inner_text()
            case_box = page.locator("#viewport").bounding_box()
            assert case_box is not None
            page.mouse.move(case_box["x"] + case_box["width"] / 2, case_box["y"] + case_box["height"] / 2)
            probed_case = page.locator("#probe").inner_text()

            # Execute: the prior switched off again
            page.evaluate(_RENDER, [False])
            expect(body).to_have_attribute("data-prior", "")
            expect(page.locator("#pane-prior")).to_be_hidden()
            whole = page.locator("#viewport").bounding_box()
            assert whole is not None

            # Assert: the preset and the drag on the prior reached both films; the case got its width back
            assert opened[0] == pytest.approx((0.0, 1000.0)) and opened[1] == pytest.approx(opened[0])
            assert preset[0] == pytest.approx((200.0, 400.0)) and preset[1] == pytest.approx(preset[0])
            assert dragged[1] != pytest.approx(preset[1]) and dragged[0] == pytest.approx(dragged[1])
            assert half["width"] < 0.6 * whole["width"] and prior_box["x"] > half["x"] + half["width"] - 1
            expect(page.locator("#label-current")).to_be_hidden()
            # ... and the probe read the prior's own film (its pixel is 3 x + y) in its own units
            found = re.fullmatch(r"Prior \((\d+), (\d+)\): (-?\d+\.\d) \(CR units\)", probed)
            assert found is not None, probed
            px, py, value = int(found[1]), int(found[2]), float(found[3])
            assert px < 80 and py < 96 and value == pytest.approx(3 * px + py)
            found = re.fullmatch(r"\((\d+), (\d+)\): (-?\d+\.\d) \(DX units\)", probed_case)
            assert found is not None, probed_case
            assert float(found[3]) == pytest.approx(4 * int(found[1]) + int(found[2]))
        finally:
            browser.close()
