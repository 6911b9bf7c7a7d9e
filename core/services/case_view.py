"""One case view: everything the review viewer shows for a study, from one service call.

The viewer used to climb into ``core.services`` four times per render (image, explanation,
trust sentences, model version) and the history once more. :func:`open_case_view` gathers them
once: the case header with the model card essentials, the decoded image (modality units), the
stored explanation maps that were asked for, the explanation report's verdict on every method and
the reader's history, and which prior studies the patient has (:mod:`core.services.priors`). The
page renders the returned :class:`CaseView`; only when the reader asks to compare does it call
:func:`open_prior_view` for the prior's film, so a case without a comparison costs what it did.

Safety rule kept here rather than in the UI: a method the explanation report marks "not
supported" is *experimental*; its map is withheld (with the reason) unless it is asked for with
``experimental=True``, so no screen can show it as an equal choice by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from core.errors import BadInputError, OutsideIntendedUseError, PixelsUnreadableError
from core.explain.report import TrustLevel, TrustReport, trust_level
from core.explain.result import ExplainMethod
from core.services import explain_report, explanation, feedback, priors, review
from core.services.explanation import ModelProvider, StoredExplanation
from core.services.permissions import Permission, SignedInUser, require
from core.services.priors import PriorCandidate
from core.services.review import CaseImage, CaseInfo
from core.store.engine import SessionFactory
from core.store.feedback import FeedbackRecord

__all__ = [
    "PRIORS_OFFERED",
    "CaseView",
    "PriorView",
    "TrustVerdict",
    "open_case_view",
    "open_prior_view",
    "trust_verdicts",
]

#: The map a case opens with: the method the report supports for the bundled model.
DEFAULT_METHODS: Final = (ExplainMethod.GRADCAM,)
#: The most recent priors a case offers for comparison: enough to follow a finding over years,
#: few enough for a short list beside the viewer.
PRIORS_OFFERED: Final = 5


@dataclass(frozen=True, slots=True)
class TrustVerdict:
    """What the explanation report says about one method for the scoring model version.

    Attributes
    ----------
    method : ExplainMethod
    level : TrustLevel
        ``unknown`` when no report is stored for the version (or the study was not scored).
    sentence : str
        The report's plain sentence, shown beside the map (never a command to run).
    """

    method: ExplainMethod
    level: TrustLevel
    sentence: str

    @property
    def experimental(self) -> bool:
        """True when the report marks the method "not supported": off the main switch."""
        return self.level is TrustLevel.NOT_SUPPORTED


@dataclass(frozen=True, slots=True, eq=False)
class CaseView:
    """Everything the review viewer shows for one study (frozen: safe to cache across reruns).

    The mappings are plain dicts so that ``st.cache_data`` can pickle the view; treat them as
    read-only.

    Attributes
    ----------
    info : CaseInfo
        Study header, the serving model's prediction and its card essentials.
    image : CaseImage or None
        Pixels of shape (rows, columns), float32, in modality units; None when unreadable.
    image_problem : str or None
        Why ``image`` is None, one sentence for the reader.
    maps : mapping of ExplainMethod to StoredExplanation
        The requested maps that exist (stored, or computed once and stored).
    map_problems : mapping of ExplainMethod to str
        Why a requested map is missing.
    trust : mapping of ExplainMethod to TrustVerdict
        Every method's verdict, in :class:`ExplainMethod` order.
    history : tuple of FeedbackRecord
        The study's feedback, oldest first, as the user may see it.
    priors : tuple of PriorCandidate
        The patient's earlier studies at the same site, most recent first, at most
        :data:`PRIORS_OFFERED` (empty: none).
    """

    info: CaseInfo
    image: CaseImage | None
    image_problem: str | None
    maps: Mapping[ExplainMethod, StoredExplanation]
    map_problems: Mapping[ExplainMethod, str]
    trust: Mapping[ExplainMethod, TrustVerdict]
    history: tuple[FeedbackRecord, ...]
    priors: tuple[PriorCandidate, ...] = ()

    @property
    def study_uid(self) -> str:
        """The study's StudyInstanceUID."""
        return self.info.study.study_uid

    @property
    def main_methods(self) -> tuple[ExplainMethod, ...]:
        """Methods offered on the main switch (every one the report does not mark "not supported")."""
        return tuple(m for m, v in self.trust.items() if not v.experimental)

    @property
    def experimental_methods(self) -> tuple[ExplainMethod, ...]:
        """Methods offered only under the "Experimental" control, with the report's reason."""
        return tuple(m for m, v in self.trust.items() if v.experimental)


@dataclass(frozen=True, slots=True, eq=False)
class PriorView:
    """A prior study as it is shown beside the case (frozen: safe to cache across reruns).

    Attributes
    ----------
    info : CaseInfo
        The prior's header (its date and spacing) and the serving model's prediction for it, if
        it was scored (the score shown with the prior).
    image : CaseImage or None
        Pixels of shape (rows, columns), float32, in modality units; None when unreadable.
    image_problem : str or None
        Why ``image`` is None, one sentence for the reader.
    """

    info: CaseInfo
    image: CaseImage | None
    image_problem: str | None

    @property
    def study_uid(self) -> str:
        """The prior's StudyInstanceUID."""
        return self.info.study.study_uid


