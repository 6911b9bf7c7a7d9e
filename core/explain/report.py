"""The faithfulness and sanity report of one model version, and one plain trust sentence per method.

A :class:`TrustReport` holds, for each explanation method, the figures that
:mod:`core.explain.faithfulness` measured on the cohort's positive cases. :func:`trust_level`
and :func:`trust_sentence` turn them into what the review page shows beside the overlay. The
rules are deliberately simple and stated in the sentence itself, so a reader can check them:

- **sanity** (Adebayo et al., NeurIPS 2018): randomizing the model's top layers must change the
  map. A rank correlation of at least :data:`SANITY_MAX_SPEARMAN` between the maps of the
  trained and the randomized model fails the method, whatever else it scores: such a map shows
  image structure, not what the model learned.
- **faithfulness** (Petsiuk et al., BMVC 2018): deleting the pixels the map ranks highest must
  lower the score faster than deleting them in random order (smaller deletion AUC), and
  inserting them must raise it faster (larger insertion AUC).
- **localization** (Zhang et al., ECCV 2016): the map's peak must hit the lesion more often
  than a peak placed at random would (the chance rate is the lesion's dilated area fraction).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any, Final

from core.errors import BadInputError
from core.explain.result import ExplainMethod
from core.types import JSONObject

__all__ = [
    "SANITY_MAX_SPEARMAN",
    "MethodFigures",
    "TrustLevel",
    "TrustReport",
    "trust_level",
    "trust_sentence",
]

#: A randomization rank correlation at or above this fails the sanity check.
SANITY_MAX_SPEARMAN: Final = 0.5


class TrustLevel(StrEnum):
    """How far the report supports relying on a method's maps for this model version."""

    SUPPORTED = "supported"
    LIMITED = "limited"
    NOT_SUPPORTED = "not supported"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MethodFigures:
    """What the checks measured for one method (means over the positive cases).

    Attributes
    ----------
    method : ExplainMethod
    n_cases : int
        Positive cases with a lesion mask that were explained.
    n_hits : int
        Cases whose map peak fell within ``dilate_px`` of the lesion.
    n_flat : int
        Cases whose map was flat (no evidence anywhere): counted as misses.
    pointing_hit_rate : float
        ``n_hits / n_cases``; NaN without cases.
    pointing_chance : float
        Mean fraction of the image inside the dilated lesion: the hit rate of a random peak.
    deletion_auc, deletion_auc_random : float
        Area under the score-versus-fraction-deleted curve, map order and random order, in [0, 1].
    insertion_auc, insertion_auc_random : float
        The same for insertion into a blurred image.
    randomization_spearman : float
        Mean Spearman rank correlation between |map| of the trained model and of the model
        with randomized top layers, over the cases where both maps vary.
    n_random_flat : int
        Cases whose map became flat (all zero) after randomization while the trained map was
        not: the rank correlation is undefined there, but the map plainly depended on the
        learned weights, so these cases count for the sanity check, not against it.
    """

    method: ExplainMethod
    n_cases: int
    n_hits: int
    n_flat: int
    pointing_hit_rate: float
    pointing_chance: float
    deletion_auc: float
    deletion_auc_random: float
    insertion_auc: float
    insertion_auc_random: float
    randomization_spearman: float
    n_random_flat: int = 0

    @property
    def sanity_passed(self) -> bool | None:
        """Randomization changed the maps; None when undefined (no comparable case)."""
        rho = self.randomization_spearman
        if math.isnan(rho):
            return True if self.n_cases > 0 and self.n_random_flat == self.n_cases - self.n_flat > 0 else None
        return rho < SANITY_MAX_SPEARMAN

    @property
    def deletion_beats_random(self) -> bool:
        """Deleting by the map lowers the score faster than random deletion (False when NaN)."""
        return self.deletion_auc < self.deletion_auc_random

    @property
    def insertion_beats_random(self) -> bool:
        """Inserting by the map raises the score faster than random insertion (False when NaN)."""
        return self.insertion_auc > self.insertion_auc_random

    @property
    def points_better_than_chance(self) -> bool:
        """The hit rate exceeds the chance rate (False when NaN)."""
        return self.pointing_hit_rate > self.pointing_chance

    def to_dict(self) -> JSONObject:
        """JSON-ready figures; NaN becomes None (canonical JSON refuses NaN)."""
        out: JSONObject = {}
        for k, v in asdict(self).items():
            out[k] = str(v) if k == "method" else (None if isinstance(v, float) and math.isnan(v) else v)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MethodFigures:
        """Rebuild from :meth:`to_dict` output (None becomes NaN)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            v = d.get(f.name)
            if f.name == "method":
                values[f.name] = ExplainMethod(str(v))
            elif f.name.startswith("n_"):
                values[f.name] = int(d.get(f.name, 0))  # n_random_flat is absent from early reports
            else:
                values[f.name] = float("nan") if v is None else float(v)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class TrustReport:
    """The report of one model version.

    Attributes
    ----------
    model_version : str
    methods : tuple of MethodFigures
        One per method checked, in :class:`ExplainMethod` order.
    params : dict
        How it was measured: cohort manifest SHA-256, cases, steps, tolerance, seeds,
        randomized layers, each method's options.
    """

    model_version: str
    methods: tuple[MethodFigures, ...]
    params: JSONObject

    def figures(self, method: ExplainMethod) -> MethodFigures | None:
        """The figures of ``method``, or None when it was not checked."""
        return next((m for m in self.methods if m.method is method), None)

    def sentence(self, method: ExplainMethod) -> str:
        """The plain trust sentence of ``method`` (a 'not checked' sentence when absent)."""
        figs = self.figures(method)
        if figs is None:
            return f"{method.label} was not checked for model {self.model_version}."
        return trust_sentence(figs, model_version=self.model_version)

    def to_dict(self) -> JSONObject:
        """JSON-ready report, with each method's level and sentence for readers of the raw JSON."""
        return {
            "model_version": self.model_version,
            "methods": [
                {**m.to_dict(), "trust": str(trust_level(m)), "sentence": self.sentence(m.method)} for m in self.methods
            ],
            "params": self.params,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrustReport:
        """Rebuild from :meth:`to_dict` output."""
        try:
            methods = tuple(MethodFigures.from_dict(m) for m in d["methods"])
            return cls(model_version=str(d["model_version"]), methods=methods, params=dict(d["params"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"not a trust report: {exc!r}") from exc


def trust_level(f: MethodFigures) -> TrustLevel:
    """Apply the module's rules: sanity first, then faithfulness and localization.

    >>> nan = float("nan")
    >>> trust_level(MethodFigures(ExplainMethod.GRADCAM, 0, 0, 0, nan, nan, nan, nan, nan, nan, nan))
    <TrustLevel.UNKNOWN: 'unknown'>
    """
    if f.n_cases == 0 or f.sanity_passed is None:
        return TrustLevel.UNKNOWN
    if not f.sanity_passed:
        return TrustLevel.NOT_SUPPORTED
    if f.deletion_beats_random and f.insertion_beats_random and f.points_better_than_chance:
        return TrustLevel.SUPPORTED
    return TrustLevel.LIMITED


def _pointing_clause(f: MethodFigures) -> str:
    return (
        f"its peak fell on the nodule in {f.n_hits} of {f.n_cases} positive cases "
        f"(a random peak would in {f.pointing_chance:.1%})"
    )


def _faithful_clause(f: MethodFigures) -> str:
    both = f.deletion_beats_random and f.insertion_beats_random
    verb = "changes the score faster than" if both else "does not change the score faster than"
    return (
        f"removing or restoring the regions it highlights {verb} doing so in random order "
        f"(deletion AUC {f.deletion_auc:.2f} vs {f.deletion_auc_random:.2f}, "
        f"insertion AUC {f.insertion_auc:.2f} vs {f.insertion_auc_random:.2f})"
    )


def _randomization_clause(f: MethodFigures) -> str:
    parts = []
    if not math.isnan(f.randomization_spearman):
        parts.append(f"rank correlation {f.randomization_spearman:.2f} after randomizing the top layers")
    if f.n_random_flat:
        parts.append(f"randomizing the top layers erased the map in {f.n_random_flat} of {f.n_cases} cases")
    return "; ".join(parts)


def _unknown_reason(f: MethodFigures) -> str:
    if f.n_cases == 0:
        return "there were no positive cases with a lesion mask"
    if f.n_flat == f.n_cases:
        return "its maps were flat on every case"
    return "the randomization test was undefined (constant maps)"


def trust_sentence(f: MethodFigures, *, model_version: str) -> str:
    """One plain sentence on how far ``f.method``'s maps can be trusted for this model version.

    Examples
    --------
    >>> nan = float("nan")
    >>> trust_sentence(MethodFigures(ExplainMethod.KERNELSHAP, 0, 0, 0, nan, nan, nan, nan, nan, nan, nan),
    ...                model_version="v1")
    'KernelShap could not be checked for model v1: there were no positive cases with a lesion mask.'
    """
    name, level = f.method.label, trust_level(f)
    rho = f.randomization_spearman
    if level is TrustLevel.UNKNOWN:
        return f"{name} could not be checked for model {model_version}: {_unknown_reason(f)}."
    if level is TrustLevel.NOT_SUPPORTED:
        return (
            f"Do not rely on {name} for model {model_version}: its maps barely change when the model's "
            f"top layers are randomized (rank correlation {rho:.2f}), so they show image structure "
            "rather than what the model learned."
        )
    lead = (
        f"{name} is supported for model {model_version}"
        if level is TrustLevel.SUPPORTED
        else f"Use {name} with caution for model {model_version}"
    )
    return (
        f"{lead}: {_pointing_clause(f)}, {_faithful_clause(f)}, and its maps depend on the learned "
        f"weights ({_randomization_clause(f)})."
    )
