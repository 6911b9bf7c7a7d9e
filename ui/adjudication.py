"""Adjudication (clinical champions): the queue, a case's evidence with its history, the label form, the labelling plan.

Reads are cached on the outcome store's version token (``core.services.validation.report_version``),
so a widget change never recomputes the queue; any new label, read or study moves the token. A
recorded adjudication shows the site's labelled count and AUC before and after it, computed by the
pilot-drift report the Site performance page uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import streamlit as st

from core.errors import VigilError
from core.metrics.sampling_plan import SamplingPlan
from core.services import adjudication, validation
from core.services.adjudication import (
    CaseFile,
    EvidenceRecord,
    OutcomeRecord,
    OutcomeSource,
    QueueItem,
    SiteStanding,
)
from core.services.permissions import Permission, SignedInUser, require
from ui import resources
from ui.cached import Reads
from ui.components import case, viewer

__all__ = [
    "Recorded",
    "case_evidence",
    "label_form",
    "settle",
    "load_case_file",
    "load_plan",
    "load_queue",
    "pick",
    "plan_section",
    "queue_summary",
    "queue_table",
    "show_recorded",
]

_RECORDED: Final = "vigil.adjudication.recorded"
_FORM_KEYS: Final = "vigil.adjudication.form_keys"  # form -> key of the adjudication form on screen
_LABELS: Final = {"Finding present": True, "Finding absent": False}
_SOURCE_NAMES: Final = {
    OutcomeSource.ADJUDICATED: "adjudicated",
    OutcomeSource.EMR: "EMR",
    OutcomeSource.GROUND_TRUTH: "ground truth (SYNTHETIC cohort)",
}


@dataclass(frozen=True, slots=True)
class Recorded:
    """The last adjudication this session recorded, and the site's figures before and after it."""

    study_uid: str
    outcome_id: int
    label: bool
    before: SiteStanding
    after: SiteStanding


def _version() -> str:
    return validation.report_version(resources.read_session_factory())


def load_queue(user: SignedInUser, site: str | None) -> tuple[QueueItem, ...]:
    """The prioritised queue (cached until the store changes)."""
    require(user, Permission.ADJUDICATE)
    return _queue(resources.settings().database_url, user, site, _version())


@st.cache_data(show_spinner=False, max_entries=32)
def _queue(url: str, user: SignedInUser, site: str | None, version: str) -> tuple[QueueItem, ...]:
    return adjudication.adjudication_queue(resources.read_session_factory(), user, site=site, now=resources.utc_now)


def load_case_file(user: SignedInUser, study_uid: str) -> CaseFile:
    """Every label and read of one study (cached until the store changes)."""
    require(user, Permission.ADJUDICATE)
    return _case_file(resources.settings().database_url, user, study_uid, _version())


@st.cache_data(show_spinner=False, max_entries=64)
def _case_file(url: str, user: SignedInUser, study_uid: str, version: str) -> CaseFile:
    return adjudication.case_file(resources.read_session_factory(), user, study_uid)


def load_plan(user: SignedInUser, site: str | None) -> tuple[SamplingPlan, ...] | str:
    """The labelling plan of the sites that need labels, or why there is none (cached)."""
    require(user, Permission.ADJUDICATE)
    return _plan(resources.settings().database_url, user, site, _version())


@st.cache_data(show_spinner="Planning the labelling sample...", max_entries=16)
def _plan(url: str, user: SignedInUser, site: str | None, version: str) -> tuple[SamplingPlan, ...] | str:
    try:
        return adjudication.labelling_plan(resources.read_session_factory(), user, site=site)
    except VigilError as exc:
        return str(exc)


def queue_summary(items: tuple[QueueItem, ...]) -> None:
    """How many studies wait, and how many carry each reason."""
    counts = adjudication.reason_counts(items)
    st.markdown(f"**{len(items)} {'study' if len(items) == 1 else 'studies'} to adjudicate**")
    cols = st.columns(len(counts))
    for col, (reason, n) in zip(cols, counts.items(), strict=True):
        col.metric(reason.short, n, help=reason.label)


def queue_table(items: tuple[QueueItem, ...]) -> None:
    """The queue, most urgent first."""
    rows = {
        "#": list(range(1, len(items) + 1)),
        "Priority": [i.priority for i in items],
        "Site": [i.site for i in items],
        "Study date": [str(i.study_date or "") for i in items],
        "Reasons": ["; ".join(r.label for r in i.reasons) for i in items],
        "Model score": ["—" if i.score is None else f"{i.score:.2f}" for i in items],
        "Waiting": [_age(i) for i in items],
        "Study UID": [i.study_uid for i in items],
    }
    st.dataframe(rows, hide_index=True, width="stretch")


