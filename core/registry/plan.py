"""The change-control plan (PCCP): which modifications are pre-authorised and what evidence a challenger needs.

A plan is a small TOML file (``default_plan.toml`` beside this module is Vigil's own), read into
frozen dataclasses. Every key is checked: an unknown key is refused, so that a typo such as
``site_auc_margn`` cannot leave a criterion at a looser default unnoticed. The plan's SHA-256 over
the exact file bytes travels with every gate decision.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from core.errors import ChangePlanError, UnusablePathError
from core.files import FileTooLargeError, read_regular_file
from core.types import JSONObject, JSONValue

__all__ = [
    "DEFAULT_PLAN_PATH",
    "EXPLANATION_VERDICTS",
    "MAX_PLAN_BYTES",
    "PREAUTHORISABLE",
    "AcceptanceCriteria",
    "ChangePlan",
    "InsufficientSitePolicy",
    "Modification",
    "parse_plan",
    "read_plan",
]

#: Vigil's committed default plan.
DEFAULT_PLAN_PATH: Final = Path(__file__).with_name("default_plan.toml")

#: A plan is a page of settings; anything bigger is not a plan.
MAX_PLAN_BYTES: Final = 1024 * 1024


class Modification(StrEnum):
    """A kind of change between two model versions."""

    RETRAIN = "retrain"
    RECALIBRATE = "recalibrate"
    THRESHOLD = "threshold"
    ARCHITECTURE = "architecture"
    PREPROCESSING = "preprocessing"
    INTENDED_USE = "intended_use"
    LABELS = "labels"


#: The only kinds a plan may pre-authorise; the others always need a new submission.
PREAUTHORISABLE: Final = frozenset({Modification.RETRAIN, Modification.RECALIBRATE, Modification.THRESHOLD})


class InsufficientSitePolicy(StrEnum):
    """What a site with too few positives or negatives to judge does to the gate."""

    FAIL = "fail"
    SKIP = "skip"


#: An explanation report's verdicts, strongest first: core.explain.report.TrustLevel's values, named
#: here so that reading a plan does not import the explanation stack (torch, captum).
EXPLANATION_VERDICTS: Final = ("supported", "limited", "not supported", "unknown")

# Requiring "not supported" or "unknown" would require nothing.
_EXPLANATION_LEVELS: Final = EXPLANATION_VERDICTS[:2]


@dataclass(frozen=True, slots=True)
class AcceptanceCriteria:
    """What a challenger must show on the locked hold-out.

    Attributes
    ----------
    site_auc_margin : float
        δ in (0, 0.5): at every site, the lower CI bound of challenger AUC − champion AUC must be > −δ.
    overall_auc_margin : float
        In [0, 0.5): the same test on all hold-out studies.
    sensitivity_margin : float
        In [0, 1): the lower bound of the paired (Newcombe) CI of challenger − champion sensitivity,
        each at its own threshold, must lie above −margin.
    specificity_margin : float
        In [0, 1): the same on the negatives, so that a threshold cannot buy sensitivity with
        false positives unnoticed.
    max_ece : float
        τ in (0, 1]: the challenger's expected calibration error must be ≤ τ.
    ece_bins : int
        Equal-width bins of the ECE, 2 to 100.
    confidence : float
        In (0.5, 1): two-sided confidence of the DeLong intervals.
    min_site_positives, min_site_negatives : int
        A site with fewer cases of either class cannot be judged (at least 2: DeLong's variance needs two).
    insufficient_site : InsufficientSitePolicy
        ``fail`` blocks the gate on such a site; ``skip`` leaves it out.
    require_explanation : str
        The explanation report verdict the challenger must hold at least (``"supported"`` or
        ``"limited"``), or ``""`` to not require one.
    """

    site_auc_margin: float = 0.05
    overall_auc_margin: float = 0.02
    sensitivity_margin: float = 0.05
    specificity_margin: float = 0.05
    max_ece: float = 0.10
    ece_bins: int = 10
    confidence: float = 0.95
    min_site_positives: int = 5
    min_site_negatives: int = 5
    insufficient_site: InsufficientSitePolicy = InsufficientSitePolicy.FAIL
    require_explanation: str = "supported"

    def to_dict(self) -> JSONObject:
        """JSON-ready."""
        return {f.name: _json_scalar(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class ChangePlan:
    """A parsed change-control plan.

    Attributes
    ----------
    id, version : str
    description : str
    allowed : frozenset of Modification
        The pre-authorised modifications (a subset of :data:`PREAUTHORISABLE`).
    acceptance : AcceptanceCriteria
    sha256 : str
        Hex SHA-256 of the exact file bytes.
    source : str
        The file's path, or ``"<text>"``.
    """

    id: str
    version: str
    description: str
    allowed: frozenset[Modification]
    acceptance: AcceptanceCriteria
    sha256: str
    source: str

    @property
    def label(self) -> str:
        """``"<id> v<version>"``, as decisions name the plan."""
        return f"{self.id} v{self.version}"

    def to_dict(self) -> JSONObject:
        """JSON-ready; the allowed modifications sorted."""
        return {
            "id": self.id,
            "version": self.version,
            "description": self.description,
            "allowed_modifications": list[JSONValue](sorted(str(m) for m in self.allowed)),
            "acceptance": self.acceptance.to_dict(),
            "sha256": self.sha256,
            "source": self.source,
        }


def _json_scalar(value: object) -> str | int | float:
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, int | float | str):
        return value
    raise TypeError(f"not a plan scalar: {value!r}")  # pragma: no cover - fields are typed


def read_plan(path: Path) -> ChangePlan:
    """Read and check the plan file at ``path``.

    Parameters
    ----------
    path : Path

    Returns
    -------
    ChangePlan
        ``source`` is ``str(path)``.

    Raises
    ------
    ChangePlanError
        The path is missing or not a regular file (a FIFO, device or folder is refused before it
        is opened), is over :data:`MAX_PLAN_BYTES`, or holds a bad plan.
    """
    source = str(path)
    try:
        data = read_regular_file(path, max_bytes=MAX_PLAN_BYTES)
    except FileTooLargeError as exc:
        raise ChangePlanError(source, "", f"{exc.size} bytes, over the {MAX_PLAN_BYTES}-byte limit") from exc
    except UnusablePathError as exc:
        raise ChangePlanError(source, "", exc.reason) from exc
    return parse_plan(data, source=source)


def parse_plan(data: bytes, *, source: str = "<text>") -> ChangePlan:
    """Parse and check a plan from its file bytes.

    Parameters
    ----------
    data : bytes
        UTF-8 TOML, at most :data:`MAX_PLAN_BYTES`.
    source : str, default "<text>"
        Names the plan in error messages and in :attr:`ChangePlan.source`.

    Returns
    -------
    ChangePlan

    Raises
    ------
    ChangePlanError
        Naming the file, the key and the value: not UTF-8, not TOML, a missing table or key, an
        unknown key, a wrong type (a bool is not a number), a value out of range or not finite,
        an unknown or never pre-authorisable modification.
    """
    if len(data) > MAX_PLAN_BYTES:
        raise ChangePlanError(source, "", f"{len(data)} bytes, over the {MAX_PLAN_BYTES}-byte limit")
    doc = _load_toml(data, source)
    _refuse_unknown(source, "", doc, {"plan", "acceptance"})
    plan = _table(doc, "plan", source, required=True)
    _refuse_unknown(source, "plan", plan, {"id", "version", "description", "allowed_modifications"})
    acceptance = _table(doc, "acceptance", source, required=False)
    return ChangePlan(
        id=_string(plan, "plan", "id", source, required=True),
        version=_string(plan, "plan", "version", source, required=True),
        description=_string(plan, "plan", "description", source, required=False),
        allowed=_modifications(plan, source),
        acceptance=_acceptance(acceptance, source),
        sha256=hashlib.sha256(data).hexdigest(),
        source=source,
    )


def _load_toml(data: bytes, source: str) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ChangePlanError(source, "", f"not UTF-8 (byte {exc.start})") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ChangePlanError(source, "", f"not TOML: {exc}") from exc


def _refuse_unknown(source: str, table: str, values: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(set(values) - known)
    if unknown:
        key = f"{table}.{unknown[0]}" if table else unknown[0]
        raise ChangePlanError(source, key, f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")


def _table(doc: Mapping[str, Any], name: str, source: str, *, required: bool) -> Mapping[str, Any]:
    if name not in doc:
        if required:
            raise ChangePlanError(source, f"[{name}]", "missing table")
        return {}
    value = doc[name]
    if not isinstance(value, dict):
        raise ChangePlanError(source, name, f"must be a table, got {_shown(value)}")
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string(table: Mapping[str, Any], prefix: str, key: str, source: str, *, required: bool) -> str:
    where = f"{prefix}.{key}"
    if key not in table:
        if required:
            raise ChangePlanError(source, where, "missing key")
        return ""
    value = table[key]
    if not isinstance(value, str):
        raise ChangePlanError(source, where, f"must be a string, got {_shown(value)} ({type(value).__name__})")
    if required and not value.strip():
        raise ChangePlanError(source, where, f"must not be empty, got {value!r}")
    return value


def _modifications(plan: Mapping[str, Any], source: str) -> frozenset[Modification]:
    where = "plan.allowed_modifications"
    if "allowed_modifications" not in plan:
        raise ChangePlanError(source, where, "missing key")
    values = plan["allowed_modifications"]
    if not isinstance(values, list):
        raise ChangePlanError(source, where, f"must be a list of strings, got {_shown(values)}")
    return frozenset(_modification(v, where, source) for v in values)


def _modification(value: object, where: str, source: str) -> Modification:
    try:
        mod = Modification(value if isinstance(value, str) else repr(value))
    except ValueError:
        choices = ", ".join(sorted(str(m) for m in PREAUTHORISABLE))
        raise ChangePlanError(source, where, f"unknown modification {_shown(value)} (choose from {choices})") from None
    if mod not in PREAUTHORISABLE:
        raise ChangePlanError(
            source, where, f"{str(mod)!r} is always a significant change and cannot be pre-authorised by a plan"
        )
    return mod


# (low, low inclusive, high, high inclusive) of each real-valued criterion.
_REAL_RANGES: Final[dict[str, tuple[float, bool, float, bool]]] = {
    "site_auc_margin": (0.0, False, 0.5, False),
    "overall_auc_margin": (0.0, True, 0.5, False),
    "sensitivity_margin": (0.0, True, 1.0, False),
    "specificity_margin": (0.0, True, 1.0, False),
    "max_ece": (0.0, False, 1.0, True),
    "confidence": (0.5, False, 1.0, False),
}

_INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "ece_bins": (2, 100),
    "min_site_positives": (2, 100_000),
    "min_site_negatives": (2, 100_000),
}


def _acceptance(table: Mapping[str, Any], source: str) -> AcceptanceCriteria:
    _refuse_unknown(source, "acceptance", table, {f.name for f in fields(AcceptanceCriteria)})
    readers: dict[str, Callable[[object, str], object]] = {
        **{name: _real_reader(name, source) for name in _REAL_RANGES},
        **{name: _int_reader(name, source) for name in _INT_RANGES},
        "insufficient_site": lambda v, w: _policy(v, w, source),
        "require_explanation": lambda v, w: _explanation(v, w, source),
    }
    values = {key: readers[key](value, f"acceptance.{key}") for key, value in table.items()}
    return AcceptanceCriteria(**values)  # type: ignore[arg-type]  # each reader returns its field's type


def _real_reader(name: str, source: str) -> Callable[[object, str], object]:
    low, low_in, high, high_in = _REAL_RANGES[name]

    def read(value: object, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ChangePlanError(source, where, f"must be a number, got {_shown(value)} ({type(value).__name__})")
        x = float(value)
        if not math.isfinite(x):
            raise ChangePlanError(source, where, f"must be finite, got {x!r}")
        above = x >= low if low_in else x > low
        below = x <= high if high_in else x < high
        if not (above and below):
            interval = f"{'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"
            raise ChangePlanError(source, where, f"must lie in {interval}, got {x!r}")
        return x

    return read


def _int_reader(name: str, source: str) -> Callable[[object, str], object]:
    low, high = _INT_RANGES[name]

    def read(value: object, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ChangePlanError(source, where, f"must be an integer, got {_shown(value)} ({type(value).__name__})")
        if not low <= value <= high:
            raise ChangePlanError(source, where, f"must be from {low} to {high}, got {value!r}")
        return value

    return read


def _policy(value: object, where: str, source: str) -> InsufficientSitePolicy:
    try:
        return InsufficientSitePolicy(value if isinstance(value, str) else repr(value))
    except ValueError:
        raise ChangePlanError(source, where, f"must be 'fail' or 'skip', got {_shown(value)}") from None


def _explanation(value: object, where: str, source: str) -> str:
    if value == "" or value in _EXPLANATION_LEVELS:
        return str(value)
    choices = ", ".join(repr(c) for c in (*_EXPLANATION_LEVELS, ""))
    raise ChangePlanError(source, where, f"must be one of {choices}, got {_shown(value)}")
