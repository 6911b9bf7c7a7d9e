"""The PACS page's parts, and the auto-push that follows a reader's verdict.

The secret of a site's PACS is read here, at the edge, from the environment variable its
``[pacs.SITE]`` table names (:func:`clients`); ``core`` only ever gets a built client. Nothing on
the page is cached: a connection test reruns the page, which then shows the status as stored
together with a confirmation of what was tested.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Final

import pandas as pd
import streamlit as st

from core.config import PacsEndpoint
from core.errors import VigilError
from core.imaging.dicomweb import DicomwebClient
from core.services import pacs, pacs_auto_push, pacs_status, review
from core.services.feedback import FeedbackForm, FeedbackRecord, FeedbackSaved
from core.services.pacs_auto_push import AutoPush, PushOutcome
from core.services.pacs_status import PacsOverview, PacsStatus
from core.services.permissions import Permission, SignedInUser, can
from ui import localtime, resources

__all__ = [
    "clients",
    "confirmation",
    "failures_table",
    "load",
    "push_notice",
    "record_verdict",
    "sites_table",
    "test_buttons",
]

_DONE: Final = "vigil.pacs.done"
_PUSH_NOTICE: Final = "vigil.pacs.push_notice"


def clients(endpoint: PacsEndpoint) -> DicomwebClient:
    """The endpoint's client, its secret read from this process's environment (``PacsConfigError`` if unset)."""
    limit = resources.settings().max_file_bytes  # the cap `vigil pacs` puts on an answer, too
    return pacs.client_for(endpoint, endpoint.secret(os.environ), max_response_bytes=limit)


def load(user: SignedInUser) -> PacsOverview:
    """The page's data, read fresh on every run."""
    return pacs_status.overview(resources.read_session_factory(), user, resources.settings())


def confirmation() -> None:
    """The result of the test run before this rerun, once."""
    if (done := st.session_state.pop(_DONE, None)) is None:
        return
    ok, text = done
    if ok:
        st.success(text, icon=":material/check_circle:")
    else:
        st.warning(text, icon=":material/link_off:")


def sites_table(view: PacsOverview) -> None:
    """One row per configured site: endpoint (never a credential), auth, auto-push, the last test."""
    if not view.sites:
        st.info(
            "No site has a PACS configured. Add a `[pacs.SITE]` table to vigil.toml (README: Connecting to the PACS)."
        )
        return
    rows = [
        {
            "site": s.site,
            "endpoint": s.url,
            "auth": s.auth,
            "auto-push": "on" if s.auto_push else "off",
            "last test": _verdict(s.last_check),
            "tested": localtime.local_text(s.last_check.checked_at) if s.last_check else "",
            "latency (ms)": _latency(s.last_check),
            "by": s.last_check.checked_by if s.last_check else "",
            "error": s.last_check.error if s.last_check else "",
        }
        for s in view.sites
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def test_buttons(user: SignedInUser, view: PacsOverview) -> None:
    """A "Test connection" button per site, for administrators only."""
    if not view.sites or not can(user, Permission.CHECK_PACS):
        return
    st.caption("A test searches the PACS for one study with the site's credentials, and is written to the audit log.")
    cols = st.columns(min(len(view.sites), 4))
    for i, row in enumerate(view.sites):
        if cols[i % len(cols)].button(
            f"Test connection: {row.site}", key=f"pacs-test-{row.site}", icon=":material/network_check:"
        ):
            _test(user, row.site)


def failures_table(view: PacsOverview) -> None:
    """Studies whose last push failed, with the command that retries each."""
    st.subheader("Pushes waiting for a retry")
    if not view.push_failures:
        st.caption("None: every result sent back to a PACS arrived.")
        return
    rows = [
        {
            "study": f.study_uid,
            "site": f.site,
            "failed": localtime.local_text(f.failed_at),
            "after the verdict of": f.actor,
            "error": f.error,
            "retry": f"vigil pacs push {f.study_uid}",
        }
        for f in view.push_failures
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def record_verdict(user: SignedInUser, form: FeedbackForm) -> FeedbackSaved:
    """Save the reader's verdict, then push the study's result to its PACS when its site asks for that.

    The push's outcome is kept for :func:`push_notice` on the next run.

    Raises
    ------
    VigilError
        The verdict was not saved (a failed push never raises).
    """
    sf = resources.session_factory()
    after: Callable[[FeedbackRecord], AutoPush] = partial(_push, user=user)
    with st.spinner("Saving, then sending the result to the PACS when the site asks for it..."):
        saved, pushed = review.record_verdict(sf, user, form, now=resources.utc_now, after_commit=after)
    if pushed is not None and pushed.outcome is not PushOutcome.OFF:
        st.session_state[_PUSH_NOTICE] = (pushed.outcome is not PushOutcome.FAILED, pushed.message())
    return saved


def push_notice() -> None:
    """What the auto-push after the last verdict did, once (a failure as a warning)."""
    if (notice := st.session_state.pop(_PUSH_NOTICE, None)) is None:
        return
    ok, text = notice
    if ok:
        st.info(text, icon=":material/cloud_done:")
    else:
        st.warning(text, icon=":material/cloud_off:")


def _push(record: FeedbackRecord, *, user: SignedInUser) -> AutoPush:
    return pacs_auto_push.push_after_verdict(
        resources.session_factory(),
        resources.settings(),
        record.study_uid,
        clients=clients,
        actor=user.username,
        now=resources.utc_now,
    )


def _test(user: SignedInUser, site: str) -> None:
    try:
        with st.spinner(f"Testing the PACS of {site}..."):
            status = pacs_status.check_site_as(
                resources.session_factory(), user, resources.settings(), site, clients, now=resources.utc_now
            )
    except VigilError as exc:
        st.session_state[_DONE] = (False, str(exc))
    else:
        text = (
            f"{site}: the PACS answered and accepted the credentials in {status.latency_ms:.0f} ms."
            if status.ok
            else f"{site}: the connection test failed: {status.error}"
        )
        st.session_state[_DONE] = (status.ok, text + " Recorded in the audit log.")
    st.rerun()


def _verdict(status: PacsStatus | None) -> str:
    if status is None:
        return "never tested"
    if status.ok:
        return "OK"
    return "FAILED (unreachable)" if not status.reachable else "FAILED"


def _latency(status: PacsStatus | None) -> str:
    return "" if status is None or status.latency_ms is None else f"{status.latency_ms:.0f}"
