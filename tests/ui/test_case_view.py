"""The case view: one service call per view, and the viewer's safe defaults (AppTest through app.py).

Before: the viewer climbed into ``core.services`` four times per render, carried "overlay off"
silently into the next case, and offered KernelShap, which the explanation report says not to
rely on, as an equal choice to Grad-CAM.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.errors import BadInputError
from core.explain.report import TrustLevel, TrustReport
from core.imaging.spacing import MeasurementSpacing, SpacingSource
from core.services import case_view, review
from core.services.explanation import ExplainMethod
from core.services.permissions import Role, SignedInUser
from core.services.worklist import Cohort, WorklistFilter, worklist_page
from core.store import explain_reports, model_versions
from tests.ui.conftest import USERS, texts
from tests.ui.installation import TEST_MODEL_VERSION, Installation
from ui import resources
from ui.components.dicom_viewer.payload import encode_map, encode_pixels, length_unit, spacing_note, viewer_args

App = Callable[[Role | None], AppTest]
PAGE = "pages/case_review.py"
REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "explain-report.json"
RADIOLOGIST = SignedInUser(USERS[Role.RADIOLOGIST], Role.RADIOLOGIST)


def _benchmark_report(version: str = TEST_MODEL_VERSION) -> TrustReport:
    """The committed report (Grad-CAM supported, both SHAP methods not) as if made for ``version``."""
    data = json.loads(REPORT.read_text(encoding="utf-8"))
    return TrustReport.from_dict({**data, "model_version": version})


def _store_report(inst: Installation) -> None:
    with inst.session_factory().begin() as session:
        mv = model_versions.get_by_version(session, TEST_MODEL_VERSION)
        explain_reports.add_report(
            session,
            model_version_id=mv.id,
            report=_benchmark_report().to_dict(),
            created_by="test",
            now=datetime.now(UTC),
        )


def _studies(inst: Installation) -> list[str]:
    page = worklist_page(inst.session_factory(), RADIOLOGIST, WorklistFilter(cohort=Cohort.ANY))
    return [row.study_uid for row in page.items]


def _open(app: App, uid: str) -> AppTest:
    at = app(Role.RADIOLOGIST)
    at.switch_page(PAGE)
    at.session_state["vigil.case.study"] = uid
    return at.run()


class _Counter:
    """Counts calls to a real function and calls it (a spy, not a mock)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kwargs)


# --- the service -----------------------------------------------------------------------------------


def test_report_marks_the_shap_methods_experimental_and_keeps_its_reasons() -> None:
    # Execute
    verdicts = case_view.trust_verdicts(_benchmark_report(), version=TEST_MODEL_VERSION)

    # Assert
    assert verdicts[ExplainMethod.GRADCAM].level is TrustLevel.SUPPORTED
    assert not verdicts[ExplainMethod.GRADCAM].experimental
    for method in (ExplainMethod.GRADIENTSHAP, ExplainMethod.KERNELSHAP):
        assert verdicts[method].experimental
        assert verdicts[method].sentence.startswith(f"Do not rely on {method.label}")


def test_without_a_report_every_method_is_unknown_and_no_command_is_shown() -> None:
    verdicts = case_view.trust_verdicts(None, version=TEST_MODEL_VERSION)
    assert {v.level for v in verdicts.values()} == {TrustLevel.UNKNOWN}
    assert not any(v.experimental for v in verdicts.values())
    assert not any("vigil " in v.sentence or "`" in v.sentence for v in verdicts.values())


def test_an_unsupported_map_is_withheld_unless_asked_for_as_experimental(installation: Installation) -> None:
    # Prepare
    _store_report(installation)
    uid = _studies(installation)[0]
    settings = installation.settings
    computed = _Counter(lambda: pytest.fail("the model was loaded for a withheld map"))

    # Execute
    view = case_view.open_case_view(
        installation.session_factory(),
        RADIOLOGIST,
        uid,
        model=computed,
        artifacts_dir=settings.artifacts_dir,
        now=lambda: datetime.now(UTC),
        methods=(ExplainMethod.KERNELSHAP,),
    )

    # Assert: no map, the reason, and everything else the viewer shows is there
    assert ExplainMethod.KERNELSHAP not in view.maps and computed.calls == 0
    assert "not supported" in view.map_problems[ExplainMethod.KERNELSHAP]
    assert view.main_methods == (ExplainMethod.GRADCAM,)
    assert view.experimental_methods == (ExplainMethod.GRADIENTSHAP, ExplainMethod.KERNELSHAP)
    assert view.image is not None and view.image.pixels.ndim == 2
    assert view.info.card is not None and view.history == ()


def test_the_viewer_is_sent_the_image_and_map_with_the_safe_defaults(installation: Installation) -> None:
    # Prepare: a case view with its Grad-CAM map (computed once by the test model)
    uid = _studies(installation)[0]
    view = case_view.open_case_view(
        installation.session_factory(),
        RADIOLOGIST,
        uid,
        model=resources.model,  # the app's shared model provider, as the page uses it
        artifacts_dir=installation.settings.artifacts_dir,
        now=lambda: datetime.now(UTC),
    )

    # Execute
    args = viewer_args(view, ExplainMethod.GRADCAM, overlay=True)

    # Assert: overlay on, thresholded Grad-CAM, the pixels and the map on the image's own grid
    assert view.image is not None
    rows, columns = view.image.pixels.shape
    assert args.fields["overlay"] is True and args.fields["threshold"] == 0.5
    assert args.fields["map_label"] == "Grad-CAM map" and args.fields["map_signed"] is False
    assert len(args.pixels) == 4 * rows * columns and args.map_bytes is not None
    assert len(args.map_bytes) == rows * columns
    with pytest.raises(BadInputError, match="renderer must be"):
        viewer_args(view, ExplainMethod.GRADCAM, overlay=True, renderer="webgpu")


