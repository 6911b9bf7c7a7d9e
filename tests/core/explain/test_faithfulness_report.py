"""Trust levels and sentences follow the stated rules; reports survive JSON."""

from __future__ import annotations

import json
import math

import pytest

from core.audit.chain import canonical_json
from core.explain.report import MethodFigures, TrustLevel, TrustReport, trust_level, trust_sentence
from core.explain.result import ExplainMethod

NAN = float("nan")


def _figs(
    *, hits: int = 9, rho: float = 0.1, deletion: float = 0.2, insertion: float = 0.7, n: int = 12
) -> MethodFigures:
    return MethodFigures(
        method=ExplainMethod.GRADIENTSHAP,
        n_cases=n,
        n_hits=hits,
        n_flat=0,
        pointing_hit_rate=hits / n if n else NAN,
        pointing_chance=0.05,
        deletion_auc=deletion,
        deletion_auc_random=0.4,
        insertion_auc=insertion,
        insertion_auc_random=0.5,
        randomization_spearman=rho,
    )


@pytest.mark.parametrize(
    ("figs", "level"),
    [
        (_figs(), TrustLevel.SUPPORTED),
        (_figs(rho=0.8), TrustLevel.NOT_SUPPORTED),
        (_figs(rho=0.5), TrustLevel.NOT_SUPPORTED),
        (_figs(deletion=0.45), TrustLevel.LIMITED),
        (_figs(insertion=0.4), TrustLevel.LIMITED),
        (_figs(hits=0), TrustLevel.LIMITED),
        (_figs(rho=NAN), TrustLevel.UNKNOWN),
        (_figs(n=0, hits=0), TrustLevel.UNKNOWN),
    ],
)
def test_trust_level_rules(figs: MethodFigures, level: TrustLevel) -> None:
    # Prepare / Execute / Assert
    assert trust_level(figs) is level


def test_sentences_state_the_figures_they_rest_on() -> None:
    # Prepare / Execute
    good = trust_sentence(_figs(), model_version="v9")
    bad = trust_sentence(_figs(rho=0.83), model_version="v9")
    meh = trust_sentence(_figs(deletion=0.45), model_version="v9")

    # Assert
    assert good.startswith("GradientShap is supported for model v9") and "9 of 12" in good and "5.0%" in good
    assert bad.startswith("Do not rely on GradientShap") and "0.83" in bad
    assert meh.startswith("Use GradientShap with caution") and "does not change the score faster" in meh
    assert all(s.count(".") >= 1 and s.endswith(".") for s in (good, bad, meh))


def test_report_round_trips_through_canonical_json_with_nan() -> None:
    # Prepare
    report = TrustReport("v9", (_figs(), _figs(n=0, hits=0, rho=NAN)), {"steps": 20})

    # Execute
    text = canonical_json(report.to_dict())
    back = TrustReport.from_dict(json.loads(text))

    # Assert
    assert back.model_version == "v9" and back.params == {"steps": 20}
    assert back.methods[0] == report.methods[0]
    assert math.isnan(back.methods[1].randomization_spearman)
    assert json.loads(text)["methods"][0]["trust"] == "supported"


def test_missing_method_says_not_checked() -> None:
    # Prepare
    report = TrustReport("v9", (_figs(),), {})

    # Execute / Assert
    assert report.figures(ExplainMethod.GRADCAM) is None
    assert report.sentence(ExplainMethod.GRADCAM) == "Grad-CAM was not checked for model v9."


def test_maps_erased_by_randomization_pass_the_sanity_check() -> None:
    # Prepare: every randomized Grad-CAM map went flat, so no rank correlation is defined.
    figs = MethodFigures(ExplainMethod.GRADCAM, 4, 3, 0, 0.75, 0.01, 0.2, 0.4, 0.7, 0.5, NAN, n_random_flat=4)

    # Execute
    sentence = trust_sentence(figs, model_version="v9")

    # Assert
    assert figs.sanity_passed is True and trust_level(figs) is TrustLevel.SUPPORTED
    assert "erased the map in 4 of 4 cases" in sentence