def _age(item: QueueItem) -> str:
    days = item.age.days
    if days >= 1:
        return f"{days} d"
    return f"{item.age.seconds // 3600} h"


def pick(items: tuple[QueueItem, ...], *, key: str) -> str | None:
    """Choose a queued study (the most urgent one first); its StudyInstanceUID."""
    if not items:
        return None
    labels = {f"#{n} · P{i.priority} · {i.site} · …{i.study_uid[-10:]} · {i.reasons[0].label}": i for n, i in
              enumerate(items, 1)}  # fmt: skip
    chosen = st.selectbox("Study to adjudicate", list(labels), key=key)
    return None if chosen is None else labels[chosen].study_uid


def case_evidence(file: CaseFile) -> None:
    """The label of record, the model's score, and every stored label with its history."""
    lor = file.label_of_record
    if lor is None:
        st.markdown("**Label of record:** none yet (unknown, not negative)")
    else:
        value = "finding present" if lor.label else "finding absent"
        st.markdown(f"**Label of record:** {value} · from *{_source(lor.source)}*")
    if file.score is not None and file.threshold is not None:
        st.caption(f"Model `{file.model_version}` score {file.score:.2f} at operating threshold {file.threshold:.2f}")
    st.markdown("**Outcomes (every source, oldest first)**")
    if not file.outcomes:
        st.caption("No adjudication, EMR outcome or ground truth for this study yet.")
    else:
        st.dataframe(_outcome_rows(file.outcomes), hide_index=True, width="stretch")
    if any(o.source is OutcomeSource.GROUND_TRUTH for o in file.outcomes):
        st.caption(":orange[Ground truth comes from the SYNTHETIC demonstration cohort; real deployments have none.]")
    if file.evidence:
        st.markdown("**EMR evidence (de-identified at ingest)**")
        st.dataframe(_evidence_rows(file.evidence), hide_index=True, width="stretch")


def _source(source: str) -> str:
    try:
        return _SOURCE_NAMES[OutcomeSource(source)]
    except ValueError:
        return str(source).replace("_", " ")


def _outcome_rows(records: tuple[OutcomeRecord, ...]) -> dict[str, list[str]]:
    return {
        "When (UTC)": [r.created_at.strftime("%Y-%m-%d %H:%M") for r in records],
        "Source": [_source(r.source) for r in records],
        "Label": ["present" if r.label else "absent" for r in records],
        "Evidence": [_evidence(r) for r in records],
        "Effective": ["" if r.effective_at is None else r.effective_at.strftime("%Y-%m-%d") for r in records],
        "By": [r.recorded_by for r in records],
    }


def _evidence_rows(records: tuple[EvidenceRecord, ...]) -> dict[str, list[str]]:
    return {
        "Stored (UTC)": [r.created_at.strftime("%Y-%m-%d %H:%M") for r in records],
        "Evidence": [r.evidence.evidence_type.replace("_", " ") for r in records],
        "Outcome": [r.evidence.outcome.replace("_", " ") for r in records],
        "Code": [f"{r.evidence.display} ({r.evidence.code})" for r in records],
        "Effective": [str(r.evidence.effective or "") for r in records],
        "Linked by": [r.link_method.replace("_", " ") for r in records],
        "Version": [r.evidence.version or "—" for r in records],
        "Text": [r.evidence.text for r in records],
    }


def _evidence(r: OutcomeRecord) -> str:
    if r.source is OutcomeSource.EMR:
        kind, _, link = r.detail.partition(":")
        return f"{kind.replace('_', ' ')}; linked by {link.replace('_', ' ')}" if link else r.detail
    if r.source is OutcomeSource.ADJUDICATED:
        return f"reason: {r.detail}"
    return r.detail


def settle(user: SignedInUser, reads: Reads, study_uid: str, *, key: str) -> None:
    """One case: the image with its overlays, every piece of evidence, the form, the readers' history.

    A study that does not exist (a UID typed into the address) is named in an error, nothing else shown.
    """
    try:
        info = reads.case_info(study_uid)
        evidence = load_case_file(user, study_uid)
    except VigilError as exc:
        st.error(str(exc))
        return
    case.header(info)
    image_col, side_col = st.columns([3, 2], gap="medium")
    with image_col:
        if (view := viewer.load(reads, study_uid)) is not None:
            viewer.render(user, view)
    with side_col:
        case_evidence(evidence)
        label_form(user, study_uid, info.study.site, key=key)
        case.history(reads.history(study_uid), user)


