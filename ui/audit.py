"""The Audit page's parts: the search form, the results, one entry with its proof, verification, export.

Nothing here is cached: an auditor must see the ledger as it is now, and a verification that
answered from a cache could hide a change made since. Everything goes through
``core.services.audit_search``, which checks the permission again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Final

import streamlit as st

from core.errors import VigilError
from core.services import audit_search
from core.services.audit_checkpoints import CheckpointPlaces, InclusionProof
from core.services.audit_search import AuditPage, AuditQuery, EntryDetail, EvidenceZip, LedgerCheck
from core.services.permissions import SignedInUser
from ui import resources

__all__ = [
    "PAGE_SIZE",
    "entry_section",
    "export_section",
    "filter_form",
    "load_page",
    "pick_entry",
    "results_table",
    "verify_section",
]

PAGE_SIZE: Final = 25
_QUERY: Final = "vigil.audit.query"
_VERIFIED: Final = "vigil.audit.verified"
_EXPORTED: Final = "vigil.audit.exported"
_ANY_ACTION: Final = "Any action"
_PICK: Final = "audit-pick"


@dataclass(frozen=True, slots=True)
class _Verified:
    """The last verification this session ran, and when (UTC)."""

    at: datetime
    check: LedgerCheck


def _places() -> CheckpointPlaces:
    return CheckpointPlaces.from_settings(resources.settings())


# --- search ---------------------------------------------------------------------------------------


def filter_form() -> AuditQuery:
    """The search form; returns the query of the last search (all entries before the first)."""
    current = st.session_state.get(_QUERY)
    query = current if isinstance(current, AuditQuery) else AuditQuery(limit=PAGE_SIZE)
    with st.form("audit-filter"):
        c1, c2, c3, c4 = st.columns(4)
        actor = c1.text_input("Actor", help="A username, or `system` for unattended work; exact.")
        action = c2.selectbox("Action", [_ANY_ACTION, *audit_search.ACTIONS])
        subject = c3.text_input("Study or subject", help="A StudyInstanceUID, model version, site name, ...; exact.")
        version = c4.text_input("Model version", help="Entries whose payload names this model version.")
        t1, t2, t3, t4 = st.columns(4)
        from_day = t1.date_input("From (UTC date)", value=None)
        from_time = t2.time_input("From time (UTC)", value=None, help="Start of the day when left empty.")
        to_day = t3.date_input("To (UTC date)", value=None)
        to_time = t4.time_input("To time (UTC)", value=None, help="End of the day when left empty.")
        if st.form_submit_button("Search", icon=":material/search:", type="primary"):
            query = AuditQuery(
                actor=actor,
                action=None if action == _ANY_ACTION else action,
                subject=subject,
                model_version=version,
                time_from=_moment(from_day, from_time, end=False),
                time_to=_moment(to_day, to_time, end=True),
                limit=PAGE_SIZE,
            )
            st.session_state[_QUERY] = query
    return query


def _moment(day: object, at: object, *, end: bool) -> datetime | None:
    if not isinstance(day, date):
        return None
    clock = at if isinstance(at, time) else (time.max if end else time.min)
    return datetime.combine(day, clock, tzinfo=UTC)


def load_page(user: SignedInUser, query: AuditQuery) -> AuditPage | None:
    """The results of ``query``; None (after showing why) when the service refuses the query."""
    try:
        return audit_search.search_entries(resources.read_session_factory(), user, query)
    except VigilError as exc:
        st.error(f"Cannot search the audit log: {exc}")
        return None


def results_table(page: AuditPage) -> None:
    """The matching entries (seq, time, actor, action, subject) with paging, newest first."""
    if not page.entries:
        st.info("No audit entry matches this search.")
        return
    first = page.query.offset + 1
    st.caption(f"Entries {first}–{first + len(page.entries) - 1} of {page.total}, newest first.")
    rows = {
        "Seq": [e.seq for e in page.entries],
        "Recorded (UTC)": [e.recorded_at for e in page.entries],
        "Actor": [e.actor for e in page.entries],
        "Action": [e.action for e in page.entries],
        "Subject": [e.subject for e in page.entries],
    }
    st.dataframe(rows, hide_index=True, width="stretch")
    newer, older, _ = st.columns([1, 1, 6])
    if newer.button("Newer", icon=":material/arrow_back:", disabled=not page.has_previous, key="audit-newer"):
        _move(page.query, -PAGE_SIZE)
    if older.button("Older", icon=":material/arrow_forward:", disabled=not page.has_next, key="audit-older"):
        _move(page.query, PAGE_SIZE)


def _move(query: AuditQuery, step: int) -> None:
    st.session_state[_QUERY] = AuditQuery(
        actor=query.actor,
        action=query.action,
        subject=query.subject,
        model_version=query.model_version,
        time_from=query.time_from,
        time_to=query.time_to,
        limit=query.limit,
        offset=max(query.offset + step, 0),
    )
    st.rerun()


def pick_entry(page: AuditPage) -> None:
    """Choose an entry of the page to open; it opens at ``?seq=N`` (an address that can be shared)."""
    if not page.entries:
        return
    labels = {e.seq: f"#{e.seq} · {e.recorded_at} · {e.action} · {e.subject}" for e in page.entries}
    st.selectbox(
        "Open entry",
        list(labels),
        index=None,
        format_func=labels.__getitem__,
        placeholder="Choose an entry to see its payload and proof",
        key=_PICK,
        on_change=_open_picked,
    )


def _open_picked() -> None:
    seq = st.session_state.get(_PICK)
    if isinstance(seq, int):
        st.query_params["seq"] = str(seq)
    st.session_state[_PICK] = None


# --- one entry ------------------------------------------------------------------------------------


def entry_section(user: SignedInUser, requested: str) -> None:
    """The entry an address names (``?seq=N``): its fields, payload, chain verdict and proof."""
    if st.button("Back to the search", icon=":material/arrow_back:"):
        del st.query_params["seq"]
        st.rerun()
    try:
        seq = audit_search.parse_seq(requested)
        detail = audit_search.entry_detail(resources.read_session_factory(), _places(), user, seq)
    except VigilError as exc:
        st.error(f"Cannot open this audit entry: {exc}")
        return
    _entry(detail)


def _entry(detail: EntryDetail) -> None:
    e = detail.entry
    st.subheader(f"Entry {e.seq}")
    st.markdown(
        f"**Recorded** {e.recorded_at} (UTC) · **Actor** `{e.actor}` · **Action** `{e.action}`  \n"
        f"**Subject** `{e.subject}`"
    )
    if detail.chain_verified:
        st.success(f"Chain verifies: every entry from seq 0 through {e.seq} hashes and links as recorded.")
    else:
        st.error(f"Chain does not verify up to this entry: {detail.chain_problem}")
    st.markdown("**Payload**")
    if detail.payload is None:
        st.warning(f"{detail.payload_problem}. The stored text:")
        st.code(e.payload_json, language=None)
    else:
        st.json(dict(detail.payload))
    st.code(f"prev_hash  {e.prev_hash}\nentry_hash {e.entry_hash}", language=None)
    st.markdown("**Inclusion proof**")
    if detail.proof is None:
        st.info(
            f"No proof yet: {detail.not_covered}. The entry chains, but no signed checkpoint vouches for it "
            "until one covers it."
        )
    else:
        _proof(detail.proof)


def _proof(proof: InclusionProof) -> None:
    c = proof.checkpoint.checkpoint
    if proof.ok:
        st.success(f"Proof verified: entry {proof.seq} is included in signed checkpoint {c.tree_size}.")
    elif not proof.verified:
        st.error(
            f"Proof does NOT verify: the path from entry {proof.seq} does not lead to checkpoint {c.tree_size}'s root."
        )
    else:
        st.error(f"Proof does NOT verify: checkpoint {c.tree_size}'s signature: {proof.signature_problem}")
    st.markdown(
        f"Checkpoint: **{c.tree_size}** entries · signed {c.timestamp} · key `{c.key_id}` · "
        f"path verified: **{'yes' if proof.verified else 'no'}** · signature verified: "
        f"**{'yes' if proof.signature_problem is None else 'no'}**"
    )
    st.code(f"leaf index {proof.seq}\nentry_hash {proof.entry_hash}\nroot_hash  {c.root_hash}", language=None)
    if proof.path:
        st.dataframe(
            {"Level": list(range(len(proof.path))), "Sibling hash (nearest first)": list(proof.path)},
            hide_index=True,
            width="stretch",
        )
    else:
        st.caption("The path is empty: the checkpoint signs this entry alone.")
    with st.expander("Proof as JSON (as `vigil audit prove` prints it)"):
        st.code(json.dumps(proof.to_dict(), indent=2), language="json")


# --- the whole ledger -----------------------------------------------------------------------------


def verify_section(user: SignedInUser) -> None:
    """The "Verify ledger" button and the result of this session's last verification."""
    if st.button("Verify ledger", icon=":material/verified:", key="audit-verify"):
        try:
            check = audit_search.verify_all(resources.read_session_factory(), _places(), user)
        except VigilError as exc:
            st.error(f"Cannot verify the audit log: {exc}")
            return
        st.session_state[_VERIFIED] = _Verified(resources.utc_now(), check)
    last = st.session_state.get(_VERIFIED)
    if isinstance(last, _Verified):
        _verdict(last)


