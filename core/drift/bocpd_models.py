"""Conjugate observation models for BOCPD: Gaussian (Normal-Gamma) and Bernoulli (Beta).

Each model keeps one column of sufficient statistics per live run-length hypothesis, in an array
of shape (n_params, n_hypotheses), and answers two vectorized questions: the log predictive
density of the next observation under every hypothesis, and the posterior after absorbing it
(in place). Formulas: Murphy, *Conjugate Bayesian analysis of the Gaussian distribution* (2007),
eqs. 86-89 and 100; the Beta-Binomial predictive for the Bernoulli case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.special import betaln, gammaln

from core.types import FloatArray

__all__ = ["ConjugateModel", "GaussianModel", "BernoulliModel"]


class ConjugateModel(Protocol):
    """What BOCPD needs from an observation model."""

    @property
    def name(self) -> str:
        """``"gaussian"`` or ``"bernoulli"``."""
        ...

    def prior(self) -> FloatArray:
        """Sufficient statistics of a fresh run, shape (n_params,)."""
        ...

    def log_predictive(self, stats: FloatArray, x: float, trials: float) -> FloatArray:
        """Log predictive density of ``x`` under each column of ``stats``, shape (n_hypotheses,)."""
        ...

    def absorb(self, stats: FloatArray, x: float, trials: float) -> None:
        """Update every column of ``stats`` with ``x``, in place."""
        ...


@dataclass(frozen=True, slots=True)
class GaussianModel:
    """Gaussian observations with unknown mean and variance; Normal-Gamma prior.

    The defaults suit standardized streams (in-control mean 0, variance 1): the prior expects unit
    variance (``beta0 / (alpha0 - 1) = 1``) and lets a new segment's mean sit a few standard
    deviations away (``kappa0 = 0.1``).

    Attributes
    ----------
    mu0 : float
        Prior mean of a segment's mean.
    kappa0 : float
        Pseudo-observations behind ``mu0``.
    alpha0, beta0 : float
        Gamma prior of the precision (shape, rate).
    """

    mu0: float = 0.0
    kappa0: float = 0.1
    alpha0: float = 2.0
    beta0: float = 1.0

    def __post_init__(self) -> None:
        if min(self.kappa0, self.alpha0, self.beta0) <= 0:
            raise ValueError(f"Normal-Gamma prior needs kappa0, alpha0, beta0 > 0, got {self}")

    @property
    def name(self) -> str:
        """The model's name."""
        return "gaussian"

    def prior(self) -> FloatArray:
        """``(mu, kappa, alpha, beta)`` of a fresh run."""
        return np.array([self.mu0, self.kappa0, self.alpha0, self.beta0])

    def log_predictive(self, stats: FloatArray, x: float, trials: float) -> FloatArray:
        """Student-t predictive with ``2 alpha`` degrees of freedom (``trials`` is ignored)."""
        mu, kappa, alpha, beta = stats
        # nu * scale^2 of the Student-t, with nu = 2 alpha and scale^2 = beta (kappa + 1) / (alpha kappa).
        v = 2.0 * beta * (kappa + 1.0) / kappa
        d = x - mu
        half = alpha + 0.5
        return np.asarray(gammaln(half) - gammaln(alpha) - 0.5 * np.log(math.pi * v) - half * np.log1p(d * d / v))

    def absorb(self, stats: FloatArray, x: float, trials: float) -> None:
        """Normal-Gamma posterior after one observation."""
        mu, kappa = stats[0], stats[1]
        stats[3] += kappa * (x - mu) ** 2 / (2.0 * (kappa + 1.0))
        stats[0] = (kappa * mu + x) / (kappa + 1.0)
        stats[1] += 1.0
        stats[2] += 0.5


@dataclass(frozen=True, slots=True)
class BernoulliModel:
    """Counts of successes out of ``trials`` (1 for a single yes/no); Beta prior on the rate.

    Attributes
    ----------
    a0, b0 : float
        Beta prior pseudo-counts of successes and failures (1, 1 is uniform).
    """

    a0: float = 1.0
    b0: float = 1.0

    def __post_init__(self) -> None:
        if min(self.a0, self.b0) <= 0:
            raise ValueError(f"Beta prior needs a0, b0 > 0, got {self}")

    @property
    def name(self) -> str:
        """The model's name."""
        return "bernoulli"

    def prior(self) -> FloatArray:
        """``(a, b)`` of a fresh run."""
        return np.array([self.a0, self.b0])

    def log_predictive(self, stats: FloatArray, x: float, trials: float) -> FloatArray:
        """Beta-Binomial predictive of ``x`` successes out of ``trials``."""
        if not (0.0 <= x <= trials):
            raise ValueError(f"Bernoulli BOCPD needs 0 <= successes <= trials, got {x} of {trials}")
        a, b = stats
        log_choose = gammaln(trials + 1.0) - gammaln(x + 1.0) - gammaln(trials - x + 1.0)
        return np.asarray(log_choose + betaln(a + x, b + trials - x) - betaln(a, b))

    def absorb(self, stats: FloatArray, x: float, trials: float) -> None:
        """Beta posterior after ``x`` successes out of ``trials``."""
        stats[0] += x
        stats[1] += trials - x
