"""Run CUSUM, EWMA and BOCPD over one windowed stream, segment by segment (pure).

A stream is cut into *segments* at restart dates: when a person resolves an alert, the chart is
restarted after the alarm, with a fresh baseline, because the process it watched has changed
(statistical process control's "reset after an out-of-control signal"). In each segment the
first ``warmup`` windows estimate the baseline (phase I) and the rest are monitored (phase II).

Only the first alarm of each detector in a segment matters for alerting: everything after it is
the same ongoing change until someone resolves it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Final

import numpy as np

from core.drift.base import DetectorTrace
from core.drift.bocpd import Bocpd, BocpdResult, bocpd
from core.drift.bocpd_models import BernoulliModel, GaussianModel
from core.drift.calibration import Calibration, ChartKind, calibrate
from core.drift.cusum import cusum_batch
from core.drift.ewma import ewma_batch
from core.drift.sitestreams import STREAMS
from core.drift.streams import (
    Baseline,
    StreamKind,
    WarmingUp,
    WindowedStream,
    WindowKind,
    against_baseline,
    estimate_baseline,
    self_starting,
)
from core.types import FloatArray, IntArray

__all__ = [
    "CALIBRATED",
    "DAYS_PER_YEAR",
    "MonitorSettings",
    "Alarm",
    "StreamReport",
    "StreamStatus",
    "monitor_stream",
    "chart_calibrations",
    "windows_per_day",
]

#: The detectors, in the order alarms are preferred when two fire on the same window.
DETECTORS: Final = ("cusum", "ewma", "bocpd")


#: Days in a year, for budgets stated per site-year.
DAYS_PER_YEAR: Final = 365.25
#: The detectors whose thresholds come from an in-control run length (BOCPD's does not).
CALIBRATED: Final = ("cusum", "ewma")


@dataclass(frozen=True, slots=True)
class MonitorSettings:
    """Every setting of a monitoring run (shown on the drift page and in ``vigil drift --json``).

    Attributes
    ----------
    false_alarm_budget : float
        Incidents a year that a site where nothing changed may raise, at most (0.5: one every two
        years). It is split evenly over every chart Vigil can run at a site (each stream of
        :data:`~core.drift.sitestreams.STREAMS` times each calibrated alerting detector), so a
        new stream tightens every chart instead of adding false alarms; see :attr:`arl0`.
    cusum_k : float
        CUSUM reference value: half the shift it is tuned for (0.5 = a 1 sigma shift).
    ewma_lambda : float
        EWMA smoothing weight.
    min_observations : int
        Per-study values a MEAN stream's baseline needs before its charts may alarm.
    min_events, max_rate_trials : int
        A RATE stream's baseline needs this many events and non-events (each), or this many
        trials in all when one outcome is rarer (a sensitivity with no miss yet).
    distance_warmup : int
        Window values a DISTANCE stream (PSI, KS, AUC) needs before its charts may alarm.
    bocpd_hazard, bocpd_cap, bocpd_threshold : float, int, float
        BOCPD change-point prior per window, live-hypothesis cap, change-mass threshold.
    alerting : tuple of str
        Detectors whose alarms open alerts; the others are shown for corroboration.
    calibration_streams : int
        Simulated streams per ARL0 calibration.
    novelty_share, novelty_confidence : float
        Metadata novelty fires only once every value making up at least ``novelty_share`` of a
        site's studies has been seen with probability ``novelty_confidence``; see
        :attr:`novelty_warmup`.
    """

    false_alarm_budget: float = 0.5
    cusum_k: float = 0.5
    ewma_lambda: float = 0.1
    min_observations: int = 20
    min_events: int = 10
    max_rate_trials: int = 200
    distance_warmup: int = 10
    bocpd_hazard: float = 1.0 / 250.0
    bocpd_cap: int = 200
    bocpd_threshold: float = 0.9
    alerting: tuple[str, ...] = CALIBRATED
    calibration_streams: int = 1000
    novelty_share: float = 0.05
    novelty_confidence: float = 0.95

    def __post_init__(self) -> None:
        if not (self.false_alarm_budget > 0 and math.isfinite(self.false_alarm_budget)):
            raise ValueError(
                f"the false-alarm budget must be a positive number of incidents a year, got {self.false_alarm_budget}"
            )
        if not 0 < self.novelty_share < 1 or not 0 < self.novelty_confidence < 1:
            raise ValueError(
                "novelty share and confidence must lie in (0, 1), "
                f"got {self.novelty_share} and {self.novelty_confidence}"
            )
        if self.min_observations < 3 or self.distance_warmup < 3 or self.min_events < 1 or self.max_rate_trials < 1:
            raise ValueError(
                "a baseline needs at least 3 values and 1 event of each kind, got "
                f"min_observations={self.min_observations}, distance_warmup={self.distance_warmup}, "
                f"min_events={self.min_events}, max_rate_trials={self.max_rate_trials}"
            )
        if not any(d in CALIBRATED for d in self.alerting):
            raise ValueError(f"at least one of {CALIBRATED} must raise alerts, got {self.alerting}")

    @property
    def charts_per_site(self) -> int:
        """Calibrated alerting charts Vigil can run at one site: every stream times each detector."""
        return len(STREAMS) * sum(d in CALIBRATED for d in self.alerting)

    @property
    def arl0(self) -> float:
        """In-control average run length of each chart, in daily windows (the budget's share per chart).

        With ``C`` charts and a budget of ``B`` incidents a year, each chart may raise ``B / C`` false
        alarms a year, one in ``C * 365.25 / B`` days. By the union bound (Bonferroni) the site then
        raises at most ``B`` a year, and fewer: correlated charts alarm together, one incident.
        """
        return self.charts_per_site * DAYS_PER_YEAR / self.false_alarm_budget

    @property
    def novelty_warmup(self) -> int:
        """Studies that define a site's known metadata before novelty can fire.

        The smallest ``n`` with ``(1 - share) ** n <= 1 - confidence``: a value making up ``share``
        of the studies is missing from ``n`` of them with probability at most ``1 - confidence``
        (59 studies at 5 % and 95 %; the "rule of three" of Hanley & Lippman-Hand 1983 read
        the other way round).
        """
        return math.ceil(math.log(1.0 - self.novelty_confidence) / math.log(1.0 - self.novelty_share))

    def budget_statement(self) -> str:
        """The false-alarm budget in the words the drift page and ``vigil drift`` use."""
        every = 1.0 / self.false_alarm_budget
        detectors = " and ".join(d.upper() for d in self.alerting if d in CALIBRATED)
        per = "every year" if every == 1 else f"every {every:g} years"
        return (
            f"False-alarm budget: at most one incident {per} at a site where nothing has changed "
            f"({self.false_alarm_budget:g} a site-year), split evenly over the {self.charts_per_site} charts "
            f"Vigil can run at a site ({len(STREAMS)} streams x {detectors}): each chart is calibrated "
            f"to one false alarm in {self.arl0:,.0f} days. Metadata novelty is judged on its own: "
            f"it starts after {self.novelty_warmup} studies, when any value making up {self.novelty_share:.0%} of a "
            f"site's studies has been seen with {self.novelty_confidence:.0%} confidence."
        )


def windows_per_day(stream: WindowedStream) -> int:
    """How many windows a stream has a day, rounded up to a power of two (1 for daily windows).

    Charts are calibrated per window; a budget stated per day needs this factor when windows
    of N studies come faster than one a day (a busy site). Rounding keeps calibrations few.
    """
    if stream.windowing.kind is WindowKind.DAY or stream.n_windows < 2:
        return 1
    span = int((stream.dates[-1] - stream.dates[0]).astype("timedelta64[D]").astype(np.int64)) + 1
    rate = stream.n_windows / max(span, 1)
    return 1 if rate <= 1 else 1 << math.ceil(math.log2(rate))


def chart_calibrations(settings: MonitorSettings, *, per_day: int = 1) -> dict[str, Calibration]:
    """CUSUM ``h`` and EWMA ``L`` for ``settings.arl0 * per_day`` windows (simulated once per process, then cached)."""
    arl0 = settings.arl0 * per_day
    return {
        "cusum": calibrate(
            ChartKind.CUSUM, parameter=settings.cusum_k, arl0=arl0, n_streams=settings.calibration_streams
        ),
        "ewma": calibrate(
            ChartKind.EWMA, parameter=settings.ewma_lambda, arl0=arl0, n_streams=settings.calibration_streams
        ),
    }


class StreamStatus:
    """Status strings of a stream's current segment."""

    MONITORING: Final = "monitoring"
    WARMING_UP: Final = "warming up"
    NO_VARIATION: Final = "no variation"
    EMPTY: Final = "no data"


@dataclass(frozen=True, slots=True)
class Alarm:
    """The first alarm of one detector in one segment of one stream.

    Attributes
    ----------
    detector : str
    index : int
        Window index of the alarm.
    alarm_date : date
        Window date of the alarm.
    statistic, limit : float
        The detector's statistic and the limit it crossed (standardized units for CUSUM and
        EWMA; change mass and threshold for BOCPD).
    change_index : int
        Estimated first changed window.
    change_date : date
    segment : int
        Segment number (0 = from the first window).
    """

    detector: str
    index: int
    alarm_date: date
    statistic: float
    limit: float
    change_index: int
    change_date: date
    segment: int


@dataclass(frozen=True, slots=True, eq=False)
class StreamReport:
    """What monitoring found on one stream.

    Attributes
    ----------
    stream : WindowedStream
    status : str
        Of the current segment: see :class:`StreamStatus`.
    message : str
        One sentence for people (e.g. "warming up: 12/20 baseline windows, ...").
    segment_starts : tuple of int
        First window index of every segment.
    baseline : Baseline or None
        Of the current segment.
    monitored : ndarray of shape (m,), bool
        Windows monitored (phase II) in any segment.
    z : ndarray of shape (m,)
        Standardized window values against their segment's baseline (NaN where none).
    traces : dict of str to DetectorTrace
        ``"cusum"`` and ``"ewma"``, aligned with the windows (NaN outside monitored windows).
    bocpd : BocpdResult or None
        Over the current segment, windows ``bocpd_offset`` onwards, with the run-length posterior.
    bocpd_offset : int
    alarms : tuple of Alarm
        First alarm per detector per segment.
    """

    stream: WindowedStream
    status: str
    message: str
    segment_starts: tuple[int, ...]
    baseline: Baseline | None
    monitored: np.ndarray
    z: FloatArray
    traces: dict[str, DetectorTrace]
    bocpd: BocpdResult | None
    bocpd_offset: int
    alarms: tuple[Alarm, ...] = field(default=())

    def current_alarm(self, detectors: Sequence[str]) -> Alarm | None:
        """Earliest alarm of the current segment among ``detectors`` (ties: DETECTORS order)."""
        segment = len(self.segment_starts) - 1
        hits = [a for a in self.alarms if a.segment == segment and a.detector in detectors]
        return min(hits, key=lambda a: (a.index, DETECTORS.index(a.detector)), default=None)


@dataclass(slots=True)
class _Assembly:
    """Mutable accumulator while segments are processed (never leaves this module)."""

    m: int
    z: FloatArray = field(init=False)
    monitored: np.ndarray = field(init=False)
    columns: dict[str, dict[str, np.ndarray]] = field(init=False)
    alarms: list[Alarm] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.z = np.full(self.m, np.nan)
        self.monitored = np.zeros(self.m, dtype=bool)
        self.columns = {
            name: {
                "statistic": np.full(self.m, np.nan),
                "upper": np.full(self.m, np.nan),
                "lower": np.full(self.m, np.nan),
                "alarm": np.zeros(self.m, dtype=bool),
                "change_point": np.full(self.m, -1, dtype=np.intp),
            }
            for name in ("cusum", "ewma")
        }

    def traces(self) -> dict[str, DetectorTrace]:
        return {
            name: DetectorTrace(
                detector=name,
                statistic=c["statistic"],
                upper=c["upper"],
                lower=c["lower"],
                alarm=c["alarm"],
                change_point=c["change_point"],
                n_skipped=int(np.sum(self.monitored & ~np.isfinite(self.z))),
            )
            for name, c in self.columns.items()
        }


def _segments(dates: np.ndarray, restarts: Sequence[date]) -> list[IntArray]:
    """Window indices of each segment; a segment may be empty (a restart after the last window)."""
    cuts = sorted({np.datetime64(d, "D") for d in restarts})
    edges = [0, *[int(np.searchsorted(dates, c, side="right")) for c in cuts], int(dates.size)]
    return [np.arange(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _to_date(d: np.datetime64) -> date:
    return date.fromisoformat(str(np.asarray(d).astype("datetime64[D]")))


def _run_charts(
    asm: _Assembly, stream: WindowedStream, watch: IntArray, z: FloatArray, cals: dict[str, Calibration], seg: int
) -> None:
    zw = z[watch]
    traces = {
        "cusum": cusum_batch(zw, k=cals["cusum"].parameter, h=cals["cusum"].threshold),
        "ewma": ewma_batch(zw, lambda_=cals["ewma"].parameter, L=cals["ewma"].threshold),
    }
    for name, tr in traces.items():
        col = asm.columns[name]
        col["statistic"][watch], col["upper"][watch], col["lower"][watch] = tr.statistic, tr.upper, tr.lower
        col["alarm"][watch] = tr.alarm
        col["change_point"][watch] = np.where(tr.change_point >= 0, watch[np.maximum(tr.change_point, 0)], -1)
        first = tr.first_alarm
        if first is not None:
            cp = int(watch[tr.change_point[first]])
            asm.alarms.append(
                Alarm(
                    name,
                    int(watch[first]),
                    _to_date(stream.dates[watch[first]]),
                    float(tr.statistic[first]),
                    float(tr.upper[first]),
                    cp,
                    _to_date(stream.dates[cp]),
                    seg,
                )
            )


def _run_bocpd(stream: WindowedStream, base: Baseline, sel: IntArray, settings: MonitorSettings) -> BocpdResult:
    detector = Bocpd(
        model=BernoulliModel() if stream.kind is StreamKind.RATE else GaussianModel(),
        hazard=settings.bocpd_hazard,
        cap=settings.bocpd_cap,
        threshold=settings.bocpd_threshold,
    )
    if stream.kind is StreamKind.RATE:
        x = np.where(stream.counts[sel] > 0, stream.sums[sel], np.nan)
        return bocpd(x, detector=detector, trials=np.maximum(stream.counts[sel], 1), keep_posterior=True)
    return bocpd(against_baseline(stream, base)[sel], detector=detector, keep_posterior=True)


def _bocpd_alarm(result: BocpdResult, stream: WindowedStream, sel: IntArray, seg: int, start: int) -> Alarm | None:
    hits = np.flatnonzero(result.alarm & (sel >= start))
    if hits.size == 0:
        return None
    i = int(hits[0])
    cp = int(sel[result.change_point[i]])
    return Alarm(
        "bocpd",
        int(sel[i]),
        _to_date(stream.dates[sel[i]]),
        float(result.change_mass[i]),
        result.threshold,
        cp,
        _to_date(stream.dates[cp]),
        seg,
    )


def monitor_stream(stream: WindowedStream, *, settings: MonitorSettings, restarts: Sequence[date] = ()) -> StreamReport:
    """Estimate baselines and run the detectors over every segment of ``stream``.

    Parameters
    ----------
    stream : WindowedStream
    settings : MonitorSettings
    restarts : sequence of date
        Restart the chart after each of these window dates (the alarm dates of resolved alerts).

    Returns
    -------
    StreamReport
    """
    cals = chart_calibrations(settings, per_day=windows_per_day(stream))
    need_values = settings.distance_warmup if stream.kind is StreamKind.DISTANCE else settings.min_observations
    asm = _Assembly(stream.n_windows)
    segments = _segments(stream.dates, restarts)
    status, message, baseline = StreamStatus.EMPTY, "no windows yet", None
    result, offset = None, 0
    for seg, sel in enumerate(segments):
        base = estimate_baseline(
            stream, sel, min_values=need_values, min_events=settings.min_events, max_trials=settings.max_rate_trials
        )
        status, message, baseline = _describe(base, sel)
        result, offset = None, int(sel[0]) if sel.size else 0
        if not isinstance(base, Baseline) or not base.sd > 0:
            continue
        z = self_starting(stream, sel)
        watch = sel[sel > base.last_window]
        asm.z[sel] = z[sel]
        asm.monitored[watch] = True
        if watch.size:
            _run_charts(asm, stream, watch, z, cals, seg)
        result = _run_bocpd(stream, base, sel, settings)
        alarm = _bocpd_alarm(result, stream, sel, seg, base.last_window + 1)
        if alarm is not None:
            asm.alarms.append(alarm)
    return StreamReport(
        stream=stream,
        status=status,
        message=message,
        segment_starts=tuple(int(s[0]) if s.size else stream.n_windows for s in segments),
        baseline=baseline,
        monitored=asm.monitored,
        z=asm.z,
        traces=asm.traces(),
        bocpd=result,
        bocpd_offset=offset,
        alarms=tuple(asm.alarms),
    )


def _describe(base: Baseline | WarmingUp, sel: IntArray) -> tuple[str, str, Baseline | None]:
    if isinstance(base, WarmingUp):
        return StreamStatus.WARMING_UP, base.reason, None
    if not base.sd > 0:
        return StreamStatus.NO_VARIATION, f"baseline of {base.observations} values has no variation", base
    return (
        StreamStatus.MONITORING,
        f"monitoring against a baseline of {base.windows} windows ({base.observations} values)",
        base,
    )
