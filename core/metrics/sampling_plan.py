"""Which unlabelled studies to send for labelling so that a site reaches its planned sample size.

Allocation is proportional to each harmonized stratum's share of the site's studies (largest
remainder), less what is already labelled there, so the labelled set keeps the site's mix of
vendors, protocols and patients. Within a stratum, studies are picked by a seeded shuffle of
their sorted identifiers: the same inputs and seed always give the same list, in any input order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.errors import BadInputError
from core.types import JSONObject

__all__ = ["SamplingPlan", "StratumAllocation", "sampling_plan"]


@dataclass(frozen=True, slots=True)
class StratumAllocation:
    """One stratum's share of the plan."""

    stratum: str
    n_studies: int
    n_labelled: int
    n_candidates: int
    n_selected: int

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "stratum": self.stratum,
            "n_studies": self.n_studies,
            "n_labelled": self.n_labelled,
            "n_candidates": self.n_candidates,
            "n_selected": self.n_selected,
        }


@dataclass(frozen=True, slots=True)
class SamplingPlan:
    """Studies to label at one site.

    Attributes
    ----------
    n_required : int or None
        Labelled cases the site needs; None when no plan can be made (no reachable sample size).
    n_to_label : int
        Studies selected now.
    shortfall : int
        Labelled cases still missing after every selected study is labelled (not enough studies).
    selected : tuple of str
        Study identifiers, grouped by stratum.
    """

    site: str
    n_required: int | None
    n_labelled: int
    n_to_label: int
    shortfall: int
    allocations: tuple[StratumAllocation, ...]
    selected: tuple[str, ...]

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {
            "site": self.site,
            "n_required": self.n_required,
            "n_labelled": self.n_labelled,
            "n_to_label": self.n_to_label,
            "shortfall": self.shortfall,
            "allocations": [a.to_dict() for a in self.allocations],
            "selected": list(self.selected),
        }


def sampling_plan(
    study_ids: npt.ArrayLike,
    strata: npt.ArrayLike,
    labelled: npt.ArrayLike,
    *,
    site: str,
    n_required: int | None,
    random_state: int = 0,
) -> SamplingPlan:
    """Plan the studies to label at ``site``.

    Parameters
    ----------
    study_ids : array-like of shape (n_studies,)
        Every study of the site (labelled or not).
    strata : array-like of shape (n_studies,)
        Stratum key of each study, e.g. ``"Philips|Chest PA|60-79"``.
    labelled : array-like of shape (n_studies,)
        Whether each study already has a label.
    site : str
    n_required : int or None
        Labelled cases needed (from :func:`~core.metrics.sample_size.required_sample_size`).
    random_state : int, default 0

    Returns
    -------
    SamplingPlan

    Examples
    --------
    >>> plan = sampling_plan(["a", "b", "c", "d"], ["x", "x", "y", "y"], [True, False, False, False],
    ...                      site="north", n_required=3)
    >>> plan.n_to_label, [a.n_selected for a in plan.allocations]
    (2, [1, 1])
    """
    ids = np.asarray(study_ids, dtype=str)
    keys = np.asarray(strata, dtype=str)
    done = np.asarray(labelled, dtype=bool)
    if not ids.shape == keys.shape == done.shape or ids.ndim != 1:
        raise BadInputError(
            f"study_ids, strata and labelled must be 1-d of equal length: {ids.shape}, {keys.shape}, {done.shape}"
        )
    n_labelled = int(done.sum())
    levels = sorted(set(keys.tolist()))
    if n_required is None:
        empty = tuple(_allocation(level, keys, done, 0) for level in levels)
        return SamplingPlan(site, None, n_labelled, 0, 0, empty, ())
    quota = _quotas(levels, keys, done, n_required)
    rng = np.random.default_rng(random_state)
    selected: list[str] = []
    allocs: list[StratumAllocation] = []
    for level in levels:
        candidates = np.sort(ids[(keys == level) & ~done])
        picked = candidates[rng.permutation(candidates.size)[: quota[level]]] if candidates.size else candidates
        selected.extend(sorted(picked.tolist()))
        allocs.append(_allocation(level, keys, done, int(picked.size)))
    shortfall = max(0, n_required - n_labelled - len(selected))
    return SamplingPlan(site, n_required, n_labelled, len(selected), shortfall, tuple(allocs), tuple(selected))


def _allocation(
    level: str, keys: npt.NDArray[np.str_], done: npt.NDArray[np.bool_], n_selected: int
) -> StratumAllocation:
    in_level = keys == level
    return StratumAllocation(
        stratum=level,
        n_studies=int(in_level.sum()),
        n_labelled=int((in_level & done).sum()),
        n_candidates=int((in_level & ~done).sum()),
        n_selected=n_selected,
    )


def _quotas(
    levels: list[str], keys: npt.NDArray[np.str_], done: npt.NDArray[np.bool_], n_required: int
) -> dict[str, int]:
    """Studies to select per stratum: proportional targets, then any remaining need where studies remain."""
    total = keys.size
    if total == 0:
        return {}
    shares = {level: n_required * float((keys == level).sum()) / total for level in levels}
    target = {level: int(np.floor(v)) for level, v in shares.items()}
    # Largest remainder: hand out what flooring lost, biggest fractions first (ties by name).
    for level in sorted(levels, key=lambda lv: (-(shares[lv] - target[lv]), lv))[: n_required - sum(target.values())]:
        target[level] += 1
    free = {level: int(((keys == level) & ~done).sum()) for level in levels}
    have = {level: int(((keys == level) & done).sum()) for level in levels}
    quota = {level: min(free[level], max(0, target[level] - have[level])) for level in levels}
    missing = n_required - int(done.sum()) - sum(quota.values())
    for level in sorted(levels, key=lambda lv: (-(free[lv] - quota[lv]), lv)):
        if missing <= 0:
            break
        extra = min(missing, free[level] - quota[level])
        quota[level] += extra
        missing -= extra
    return quota
