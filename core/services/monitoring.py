"""Drift monitoring use cases: image features, streams from the store, monitors, alerts and their hooks.

* :func:`refresh_features` caches image statistics and penultimate-layer embeddings of the
  studies the serving model scored (one transaction per batch; derived data, not audited).
* :func:`compute_monitoring` reads the store and runs every stream's detectors (read-only).
* :func:`run_monitoring` does both, then turns new alarms and novelties into alerts and groups
  them into incidents, each with its audit entry, in one transaction, and tells the subscribed
  hooks after it commits.
* :func:`acknowledge_incident` and :func:`resolve_incident` move an incident and every unresolved
  alert in it along open -> acknowledged -> resolved with who and why, in one transaction;
  :func:`acknowledge_alert` and :func:`resolve_alert` move one alert. Resolving an alert restarts
  that stream's chart after the alarm.

An ongoing change raises one alert: while a stream has an unresolved alert, later alarms on it
are the same change, and a resolved alarm is never raised again (its key is stored). Alerts of
one site and family that start within ``MonitoringConfig.incident_window_days`` of an unresolved
incident's first alarm are that incident's evidence (:mod:`core.drift.incidents`).
"""

from __future__ import annotations

import base64
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Final

import numpy as np

from core.drift.calibration import Calibration
from core.drift.features import EmbeddingReference
from core.drift.incidents import DEFAULT_WINDOW_DAYS, IncidentFamily, check_window_days, stream_title
from core.drift.monitor import MonitorSettings, StreamReport, chart_calibrations, monitor_stream
from core.drift.novelty import NOVELTY_ATTRIBUTES, NoveltyReport, detect_novelty
from core.drift.sitestreams import STREAMS, Reference, SiteObservations, build_site_streams
from core.drift.streams import StreamKind, Windowing, WindowKind
from core.errors import BadInputError
from core.models.loading import LoadedModel
from core.services import monitoring_alerts as alerting
from core.services import prediction
from core.services.monitoring_alerts import (
    ALERT_HOOKS,
    AlertEvent,
    AlertHook,
    AlertHooks,
    acknowledge_alert,
    actor_of,
    alert_to_dict,
    list_alerts,
    resolve_alert,
)
from core.services.monitoring_features import refresh_features
from core.services.monitoring_incidents import (
    Incident,
    acknowledge_incident,
    incident_to_dict,
    incidents_with_alerts,
    list_incidents,
    resolve_incident,
)
from core.store import alerts, deployments, feedback, incidents, model_versions, sites
from core.store import monitoring as monitoring_store
from core.store.alerts import AlertRecord, AlertStatus
from core.store.engine import SessionFactory
from core.store.incidents import IncidentRecord, IncidentStatus
from core.store.monitoring import MonitoredStudy
from core.store.monitoring import monitored_studies as read_studies
from core.types import FloatArray

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from core.services.permissions import SignedInUser

__all__ = [
    "ALERT_HOOKS",
    "NOVELTY_ATTRIBUTES",
    "STREAMS",
    "AlertRecord",
    "AlertStatus",
    "Incident",
    "IncidentFamily",
    "IncidentRecord",
    "IncidentStatus",
    "StreamReport",
    "DEFAULT_DISTANCE_WINDOW",
    "DEFAULT_WINDOWING",
    "AlertEvent",
    "AlertHook",
    "AlertHooks",
    "DEFAULT_CONFIG",
    "MonitoringConfig",
    "MonitoringRun",
    "MonitoringView",
    "SiteMonitoring",
    "acknowledge_alert",
    "acknowledge_incident",
    "alert_to_dict",
    "compute_monitoring",
    "data_version",
    "incident_to_dict",
    "list_alerts",
    "list_incidents",
    "refresh_features",
    "resolve_alert",
    "resolve_incident",
    "run_monitoring",
    "stream_title",
]