def label_form(user: SignedInUser, study_uid: str, site: str, *, key: str) -> None:
    """The adjudication form: the label and a required reason; on submit, record it and rerun."""
    with st.form(f"adjudicate-{key}-{study_uid}", enter_to_submit=False, border=True):
        st.markdown("**Your adjudication (becomes the label of record)**")
        choice = st.radio("Label", list(_LABELS), index=None, horizontal=True)
        reason = st.text_area("Reason (required)", max_chars=adjudication.MAX_REASON_LENGTH, height=80)
        submitted = st.form_submit_button("Record adjudication", type="primary", icon=":material/gavel:")
    if not submitted:
        return
    if choice is None:
        st.error("Choose the label: finding present or finding absent.")
        return
    _record(user, study_uid, site, label=_LABELS[choice], reason=reason, form=f"{key}-{study_uid}")


def _form_key(form: str) -> str:
    """The key of the form on screen: the same across reruns, so a double submit writes once."""
    keys: dict[str, str] = st.session_state.setdefault(_FORM_KEYS, {})
    return keys.setdefault(form, adjudication.new_form_key())


def _record(user: SignedInUser, study_uid: str, site: str, *, label: bool, reason: str, form: str) -> None:
    sf = resources.session_factory()
    try:
        with st.spinner("Recording and recomputing the site's figures..."):
            before = adjudication.site_standing(sf, user, site, now=resources.utc_now)
            saved = adjudication.record_adjudication(
                sf, user, study_uid, label=label, reason=reason, now=resources.utc_now, form_key=_form_key(form)
            )
            after = adjudication.site_standing(sf, user, site, now=resources.utc_now)
    except VigilError as exc:
        st.error(str(exc))
        return
    st.session_state[_RECORDED] = Recorded(study_uid, saved.id, label, before, after)
    st.session_state[_FORM_KEYS].pop(form, None)  # the next adjudication of this study is a new one
    st.rerun()


def show_recorded() -> None:
    """The confirmation of the adjudication just recorded, with the site's figures before → after."""
    done = st.session_state.pop(_RECORDED, None)
    if not isinstance(done, Recorded):
        return
    b, a = done.before, done.after
    st.success(
        f"Adjudication #{done.outcome_id} recorded: finding {'present' if done.label else 'absent'} is now the "
        f"label of record of …{done.study_uid[-10:]}. Site {a.site}: labelled {b.n_labelled} → {a.n_labelled}, "
        f"AUC {_auc(b)} → {_auc(a)}",
        icon=":material/check_circle:",
    )
    if a.auc is None:
        st.caption(f"No AUC at {a.site} yet: {a.reason}")


def _auc(s: SiteStanding) -> str:
    return "—" if s.auc is None or math.isnan(s.auc) else f"{s.auc:.3f}"


def plan_section(user: SignedInUser, site: str | None) -> None:
    """The stratified labelling plan (``vigil validate --plan``) per site, with a way to label a planned study."""
    plans = load_plan(user, site)
    if isinstance(plans, str):
        st.info(f"No labelling plan: {plans}")
        return
    if not plans:
        st.info("No site needs more labels for its planned sample size.")
        return
    for plan in plans:
        needed = "—" if plan.n_required is None else str(plan.n_required)
        st.markdown(
            f"**{plan.site}**: {plan.n_labelled} labelled of {needed} needed; {plan.n_to_label} selected to label"
            + (f"; {plan.shortfall} short even then" if plan.shortfall else "")
        )
        st.dataframe(
            {
                "Stratum (vendor | protocol | age band)": [a.stratum for a in plan.allocations],
                "Studies": [a.n_studies for a in plan.allocations],
                "Labelled": [a.n_labelled for a in plan.allocations],
                "Selected": [a.n_selected for a in plan.allocations],
            },
            hide_index=True,
            width="stretch",
        )
    chosen = st.selectbox(
        "Planned study to label",
        [f"{p.site} · {uid}" for p in plans for uid in p.selected],
        key="adjudication-plan-pick",
    )
    if chosen is not None:
        plan_site, _, uid = chosen.partition(" · ")
        case_evidence(load_case_file(user, uid))
        label_form(user, uid, plan_site, key="plan")
