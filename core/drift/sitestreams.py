"""The streams Vigil watches at one site, built from per-study arrays (pure).

Score streams (mean score, positive rate, PSI and KS against the benchmark's scores), image
streams (intensity mean and spread and noise of the model input, embedding distance to the
benchmark) and, once labels arrive, label streams (AUC, sensitivity, specificity, reader
disagreement). ``core.services.monitoring`` reads the arrays from the store.

Scores and embedding distances are ranked; the three pixel statistics use the self-starting t
(see :mod:`core.drift.streams` for why each).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np

from core.drift.features import EmbeddingReference, ScoreReference, auc
from core.drift.streams import (
    Standardization,
    WindowedStream,
    Windowing,
    distance_stream,
    mean_stream,
    rate_stream,
)
from core.types import FloatArray, IntArray

__all__ = ["StreamGroup", "StreamInfo", "STREAMS", "SiteObservations", "Reference", "build_site_streams"]


class StreamGroup(StrEnum):
    """What a stream watches."""

    SCORE = "score"
    IMAGE = "image"
    LABEL = "label"


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """How a stream is shown: its title, group and what one value means."""

    name: str
    title: str
    group: StreamGroup
    meaning: str


def _info(name: str, title: str, group: StreamGroup, meaning: str) -> tuple[str, StreamInfo]:
    return name, StreamInfo(name, title, group, meaning)


#: Every stream, in display order.
STREAMS: Final[Mapping[str, StreamInfo]] = dict(
    [
        _info("mean_score", "Mean score", StreamGroup.SCORE, "mean model score per window"),
        _info("positive_rate", "Positive rate", StreamGroup.SCORE, "share of studies above the operating threshold"),
        _info("score_psi", "Score PSI vs benchmark", StreamGroup.SCORE, "population stability index of the scores"),
        _info("score_ks", "Score KS vs benchmark", StreamGroup.SCORE, "Kolmogorov-Smirnov distance of the scores"),
        _info("intensity_mean", "Intensity mean", StreamGroup.IMAGE, "mean pixel value of the model input"),
        _info("intensity_spread", "Intensity spread", StreamGroup.IMAGE, "pixel standard deviation of the model input"),
        _info("noise", "Noise estimate", StreamGroup.IMAGE, "robust pixel-noise estimate of the model input"),
        _info(
            "embedding_distance",
            "Embedding distance",
            StreamGroup.IMAGE,
            "RMS z-score of the penultimate-layer embedding against the benchmark's",
        ),
        _info("auc", "AUC", StreamGroup.LABEL, "area under the ROC curve of labelled studies"),
        _info("sensitivity", "Sensitivity", StreamGroup.LABEL, "share of labelled positives the model flags"),
        _info("specificity", "Specificity", StreamGroup.LABEL, "share of labelled negatives the model clears"),
        _info(
            "reader_disagreement", "Reader disagreement", StreamGroup.LABEL, "share of reader feedback that disagrees"
        ),
    ]
)
_MIN_REFERENCE: Final = 20  # benchmark scores needed for PSI / KS


@dataclass(frozen=True, slots=True, eq=False)
class SiteObservations:
    """Per-study arrays of one site, sorted by study date (ties in storage order).

    Attributes
    ----------
    dates : ndarray of shape (n,), datetime64[D]
    scores : ndarray of shape (n,)
        NaN where the model did not score the study.
    predicted : ndarray of shape (n,)
        1 / 0 above / below the operating threshold, NaN where not scored.
    intensity_mean, intensity_spread, noise : ndarray of shape (n,)
        NaN where no image features are cached.
    embeddings : ndarray of shape (n, d) or None
        NaN rows where missing; None when no embedding is cached at all.
    labels : ndarray of shape (n,) or None
        1 / 0 / NaN (unlabelled); None when no outcome store is available.
    feedback_dates, disagreement : ndarrays of shape (f,) or None
        One entry per current reader feedback (its study's date, 1 when the reader disagreed).
    """

    site: str
    dates: np.ndarray
    scores: FloatArray
    predicted: FloatArray
    intensity_mean: FloatArray
    intensity_spread: FloatArray
    noise: FloatArray
    embeddings: FloatArray | None
    labels: FloatArray | None
    feedback_dates: np.ndarray | None
    disagreement: FloatArray | None


@dataclass(frozen=True, slots=True, eq=False)
class Reference:
    """The benchmark site's scores and embedding summary that distances are measured against."""

    scores: FloatArray
    embeddings: EmbeddingReference | None


def build_site_streams(
    obs: SiteObservations, ref: Reference | None, *, windowing: Windowing, distance_window: Windowing
) -> tuple[list[WindowedStream], dict[str, str]]:
    """Build every stream that the data allow, and say why the others are missing.

    Parameters
    ----------
    obs : SiteObservations
    ref : Reference or None
        None when there is no benchmark site (no distance streams then).
    windowing : Windowing
        Windows of the MEAN and RATE streams.
    distance_window : Windowing
        Windows of N studies for PSI, KS and AUC.

    Returns
    -------
    streams : list of WindowedStream
        In :data:`STREAMS` order.
    missing : dict of str to str
        Stream name to the reason it was not built.
    """
    streams = [
        mean_stream("mean_score", obs.dates, obs.scores, windowing),
        rate_stream("positive_rate", obs.dates, obs.predicted, windowing),
        *(
            mean_stream(name, obs.dates, getattr(obs, name), windowing, standardization=Standardization.STUDENT)
            for name in ("intensity_mean", "intensity_spread", "noise")
        ),
    ]
    missing: dict[str, str] = {}
    streams += _reference_streams(obs, ref, windowing, distance_window, missing)
    streams += _label_streams(obs, windowing, distance_window, missing)
    order = list(STREAMS)
    return sorted(streams, key=lambda s: order.index(s.name)), missing


def _reference_streams(
    obs: SiteObservations,
    ref: Reference | None,
    windowing: Windowing,
    distance_window: Windowing,
    missing: dict[str, str],
) -> list[WindowedStream]:
    out: list[WindowedStream] = []
    if ref is None or ref.embeddings is None or obs.embeddings is None:
        missing["embedding_distance"] = "no benchmark embeddings or no embeddings at this site yet"
    else:
        distances = ref.embeddings.distance(obs.embeddings)
        out.append(mean_stream("embedding_distance", obs.dates, distances, windowing))
    reference = ref.scores[np.isfinite(ref.scores)] if ref is not None else np.zeros(0)
    if reference.size < _MIN_REFERENCE:
        reason = f"needs at least {_MIN_REFERENCE} benchmark scores, has {reference.size}"
        missing["score_psi"] = missing["score_ks"] = reason
        return out
    scored = np.isfinite(obs.scores)
    dates, scores = obs.dates[scored], obs.scores[scored]

    prepared = ScoreReference.fit(reference)  # once: thousands of windows compare with it

    def window_psi(idx: IntArray) -> float:
        return prepared.psi(scores[idx])

    def window_ks(idx: IntArray) -> float:
        return prepared.ks(scores[idx])

    out.append(distance_stream("score_psi", dates, distance_window, window_psi))
    out.append(distance_stream("score_ks", dates, distance_window, window_ks))
    return out


def _label_streams(
    obs: SiteObservations, windowing: Windowing, distance_window: Windowing, missing: dict[str, str]
) -> list[WindowedStream]:
    out: list[WindowedStream] = []
    if obs.labels is None:
        for name in ("auc", "sensitivity", "specificity"):
            missing[name] = "no outcome store: label streams start once labels arrive"
    else:
        pos, neg = obs.labels == 1, obs.labels == 0
        out.append(rate_stream("sensitivity", obs.dates[pos], obs.predicted[pos], windowing))
        out.append(rate_stream("specificity", obs.dates[neg], 1.0 - obs.predicted[neg], windowing))
        both = (pos | neg) & np.isfinite(obs.scores)
        y, s = obs.labels[both], obs.scores[both]

        def window_auc(idx: IntArray) -> float:
            if np.unique(y[idx]).size < 2:
                return float("nan")  # one class in the window: undefined, skipped and counted
            return auc(y[idx], s[idx])

        out.append(distance_stream("auc", obs.dates[both], distance_window, window_auc))
    if obs.feedback_dates is None or obs.disagreement is None:
        missing["reader_disagreement"] = "no reader feedback store"
    else:
        out.append(rate_stream("reader_disagreement", obs.feedback_dates, obs.disagreement, windowing))
    return out
