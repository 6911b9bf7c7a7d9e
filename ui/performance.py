"""Site performance (CMIO): cached pilot-drift report, plotly figures built from it, render functions, HTML export.

Figures are pure functions of :class:`core.services.validation.ValidationReport` (no Streamlit
inside them), so the page and the downloadable HTML report draw exactly the same charts. The
report is cached on the database URL, a data-version token and the settings: widget changes and
reruns never recompute it unless labels, predictions, sites or calibrators changed.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.errors import BadInputError
from core.metrics import DriftOptions, GapStatus, Interval, SiteSummary
from core.services import site_curves, validation
from core.services.permissions import Permission, SignedInUser, require
from core.services.site_curves import SiteCurves, SiteCurvesReport
from core.services.validation import STRATA, ValidationReport
from ui import resources

__all__ = [
    "ReportSettings",
    "auc_trend_figure",
    "auc_trend_source",
    "auc_trend_table",
    "load_curves",
    "roc_band_figure",
    "roc_band_source",
    "controls",
    "counts_figure",
    "forest_figure",
    "load_report",
    "reliability_figure",
    "render",
    "report_html",
    "roc_figure",
    "site_sentence",
    "site_table",
    "strata_heatmap",
    "Evidence",
    "evidence",
    "forest_range",
]


class Evidence(StrEnum):
    """What a site's gap interval shows, in the words a quality committee reads."""

    REFERENCE = "reference"
    GAP = "interval beyond the target"  # the whole interval is above the target gap
    WITHIN = "interval within the target"  # the whole interval is at or below the target gap
    NO_EVIDENCE = "interval includes no difference"  # the interval reaches zero: not evidence of a gap
    UNDECIDED = "interval includes the target"  # above zero, but reaching the target
    NOT_ENOUGH_DATA = "not enough data"


# Okabe-Ito colours: told apart with every common colour-vision deficiency, and only a whole
# interval beyond the target is painted as a gap (a point estimate alone never is).
_EVIDENCE_COLOURS: Final = {
    Evidence.REFERENCE: "#0072B2",
    Evidence.GAP: "#D55E00",
    Evidence.WITHIN: "#009E73",
    Evidence.NO_EVIDENCE: "#999999",
    Evidence.UNDECIDED: "#E69F00",
    Evidence.NOT_ENOUGH_DATA: "#BBBBBB",
}
_HEAT_DIMENSIONS: Final = ("vendor", "protocol", "software", "age_band")
#: The site table's columns shown before the reader picks others (they fit a 1600-px page).
DEFAULT_COLUMNS: Final = (
    "Site",
    "Status",
    "Evidence",
    "Labelled",
    "AUC [95% CI]",
    "Gap [95% CI]",
    "Sensitivity",
    "Specificity",
)


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """What the CMIO can change on the page (hashable: a cache key)."""

    max_gap: float = 0.03
    use_ci_bound: bool = False
    n_resamples: int = 1000
    seed: int = 0

    def options(self) -> DriftOptions:
        """The metrics options these settings stand for."""
        return DriftOptions(
            max_gap=self.max_gap, use_ci_bound=self.use_ci_bound, n_resamples=self.n_resamples, random_state=self.seed
        )


def controls() -> ReportSettings:
    """The settings expander; returns the current choice."""
    with st.expander("Report settings", expanded=False):
        left, mid, right = st.columns(3)
        max_gap = left.number_input(
            "Target: largest acceptable AUC gap", 0.005, 0.2, 0.03, 0.005, format="%.3f", key="perf.max_gap"
        )
        use_bound = mid.toggle(
            "Judge the upper 95% bound of the gap",
            key="perf.ci_bound",
            help="Stricter: a site passes only when its whole interval is within the target.",
        )
        n_resamples = right.select_slider("Bootstrap replicates", [200, 500, 1000, 2000], 1000, key="perf.boot")
    return ReportSettings(float(max_gap), bool(use_bound), int(n_resamples))


