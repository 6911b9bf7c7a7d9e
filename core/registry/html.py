"""The change-control report as one self-contained HTML page (pure: a stored report dict in, text out).

Every figure carries its source sentence, so a quality committee can trace each number to the
data and method behind it. Rendered from the stored report, so the page downloaded later is the
page of the stored (and audited) report.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

__all__ = ["render_gate_html"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;color:#1b1b1b}"
    "table{border-collapse:collapse;width:100%;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .5rem;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}.pass{color:#0a6b2d}.fail{color:#a30d0d}"
    ".skip{color:#6b5a00}small{color:#555}"
)


def _fmt(value: Any) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return escape(str(value))


def _verdict(passed: Any) -> str:
    if passed is None:
        return '<span class="skip">not judged</span>'
    return '<span class="pass">PASS</span>' if passed else '<span class="fail">FAIL</span>'


def _reuse(earlier: Any) -> str:
    if not isinstance(earlier, int) or earlier == 0:
        return ""
    return (
        f"<p><b>This hold-out was used by {earlier} earlier gate run(s).</b> Each look at the same studies "
        "spends some of their independence: a challenger tuned after seeing earlier reports is judged "
        "too kindly. Lock a fresh hold-out from newly labelled studies for a new line of changes.</p>"
    )


def _scope(scope: Any) -> str:
    if not isinstance(scope, list):
        return ""
    names = escape(", ".join(str(s) for s in scope))
    return (
        f"<p><b>Scoped to {names}.</b> Only these sites' hold-out studies were judged, against the version "
        "serving them: a pass clears a promotion at these sites only, never fleet-wide.</p>"
    )


def render_gate_html(report: Mapping[str, Any], *, validation_id: int, created_at: str, report_sha256: str) -> str:
    """The page for one stored gate run.

    Parameters
    ----------
    report : Mapping
        A stored report (``ChangeValidation.to_dict()`` or the stored ``report_json`` with the
        challenger and champion names added).
    validation_id, created_at, report_sha256 :
        Where the report is stored, when, and the SHA-256 of its stored JSON.
    """
    found = report.get("plan")
    plan: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    decision = "PASSED" if report.get("passed") else "FAILED"
    significant = report.get("significant_change")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Change-control report {validation_id}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Change-control gate: {escape(str(report.get('challenger_version', '?')))} "
        f"against {escape(str(report.get('champion_version', '?')))}</h1>",
        f"<p><b>{decision}</b>"
        + (" — a significant change: it needs a new regulatory submission" if significant else "")
        + "</p>",
        f"<p><small>Validation {validation_id}, {escape(created_at)}; report SHA-256 {escape(report_sha256)}; "
        f"plan {escape(str(plan.get('id')))} v{escape(str(plan.get('version')))} "
        f"(SHA-256 {escape(str(plan.get('sha256')))}); hold-out SHA-256 "
        f"{escape(str(report.get('holdout_sha256', '?')))}, {report.get('n')} studies "
        f"({report.get('n_positive')} positive). Synthetic demonstration data.</small></p>",
        _scope(report.get("scope")),
        _reuse(report.get("holdout_earlier_uses")),
        "<h2>Criteria</h2><table><tr><th>criterion</th><th>result</th><th>value</th><th>bound</th>"
        "<th>detail and source</th></tr>",
    ]
    for c in report.get("criteria", []):
        parts.append(
            f"<tr><td>{escape(str(c.get('name')))}</td><td>{_verdict(c.get('passed'))}</td>"
            f"<td>{_fmt(c.get('value'))}</td><td>{_fmt(c.get('bound'))}</td>"
            f"<td>{escape(str(c.get('detail')))}<br><small>{escape(str(c.get('source')))}</small></td></tr>"
        )
    parts.append(
        "</table><h2>Per site, before (champion) and after (challenger)</h2><table><tr><th>site</th><th>n</th>"
        "<th>positive</th><th>champion AUC</th><th>challenger AUC</th><th>difference</th><th>CI</th>"
        "<th>status</th></tr>"
    )
    for s in report.get("sites", []):
        parts.append(
            f"<tr><td>{escape(str(s.get('site')))}</td><td>{s.get('n')}</td><td>{s.get('n_positive')}</td>"
            f"<td>{_fmt(s.get('champion_auc'))}</td><td>{_fmt(s.get('challenger_auc'))}</td>"
            f"<td>{_fmt(s.get('difference'))}</td><td>{_fmt(s.get('ci_low'))} to {_fmt(s.get('ci_high'))}</td>"
            f"<td>{escape(str(s.get('status')))}</td></tr>"
        )
    parts.append(
        "</table><p><small>Site figures: paired DeLong on the locked hold-out studies of each site.</small></p>"
    )
    parts.append(
        "<h2>Whole hold-out</h2><table><tr><th></th><th>threshold</th><th>AUC</th><th>sensitivity</th>"
        "<th>specificity</th><th>ECE</th></tr>"
    )
    for who in ("champion", "challenger"):
        f = report.get(who)
        f = f if isinstance(f, Mapping) else {}
        parts.append(
            f"<tr><th>{who}</th><td>{_fmt(f.get('threshold'))}</td><td>{_fmt(f.get('auc'))}</td>"
            f"<td>{_fmt(f.get('sensitivity'))}</td><td>{_fmt(f.get('specificity'))}</td><td>{_fmt(f.get('ece'))}</td></tr>"
        )
    parts.append("</table>")
    determination = report.get("determination")
    reasons = determination.get("reasons", []) if isinstance(determination, Mapping) else []
    if reasons:
        parts.append("<h2>Modification</h2><ul>" + "".join(f"<li>{escape(str(r))}</li>" for r in reasons) + "</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)
