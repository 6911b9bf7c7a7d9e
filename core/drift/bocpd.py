"""Bayesian online change-point detection (Adams & MacKay 2007) with a hard cap on live hypotheses.

After each observation the detector holds the posterior over the current run length ``r`` (how
many observations since the last change point) as a set of live hypotheses, each with the
conjugate model's sufficient statistics of its run. With a constant hazard ``H``::

    P(r_t = r + 1, x_1:t) = P(r_{t-1} = r, x_1:t-1) * pred_r(x_t) * (1 - H)
    P(r_t = 0,     x_1:t) = sum_r P(r_{t-1} = r, x_1:t-1) * pred_r(x_t) * H

Pruning by probability alone does not bound the state on a stable stream (every run length keeps
a little mass), so the number of live hypotheses is capped: when a new hypothesis would exceed
``cap``, the least probable one is dropped. Time is then linear in the stream length and memory is
constant; ``max_live`` counts the most hypotheses ever held so benchmarks can check the cap.

Change points are declared online from posterior mass, not from the MAP run length alone (which
flickers between an old long run and a new short one): the *change mass* after observation ``t``
is the posterior probability that the current run started at least ``min_separation``
observations after the last declared change point and already holds ``confirm`` observations.
When it exceeds ``threshold``, the start of the most probable such run is declared a change point
(an "alarm"). Convention (Adams & MacKay): ``r_t = 0`` means the new run starts with the *next*
observation, so a run of length ``r`` after observation ``t`` started at index ``t - r + 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.drift.base import DetectorTrace, DriftState
from core.drift.bocpd_models import ConjugateModel
from core.types import BoolArray, FloatArray, IntArray

__all__ = ["Bocpd", "BocpdResult", "bocpd"]


def _logsumexp(a: FloatArray) -> float:
    # ndarray methods rather than np.max / np.sum: this runs twice per observation, and the
    # module-level wrappers cost more than the arithmetic on a few hundred hypotheses.
    m = float(a.max())
    if not math.isfinite(m):
        return m
    return m + math.log(float(np.exp(a - m).sum()))


class Bocpd:
    """Streaming BOCPD with a constant hazard and a hard cap on live run-length hypotheses.

    Parameters
    ----------
    model : ConjugateModel
        :class:`~core.drift.bocpd_models.GaussianModel` or :class:`~core.drift.bocpd_models.BernoulliModel`.
    hazard : float
        Prior probability of a change point before each observation, in (0, 1); the expected
        segment length is ``1 / hazard``.
    cap : int
        Most live hypotheses kept (>= 2).
    prune_below : float, default 1e-12
        Hypotheses whose posterior falls below this are dropped as well (0 disables).
    threshold : float, default 0.9
        Change mass above which a change point is declared.
    confirm : int, default 3
        Observations a new run must hold before its start can be declared a change point.
    min_separation : int, default 10
        Declared change points are at least this many observations apart (and from the start):
        right after a change the posterior spreads over a few possible starts, and without a
        separation that spread would be declared as a second change.
    """

    def __init__(
        self,
        *,
        model: ConjugateModel,
        hazard: float,
        cap: int,
        prune_below: float = 1e-12,
        threshold: float = 0.9,
        confirm: int = 3,
        min_separation: int = 10,
    ) -> None:
        if not (0.0 < hazard < 1.0):
            raise ValueError(f"hazard must be in (0, 1), got {hazard}")
        if cap < 2:
            raise ValueError(f"cap must be at least 2 live hypotheses, got {cap}")
        if not (0.0 < threshold < 1.0):
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        if confirm < 1 or min_separation < 1:
            raise ValueError(f"confirm and min_separation must be >= 1, got {confirm}, {min_separation}")
        self.model, self.hazard, self.cap = model, hazard, cap
        self.threshold, self.confirm, self.min_separation = threshold, confirm, min_separation
        self._log_h, self._log_1mh = math.log(hazard), math.log1p(-hazard)
        self._log_prune = math.log(prune_below) if prune_below > 0 else -math.inf
        self._prior = model.prior()
        self.reset()

    def reset(self) -> None:
        """Start over: one hypothesis, a run of length 0 with the prior's statistics."""
        self._rl = np.zeros(self.cap, dtype=np.int64)
        self._logp = np.full(self.cap, -np.inf)
        self._stats = np.tile(self._prior[:, None], (1, self.cap))
        self._logp[0] = 0.0
        self._k = 1
        self.t = -1  # index of the last finite observation absorbed
        self.n_skipped = 0
        self.max_live = 1
        self.map_run_length = 0
        self.change_mass = 0.0
        self.last_change = 0
        self.change_points: list[int] = []
        self.log_evidence = 0.0

    @property
    def live(self) -> int:
        """Live hypotheses now."""
        return self._k

    def posterior(self) -> tuple[IntArray, FloatArray]:
        """Current run lengths and their posterior probabilities (unsorted), shape (live,) each."""
        return self._rl[: self._k].copy(), np.exp(self._logp[: self._k])

    def update(self, x: float, trials: float = 1.0) -> DriftState:
        """Absorb one observation (a NaN is skipped and counted); the alarm flags a new change point."""
        if not math.isfinite(x):
            self.n_skipped += 1
            return DriftState(self.t + 1, self.n_skipped, self.change_mass, alarm=False)
        self.t += 1
        self._step(x, trials)
        alarm = self._declare()
        return DriftState(self.t + 1, self.n_skipped, self.change_mass, alarm=alarm)

    def _step(self, x: float, trials: float) -> None:
        k = self._k
        logp, stats, rl = self._logp[:k], self._stats[:, :k], self._rl[:k]
        joint = logp + self.model.log_predictive(stats, x, trials)
        total = _logsumexp(joint)  # log p(x_t | x_1:t-1): growth and change masses sum to it
        log_cp = total + self._log_h
        np.add(joint, self._log_1mh, out=logp)
        self.model.absorb(stats, x, trials)
        rl += 1
        dropped = self._insert_change(log_cp)
        # Renormalize; when the cap dropped a hypothesis, its mass leaves the total.
        norm = total if dropped == -math.inf else total + math.log1p(-math.exp(dropped - total))
        self.log_evidence += norm
        live = self._logp[: self._k]
        live -= norm
        if live.min() < self._log_prune:
            self._prune()
        self.max_live = max(self.max_live, self._k)
        self.map_run_length = int(self._rl[int(self._logp[: self._k].argmax())])

    def _insert_change(self, log_cp: float) -> float:
        """Add the run-length-0 hypothesis; return the log mass dropped by the cap (-inf if none)."""
        if self._k < self.cap:
            slot = self._k
            self._k += 1
            dropped = -math.inf
        else:
            # The hard cap: the new run-length-0 hypothesis replaces the least probable one, or is
            # itself the least probable and is dropped.
            slot = int(self._logp[: self._k].argmin())
            dropped = float(self._logp[slot])
            if dropped >= log_cp:
                return log_cp
        self._logp[slot] = log_cp
        self._rl[slot] = 0
        self._stats[:, slot] = self._prior
        return dropped

    def _prune(self) -> None:
        keep = self._logp[: self._k] >= self._log_prune
        idx = np.flatnonzero(keep)
        n = idx.size
        self._logp[:n] = self._logp[idx]
        self._rl[:n] = self._rl[idx]
        self._stats[:, :n] = self._stats[:, idx]
        self._logp[n:] = -np.inf
        self._k = n

    def _declare(self) -> bool:
        rl, logp = self._rl[: self._k], self._logp[: self._k]
        newest_allowed = self.t - self.last_change - self.min_separation + 1
        new_run = (rl >= self.confirm) & (rl <= newest_allowed)
        self.change_mass = float(np.exp(logp[new_run]).sum()) if new_run.any() else 0.0
        if self.change_mass <= self.threshold:
            return False
        start = self.t - int(rl[int(np.where(new_run, logp, -np.inf).argmax())]) + 1
        self.last_change = start
        self.change_points.append(start)
        return True