#: Windows of the mean and rate streams: one calendar day (standardized by its study count).
DEFAULT_WINDOWING: Final = Windowing(WindowKind.DAY)
#: Windows of the distance streams (PSI, KS, AUC): distances need a fixed sample size.
DEFAULT_DISTANCE_WINDOW: Final = Windowing(WindowKind.STUDIES, 25)


@dataclass(frozen=True, slots=True)
class MonitoringConfig:
    """How monitoring runs: detector settings, the two windowings, the feature batch size, the incident window.

    Attributes
    ----------
    incident_window_days : int, default 7
        A new alert joins an unresolved incident of its site and family when it is at most this
        many days from the incident's first alarm (:mod:`core.drift.incidents`); at least 0.

    Raises
    ------
    BadInputError
        ``incident_window_days`` is negative or not a whole number.
    """

    settings: MonitorSettings = field(default_factory=MonitorSettings)
    windowing: Windowing = DEFAULT_WINDOWING
    distance_window: Windowing = DEFAULT_DISTANCE_WINDOW
    batch_size: int = 16
    incident_window_days: int = DEFAULT_WINDOW_DAYS

    def __post_init__(self) -> None:
        check_window_days(self.incident_window_days)

    def window_of(self, kind: StreamKind) -> Windowing:
        """The windowing a stream of ``kind`` uses."""
        return self.distance_window if kind is StreamKind.DISTANCE else self.windowing


#: The defaults: daily windows, 25-study distance windows, ARL0 5000 per chart.
DEFAULT_CONFIG: Final = MonitoringConfig()


# --- reading the store and monitoring -----------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class SiteMonitoring:
    """Every stream of one site, its novelty events and what could not be built.

    Attributes
    ----------
    n_studies : int
        Studies stored for the site; ``n_undated`` of them have no StudyDate and are left out.
    missing : dict of str to str
        Streams not built, with the reason (no labels yet, no benchmark, ...).
    model_version : str
        The version serving the site, whose scores and features are monitored there (its
        reference is the same version's benchmark scores).
    """

    site: str
    n_studies: int
    n_undated: int
    reports: tuple[StreamReport, ...]
    missing: dict[str, str]
    novelty: NoveltyReport
    model_version: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class MonitoringView:
    """Everything the drift page and ``vigil drift`` show, computed from the store alone.

    Attributes
    ----------
    alerts : tuple of AlertRecord
        Every alert of the monitored sites, newest alarm first.
    incidents : tuple of Incident
        Every incident of the monitored sites with its alerts, newest first alarm first: what a
        CMIO counts and handles.
    """

    model_version: str
    config: MonitoringConfig
    calibrations: dict[str, Calibration]
    sites: tuple[SiteMonitoring, ...]
    alerts: tuple[AlertRecord, ...]
    labels_available: bool
    incidents: tuple[Incident, ...] = ()

    def unresolved_incidents(self, site: str | None = None) -> tuple[Incident, ...]:
        """Open and acknowledged incidents, of one site when given."""
        return tuple(i for i in self.incidents if not i.is_resolved and (site is None or i.site == site))


@dataclass(frozen=True, slots=True, eq=False)
class MonitoringRun:
    """A monitoring run: the view after it, the alerts it raised, the features it cached, the incidents it opened."""

    view: MonitoringView
    raised: tuple[AlertRecord, ...]
    features_computed: int
    opened: tuple[Incident, ...] = ()


@dataclass(frozen=True, slots=True, eq=False)
class _Read:
    model_version: str  # the fleet-wide version
    versions: dict[str, str]  # site name -> the version serving it
    studies: dict[str, list[MonitoredStudy]]  # each read with the version serving its site
    benchmarks: dict[str, list[MonitoredStudy]]  # version name -> the benchmark studies as it scored them
    labels: dict[int, int] | None
    feedback: dict[int, list[bool]] | None
    alerts: list[AlertRecord]
    incidents: list[IncidentRecord]


