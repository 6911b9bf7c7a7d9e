"""Wilson score interval of a binomial proportion (sensitivity, specificity, PPV, NPV).

Unlike the Wald interval it stays inside [0, 1] and keeps its coverage near 0 and 1, which is
where a good model's sensitivity and specificity live.

References
----------
Wilson (1927), JASA 22:209-212. Brown, Cai & DasGupta (2001), Statistical Science 16:101-133.
"""

from __future__ import annotations

import math

from core.errors import BadInputError
from core.metrics.base import DEFAULT_CONFIDENCE, Interval, undefined, z_critical

__all__ = ["wilson_interval"]


def wilson_interval(
    successes: int, trials: int, *, confidence_level: float = DEFAULT_CONFIDENCE, what: str = "proportion"
) -> Interval:
    """Proportion ``successes / trials`` with its Wilson score interval.

    Parameters
    ----------
    successes, trials : int
        ``0 <= successes <= trials``.
    confidence_level : float, default 0.95
    what : str, default "proportion"
        Names the proportion in the warning when ``trials == 0``.

    Returns
    -------
    Interval
        All ``nan`` (with a warning) when ``trials == 0``.

    Raises
    ------
    BadInputError
        Negative counts or more successes than trials.

    Examples
    --------
    >>> r = wilson_interval(8, 10)
    >>> round(r.estimate, 3), round(r.lower, 4), round(r.upper, 4)
    (0.8, 0.4902, 0.9433)
    """
    if successes < 0 or trials < 0 or successes > trials:
        raise BadInputError(f"need 0 <= successes <= trials, got successes={successes}, trials={trials}")
    z = z_critical(confidence_level)
    if trials == 0:
        nan = undefined(f"{what}: no cases in the denominator")
        return Interval(nan, nan, nan, confidence_level, "wilson")
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2.0 * trials)) / denom
    half = z * math.sqrt(p * (1.0 - p) / trials + z * z / (4.0 * trials * trials)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), confidence_level, "wilson")
