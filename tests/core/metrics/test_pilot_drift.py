"""The pilot-drift report on sites whose gaps are known by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import BadInputError
from core.metrics import DriftOptions, GapStatus, pilot_drift_report


def _site(rng: np.random.Generator, n: int, separation: float, prevalence: float = 0.3) -> tuple[np.ndarray, ...]:
    y = (rng.random(n) < prevalence).astype(np.int64)
    s = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + separation * y - 1.0)))
    return y, s


def _cohort(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Benchmark and a close site with separation 2.6; a far site at 1.0; a site whose update halves it."""
    rng = np.random.default_rng(seed)
    parts = {
        "benchmark": _site(rng, 600, 2.6),
        "close": _site(rng, 600, 2.6),
        "far": _site(rng, 400, 1.0),
        "before": _site(rng, 300, 2.6),
        "after": _site(rng, 300, 0.8),
        "tiny": _site(rng, 12, 2.6),
    }
    site = {"before": "updated", "after": "updated"}
    ys, ss, names, software = [], [], [], []
    for key, (y, s) in parts.items():
        ys.append(y)
        ss.append(s)
        names += [site.get(key, key)] * y.size
        software += [{"after": "v5"}.get(key, "v4")] * y.size
    return np.concatenate(ys), np.concatenate(ss), np.array(names), np.array(software)


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    y, s, sites, software = _cohort()
    return pilot_drift_report(
        y,
        s,
        sites,
        benchmark="benchmark",
        threshold=0.5,
        strata={"software": software},
        all_sites=["silent"],
        options=DriftOptions(n_resamples=300),
    )


def _by_site(report):  # type: ignore[no-untyped-def]
    return {s.site: s for s in report.sites}


def test_close_site_is_within_and_far_site_outside(report) -> None:  # type: ignore[no-untyped-def]
    # Execute
    sites = _by_site(report)

    # Assert
    assert sites["close"].status is GapStatus.WITHIN
    assert sites["far"].status is GapStatus.OUTSIDE and sites["far"].gap.lower > 0.03
    assert sites["far"].p_value < 1e-6
    assert report.failing_sites == ("far", "updated") and not report.passed


def test_software_strata_of_the_updated_site_separate(report) -> None:  # type: ignore[no-untyped-def]
    # Execute
    strata = {(r.site, r.level): r for r in report.strata if r.dimension == "software"}

    # Assert: before the update within target, after it far outside, the intervals apart
    before, after = strata[("updated", "v4")], strata[("updated", "v5")]
    assert before.gap.estimate < 0.03 < after.gap.lower
    assert after.gap.lower > before.gap.upper


def test_sites_without_enough_data_show_counts_and_no_numbers(report) -> None:  # type: ignore[no-untyped-def]
    # Execute
    sites = _by_site(report)

    # Assert
    for name, n in [("tiny", 12), ("silent", 0)]:
        summary = sites[name]
        assert summary.status is GapStatus.NOT_ENOUGH_DATA and summary.n_labelled == n
        assert summary.auc is None and summary.gap is None and str(n) in summary.reason
        assert summary.required is not None and summary.required.n_total is not None


def test_benchmark_strata_give_an_estimate_only(report) -> None:  # type: ignore[no-untyped-def]
    # Execute
    bench = [r for r in report.strata if r.site == "benchmark"]

    # Assert
    assert bench and all(r.status is GapStatus.REFERENCE and np.isnan(r.gap.lower) for r in bench)


def test_ci_bound_is_stricter_than_the_point_estimate() -> None:
    # Prepare: a small site whose gap estimate (-0.012) is within 0.02 but whose upper bound (0.025) is not
    rng = np.random.default_rng(3)
    yb, sb = _site(rng, 600, 2.6)
    ys, ss = _site(rng, 60, 2.4)
    y, s = np.r_[yb, ys], np.r_[sb, ss]
    sites = np.array(["benchmark"] * 600 + ["small"] * 60)

    # Execute
    point = pilot_drift_report(
        y, s, sites, benchmark="benchmark", threshold=0.5, options=DriftOptions(max_gap=0.02, n_resamples=100)
    )
    bound = pilot_drift_report(
        y,
        s,
        sites,
        benchmark="benchmark",
        threshold=0.5,
        options=DriftOptions(max_gap=0.02, use_ci_bound=True, n_resamples=100),
    )

    # Assert
    assert point.passed and not bound.passed


def test_single_class_site_is_not_enough_data() -> None:
    # Prepare
    rng = np.random.default_rng(4)
    yb, sb = _site(rng, 300, 2.0)
    y = np.r_[yb, np.zeros(50, dtype=np.int64)]
    s = np.r_[sb, rng.random(50)]
    sites = np.array(["benchmark"] * 300 + ["negatives"] * 50)

    # Execute
    result = pilot_drift_report(y, s, sites, benchmark="benchmark", threshold=0.5)

    # Assert
    only = result.sites[0]
    assert only.status is GapStatus.NOT_ENOUGH_DATA and "0 positive" in only.reason and result.passed


def test_json_has_no_nan_and_lists_every_site(report) -> None:  # type: ignore[no-untyped-def]
    # Execute
    text = json.dumps(report.to_dict(), allow_nan=False)

    # Assert
    data = json.loads(text)
    assert [s["site"] for s in data["sites"]] == ["close", "far", "silent", "tiny", "updated"]
    assert data["benchmark"]["status"] == "reference"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_gap": 0.0}, "max_gap"),
        ({"confidence_level": 1.0}, "confidence_level"),
        ({"min_per_class": 1}, "min_per_class"),
    ],
)
def test_bad_options_are_named(kwargs: dict[str, float], name: str) -> None:
    # Execute / Assert
    with pytest.raises(BadInputError, match=name):
        DriftOptions(**kwargs)  # type: ignore[arg-type]