def _verdict(last: _Verified) -> None:
    chain, cps, records = last.check.chain, last.check.checkpoints, last.check.records
    when = last.at.strftime("%Y-%m-%d %H:%M:%S UTC")
    if last.check.ok:
        st.success(
            f"The ledger verifies ({when}): {chain.checked} entries chain from seq 0; {cps.checkpoints} signed "
            f"checkpoints verify, covering {cps.covered} entries; {sum(records.checked.values())} stored records "
            "match the hashes their entries recorded."
        )
    else:
        problems = []
        if not chain.ok:
            problems.append(f"the chain breaks at seq {chain.first_bad_seq}: {chain.reason}")
        if not cps.ok:
            problems.append(f"checkpoint {cps.failed_tree_size} fails: {cps.reason}")
        if not records.ok:
            problems.append(f"{records.problems} stored records do not match the ledger, first: {records.reason}")
        st.error(f"The ledger does NOT verify ({when}): " + "; ".join(problems))
    if unverifiable := sum(records.unverifiable.values()):
        st.caption(
            f"{unverifiable} records were written before record hashes existed: audited, but with no hash to "
            "compare, so not cross-checked."
        )
    if cps.uncovered:
        st.info(
            f"{cps.uncovered} newest entries are not yet covered by a checkpoint: they chain, but no signature "
            "vouches for them yet (`vigil audit checkpoint` signs one)."
        )


