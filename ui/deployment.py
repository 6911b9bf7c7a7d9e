"""The Deployment page's parts: what serves (fleet-wide and per site), the registry, gate reports, promote, roll back.

Nothing is cached: this page decides what serves patients, and must show the store as it is.
After a switch the page reruns from the store, so the status, the tables and the history all
show the new state together, and a confirmation names what changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time
from typing import Final

import pandas as pd
import streamlit as st

from core.errors import VigilError
from core.models.finetune import FinetuneConfig
from core.services import change_control, deployment, provider_signature, retrain, sites
from core.services.deployment import DeploymentOverview, Served, SiteServing
from core.services.permissions import ACTIONS, Permission, SignedInUser, can, can_any
from core.store.deployments import DeploymentRecord
from ui import auth, localtime, resources

__all__ = [
    "gate_form",
    "gate_reports",
    "history_section",
    "load",
    "pending_signature",
    "promote_form",
    "proposals_section",
    "registry_table",
    "rollback_form",
    "sites_table",
    "status",
]

_DONE: Final = "vigil.deployment.done"
_EVERY_SITE: Final = "every site without its own switch"


def load(user: SignedInUser) -> DeploymentOverview:
    """The page's data, read fresh on every run."""
    return deployment.overview(resources.read_session_factory(), user)


def status(view: DeploymentOverview) -> None:
    """What serves now, from which slot, and where a rollback would return; the last switch's confirmation."""
    if (done := st.session_state.pop(_DONE, None)) is not None:
        ok, text = done
        if ok:
            st.success(text, icon=":material/check_circle:")
        else:
            st.warning(text, icon=":material/block:")
    current = view.serving
    if current is None:
        st.info("No version is serving yet: `vigil init` registers the bundled model.")
        return
    cols = st.columns(3)
    cols[0].metric("Serving every site", current.version)
    cols[1].metric("Slot", current.slot)
    cols[2].metric("A rollback returns to", view.rollback_to or "nothing")
    st.caption(f"Since {localtime.local_text(current.switched_at)} by {current.action}{_signed(current)}.")
    sites_table(view)


def _signed(d: DeploymentRecord) -> str:
    return f", signed by {d.signer_name} ({d.signer}; {d.signature_meaning})" if d.signer else ""


