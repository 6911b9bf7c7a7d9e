"""axe-core in a real browser: no serious or critical WCAG 2 A/AA violation on any page, for any role.

One Chromium session per role signs in once and opens, from the sidebar, every page
:data:`ui.navigation.PAGES` lets that role use; on each, axe-core (from the viewer's npm
devDependencies, ``scripts/build-viewer`` installs it) runs on the page and inside its frames
with the WCAG 2.0/2.1 A and AA rules. Violations inside Streamlit's own markup, which Vigil
cannot change, are listed in :data:`STREAMLIT_OWNED` by rule and element, each with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import pytest

from core.services.auth import DEMO_USERS
from core.services.permissions import Permission, Role, SignedInUser, can
from tests.e2e.streamlit_server import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, REPO, serve
from tests.ui.installation import Installation, copy_installation, shared_template
from ui.navigation import PAGES, PageSpec

AXE = REPO / "ui" / "components" / "dicom_viewer" / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING: Final = frozenset({"serious", "critical"})

#: axe rule id -> (a ``data-testid`` the offending element sits in, why Vigil cannot fix it). Only
#: nodes of that rule inside that Streamlit element are tolerated; the rule still runs everywhere else.
STREAMLIT_OWNED: Final[dict[str, tuple[str, str]]] = {
    "list": (
        "stSidebarNavItems",
        "Streamlit 1.67's sidebar navigation puts its section headers (<div>) and each section's items (<li>) "
        "directly in one <ul>; the markup is Streamlit's, and st.navigation has no option to change it.",
    ),
    "listitem": ("stSidebarNavItems", "The same sidebar list: its <li> sit in a <div> per section, not in the <ul>."),
}
_RUN_AXE: Final = """async () => {
  const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
  const owners = (sel) => {
    let el = null;
    try { el = typeof sel === 'string' ? document.querySelector(sel) : null; } catch (e) { return ''; }
    const ids = [];
    for (; el; el = el.parentElement) { if (el.dataset && el.dataset.testid) ids.push(el.dataset.testid); }
    return ids.join(' < ');
  };
  return r.violations.flatMap(v => v.nodes.filter(n => ['serious', 'critical'].includes(n.impact)).map(n => ({
    rule: v.id, impact: n.impact, target: JSON.stringify(n.target), owners: owners(n.target[0]),
    html: n.html.slice(0, 160), why: (n.failureSummary || '').slice(0, 240).replace(/\\s+/g, ' '),
  })));
}"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One installation and one server for every role (the machine has two cores)."""
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run scripts/build-viewer (its npm ci installs axe-core)")
    base = tmp_path_factory.mktemp("a11y")
    inst: Installation = copy_installation(shared_template(tmp_path_factory.getbasetemp()), base)
    with serve(inst, base / "streamlit.log") as url:
        yield url


def _pages(role: Role) -> list[PageSpec]:
    user = SignedInUser(role.value, role)
    return [p for p in PAGES if p.permission is None or can(user, p.permission)]


def _settled(page: Any) -> None:
    """Wait until the app has finished its run: axe must see the page as the reader does."""
    from playwright.sync_api import expect

    page.wait_for_timeout(300)
    expect(page.locator("[data-testid=stApp][data-test-script-state=notRunning]")).to_have_count(1)
    expect(page.get_by_test_id("stStatusWidgetRunningIcon")).to_have_count(0)
    page.wait_for_timeout(500)  # charts and data frames paint after the run ends


def _violations(page: Any, where: str) -> list[str]:
    """axe's serious and critical WCAG 2 A/AA violations on the page and in its frames, one line per node."""
    for frame in page.frames:
        frame.add_script_tag(path=str(AXE))
    found = []
    for v in page.evaluate(_RUN_AXE):
        owner, _ = STREAMLIT_OWNED.get(v["rule"], ("", ""))
        if owner and owner in v["owners"].split(" < "):
            continue
        found.append(f"{where}: {v['rule']} ({v['impact']}) at {v['target']} [{v['owners']}] {v['html']} -- {v['why']}")
    return found


def _open_case(page: Any) -> list[str]:
    """The case page with a study open: the viewer (its own frame) is checked too."""
    from playwright.sync_api import expect

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Worklist", exact=True).click()
    _settled(page)
    page.get_by_role("button", name="Open case").first.click()
    viewer = page.frame_locator("iframe[src*=vigil_dicom_viewer]").locator("body")
    expect(viewer).to_have_attribute("data-state", "ready")
    _settled(page)
    return _violations(page, "Case review (a study open)")


@pytest.mark.browser
@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_every_page_a_role_may_use_has_no_serious_violation(served: str, role: Role) -> None:
    from playwright.sync_api import expect, sync_playwright

    demo = next(d for d in DEMO_USERS if d.role is role)
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(90_000)
            expect.set_options(timeout=90_000)
            page.goto(served)
            _settled(page)
            problems += _violations(page, "sign-in")
            page.get_by_role("textbox", name="Username").fill(demo.username)
            page.get_by_role("textbox", name="Password").fill(demo.password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_test_id("stSidebarNav")).to_be_visible()
            for spec in _pages(role):
                page.get_by_test_id("stSidebarNav").get_by_role("link", name=spec.title, exact=True).click()
                page.wait_for_url(f"**/{'' if spec.default else spec.url_path}*")
                _settled(page)
                problems += _violations(page, spec.title)
            if can(SignedInUser(role.value, role), Permission.REVIEW_STUDIES):
                problems += _open_case(page)
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / f"axe-{role.value}.txt").write_text("\n".join(problems) + "\n")
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
