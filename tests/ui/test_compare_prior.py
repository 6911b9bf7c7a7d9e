"""Compare with prior: found by the case view, off at the start of every case, sent to the viewer labelled.

The installation gets a SYNTHETIC prior for one patient (``tests.e2e.synthetic_prior``: the sample
cohort has no repeat patients). The browser test (``tests/e2e/test_prior_browser.py``) sees the two
films; here the service's answer, the viewer's arguments and the page's switch are checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.services import case_view
from core.services.permissions import Role, SignedInUser
from tests.e2e.synthetic_prior import PRIOR_DAYS, add_synthetic_prior
from tests.ui.conftest import USERS, viewer_args_sent
from tests.ui.installation import Installation
from ui import resources
from ui.components.dicom_viewer.payload import viewer_args

App = Callable[[Role | None], AppTest]
PAGE = "pages/case_review.py"
RADIOLOGIST = SignedInUser(USERS[Role.RADIOLOGIST], Role.RADIOLOGIST)


def _view(inst: Installation, uid: str) -> case_view.CaseView:
    return case_view.open_case_view(
        inst.session_factory(),
        RADIOLOGIST,
        uid,
        model=resources.model,
        artifacts_dir=inst.settings.artifacts_dir,
        now=lambda: datetime.now(UTC),
    )


def test_the_case_view_names_the_prior_and_the_viewer_gets_it_labelled(
    installation: Installation, tmp_path: Path
) -> None:
    # Prepare
    pair = add_synthetic_prior(installation, tmp_path / "prior")

    # Execute
    view = _view(installation, pair.current_uid)
    prior = case_view.open_prior_view(installation.session_factory(), RADIOLOGIST, pair.prior_uid)
    alone = viewer_args(view, None, overlay=True)
    both = viewer_args(view, None, overlay=True, prior=prior)

    # Assert: the prior is named with its date; the prior has no prior of its own
    assert [p.study_uid for p in view.priors] == [pair.prior_uid]
    assert view.info.study.study_date is not None
    assert view.priors[0].study_date == view.info.study.study_date - date.resolution * PRIOR_DAYS
    assert _view(installation, pair.prior_uid).priors == ()
    # Assert: without the comparison nothing about the prior is sent; with it, its film and label
    assert alone.fields["prior"] is None and alone.prior_pixels is None
    sent = both.fields["prior"]
    assert isinstance(sent, dict) and prior.image is not None
    assert sent["study_uid"] == pair.prior_uid and sent["label"] == pair.prior_label
    assert both.fields["label"] == pair.current_label
    assert both.prior_pixels is not None and len(both.prior_pixels) == 4 * prior.image.pixels.size
    assert sent["length_unit"] == "mm at detector"  # the phantoms' PixelSpacing equals ImagerPixelSpacing


def test_the_switch_is_offered_only_with_a_prior_and_is_off_at_every_case(
    app: App, installation: Installation, tmp_path: Path
) -> None:
    # Prepare
    pair = add_synthetic_prior(installation, tmp_path / "prior")
    at = app(Role.RADIOLOGIST)
    at.switch_page(PAGE)
    at.session_state["vigil.case.study"] = pair.current_uid
    at.run()

    # Execute: switch the comparison on, then open the prior itself as a case
    switches = [t for t in at.toggle if re.match(r"Compare with prior", str(t.label))]
    assert len(switches) == 1 and switches[0].value is False
    switches[0].set_value(True).run()
    on = [t.value for t in at.toggle if str(t.label).startswith("Compare with prior")]
    warned = [str(w.value) for w in at.warning if "prior" in str(w.value)]
    at.session_state["vigil.case.study"] = pair.prior_uid
    at.run()

    # Assert: no error with both films; no switch on a case without a prior
    assert not at.exception
    assert on == [True] and warned == []
    assert not [t for t in at.toggle if str(t.label).startswith("Compare with prior")]


def test_with_several_priors_the_reader_chooses_which_and_the_next_case_starts_from_the_most_recent(
    app: App, installation: Installation, tmp_path: Path
) -> None:
    # Prepare: two priors of one patient, 400 and 800 days before the case
    recent = add_synthetic_prior(installation, tmp_path / "recent", days=400)
    older = add_synthetic_prior(installation, tmp_path / "older", days=800)
    view = _view(installation, recent.current_uid)
    at = app(Role.RADIOLOGIST)
    at.switch_page(PAGE)
    at.session_state["vigil.case.study"] = recent.current_uid
    at.run()

    # Execute: compare, then choose the older prior from the list
    (switch,) = [t for t in at.toggle if str(t.label).startswith("Compare with prior")]
    label = str(switch.label)
    switch.set_value(True).run()
    (chosen,) = [s for s in at.selectbox if s.label == "Prior shown"]
    offered, first = list(chosen.options), viewer_args_sent(at)["prior"]
    chosen.set_value(older.prior_uid).run()
    second = viewer_args_sent(at)["prior"]

    # Assert: both offered, most recent first and shown first; the choice reached the viewer
    assert [p.study_uid for p in view.priors] == [recent.prior_uid, older.prior_uid]
    assert label == "Compare with prior (2 earlier studies)"
    assert [o.split(" · ")[1] for o in offered] == [
        p.accession_number for p in view.priors
    ]  # shown as "date · accession"
    assert first["study_uid"] == recent.prior_uid and second["study_uid"] == older.prior_uid
    assert not at.exception and not [w for w in at.warning if "prior" in str(w.value)]

    # Execute / Assert: the prior, read as a case, has the older one as its only prior; the switch is off
    at.session_state["vigil.case.study"] = recent.prior_uid
    at.run()
    (switch,) = [t for t in at.toggle if str(t.label).startswith("Compare with prior")]
    assert switch.value is False and not [s for s in at.selectbox if s.label == "Prior shown"]
    assert viewer_args_sent(at)["prior"] is None