def load_report(user: SignedInUser, settings: ReportSettings) -> ValidationReport | str:
    """The pilot-drift report for ``user`` (cached), or why there is none, in one sentence."""
    require(user, Permission.VIEW_PERFORMANCE)
    sf = resources.read_session_factory()
    return _report(resources.settings().database_url, validation.report_version(sf), settings)


@st.cache_data(show_spinner="Computing the pilot-drift report...", max_entries=16)
def _report(url: str, version: str, settings: ReportSettings) -> ValidationReport | str:
    # url and version are cache keys: another database, or new labels, recompute.
    try:
        return validation.validate(
            resources.read_session_factory(), options=settings.options(), actor="", now=resources.utc_now, record=False
        )
    except BadInputError as exc:
        return str(exc)


def load_curves(user: SignedInUser, settings: ReportSettings) -> SiteCurvesReport | str:
    """Every site's ROC band, operating point and monthly AUC for ``user`` (cached), or why there are none."""
    require(user, Permission.VIEW_PERFORMANCE)
    sf = resources.read_session_factory()
    return _curves(resources.settings().database_url, validation.report_version(sf), settings)


@st.cache_data(show_spinner="Computing ROC bands and monthly AUC...", max_entries=16)
def _curves(url: str, version: str, settings: ReportSettings) -> SiteCurvesReport | str:
    # url and version are cache keys, as for the report; the band reuses the report's replicates and seed.
    try:
        return site_curves.site_curves(
            resources.read_session_factory(), n_resamples=settings.n_resamples, seed=settings.seed
        )
    except BadInputError as exc:
        return str(exc)


def _fmt(iv: Interval | None, *, signed: bool = False) -> str:
    if iv is None or math.isnan(iv.estimate):
        return "—"
    f = "{:+.3f}" if signed else "{:.3f}"
    bounds = "" if math.isnan(iv.lower) else f" [{f.format(iv.lower)}, {f.format(iv.upper)}]"
    return f.format(iv.estimate) + bounds


