"""Safety screens never show stale state (issue 20): counts, confirmations, lists, ticks, icons.

What a browser showed before: after an action the drift site picker kept its old
"riverside (1 unresolved incident)" label (a keyed selectbox keeps the label it first drew),
the novelty timeline ticked hours ("23:59:59.999") around a single event, status cells were emoji
that Chromium without emoji fonts draws as empty boxes, and the Users list missed the user just
added (the list was read before the form wrote).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.drift.novelty import detect_novelty
from core.services.monitoring import SiteMonitoring
from core.services.permissions import Role, SignedInUser
from tests.ui.conftest import USERS, texts
from tests.ui.installation import Installation
from tests.ui.test_drift_monitor import _seed_incident
from ui import drift

REPO = Path(__file__).resolve().parents[2]
#: Pictographic emoji (the symbols Chromium without an emoji font shows as empty boxes).
EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf]")


def _page(name: str, role: Role) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / name), default_timeout=90)
    at.session_state["vigil.user"] = SignedInUser(USERS[role], role)
    return at.run()


def test_the_site_picker_keeps_its_options_and_the_counts_beside_it_follow_the_store(
    installation: Installation,
) -> None:
    # Prepare
    incident_id, _ = _seed_incident(installation)
    at = _page("drift_monitor.py", Role.ML_ENGINEER)
    at.selectbox(key="drift-site").set_value("riverside").run()
    before = list(at.selectbox(key="drift-site").options)
    counts_before = next(m.value for m in at.markdown if m.value.startswith("riverside:"))

    # Execute: resolve the incident
    at.text_input[0].input("vendor fixed the detector calibration")
    next(b for b in at.button if b.label.startswith("Resolve")).click().run()

    # Assert: the options did not change (so the browser has nothing stale to keep), the
    # counts drawn beside them did, and a confirmation names the incident
    assert not at.exception
    assert list(at.selectbox(key="drift-site").options) == before == ["eastgate", "harbor", "northfield", "riverside"]
    assert counts_before.startswith("riverside: **1 unresolved incident**")
    assert next(m.value for m in at.markdown if m.value.startswith("riverside:")).startswith(
        "riverside: **0 unresolved incidents**"
    )
    assert [s.value for s in at.success] == [
        f"Incident #{incident_id} is now resolved with its 2 alerts; the actions are in the audit log."
    ]


def test_no_emoji_on_the_drift_page(installation: Installation) -> None:
    # Prepare
    _seed_incident(installation)

    # Execute
    at = _page("drift_monitor.py", Role.CMIO)
    at.selectbox(key="drift-site").set_value("riverside").run()

    # Assert
    assert not at.exception
    assert not EMOJI.findall(texts(at))
    assert list(at.dataframe[0].value["status"]) == ["open"]


def test_the_novelty_timeline_ticks_days_around_a_single_event() -> None:
    # Prepare: one new software version on one day
    days = [date(2025, 5, 1)] * 10 + [date(2025, 5, 22)]
    novelty = detect_novelty([str(i) for i in range(11)], days, {"software_versions": ["v4"] * 10 + ["v5"]}, warmup=10)
    site = SiteMonitoring("riverside", 11, 0, (), {}, novelty)

    # Execute
    axis = drift.novelty_figure(site).layout.xaxis

    # Assert: whole-day ticks over at least a week, never the hours of one day
    assert axis.type == "date" and axis.tickformat == "%Y-%m-%d" and axis.dtick == 86_400_000
    start, end = (date.fromisoformat(str(v)) for v in axis.range)
    assert (end - start).days >= 7 and start < date(2025, 5, 22) < end


def test_the_users_list_shows_the_user_just_added(installation: Installation) -> None:
    # Prepare
    at = _page("users.py", Role.ADMIN)

    # Execute
    at.text_input[0].input("dr.fresh")
    at.text_input[1].input("Dr Fresh")
    at.text_input[2].input("a long enough password")
    next(b for b in at.button if b.label == "Add user").click().run()

    # Assert: the table drawn in the same run already holds the new account
    assert not at.exception
    assert "dr.fresh" in list(at.dataframe[0].value["Username"])