def sites_table(view: DeploymentOverview) -> None:
    """The version serving each site: its own switch, or the fleet-wide one."""
    if not view.sites:
        return
    rows = [
        {
            "site": s.site,
            "serving": "" if s.deployment is None else s.deployment.version,
            "slot": "" if s.deployment is None else s.deployment.slot,
            "by": "its own switch" if s.own else "fleet-wide",
            "a rollback of the site returns to": (s.rollback_to or "nothing") if s.own else "",
        }
        for s in view.sites
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def registry_table(view: DeploymentOverview) -> None:
    """Every registered version with its lineage, tags and content address."""
    st.subheader("Registered versions")
    serving = view.serving.version if view.serving else None
    rows = [
        {
            "#": r.number,
            "version": r.version,
            "parent": r.card.get("parent_version") or "",
            "serving": "serving" if r.version == serving else "",
            "tags": ", ".join(view.tags.get(r.version, ())),
            "content address": (r.content_sha256 or "")[:16],
            "registered": localtime.local_text(r.created_at),
        }
        for r in view.versions
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def gate_reports(user: SignedInUser, view: DeploymentOverview) -> None:
    """The change-control gate runs, newest first, with the chosen report as a download."""
    st.subheader("Change-control gate runs")
    if not view.validations:
        st.caption("No gate run yet: `vigil validate-change CHALLENGER` evaluates one on the locked hold-out.")
        return
    rows = [
        {
            "id": v.id,
            "challenger": v.challenger,
            "against": v.champion,
            "result": "passed" if v.passed else "FAILED",
            "failed criteria": "; ".join(v.failed),
            "significant change": "yes" if v.significant_change else "",
            "when": localtime.local_text(v.created_at),
        }
        for v in view.validations
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    chosen = st.selectbox("Report", [v.id for v in view.validations], format_func=lambda i: f"validation {i}")
    if chosen is not None:
        html = deployment.validation_html(resources.read_session_factory(), user, int(chosen))
        st.download_button(
            "Download the report (HTML)", html, file_name=f"change-control-{chosen}.html", mime="text/html"
        )


def promote_form(user: SignedInUser, view: DeploymentOverview) -> None:
    """Promote a version that passed its gate, under the signed-in approver's electronic signature.

    A local account signs with its password entered again. A person signed in through the
    identity provider has no Vigil password: the form sends them to the provider to enter theirs
    again, and :func:`pending_signature` completes the promotion when they come back.
    """
    if not can(user, Permission.APPROVE_DEPLOYMENT):
        return
    st.subheader("Promote")
    candidates = view.promotable()
    if not candidates:
        st.caption("No version has passed its gate against the serving version.")
        return
    through_provider = auth.signed_in_through_provider()
    with st.form("vigil-promote", clear_on_submit=True):
        version = st.selectbox("Version", candidates)
        per_site = resources.settings().per_site_deployment
        chosen_sites = (
            st.multiselect(
                "Sites",
                [s.site for s in view.sites],
                placeholder="Every site without a switch of its own",
                help="Pick sites to switch only them; the others keep what serves them.",
            )
            if per_site
            else []
        )
        st.markdown(
            f"**Electronic signature.** Signing as **{user.username}**, meaning "
            f"**{deployment.SIGNATURE_MEANING}**; your full name, the date and time are recorded with it."
        )
        if through_provider:
            st.caption(
                "You signed in through your organisation's account, so your organisation's sign-in page asks "
                "for your password again; you come back here to confirm."
            )
            password = ""
        else:
            password = st.text_input("Your password", type="password")
        label = "Continue to sign at your organisation's sign-in" if through_provider else "Sign and promote"
        submitted = st.form_submit_button(label, type="primary")
    if not submitted or version is None:
        return
    models = resources.settings().home / "models"
    chosen = [str(s) for s in chosen_sites]
    try:
        if through_provider:
            deployment.request_promotion_signature_as(
                resources.session_factory(),
                user,
                str(version),
                models_dir=models,
                now=resources.utc_now,
                sites=chosen,
                per_site_allowed=per_site,
            )
        else:
            records = deployment.promote_as(
                resources.session_factory(),
                user,
                str(version),
                password,
                models_dir=models,
                now=resources.utc_now,
                sites=chosen,
                per_site_allowed=per_site,
            )
    except VigilError as exc:
        st.error(str(exc))
        return
    if through_provider:
        if (problem := auth.reauthenticate_to_sign()) is not None:
            st.error(problem)
        return
    _promoted(records)


def _promoted(records: Sequence[DeploymentRecord]) -> None:
    """Confirm a promotion on the next run, which redraws the page from the store."""
    where = "; ".join(f"{r.scope} (slot {r.slot})" for r in records)
    first = records[0]
    st.session_state[_DONE] = (
        True,
        f"{first.version} now serves {where}; signed by {first.signer_name} ({first.signer}).",
    )
    st.rerun()


def pending_signature(user: SignedInUser) -> None:
    """The promotion this user asked to sign at the identity provider: complete it on their return, or withdraw it."""
    if not can(user, Permission.APPROVE_DEPLOYMENT) or not auth.signed_in_through_provider():
        return
    now = resources.utc_now()
    waiting = deployment.pending_signature_as(resources.read_session_factory(), user, now=now)
    if waiting is None:
        return
    proof = auth.provider_reauthentication()
    checked_at = proof.authenticated_at if proof and provider_signature.fresh_enough(proof, waiting, now) else None
    with st.container(border=True):
        st.subheader("Your signature is waiting")
        st.markdown(
            f"Promote **{waiting.subject}** at **{', '.join(deployment.signature_sites(waiting)) or _EVERY_SITE}**, "
            f"meaning **{waiting.meaning}**, asked at {localtime.local_text(waiting.requested_at)}."
        )
        if checked_at is not None:
            st.caption(f"Your organisation's sign-in checked your password at {localtime.local_text(checked_at)}.")
        else:
            st.caption(
                "Your organisation's sign-in has not checked your password since you asked to sign, or did so more "
                f"than {provider_signature.SIGNATURE_WINDOW_S / 60:.0f} minutes ago: enter it again to sign."
            )
        cols = st.columns(3)
        sign = cols[0].button("Sign and promote", type="primary", disabled=checked_at is None, key="vigil-sign-waiting")
        again = cols[1].button("Enter my password again", key="vigil-reauthenticate")
        withdraw = cols[2].button("Withdraw", key="vigil-withdraw-signature")
    if again and (problem := auth.reauthenticate_to_sign()) is not None:
        st.error(problem)
    if withdraw:
        deployment.withdraw_signature_as(resources.session_factory(), user, now=resources.utc_now)
        st.session_state[_DONE] = (False, f"Signature withdrawn: {waiting.subject} was not promoted.")
        st.rerun()
    if sign and proof is not None:
        try:
            records = deployment.promote_signed_at_provider_as(
                resources.session_factory(),
                user,
                proof,
                models_dir=resources.settings().home / "models",
                now=resources.utc_now,
                per_site_allowed=resources.settings().per_site_deployment,
            )
        except VigilError as exc:
            st.error(str(exc))
            return
        _promoted(records)


def rollback_form(user: SignedInUser, view: DeploymentOverview) -> None:
    """Return the fleet, or one site with a switch of its own, to the version that served it before, with a reason."""
    if not can_any(user, ACTIONS["roll back"]):
        return
    st.subheader("Roll back")
    targets: dict[str, tuple[str | None, str]] = {}
    if view.rollback_to is not None:
        targets["every site without its own switch"] = (None, view.rollback_to)
    for s in view.sites:
        if s.own and s.rollback_to is not None:
            targets[s.site] = (s.site, s.rollback_to)
    if not targets:
        st.caption("Nothing to roll back to.")
        return
    with st.form("vigil-rollback", clear_on_submit=True):
        scope = st.selectbox("Roll back", list(targets), format_func=lambda k: f"{k}: back to {targets[k][1]}")
        reason = st.text_input("Why?")
        submitted = st.form_submit_button("Roll back")
    if submitted and scope is not None:
        try:
            record = deployment.rollback_as(
                resources.session_factory(),
                user,
                reason=reason,
                models_dir=resources.settings().home / "models",
                now=resources.utc_now,
                site=targets[str(scope)][0],
            )
        except VigilError as exc:
            st.error(str(exc))
            return
        st.session_state[_DONE] = (
            True,
            f"Rolled back: {record.version} serves {record.scope} again (slot {record.slot}).",
        )
        st.rerun()


def history_section(user: SignedInUser, view: DeploymentOverview) -> None:
    """Every switch, and which version served a site at a moment."""
    st.subheader("Deployment history")
    rows = [
        {
            "when (UTC)": f"{d.switched_at:%Y-%m-%d %H:%M:%S}",
            "site": d.site or "every site",
            "action": d.action,
            "version": d.version,
            "was": d.previous_version or "",
            "slot": d.slot,
            "by": d.switched_by,
            "signed by": f"{d.signer_name} ({d.signer})" if d.signer else "",
            "reason": d.reason,
        }
        for d in reversed(view.history)
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    names = [s.name for s in sites.list_sites(resources.read_session_factory())]
    if not names:
        return
    cols = st.columns(3)
    site = cols[0].selectbox("Which version served", names)
    day = cols[1].date_input("on (UTC)", value=datetime.now(UTC).date())
    clock = cols[2].time_input("at (UTC)", value=time(12, 0))
    moment = datetime.combine(day, clock, tzinfo=UTC)
    served = deployment.served_at(resources.read_session_factory(), site=str(site), at=moment)
    st.write(f"{site} at {moment:%Y-%m-%d %H:%M} UTC: {_served_text(served)}")


def _served_text(served: Served) -> str:
    d, c = served.deployment, served.calibrator
    if d is None:
        return "no version was serving yet."
    how = "its own switch" if d.site is not None else "fleet-wide"
    calibrated = (
        "no site calibrator"
        if c is None or c.approved_at is None
        else f"site calibrator #{c.id} (revision {c.revision}, {c.method}, approved {c.approved_at:%Y-%m-%d %H:%M})"
    )
    return f"**{d.version}** (since {d.switched_at:%Y-%m-%d %H:%M:%S}, {how}); {calibrated}."


def proposals_section(user: SignedInUser) -> None:
    """Retraining proposed by confirmed drift incidents; an ML engineer starts one here."""
    proposals = retrain.retrain_proposals(resources.read_session_factory())
    if not proposals:
        return
    st.subheader("Proposed retraining")
    for p in proposals:
        st.markdown(
            f"Incident **{p.incident_id}** at **{p.site}** ({p.family}) was confirmed by {p.acknowledged_by} "
            f"on {p.acknowledged_at:%Y-%m-%d %H:%M} UTC: retrain **{p.parent}** on the labels of record outside "
            "the locked hold-out, then run the gate."
        )
    if not can(user, Permission.MANAGE_MODELS):
        return
    with st.form("vigil-retrain"):
        incident = st.selectbox("For incident", [p.incident_id for p in proposals])
        version = st.text_input("Name of the challenger", placeholder="cxr-nodule-1.1.0")
        submitted = st.form_submit_button("Retrain now")
    if submitted and incident is not None:
        chosen = next(p for p in proposals if p.incident_id == incident)
        cfg = resources.settings()
        try:
            with st.spinner(f"Fine-tuning {chosen.parent} (minutes on a CPU)..."):
                registered = retrain.retrain_as(
                    resources.session_factory(),
                    user,
                    chosen.parent,
                    version=version.strip(),
                    seed=0,
                    config=FinetuneConfig(),
                    models_dir=cfg.home / "models",
                    work_dir=cfg.home / "training",
                    now=resources.utc_now,
                    for_incident=chosen.incident_id,
                )
        except VigilError as exc:
            st.error(str(exc))
            return
        st.session_state[_DONE] = (
            True,
            f"Registered challenger #{registered.number} {registered.version}; next: run the change-control gate.",
        )
        st.rerun()


def gate_form(user: SignedInUser, view: DeploymentOverview) -> None:
    """An ML engineer runs the change-control gate of a registered challenger against a serving version.

    Against the fleet-wide version, or (when a site has a switch of its own) the version serving
    that site: a promotion at such a site needs a gate run against what serves it. Sites chosen
    under "Judge for these sites only" scope the gate to their hold-out studies (a pass clears a
    promotion at those sites only).
    """
    if not can(user, Permission.MANAGE_MODELS) or view.serving is None:
        return
    champions = _gate_champions(view.serving.version, view.sites)
    # The fleet's version is a challenger too where a site serves another of its own.
    challengers = [r.version for r in view.versions if len(champions) > 1 or r.version != view.serving.version]
    if not challengers:
        return
    st.subheader("Run the change-control gate")
    with st.form("vigil-gate"):
        chosen = st.selectbox("Challenger", challengers)
        scope = st.selectbox("Against the version serving", list(champions)) if len(champions) > 1 else None
        only = st.multiselect(
            "Judge for these sites only",
            [s.site for s in view.sites],
            help="Only these sites' hold-out studies are scored, against the version serving them; "
            "a pass clears a promotion at these sites, never fleet-wide. Leave empty for the whole hold-out.",
        )
        if scope is None:
            st.caption(f"Against {view.serving.version}, on the locked hold-out, under the configured plan.")
        else:
            st.caption("On the locked hold-out, under the configured plan.")
        submitted = st.form_submit_button("Run the gate")
    if submitted and chosen is not None:
        site = champions[str(scope)] if scope is not None else None
        try:
            with st.spinner("Scoring the hold-out with both versions..."):
                result = change_control.validate_change_as(
                    resources.session_factory(),
                    user,
                    str(chosen),
                    settings=resources.settings(),
                    now=resources.utc_now,
                    site=site,
                    scope=only or None,
                )
        except VigilError as exc:
            st.error(str(exc))
            return
        verdict = "passed" if result.report.passed else "failed: " + "; ".join(result.report.failed)
        against = f" against {result.champion}" + (f" (serving {site})" if site else "")
        against += f", scoped to {', '.join(result.record.scope)}," if result.record.scope else ""
        st.session_state[_DONE] = (
            result.report.passed,
            f"Gate run {result.record.id} of {result.challenger}{against} {verdict}.",
        )
        st.rerun()


def _gate_champions(fleet: str, sites: Sequence[SiteServing]) -> dict[str, str | None]:
    """The choices of champion, labelled, to the site they judge at: the fleet's version, then each site's own."""
    choices: dict[str, str | None] = {f"every site without its own switch ({fleet})": None}
    for s in sites:
        if s.own and s.deployment is not None:
            choices[f"{s.site} ({s.deployment.version}, its own switch)"] = s.site
    return choices