@dataclass(frozen=True, slots=True, eq=False)
class BocpdResult:
    """A BOCPD run over a whole stream, aligned with the input positions.

    Attributes
    ----------
    map_run_length : ndarray of shape (n,), int
        MAP run length after each position (repeats the previous value at a skipped NaN).
    change_mass : ndarray of shape (n,)
        Posterior probability of a new run since the last declared change point (see the module
        docstring); a change point is declared where it exceeds ``threshold``.
    alarm : ndarray of shape (n,), bool
        A change point was declared at that position.
    change_point : ndarray of shape (n,), int
        At an alarm, the position of the first observation of the new run; -1 elsewhere.
    change_points : ndarray of shape (m,), int
        Every declared change point, as positions in the input.
    posterior : ndarray of shape (n, width) or None
        ``posterior[t, r] = P(r_t = r | x_1:t)`` (float32) when requested; run lengths beyond
        ``width - 1`` are not shown.
    max_live : int
        Most live hypotheses held at once (never above ``cap``).
    cap, hazard : int, float
        The settings used.
    n_skipped : int
        Non-finite observations skipped.
    log_evidence : float
        ``log p(x_1:n)`` under the model (up to the hypotheses dropped by the cap).
    """

    map_run_length: IntArray
    change_mass: FloatArray
    alarm: BoolArray
    change_point: IntArray
    change_points: IntArray
    posterior: FloatArray | None
    max_live: int
    cap: int
    hazard: float
    threshold: float
    n_skipped: int
    log_evidence: float

    def to_trace(self) -> DetectorTrace:
        """The common trace shape: the statistic is the change mass, the limit the threshold."""
        n = self.map_run_length.size
        return DetectorTrace(
            detector="bocpd",
            statistic=self.change_mass.copy(),
            upper=np.full(n, self.threshold),
            lower=np.zeros(n),
            alarm=self.alarm,
            change_point=self.change_point,
            n_skipped=self.n_skipped,
        )