def trust_verdicts(report: TrustReport | None, *, version: str | None) -> dict[ExplainMethod, TrustVerdict]:
    """Each method's verdict from ``report`` (``unknown`` for every method when there is none).

    Parameters
    ----------
    report : TrustReport or None
        The newest stored report of the scoring version.
    version : str or None
        The scoring version; None when the study was not scored.
    """
    if report is None:
        why = (
            "This study has no model score, so there is no map to judge."
            if version is None
            else f"No faithfulness report exists for model {version} yet: how far its maps can be trusted is unknown."
        )
        return {m: TrustVerdict(m, TrustLevel.UNKNOWN, why) for m in ExplainMethod}
    verdicts = {}
    for method in ExplainMethod:
        figures = report.figures(method)
        level = TrustLevel.UNKNOWN if figures is None else trust_level(figures)
        verdicts[method] = TrustVerdict(method, level, report.sentence(method))
    return verdicts


def _report(session_factory: SessionFactory, version: str | None) -> TrustReport | None:
    if version is None:
        return None
    try:
        stored = explain_report.latest_report(session_factory, version)
    except BadInputError:  # a version the registry no longer knows: no verdict rather than a crash
        return None
    return None if stored is None else stored.report


def _allowed(
    methods: Sequence[ExplainMethod], trust: Mapping[ExplainMethod, TrustVerdict], *, experimental: bool
) -> tuple[list[ExplainMethod], dict[ExplainMethod, str]]:
    """The methods whose maps may be read, and why the others are withheld."""
    allowed: list[ExplainMethod] = []
    withheld: dict[ExplainMethod, str] = {}
    for method in methods:
        if trust[method].experimental and not experimental:
            withheld[method] = (
                f"the explanation report marks {method.label} not supported for this model; "
                "it is only shown when asked for as experimental."
            )
        else:
            allowed.append(method)
    return allowed, withheld


def _image(session_factory: SessionFactory, user: SignedInUser, study_uid: str) -> tuple[CaseImage | None, str | None]:
    """The study's film and None, or None and why it cannot be shown (one sentence for the reader)."""
    try:
        return review.load_case_image(session_factory, user, study_uid), None
    except PixelsUnreadableError as exc:
        return None, exc.reason


def _maps(
    session_factory: SessionFactory,
    user: SignedInUser,
    info: CaseInfo,
    methods: Sequence[ExplainMethod],
    *,
    model: ModelProvider,
    artifacts_dir: Path,
    now: Callable[[], datetime],
) -> tuple[dict[ExplainMethod, StoredExplanation], dict[ExplainMethod, str]]:
    maps: dict[ExplainMethod, StoredExplanation] = {}
    problems: dict[ExplainMethod, str] = {}
    if info.prediction is None or info.prediction.score is None:
        return maps, dict.fromkeys(methods, "the study has no model score.")
    for method in methods:
        try:
            maps[method] = explanation.explain_case(
                session_factory,
                user,
                info.study.study_uid,
                method=method,
                model=model,
                artifacts_dir=artifacts_dir,
                now=now,
            )
        except PixelsUnreadableError as exc:
            problems[method] = exc.reason
        except (BadInputError, OutsideIntendedUseError) as exc:
            problems[method] = str(exc)
    return maps, problems


def open_case_view(
    session_factory: SessionFactory,
    user: SignedInUser,
    study_uid: str,
    *,
    model: ModelProvider,
    artifacts_dir: Path,
    now: Callable[[], datetime],
    methods: Sequence[ExplainMethod] = DEFAULT_METHODS,
    experimental: bool = False,
) -> CaseView:
    """Everything the viewer shows for ``study_uid``: call once per case view.

    Parameters
    ----------
    model : callable
        The shared model and its lock; called only when a requested map is not stored yet.
    methods : sequence of ExplainMethod, default (Grad-CAM,)
        The maps to include. A map not stored yet is computed once and stored (audited).
    experimental : bool, default False
        Allow methods the explanation report marks "not supported". Without it their maps are
        neither read nor computed, and ``map_problems`` says why.

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    UnknownStudyError
        No such study.
    """
    require(user, Permission.REVIEW_STUDIES)
    info = review.open_case(session_factory, user, study_uid)
    version = info.prediction.model_version if info.prediction is not None else None
    trust = trust_verdicts(_report(session_factory, version), version=version)
    allowed, withheld = _allowed(methods, trust, experimental=experimental)
    image, image_problem = _image(session_factory, user, study_uid)
    maps, problems = _maps(session_factory, user, info, allowed, model=model, artifacts_dir=artifacts_dir, now=now)
    history = feedback.feedback_history(session_factory, user, study_uid)
    prior = priors.prior_studies(session_factory, user, study_uid, limit=PRIORS_OFFERED)
    return CaseView(
        info=info,
        image=image,
        image_problem=image_problem,
        maps=maps,
        map_problems=problems | withheld,
        trust=trust,
        history=tuple(history),
        priors=prior,
    )


def open_prior_view(session_factory: SessionFactory, user: SignedInUser, prior_uid: str) -> PriorView:
    """The prior study's header, score and film, for showing beside a case (one call per prior).

    Raises
    ------
    PermissionDeniedError
        ``user`` may not review studies.
    UnknownStudyError
        No such study.
    """
    require(user, Permission.REVIEW_STUDIES)
    info = review.open_case(session_factory, user, prior_uid)
    image, image_problem = _image(session_factory, user, prior_uid)
    return PriorView(info=info, image=image, image_problem=image_problem)
