"""Deep links survive sign-in (AppTest through ``app.py``): the page and its query parameters.

Streamlit keys a page by its URL path; before this, an anonymous session knew only the sign-in
page, so ``/case_review?study=UID`` answered "Page not found" and signing in landed on Home with
the study forgotten. A role without access was told "Page not found" too, instead of why.
"""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash

from core.services.permissions import Role, SignedInUser
from core.services.worklist import Cohort, WorklistFilter, worklist_page
from tests.ui.conftest import USERS, texts
from tests.ui.installation import DEMO_PASSWORDS, Installation
from ui.navigation import PAGES, refusal_text

App = Callable[[Role | None], AppTest]


def open_url(at: AppTest, url_path: str) -> AppTest:
    """What typing ``/<url_path>`` does: ask for the page keyed by that path (AppTest.switch_page
    only finds pages registered from a file, and signed out every page is the sign-in form)."""
    at._page_hash = calc_hash(url_path)
    return at.run()


def _sign_in(at: AppTest, username: str) -> AppTest:
    at.text_input[0].input(username)
    at.text_input[1].input(DEMO_PASSWORDS[username])
    return next(b for b in at.button if b.label == "Sign in").click().run()


def _a_study(inst: Installation) -> tuple[str, str]:
    user = SignedInUser(USERS[Role.RADIOLOGIST], Role.RADIOLOGIST)
    row = worklist_page(inst.session_factory(), user, WorklistFilter(cohort=Cohort.ANY)).items[-1]
    return row.study_uid, row.accession_number


def test_a_case_link_opened_signed_out_shows_that_case_after_sign_in(app: App, installation: Installation) -> None:
    # Prepare: an anonymous session opens /case_review?study=UID
    uid, accession = _a_study(installation)
    at = app(None)
    at.query_params["study"] = uid
    open_url(at, "case_review")

    # Assert: the sign-in form, saying where it leads, and nothing of the study
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert [i.value for i in at.info] == ["Sign in to open the Case review page."]
    assert accession not in texts(at)

    # Execute
    _sign_in(at, USERS[Role.RADIOLOGIST])

    # Assert: the same URL now runs the case page on that study
    assert not at.exception
    assert at.query_params["study"] in (uid, [uid])  # AppTest gives a list before a run wrote it
    assert not at.text_input or [t.label for t in at.text_input] != ["Username", "Password"]
    assert accession in texts(at)


def test_a_link_to_a_page_the_role_may_not_use_says_which_role_it_needs(app: App) -> None:
    # Prepare
    users = next(spec for spec in PAGES if spec.path == "pages/users.py")
    at = app(None)
    open_url(at, users.url_path)

    # Execute
    _sign_in(at, USERS[Role.RADIOLOGIST])

    # Assert: not "Page not found", but the role the page needs and the user's own
    assert not at.exception
    radiologist = SignedInUser(USERS[Role.RADIOLOGIST], Role.RADIOLOGIST)
    assert [e.value for e in at.error] == [refusal_text(users, radiologist)]
    assert "needs the admin role" in at.error[0].value and "(radiologist)" in at.error[0].value


def test_a_page_link_lands_on_its_page_with_its_parameters_when_the_role_allows(app: App) -> None:
    # Prepare: the drift page, with a parameter the page itself does not use
    at = app(None)
    at.query_params["site"] = "riverside"
    open_url(at, "drift_monitor")

    # Execute
    _sign_in(at, USERS[Role.CMIO])

    # Assert
    assert not at.exception
    assert [t.value for t in at.title] == ["Drift monitoring"]
    assert at.query_params["site"] in ("riverside", ["riverside"])