def bocpd(
    x: FloatArray,
    *,
    detector: Bocpd,
    trials: FloatArray | None = None,
    keep_posterior: bool = False,
    width: int | None = None,
) -> BocpdResult:
    """Run a freshly reset :class:`Bocpd` over ``x``.

    Parameters
    ----------
    x : ndarray of shape (n,)
        Observations (successes, for the Bernoulli model); NaN entries are skipped and counted.
    detector : Bocpd
        Settings; it is reset first and left in its final state.
    trials : ndarray of shape (n,), optional
        Trials per observation for the Bernoulli model (1 each when omitted).
    keep_posterior : bool, default False
        Record the run-length posterior after every position (for the heat map).
    width : int, optional
        Run lengths ``0 .. width - 1`` recorded; ``n + 1`` (all) by default.

    Returns
    -------
    BocpdResult

    Examples
    --------
    >>> from core.drift.bocpd_models import GaussianModel
    >>> xs = np.r_[np.zeros(30), np.full(30, 6.0)] + np.tile([0.1, -0.1], 30)
    >>> res = bocpd(xs, detector=Bocpd(model=GaussianModel(), hazard=0.01, cap=50))
    >>> res.change_points.tolist()
    [30]
    """
    xs = np.asarray(x, dtype=np.float64)
    n = xs.size
    tr = np.ones(n) if trials is None else np.asarray(trials, dtype=np.float64)
    w = n + 1 if width is None else width
    post = np.zeros((n, w), dtype=np.float32) if keep_posterior else None
    map_rl = np.zeros(n, dtype=np.intp)
    mass = np.zeros(n)
    alarm = np.zeros(n, dtype=bool)
    change_point = np.full(n, -1, dtype=np.intp)
    positions: list[int] = []  # input position of each finite observation
    detector.reset()
    for i in range(n):
        state = detector.update(float(xs[i]), float(tr[i]))
        if math.isfinite(xs[i]):
            positions.append(i)
        map_rl[i] = detector.map_run_length
        mass[i] = state.statistic
        if state.alarm:
            alarm[i] = True
            change_point[i] = positions[detector.change_points[-1]]
        if post is not None:
            _record_row(post, i, detector)
    return BocpdResult(
        map_run_length=map_rl,
        change_mass=mass,
        alarm=alarm,
        change_point=change_point,
        change_points=change_point[alarm].copy(),
        posterior=post,
        max_live=detector.max_live,
        cap=detector.cap,
        hazard=detector.hazard,
        threshold=detector.threshold,
        n_skipped=detector.n_skipped,
        log_evidence=detector.log_evidence,
    )


def _record_row(post: FloatArray, i: int, detector: Bocpd) -> None:
    rl, p = detector.posterior()
    inside = rl < post.shape[1]
    post[i, rl[inside]] = p[inside]
