"""The measuring side of the UI benchmarks: headless reruns of the real app, timed and counted.

``core.bench.ui`` builds the databases and starts this module in a fresh process
(``python -m ui.bench SPEC.json``), because ``core`` may not import Streamlit. It prints one JSON
object: interleaved median rerun times, the counters and the element count of every page.

What is timed (BENCHMARKING.md, protocol step 2): a warm rerun of the case review page after a
widget change (the overlay toggle, alternating between off and on) on each database,
interleaved with a warm rerun of an empty page in the same process; each sample is :data:`REPS`
reruns, and medians are divided by :data:`REPS`. What is counted during
those warm reruns: Grad-CAM computations, forward calls of any ``torch.nn.Module`` and DICOM
reads, all of which must stay at zero.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import torch
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

import core.services.review as review_service
from core.bench.harness import interleaved_medians
from core.models.inference import pin_threads
from core.services.auth import DEMO_USERS
from core.services.permissions import Role, SignedInUser, can
from ui.navigation import PAGES

__all__ = ["NavigationPagesManager", "count_elements", "main", "measure", "use_navigation_mode"]

APP = str(Path(__file__).resolve().parent.parent / "app.py")
CASE_PAGE = "pages/case_review.py"
#: Reruns per timed sample: a few tens of milliseconds per sample steadies medians on a busy machine.
REPS: Final = 4
#: The demo account of each role opens that role's pages.
_USERS: Final = {d.role: d.username for d in DEMO_USERS}


class NavigationPagesManager(PagesManager):
    """AppTest's pages manager, told (as a server is by its first ``st.navigation``) to ignore ``pages/``.

    AppTest makes a new manager for every run and resets the class flag first; with a ``pages/``
    folder beside ``app.py`` every rerun would otherwise execute the page file alone.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        PagesManager.uses_pages_directory = False


def use_navigation_mode() -> None:
    """Make every later ``AppTest`` run ``app.py`` and its ``st.navigation`` (see :class:`NavigationPagesManager`)."""
    import streamlit.testing.v1.app_test as app_test_module

    setattr(app_test_module, "PagesManager", NavigationPagesManager)  # noqa: B010 - not re-exported


class _Counters:
    """Grad-CAM computations, module forward calls and DICOM reads, counted process-wide."""

    def __init__(self) -> None:
        self.gradcam = 0
        self.forwards = 0
        self.dicom_reads = 0

    def snapshot(self) -> dict[str, int]:
        """The three counts now."""
        return {"gradcam_calls": self.gradcam, "model_forwards": self.forwards, "dicom_reads": self.dicom_reads}


@contextmanager
def _counting() -> Iterator[_Counters]:
    """Count without touching the shared model: wrap the service functions, hook forwards globally."""
    counters = _Counters()
    explain, read = getattr(review_service, "explain_study"), getattr(review_service, "read_dicom")  # noqa: B009

    def counted_explain(*args: Any, **kwargs: Any) -> Any:
        counters.gradcam += 1
        return explain(*args, **kwargs)

    def counted_read(*args: Any, **kwargs: Any) -> Any:
        counters.dicom_reads += 1
        return read(*args, **kwargs)

    def on_forward(module: torch.nn.Module, args: Any) -> None:
        counters.forwards += 1

    setattr(review_service, "explain_study", counted_explain)  # noqa: B010
    setattr(review_service, "read_dicom", counted_read)  # noqa: B010
    handle = torch.nn.modules.module.register_module_forward_pre_hook(on_forward)
    try:
        yield counters
    finally:
        handle.remove()
        setattr(review_service, "explain_study", explain)  # noqa: B010
        setattr(review_service, "read_dicom", read)  # noqa: B010


def count_elements(at: AppTest) -> int:
    """Blocks, columns and elements of the last run's tree (the ≤ 200 budget counts them all)."""

    def walk(node: object) -> int:
        return 1 + sum(walk(child) for child in getattr(node, "children", {}).values())

    return walk(at._tree) - 1


@contextmanager
def _database(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _app(role: Role) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=600)
    at.session_state["vigil.user"] = SignedInUser(_USERS[role], role)
    return at.run()


def _case_app(env: dict[str, str], study_uid: str) -> AppTest:
    """The case page, opened cold (this computes and stores Grad-CAM once)."""
    with _database(env):
        at = _app(Role.RADIOLOGIST)
        at.session_state["vigil.case.study"] = study_uid
        at.switch_page(CASE_PAGE).run()
    if at.exception:
        raise RuntimeError(f"case page failed: {at.exception}")
    return at


def _rerun_after_widget_change(env: dict[str, str], at: AppTest) -> Callable[[], None]:
    """:data:`REPS` reruns of ``at``, each after flipping the overlay toggle.

    The viewer's other controls (window, zoom, opacity) run in the browser and never rerun the page.
    """
    turn = [0]
    key = f"view-overlay-{at.session_state['vigil.case.study']}"

    def rerun() -> None:
        with _database(env):
            for _ in range(REPS):
                turn[0] += 1
                at.toggle(key=key).set_value(bool(turn[0] % 2)).run()

    return rerun


def _empty_reruns(empty: AppTest) -> Callable[[], None]:
    """:data:`REPS` reruns of the empty page."""

    def rerun() -> None:
        for _ in range(REPS):
            empty.run()

    return rerun


def _page_elements(env: dict[str, str], study_uid: str) -> dict[str, int]:
    """Elements on every page each role can open (the case page with a study open)."""
    counts: dict[str, int] = {}
    with _database(env):
        for role in Role:
            user = SignedInUser(_USERS[role], role)
            at = _app(role)
            at.session_state["vigil.case.study"] = study_uid
            for spec in PAGES:
                if spec.permission is None or can(user, spec.permission):
                    at.switch_page(spec.path).run()
                    counts[spec.path] = max(counts.get(spec.path, 0), count_elements(at))
    return counts


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run every measurement described by ``spec`` (see ``core.bench.ui``) and return the figures."""
    pin_threads(int(spec.get("threads", 2)))
    use_navigation_mode()
    small, large = spec["small"], spec["large"]
    rounds = int(spec["rounds"])
    with _counting() as counters:
        cold_small = _case_app(small["env"], small["study_uid"])
        cold_large = _case_app(large["env"], large["study_uid"])
        cold = counters.snapshot()
        empty = AppTest.from_string("import streamlit as st\n").run()
        before = counters.snapshot()
        samples = interleaved_medians(
            {
                "review_small": _rerun_after_widget_change(small["env"], cold_small),
                "empty": _empty_reruns(empty),
                "review_large": _rerun_after_widget_change(large["env"], cold_large),
            },
            rounds=rounds,
            warmup=2,
        )
        after = counters.snapshot()
    medians = {name: seconds / REPS for name, seconds in samples.items()}
    warm = {k: after[k] - before[k] for k in after}
    worklist_rows = _worklist_rows(small["env"])
    return {
        "medians_s": medians,
        "cold_counters": cold,
        "warm_counters": warm,
        "elements": _page_elements(small["env"], small["study_uid"]),
        "worklist_rows": worklist_rows,
        "exceptions": [str(e) for e in (*cold_small.exception, *cold_large.exception)],
    }


def _worklist_rows(env: dict[str, str]) -> int:
    with _database(env):
        at = _app(Role.RADIOLOGIST)
        at.switch_page("pages/worklist.py").run()
    frames = at.dataframe
    return len(frames[0].value) if len(frames) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ui.bench SPEC.json``: print the figures as one JSON object."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    sys.stdout.write(json.dumps(measure(spec), sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