def _p(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _needed(s: SiteSummary) -> str:
    if s.required is None:
        return "—"
    return "unreachable" if s.required.n_total is None else str(s.required.n_total)


def evidence(s: SiteSummary, max_gap: float) -> Evidence:
    """What ``s``'s 95% gap interval shows against no difference (0) and the target ``max_gap``."""
    if s.status is GapStatus.REFERENCE:
        return Evidence.REFERENCE
    gap = s.gap
    if gap is None or math.isnan(gap.estimate) or math.isnan(gap.lower) or math.isnan(gap.upper):
        return Evidence.NOT_ENOUGH_DATA
    if gap.lower > max_gap:
        return Evidence.GAP
    if gap.upper <= max_gap:
        return Evidence.WITHIN
    return Evidence.NO_EVIDENCE if gap.lower <= 0.0 else Evidence.UNDECIDED


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def site_sentence(s: SiteSummary, max_gap: float) -> str:
    """One plain sentence on ``s``: its gap, the interval, and whether the interval excludes the target.

    ``eastgate: gap +0.26, 95% CI −0.04 to +0.56: the interval includes no difference, so this is
    not evidence of a gap (it also reaches the target +0.03: more labelled cases are needed).``
    """
    kind = evidence(s, max_gap)
    if kind is Evidence.REFERENCE:
        return f"{s.site}: the retrospective benchmark every site is compared with."
    if kind is Evidence.NOT_ENOUGH_DATA or s.gap is None:
        return f"{s.site}: not enough labelled cases to judge ({s.reason})."
    head = f"{s.site}: gap {_signed(s.gap.estimate)}, 95% CI {_signed(s.gap.lower)} to {_signed(s.gap.upper)}"
    target = _signed(max_gap)
    return (
        head
        + {
            Evidence.GAP: f": the whole interval is above the target {target}, evidence the site does worse than "
            "the benchmark by more than the target.",
            Evidence.WITHIN: f": the whole interval is within the target {target}, evidence the site performs "
            "within target.",
            Evidence.NO_EVIDENCE: f": the interval includes no difference, so this is not evidence of a gap (it also "
            f"reaches the target {target}: more labelled cases are needed to decide).",
            Evidence.UNDECIDED: f": the interval excludes no difference but includes the target {target}, so it is "
            "undecided whether the gap exceeds the target.",
        }[kind]
    )


def site_table(report: ValidationReport) -> pd.DataFrame:
    """One row per site, benchmark first: counts, label sources, AUC, gap, p, operating point, ECE, cases needed."""
    sources = {c.site: ", ".join(f"{k} {v}" for k, v in sorted(c.by_source.items())) or "none" for c in report.labels}
    unlabelled = {c.site: c.n_unlabelled for c in report.labels}
    rows = []
    for s in (report.drift.benchmark, *report.drift.sites):
        op, cal = s.operating_point, s.calibration
        rows.append({
            "Site": s.site, "Status": str(s.status), "Evidence": str(evidence(s, report.drift.max_gap)),
            "Labelled": s.n_labelled, "Positive": s.n_positive,
            "Unlabelled (unknown)": unlabelled.get(s.site, 0), "Label sources": sources.get(s.site, "none"),
            "AUC [95% CI]": _fmt(s.auc), "Gap [95% CI]": _fmt(s.gap, signed=True), "p (no gap)": _p(s.p_value),
            "Sensitivity": _fmt(op.sensitivity if op else None), "Specificity": _fmt(op.specificity if op else None),
            "PPV": _fmt(op.ppv if op else None), "NPV": _fmt(op.npv if op else None),
            "ECE": "—" if cal is None else f"{cal.ece:.3f}", "Cases needed": _needed(s), "Why": s.reason,
        })  # fmt: skip
    return pd.DataFrame(rows)


def forest_range(report: ValidationReport) -> tuple[float, float]:
    """The AUC axis: from 0.5 (or the lowest interval end) to past 1.0, so no interval is clipped."""
    ends = [v for s in (report.drift.benchmark, *report.drift.sites) if s.auc is not None
            for v in (s.auc.lower, s.auc.upper) if not math.isnan(v)]  # fmt: skip
    low = min([0.5, *ends]) - 0.02
    return low, max([1.0, *ends]) + 0.02  # an end at exactly 1.0 would sit on the frame, half drawn


def forest_figure(report: ValidationReport) -> go.Figure:
    """Per-site AUC with its interval against the benchmark's interval (band) and the target (dashed).

    A marker's colour is its gap interval's evidence (:func:`evidence`), not its point estimate.
    """
    fig = go.Figure()
    bench = report.drift.benchmark
    if bench.auc is not None:
        blue = _EVIDENCE_COLOURS[Evidence.REFERENCE]
        fig.add_vrect(x0=bench.auc.lower, x1=bench.auc.upper, fillcolor=blue, opacity=0.15, line_width=0)
        fig.add_vline(x=bench.auc.estimate, line_color=blue, annotation_text="benchmark")
        fig.add_vline(
            x=bench.auc.estimate - report.drift.max_gap,
            line_dash="dash",
            line_color=_EVIDENCE_COLOURS[Evidence.GAP],
            annotation_text=f"target (−{report.drift.max_gap:g})",
            annotation_position="bottom left",
        )
    for s in (bench, *report.drift.sites):
        if s.auc is None:
            fig.add_annotation(
                x=0.5,
                y=s.site,
                text=f"not enough data (n={s.n_labelled})",
                showarrow=False,
                xanchor="left",
                font={"color": "#757575"},
            )
            continue
        fig.add_trace(go.Scatter(
            x=[s.auc.estimate], y=[s.site], mode="markers", name=s.site, showlegend=False,
            marker={"size": 11, "color": _EVIDENCE_COLOURS[evidence(s, report.drift.max_gap)]},
            error_x={"type": "data", "symmetric": False, "array": [s.auc.upper - s.auc.estimate],
                     "arrayminus": [s.auc.estimate - s.auc.lower]},
            hovertemplate=f"{html.escape(s.site)}: AUC %{{x:.3f}} ({evidence(s, report.drift.max_gap)})<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(
        title="AUC by site (95% DeLong interval)",
        xaxis_title="AUC",
        height=120 + 45 * (1 + len(report.drift.sites)),
        xaxis_range=list(forest_range(report)),
        yaxis={"autorange": "reversed", "type": "category"},
    )
    return fig


def roc_figure(report: ValidationReport) -> go.Figure:
    """ROC curve of every site with enough data."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dot", "color": "#bdbdbd"},
            showlegend=False,
            hoverinfo="skip",
        )
    )
    for s in (report.drift.benchmark, *report.drift.sites):
        if s.roc is not None and s.auc is not None:
            fig.add_trace(go.Scatter(x=s.roc.fpr, y=s.roc.tpr, mode="lines", name=f"{s.site} ({s.auc.estimate:.3f})"))
    fig.update_layout(title="ROC curves", xaxis_title="1 − specificity", yaxis_title="Sensitivity", height=460)
    return fig


#: Okabe-Ito, in order, for one colour per site (told apart with every common colour-vision deficiency).
_SITE_COLOURS: Final = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _grid(n: int, columns: int) -> tuple[int, int]:
    """Rows and columns of small multiples for ``n`` panels."""
    cols = max(1, min(columns, n))
    return max(1, math.ceil(n / cols)), cols


def roc_band_figure(curves: SiteCurvesReport) -> go.Figure:
    """One panel per site: ROC curve, its pointwise 95% bootstrap band and the card's operating point.

    Small multiples rather than one chart: overlapping bands of several sites cannot be read.
    """
    rows, cols = _grid(len(curves.sites), 3)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_band_title(c) for c in curves.sites])
    for i, c in enumerate(curves.sites):
        row, col = i // cols + 1, i % cols + 1
        colour = _SITE_COLOURS[i % len(_SITE_COLOURS)]
        for trace in _band_traces(c, colour, curves.threshold):
            fig.add_trace(trace, row=row, col=col)
        fig.update_xaxes(title_text="1 − specificity", range=[-0.02, 1.02], row=row, col=col)
        fig.update_yaxes(title_text="Sensitivity", range=[-0.02, 1.02], row=row, col=col)
    level = curves.sites[0].band.confidence_level if curves.sites else 0.95
    fig.update_layout(
        title=f"ROC by site: pointwise {level:.0%} bootstrap band (class-stratified, percentile) and the "
        f"operating point at threshold {curves.threshold:g}",
        height=120 + 340 * rows,
        showlegend=False,
    )
    return fig


def _band_title(c: SiteCurves) -> str:
    return f"{c.site} (n={c.n_positive + c.n_negative}: {c.n_positive} positive)"


def _band_traces(c: SiteCurves, colour: str, threshold: float) -> list[go.Scatter]:
    b = c.band
    traces = [go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#bdbdbd"}, hoverinfo="skip")]
    if np.isnan(b.tpr).all():
        traces.append(go.Scatter(x=[0.5], y=[0.5], mode="text", text=["not enough data"], hoverinfo="skip"))
        return traces
    traces += [
        go.Scatter(
            x=np.r_[b.fpr, b.fpr[::-1]], y=np.r_[b.upper, b.lower[::-1]], fill="toself", mode="lines",
            line={"width": 0}, fillcolor=_rgba(colour, 0.25), name=f"{c.site} band", hoverinfo="skip",
        ),
        go.Scatter(x=b.fpr, y=b.tpr, mode="lines", line={"color": colour}, name=c.site,
                   hovertemplate="FPR %{x:.2f}: sensitivity %{y:.3f}<extra></extra>"),
    ]  # fmt: skip
    if c.operating_fpr is not None and c.operating_tpr is not None:
        traces.append(go.Scatter(
            x=[c.operating_fpr], y=[c.operating_tpr], mode="markers", name=f"{c.site} operating point",
            marker={"symbol": "x", "size": 12, "color": "#000000"},
            hovertemplate=f"threshold {threshold:g}: 1 − specificity %{{x:.3f}}, sensitivity %{{y:.3f}}<extra></extra>",
        ))  # fmt: skip
    return traces


def auc_trend_figure(curves: SiteCurvesReport) -> go.Figure:
    """One panel per site: each month's AUC with its 95% DeLong interval; "not enough data" where short."""
    n = len(curves.sites)
    fig = make_subplots(rows=max(1, n), cols=1, shared_xaxes=True, subplot_titles=[c.site for c in curves.sites])
    for i, c in enumerate(curves.sites):
        colour = _SITE_COLOURS[i % len(_SITE_COLOURS)]
        known = [m for m in c.months if m.auc is not None]
        short = [m for m in c.months if m.auc is None]
        fig.add_trace(go.Scatter(
            x=[m.month for m in known], y=[m.auc.estimate for m in known if m.auc], mode="lines+markers",
            name=c.site, line={"color": colour},
            error_y={"type": "data", "symmetric": False,
                     "array": [m.auc.upper - m.auc.estimate for m in known if m.auc],
                     "arrayminus": [m.auc.estimate - m.auc.lower for m in known if m.auc]},
            hovertemplate="%{x}: AUC %{y:.3f}<extra></extra>",
        ), row=i + 1, col=1)  # fmt: skip
        if short:
            fig.add_trace(go.Scatter(
                x=[m.month for m in short], y=[0.55] * len(short), mode="text", text=["not enough data"] * len(short),
                textfont={"color": "#595959"}, hovertext=[m.reason for m in short], hoverinfo="text",
                name=f"{c.site}: not enough data",
            ), row=i + 1, col=1)  # fmt: skip
        fig.update_yaxes(title_text="AUC", range=[0.45, 1.05], row=i + 1, col=1)
    fig.update_xaxes(type="category")  # months as labels: no mid-month ticks, empty months kept in place
    fig.update_layout(
        title="AUC by site and month (95% DeLong interval)", height=120 + 220 * max(1, n), showlegend=False
    )
    return fig


def roc_band_source(curves: SiteCurvesReport) -> str:
    """Where the ROC band and operating points come from: the sentence under the chart, on the page and in the HTML."""
    return (
        f"Model {curves.model_version}. Shaded: where each site's curve lies in 95% of bootstrap replicates, "
        "point by point (positives and negatives redrawn separately, seeded, TPR read on a 0.01 grid of "
        f"1 − specificity; core.metrics.roc_band). ×: the operating point at the card's threshold "
        f"{curves.threshold:g}. Cases: the labelled, scored studies the pilot-drift report evaluates "
        "(core.services.site_curves)."
    )


def auc_trend_source(curves: SiteCurvesReport) -> str:
    """Where the monthly AUCs come from, naming the studies left out for want of a study date."""
    undated = sum(c.n_undated for c in curves.sites)
    return (
        "Each month's AUC of the labelled cases by study date, with its 95% DeLong interval "
        '(core.metrics.auc_trend); a month with fewer than 5 positives or 5 negatives says "not enough data" '
        "instead of a number" + (f"; {undated} labelled studies without a study date are left out." if undated else ".")
    )


def auc_trend_table(curves: SiteCurvesReport) -> pd.DataFrame:
    """The monthly AUCs as a table (what the chart shows, readable by a screen reader)."""
    return pd.DataFrame([
        {"Site": c.site, "Month": m.month, "Positive": m.n_positive, "Negative": m.n_negative,
         "AUC [95% CI]": "not enough data" if m.auc is None else _fmt(m.auc)}
        for c in curves.sites for m in c.months
    ])  # fmt: skip


def reliability_figure(report: ValidationReport) -> go.Figure:
    """Observed frequency against mean predicted probability per bin, one trace per site."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#bdbdbd"}, name="perfect calibration"
        )
    )
    for s in (report.drift.benchmark, *report.drift.sites):
        if s.calibration is not None:
            c = s.calibration.reliability
            fig.add_trace(
                go.Scatter(
                    x=c.mean_predicted,
                    y=c.fraction_positive,
                    mode="lines+markers",
                    name=f"{s.site} (ECE {s.calibration.ece:.3f})",
                    text=[f"n={n}" for n in c.count],
                )
            )
    fig.update_layout(
        title="Reliability diagrams",
        xaxis_title="Mean predicted probability",
        yaxis_title="Observed frequency",
        height=460,
    )
    return fig


def strata_heatmap(report: ValidationReport, dimensions: tuple[str, ...] = _HEAT_DIMENSIONS) -> go.Figure:
    """Gap to the benchmark by site (rows) and harmonized stratum (columns); blank where data is short."""
    rows = [r for r in report.drift.strata if r.dimension in dimensions]
    sites = sorted({r.site for r in rows})
    columns = sorted({(r.dimension, r.level) for r in rows}, key=lambda k: (dimensions.index(k[0]), k[1]))
    z: list[list[float | None]] = [[None for _ in columns] for _ in sites]
    text = [["" for _ in columns] for _ in sites]
    for r in rows:
        i, j = sites.index(r.site), columns.index((r.dimension, r.level))
        gap = None if r.gap is None or math.isnan(r.gap.estimate) else r.gap.estimate
        z[i][j] = gap
        ci = "" if gap is None or r.gap is None else f"<br>[{r.gap.lower:+.2f}, {r.gap.upper:+.2f}]"
        text[i][j] = f"n={r.n_labelled}" if gap is None else f"{gap:+.3f}{ci}<br>n={r.n_labelled}"
    # Blue-to-orange diverging scale (colour-blind safe), centred on the target; 13-px cell text.
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"{d}: {lv}" for d, lv in columns], y=sites, text=text, texttemplate="%{text}",
        textfont={"size": 13}, colorscale="PuOr_r", zmid=report.drift.max_gap, colorbar={"title": "gap"},
        hovertemplate="%{y} · %{x}<br>%{text}<extra></extra>",
    ))  # fmt: skip
    fig.update_layout(
        title="AUC gap to the benchmark by stratum", height=160 + 60 * len(sites), xaxis={"tickangle": -30}
    )
    return fig


def counts_figure(report: ValidationReport) -> go.Figure:
    """Labelled cases against the cases needed to detect the target gap, per deployment site."""
    names = [s.site for s in report.drift.sites]
    needed = [s.required.n_total if s.required and s.required.n_total else None for s in report.drift.sites]
    fig = go.Figure([
        go.Bar(name="labelled", x=names, y=[s.n_labelled for s in report.drift.sites], marker_color="#0072B2"),
        go.Bar(name="needed", x=names, y=needed, marker_color="#E69F00"),
    ])  # fmt: skip
    fig.update_layout(
        barmode="group", title=f"Labelled cases vs cases needed (gap {report.drift.max_gap:g}, 80% power)", height=380
    )
    return fig


def _verdict(report: ValidationReport) -> None:
    judged = "upper bound of the gap" if report.drift.use_ci_bound else "gap estimate"
    by_site = {s.site: s for s in report.drift.sites}
    shown = [n for n in report.drift.failing_sites if evidence(by_site[n], report.drift.max_gap) is Evidence.GAP]
    if report.passed:
        st.success(f"Every site with enough labelled cases is within the target ({report.drift.max_gap:g}, {judged}).")
    elif shown:
        st.error(f"Outside the target ({report.drift.max_gap:g}, {judged}): {', '.join(report.drift.failing_sites)}.")
    else:
        # Red only when an interval shows it: a point estimate whose interval reaches zero is no evidence.
        st.warning(
            f"Point estimates outside the target ({report.drift.max_gap:g}) at "
            f"{', '.join(report.drift.failing_sites)}, "
            "but no interval excludes no difference: not evidence of a gap yet; more labelled cases are needed."
        )
    st.caption(
        f"Model {report.model_version} at threshold {report.threshold:g}; benchmark site "
        f"{report.benchmark}; taxonomies: vendor {report.vendor_taxonomy}, protocol {report.protocol_taxonomy}. "
        "Studies without a label are unknown, never negative."
    )


def render(report: ValidationReport, curves: SiteCurvesReport | str | None = None) -> None:
    """The whole dashboard for one report: verdict, table, charts, admin lists and the download.

    ``curves`` (ROC bands and monthly AUC) fill the ROC and Trend tabs; a string says why there are none.
    """
    _verdict(report)
    for s in (report.drift.benchmark, *report.drift.sites):
        st.markdown(f"- {site_sentence(s, report.drift.max_gap)}")
    table = site_table(report)
    columns = st.multiselect(
        "Columns",
        list(table.columns),
        default=list(DEFAULT_COLUMNS),
        key="perf.columns",
        help="Every column of the report can be shown; the default set fits the page.",
    )
    st.dataframe(table[["Site", *[c for c in columns if c != "Site"]]], hide_index=True, width="stretch")
    tabs = st.tabs(["Forest plot", "ROC", "AUC over time", "Calibration", "Strata", "Labelled cases", "Admin"])
    with tabs[0]:
        st.plotly_chart(forest_figure(report), width="stretch")
    with tabs[1]:
        _roc_tab(report, curves)
    with tabs[2]:
        _trend_tab(curves)
    with tabs[3]:
        st.plotly_chart(reliability_figure(report), width="stretch")
        _calibrators(report)
    with tabs[4]:
        st.plotly_chart(strata_heatmap(report), width="stretch")
        st.dataframe(_strata_table(report), hide_index=True, width="stretch")
    with tabs[5]:
        st.plotly_chart(counts_figure(report), width="stretch")
    with tabs[6]:
        _unmapped(report)
    st.download_button(
        "Download the report (self-contained HTML)",
        data=_html(report, curves),
        file_name=(f"pilot-drift-{report.model_version}.html"),
        mime="text/html",
        icon=":material/download:",
    )


def _roc_tab(report: ValidationReport, curves: SiteCurvesReport | str | None) -> None:
    if isinstance(curves, SiteCurvesReport):
        st.plotly_chart(roc_band_figure(curves), width="stretch")
        st.caption(roc_band_source(curves))
        return
    if isinstance(curves, str):
        st.info(f"No ROC band: {curves}")
    st.plotly_chart(roc_figure(report), width="stretch")


def _trend_tab(curves: SiteCurvesReport | str | None) -> None:
    if not isinstance(curves, SiteCurvesReport):
        st.info(f"No AUC over time: {curves or 'not computed'}")
        return
    st.plotly_chart(auc_trend_figure(curves), width="stretch")
    st.caption(auc_trend_source(curves))
    st.dataframe(auc_trend_table(curves), hide_index=True, width="stretch")


def _strata_table(report: ValidationReport) -> pd.DataFrame:
    return pd.DataFrame([
        {"Site": r.site, "Dimension": r.dimension, "Level": r.level, "Labelled": r.n_labelled, "Status": str(r.status),
         "AUC": _fmt(r.auc), "Gap": _fmt(r.gap, signed=True), "p": _p(r.p_value)}
        for r in report.drift.strata if r.dimension in STRATA
    ])  # fmt: skip


def _calibrators(report: ValidationReport) -> None:
    if not report.calibrators:
        st.caption("No site calibrator fitted yet (an ML engineer fits one per site); only approved ones are applied.")
        return
    st.dataframe(pd.DataFrame([
        {"Id": c.id, "Site": c.site, "Revision": c.revision, "Method": c.method, "Status": str(c.status),
         "ECE before": round(c.ece_before, 4), "ECE after (out of fold)": round(c.ece_after, 4),
         "Approved by": c.approved_by or ""}
        for c in report.calibrators
    ]), hide_index=True, width="stretch")  # fmt: skip


def _unmapped(report: ValidationReport) -> None:
    if not report.unmapped:
        st.caption("Every vendor and protocol value maps to the taxonomies.")
        return
    st.warning("Header values the taxonomies do not map; an admin should add them (new taxonomy version).")
    st.dataframe(pd.DataFrame([u.to_dict() for u in report.unmapped]), hide_index=True, width="stretch")


@st.cache_data(show_spinner=False, max_entries=4)
def _html(report: ValidationReport, curves: SiteCurvesReport | str | None) -> str:
    return report_html(report, curves)


def _curves_html(curves: SiteCurvesReport | str | None) -> list[str]:
    """The ROC band and monthly AUC sections of the HTML report (charts without plotly.js), each with its source."""
    if not isinstance(curves, SiteCurvesReport):
        why = html.escape(curves or "not computed")
        return [f"<h2>ROC band and AUC over time</h2><p>Not in this report: {why}</p>"]
    table = auc_trend_table(curves)
    return [
        "<h2>ROC by site with the operating point</h2>",
        roc_band_figure(curves).to_html(full_html=False, include_plotlyjs=False),
        f"<p><small>Source: {html.escape(roc_band_source(curves))}</small></p>",
        "<h2>AUC by site and month</h2>",
        auc_trend_figure(curves).to_html(full_html=False, include_plotlyjs=False),
        table.to_html(index=False, escape=True) if not table.empty else "<p>No dated labelled cases.</p>",
        f"<p><small>Source: {html.escape(auc_trend_source(curves))}</small></p>",
    ]


def report_html(report: ValidationReport, curves: SiteCurvesReport | str | None = None) -> str:
    """The whole report as one HTML file that opens offline (plotly.js embedded once).

    ``curves`` adds the ROC band with operating points and the monthly AUC, as on the page; a
    string (why there are none) or None is said in their place, so a missing section is never silent.

    Raises
    ------
    BadInputError
        ``curves`` belong to another model version than ``report`` (both named).
    """
    if isinstance(curves, SiteCurvesReport) and curves.model_version != report.model_version:
        raise BadInputError(
            f"the ROC bands are of model {curves.model_version!r} but the report is of {report.model_version!r}"
        )
    figures = [
        forest_figure(report),
        roc_figure(report),
        reliability_figure(report),
        strata_heatmap(report),
        counts_figure(report),
    ]
    charts = [fig.to_html(full_html=False, include_plotlyjs=i == 0) for i, fig in enumerate(figures)]
    verdict = "PASS" if report.passed else f"FAIL: {', '.join(report.drift.failing_sites)} outside the target"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Vigil pilot-drift report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:0.85em}"
        "td,th{border:1px solid #ccc;padding:4px 6px}</style></head><body>"
        f"<h1>Pilot-drift report: {html.escape(report.model_version)}</h1>"
        f"<p><b>{html.escape(verdict)}</b> (target gap {report.drift.max_gap:g}; benchmark "
        f"{html.escape(report.benchmark)}; threshold {report.threshold:g}). Demonstration model trained on "
        "synthetic phantoms; not for care. Studies without a label are unknown, never negative.</p>"
        + site_table(report).to_html(index=False, escape=True)
        + "".join(charts)
        + "".join(_curves_html(curves))
        + "</body></html>"
    )