# --- the page ------------------------------------------------------------------------------------------


def test_one_case_view_call_per_case_view(
    app: App, installation: Installation, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: count the single entry point and the reads it used to make one by one
    spies = {name: _Counter(getattr(mod, name)) for mod, name in ((case_view, "open_case_view"), (review, "open_case"))}
    for (mod, name), spy in zip(((case_view, "open_case_view"), (review, "open_case")), spies.values(), strict=True):
        monkeypatch.setattr(mod, name, spy)
    first, second = _studies(installation)[:2]

    # Execute: open a case, move a control that changes nothing read, go to the next case
    at = _open(app, first)
    opened = {n: s.calls for n, s in spies.items()}
    at.toggle(key=f"view-overlay-{first}").set_value(False).run()
    after_toggle = {n: s.calls for n, s in spies.items()}
    at.session_state["vigil.case.study"] = second
    at.run()

    # Assert
    assert not at.exception
    assert opened == {"open_case_view": 1, "open_case": 1}
    assert after_toggle == opened  # a widget change reads nothing again
    assert {n: s.calls for n, s in spies.items()} == {"open_case_view": 2, "open_case": 2}


def test_overlay_is_on_at_every_case_and_off_is_said_in_the_header(app: App, installation: Installation) -> None:
    # Prepare
    first, second = _studies(installation)[:2]
    at = _open(app, first)
    assert at.toggle(key=f"view-overlay-{first}").value is True

    # Execute: the reader hides the overlay on the first case, then moves to the next
    at.toggle(key=f"view-overlay-{first}").set_value(False).run()
    hidden_warning = [w.value for w in at.warning if "overlay is **off**" in w.value]
    at.session_state["vigil.case.study"] = second
    at.run()

    # Assert: said while off; on again, and nothing said, on the next case
    assert not at.exception
    assert len(hidden_warning) == 1
    assert at.toggle(key=f"view-overlay-{second}").value is True
    assert not [w for w in at.warning if "overlay is **off**" in w.value]


def test_unsupported_methods_are_only_offered_as_experimental_with_the_reason(
    app: App, installation: Installation
) -> None:
    # Prepare
    _store_report(installation)
    uid = _studies(installation)[0]

    # Execute
    at = _open(app, uid)

    # Assert: the main switch holds Grad-CAM only; the SHAP methods sit under "Experimental"
    assert not at.exception
    switch = next(e for e in at.get("button_group") if e.proto.label == "Explanation")
    assert [o.content for o in switch.proto.options] == ["Grad-CAM"]
    assert any("Experimental" in e.label for e in at.expander)
    shown = texts(at)
    assert "Do not rely on GradientShap" in shown and "Do not rely on KernelShap" in shown
    assert at.toggle(key=f"view-experimental-{uid}").value is False


def test_a_study_link_opens_that_case_and_the_url_follows_the_case(app: App, installation: Installation) -> None:
    # Prepare
    first, second = _studies(installation)[:2]
    at = app(Role.RADIOLOGIST)
    at.switch_page(PAGE)
    at.query_params["study"] = second

    # Execute
    at.run()

    # Assert: the linked case is open and the URL names it; opening another updates the URL
    assert not at.exception
    assert at.session_state["vigil.case.study"] == second
    at.session_state["vigil.case.study"] = first
    at.run()
    assert at.query_params["study"] in (first, [first])


def test_an_unknown_study_link_says_so_without_crashing(app: App) -> None:
    at = app(Role.RADIOLOGIST)
    at.switch_page(PAGE)
    at.query_params["study"] = "1.2.826.0.1.424242"
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "No study with the UID in this link is in Vigil: check the link, or open a study from the worklist."
    ]


# --- what crosses to the browser ----------------------------------------------------------------------


def test_map_bytes_cover_the_range_and_a_value_outside_it_is_named() -> None:
    assert list(encode_map(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), signed=False)) == [0, 128, 255]
    assert list(encode_map(np.array([[-1.0, 0.0, 1.0]], dtype=np.float32), signed=True)) == [1, 128, 255]
    with pytest.raises(BadInputError, match=r"\[0, 1\], got \[0, 1.5\]"):
        encode_map(np.array([[0.0, 1.5]], dtype=np.float32), signed=False)


def test_pixels_cross_as_float32_with_non_finite_values_replaced() -> None:
    pixels = np.array([[np.nan, 2.0], [3.0, np.inf]], dtype=np.float32)
    decoded = np.frombuffer(encode_pixels(pixels), dtype="<f4").reshape(2, 2)
    assert decoded.tolist() == [[2.0, 2.0], [3.0, 2.0]]
    with pytest.raises(BadInputError, match="2-D"):
        encode_pixels(np.zeros((2, 2, 2), dtype=np.float32))


def test_the_spacing_note_names_the_attribute_or_says_pixels() -> None:
    assert spacing_note(MeasurementSpacing(0.2, 0.2, SpacingSource.PIXEL_SPACING)).startswith(
        "Lengths in mm from PixelSpacing (0.2 × 0.2 mm), basis unknown"
    )
    at_detector = spacing_note(MeasurementSpacing(0.15, 0.15, SpacingSource.IMAGER_PIXEL_SPACING))
    assert at_detector.startswith("Lengths in mm at detector, from ImagerPixelSpacing (0.15 × 0.15 mm)")
    assert "lengths are in pixels" in spacing_note(None)
    assert [length_unit(s) for s in (MeasurementSpacing(0.2, 0.2, SpacingSource.IMAGER_PIXEL_SPACING), None)] == [
        "mm at detector",
        "px",
    ]