def data_version(session_factory: SessionFactory) -> str:
    """Changes whenever a monitoring run could give another answer (key caches on it)."""
    with session_factory() as session:
        return monitoring_store.data_version(session)


def compute_monitoring(
    session_factory: SessionFactory, *, site: str | None = None, config: MonitoringConfig = DEFAULT_CONFIG
) -> MonitoringView:
    """Run every monitor over the store, without writing anything.

    Parameters
    ----------
    site : str, optional
        One registered site; every deployment (non-benchmark) site when None.

    Raises
    ------
    UnknownSiteError
        ``site`` is not registered.
    BadInputError
        No model version is serving.
    """
    read = _read(session_factory, site)
    # Each site is compared with the benchmark as scored by the same version: a site switched to a
    # challenger is never measured against the champion's reference.
    references = {version: _reference(bench) for version, bench in read.benchmarks.items()}
    per_site = tuple(
        _monitor_site(name, studies, references[read.versions[name]], read, config=config)
        for name, studies in read.studies.items()
    )
    return MonitoringView(
        model_version=read.model_version,
        config=config,
        calibrations=chart_calibrations(config.settings),
        sites=per_site,
        alerts=tuple(read.alerts),
        labels_available=read.labels is not None,
        incidents=tuple(incidents_with_alerts(read.incidents, read.alerts)),
    )


def _read(session_factory: SessionFactory, site: str | None) -> _Read:
    with session_factory() as session:
        mv = model_versions.serving(session)
        if mv is None:
            raise BadInputError("no model version is serving: run `vigil init` to register the bundled model")
        registered = sites.list_sites(session)
        targets = [sites.get_site(session, site)] if site is not None else [s for s in registered if not s.is_benchmark]
        bench = next((s for s in registered if s.is_benchmark), None)
        serving = deployments.versions_by_site(session)
        served = {s.name: serving.get(s.name) or mv for s in targets}
        return _Read(
            model_version=mv.version,
            versions={name: v.version for name, v in served.items()},
            studies={s.name: read_studies(session, served[s.name].id, site_id=s.id) for s in targets},
            benchmarks={
                v.version: read_studies(session, v.id, site_id=bench.id) if bench is not None else []
                for v in served.values()
            },
            labels=_labels(session),
            feedback=_feedback(session),
            alerts=[a for s in targets for a in alerts.list_alerts(session, site_id=s.id)],
            incidents=[i for s in targets for i in incidents.list_incidents(session, site_id=s.id)],
        )


def _labels(session: Session) -> dict[int, int] | None:
    """Settled labels by study id, or None when this build has no outcome store (issue 5)."""
    try:
        from core.services.outcomes import resolve_labels
        from core.store.outcomes import list_outcomes
    except ImportError:
        return None
    resolution = resolve_labels(list_outcomes(session), feedback.list_feedback(session, current_only=True))
    return {study_id: int(r.label) for study_id, r in resolution.labels.items()}


def _feedback(session: Session) -> dict[int, list[bool]]:
    out: dict[int, list[bool]] = defaultdict(list)
    for fb in feedback.list_feedback(session, current_only=True):
        out[fb.study_id].append(fb.agrees)
    return dict(out)


def _floats(values: Sequence[float | bool | None]) -> FloatArray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _embeddings(studies: Sequence[MonitoredStudy]) -> FloatArray | None:
    vectors = [
        None if s.embedding_b64 is None else np.frombuffer(base64.b64decode(s.embedding_b64), "<f4") for s in studies
    ]
    dims = {v.size for v in vectors if v is not None}
    if len(dims) != 1:
        return None  # none cached yet (or a model change mixed sizes: no distance is meaningful)
    d = dims.pop()
    return np.stack([np.full(d, np.nan) if v is None else v.astype(np.float64) for v in vectors])


def _reference(bench: Sequence[MonitoredStudy]) -> Reference | None:
    if not bench:
        return None
    emb = _embeddings(bench)
    rows = emb[np.all(np.isfinite(emb), axis=1)] if emb is not None else np.zeros((0, 0))
    return Reference(
        scores=_floats([s.score for s in bench]),
        embeddings=EmbeddingReference.fit(rows) if rows.shape[0] >= 2 else None,
    )


