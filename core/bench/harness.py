"""Interleaved timing and the result record every benchmark case returns."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from core.types import JSONObject

__all__ = ["BenchResult", "interleaved_medians"]


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One benchmark ratio with its target and its equality guard.

    Attributes
    ----------
    name : str
        What is compared, e.g. ``"inference wrapper / raw forward"``.
    ratio : float
        Median time of the measured side over the median of the baseline (or a counter ratio).
    target : float
        The ratio must be ``<= target``.
    guard : str
        What the equality check asserts; ``guard_ok`` says whether it held.
    absolutes : dict
        Median seconds of each side and anything else worth recording.
    """

    name: str
    ratio: float
    target: float
    guard: str
    guard_ok: bool
    absolutes: JSONObject = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Within target and the guard held."""
        return self.guard_ok and self.ratio <= self.target

    def to_dict(self) -> JSONObject:
        """JSON-ready record."""
        return {
            "name": self.name,
            "ratio": round(self.ratio, 4),
            "target": self.target,
            "passed": self.passed,
            "guard": self.guard,
            "guard_ok": self.guard_ok,
            "absolutes": self.absolutes,
        }


def interleaved_medians(
    fns: Mapping[str, Callable[[], object]], *, rounds: int = 5, warmup: int = 1, sync: Callable[[], None] | None = None
) -> dict[str, float]:
    """Median wall seconds of each callable, timed A, B, A, B, ... after ``warmup`` calls each.

    Parameters
    ----------
    fns : mapping of name to zero-argument callable
    rounds : int
        Interleaved rounds; each callable runs once per round.
    sync : callable, optional
        Called before reading the clock (``torch.cuda.synchronize`` on a GPU).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}