# --- evidence export ------------------------------------------------------------------------------


def export_section(user: SignedInUser) -> None:
    """Export the evidence package (auditors) and offer it as a zip download.

    The export is recorded in the ledger (its own ``audit_exported`` entry) and signs a checkpoint.
    """
    if st.button("Export evidence package", icon=":material/inventory_2:", key="audit-export"):
        try:
            with st.spinner("Exporting and verifying the evidence package..."):
                package = audit_search.export_zip(resources.session_factory(), _places(), user, now=resources.utc_now)
        except VigilError as exc:
            st.error(f"Cannot export the evidence package: {exc}")
            return
        st.session_state[_EXPORTED] = package
    shown = st.session_state.get(_EXPORTED)
    if isinstance(shown, EvidenceZip):
        _download(shown)


def _download(package: EvidenceZip) -> None:
    s = package.summary
    if s.ok:
        st.success(
            f"Evidence package ready: {s.entries} entries and {s.checkpoints} signed checkpoints; the ledger and "
            f"the package verify. The export is audit entry seq {s.export_seq}."
        )
    else:
        why = s.reason or "the package's own verifier failed: " + "; ".join(s.package_report[-3:])
        st.warning(f"Evidence package written, marked FAILED: {why}. The export is audit entry seq {s.export_seq}.")
    st.download_button(
        f"Download {package.file_name} ({len(package.data) / 1e6:.1f} MB)",
        data=package.data,
        file_name=package.file_name,
        mime="application/zip",
        icon=":material/download:",
        key="audit-download",
    )