def _observations(name: str, studies: Sequence[MonitoredStudy], read: _Read) -> SiteObservations:
    dates = np.array([s.study_date for s in studies], dtype="datetime64[D]")
    labels = None if read.labels is None else _floats([read.labels.get(s.study_id) for s in studies])
    fb_dates: list[np.datetime64] = []
    fb_values: list[float] = []
    for s, d in zip(studies, dates, strict=True):
        for agrees in (read.feedback or {}).get(s.study_id, []):
            fb_dates.append(d)
            fb_values.append(0.0 if agrees else 1.0)
    return SiteObservations(
        site=name,
        dates=dates,
        scores=_floats([s.score for s in studies]),
        predicted=_floats([s.label for s in studies]),
        intensity_mean=_floats([s.intensity_mean for s in studies]),
        intensity_spread=_floats([s.intensity_spread for s in studies]),
        noise=_floats([s.noise for s in studies]),
        embeddings=_embeddings(studies),
        labels=labels,
        feedback_dates=np.array(fb_dates, dtype="datetime64[D]") if read.feedback is not None else None,
        disagreement=np.array(fb_values) if read.feedback is not None else None,
    )


def _restarts(records: Sequence[AlertRecord]) -> dict[tuple[str, str], list[date]]:
    """Alarm dates of resolved stream alerts, by (stream, window): the charts restart after them."""
    out: dict[tuple[str, str], list[date]] = defaultdict(list)
    for a in records:
        if a.status is AlertStatus.RESOLVED and a.detector != "novelty":
            out[(a.stream, a.window)].append(a.alarm_date)
    return out


def _monitor_site(
    name: str,
    studies: Sequence[MonitoredStudy],
    reference: Reference | None,
    read: _Read,
    *,
    config: MonitoringConfig,
) -> SiteMonitoring:
    dated = [s for s in studies if s.study_date is not None]
    obs = _observations(name, dated, read)
    streams, missing = build_site_streams(
        obs, reference, windowing=config.windowing, distance_window=config.distance_window
    )
    restarts = _restarts([a for a in read.alerts if a.site == name])
    reports = tuple(
        monitor_stream(
            s,
            settings=config.settings,
            restarts=restarts.get((s.name, config.window_of(s.kind).label), []),
        )
        for s in streams
    )
    novelty = detect_novelty(
        [s.study_uid for s in dated],
        [s.study_date for s in dated if s.study_date is not None],
        {attr: [str(getattr(s, attr)) for s in dated] for attr in NOVELTY_ATTRIBUTES},
        warmup=config.settings.novelty_warmup,
    )
    return SiteMonitoring(
        name, len(studies), len(studies) - len(dated), reports, missing, novelty, model_version=read.versions[name]
    )


# --- a run: features, monitors, alerts ----------------------------------------------------------


def run_monitoring(  # noqa: PLR0913 - keyword-only; load is the per-site form of model and lock
    session_factory: SessionFactory,
    *,
    model: LoadedModel | None,
    by: SignedInUser | str,
    now: Callable[[], datetime],
    site: str | None = None,
    config: MonitoringConfig = DEFAULT_CONFIG,
    lock: threading.Lock | None = None,
    hooks: AlertHooks = ALERT_HOOKS,
    load: Callable[[str], tuple[LoadedModel, threading.Lock | None]] | None = None,
) -> MonitoringRun:
    """Cache missing image features, run every monitor, raise the new alerts and group them into incidents.

    Alerts, incidents and their audit entries are written in one transaction.

    Parameters
    ----------
    model : LoadedModel or None
        A model whose image features of the studies it scored are cached first; None uses the
        features cached so far.
    load : callable, optional
        Given a version's name, its loaded model and lock: each version serving a site in scope
        is loaded with it and caches the features of the studies it scored (a site switched to
        its own version is monitored with that version's features).
    by : SignedInUser or str
        A signed-in person (needs ``view_performance``), or an unattended actor such as
        ``"cli:alice"`` or ``"system"``.
    hooks : AlertHooks
        Told about each raised alert (with its incident) after the transaction commits.

    Returns
    -------
    MonitoringRun
    """
    actor = actor_of(by, handle=False)
    computed = 0
    if model is not None:
        computed = refresh_features(session_factory, model, site=site, batch_size=config.batch_size, lock=lock, now=now)
    if load is not None:
        for version in _versions_in_scope(session_factory, site):
            loaded, version_lock = load(version)
            computed += _cache_version(
                session_factory, loaded, version_lock, site=site, config=config, actor=actor, now=now
            )
    view = compute_monitoring(session_factory, site=site, config=config)
    candidates = [
        c
        for s in view.sites
        for c in alerting.candidates_for_site(
            s.site,
            s.reports,
            s.novelty,
            settings=config.settings,
            calibrations=view.calibrations,
            windowing=config.windowing,
            distance_window=config.distance_window,
        )
    ]
    names = {s.site for s in view.sites}
    raised = alerting.raise_alerts(
        session_factory,
        candidates,
        actor=actor,
        now=now,
        window_days=config.incident_window_days,
        sites_grouped=names,
    )
    for record in raised.alerts:
        hooks.notify(AlertEvent("raised", record, raised.incident_of(record)))
    if raised.alerts or raised.opened:
        view = _refreshed(session_factory, view, names)
    opened_ids = {i.id for i in raised.opened}
    opened = tuple(sorted((i for i in view.incidents if i.id in opened_ids), key=lambda i: i.id))
    return MonitoringRun(view=view, raised=raised.alerts, features_computed=computed, opened=opened)


def _cache_version(  # noqa: PLR0913 - keyword-only; the run's scope and who records
    session_factory: SessionFactory,
    model: LoadedModel,
    lock: threading.Lock | None,
    *,
    site: str | None,
    config: MonitoringConfig,
    actor: str,
    now: Callable[[], datetime],
) -> int:
    """Give a version serving a site in scope its benchmark reference, then cache its features.

    A version serving some sites only has not scored the benchmark (``prediction.score_reference``):
    without those scores its sites' score and embedding streams would have no reference. Features
    are cached for the sites in scope and, when one site is, for the benchmark too.
    """
    prediction.score_reference(session_factory, model, batch_size=config.batch_size, actor=actor, now=now, lock=lock)
    with session_factory() as session:
        bench = sites.benchmark_site(session)
    scopes = [site] if site is None or bench is None else [site, bench.name]
    return sum(
        refresh_features(session_factory, model, site=scope, batch_size=config.batch_size, lock=lock, now=now)
        for scope in dict.fromkeys(scopes)
    )


def _versions_in_scope(session_factory: SessionFactory, site: str | None) -> list[str]:
    """The names of the versions serving ``site`` (every site when None), each once."""
    with session_factory() as session:
        serving = deployments.versions_by_site(session)
    wanted = [serving.get(site)] if site is not None else list(serving.values())
    return list(dict.fromkeys(v.version for v in wanted if v is not None))


def _refreshed(session_factory: SessionFactory, view: MonitoringView, names: set[str]) -> MonitoringView:
    """``view`` with the alerts and incidents of its sites read again (after a run wrote some)."""
    with session_factory() as session:
        fresh = [a for a in alerts.list_alerts(session) if a.site in names]
        records = [i for i in incidents.list_incidents(session) if i.site in names]
    return MonitoringView(
        model_version=view.model_version,
        config=view.config,
        calibrations=view.calibrations,
        sites=view.sites,
        alerts=tuple(fresh),
        labels_available=view.labels_available,
        incidents=tuple(incidents_with_alerts(records, fresh)),
    )
