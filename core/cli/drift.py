"""``vigil drift`` (run the monitors, print the incidents), ``vigil incident list|ack|resolve`` and ``vigil alert ...``.

An incident (a site's alerts of one family within the incident window, :mod:`core.drift.incidents`)
is what a CMIO handles; ``vigil alert`` still acts on one alert, the evidence inside an incident.

Registered by the lead beside the other commands: ``register_drift(sub, add)`` has the shape of
``core.cli.commands``' ``_register_*`` functions.
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.cli._args import bounded_int, finite_float, positive_id
from core.cli._output import Outcome
from core.config import Settings, load_settings
from core.errors import BadInputError

if TYPE_CHECKING:  # the monitoring service loads torch, the store sqlalchemy, the drift code scipy
    from core.drift.monitor import StreamReport
    from core.drift.streams import Windowing
    from core.models.loading import LoadedModel
    from core.services.monitoring import Incident, MonitoringRun, SiteMonitoring
    from core.store.alerts import AlertRecord, AlertStatus
    from core.store.incidents import IncidentStatus
    from core.types import JSONObject, JSONValue

__all__ = [
    "BUDGET_RANGE",
    "DEFAULT_BUDGET",
    "DEFAULT_INCIDENT_WINDOW_DAYS",
    "MAX_INCIDENT_WINDOW_DAYS",
    "register_drift",
    "run_to_dict",
]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]

#: False-alarm budgets accepted, in incidents per site-year. Charts are calibrated by simulating
#: ``3 * arl0`` observations per stream and the per-chart ARL0 is ``24 * 365.25 / budget``, so a tiny
#: budget asks for hours of simulation (0.1 is one false incident per site a decade, a per-chart ARL0
#: of 87,660 days); above 50 a chart would alarm about once a week in control.
BUDGET_RANGE = (0.1, 50.0)
#: The widest incident window accepted, in days: a year of alarms of one family as one incident is
#: already no grouping at all.
MAX_INCIDENT_WINDOW_DAYS = 365
#: ``core.drift.monitor.MonitorSettings().false_alarm_budget`` and ``core.drift.incidents.DEFAULT_WINDOW_DAYS``
#: (copied so that building the parser does not import scipy; ``tests/test_cli_imports.py`` keeps the copies equal).
DEFAULT_BUDGET = 0.5
DEFAULT_INCIDENT_WINDOW_DAYS = 7


def _settings() -> Settings:
    # The edge: the only place these commands read the environment.
    return load_settings(os.environ)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register_drift(sub: Any, add: AddParser) -> None:
    """Attach ``drift``, ``incident`` and ``alert`` to ``sub``; ``add`` creates a parser with ``--json``."""
    p = add(sub, "drift", "run the drift monitors over the store and print the incidents")
    p.add_argument("--site", default=None, help="one site (default: every deployment site)")
    p.add_argument("--window", default="day", help="windows of the mean and rate streams: day | studies:N")
    p.add_argument("--distance-window", default="studies:25", help="windows of PSI, KS and AUC: studies:N")
    p.add_argument(
        "--budget",
        type=finite_float(*BUDGET_RANGE),
        default=DEFAULT_BUDGET,
        metavar="B",
        help="false-alarm budget: incidents a year a site where nothing changed may raise, split over its charts, "
        f"{BUDGET_RANGE[0]:g} to {BUDGET_RANGE[1]:g} (default %(default)g: one every two years)",
    )
    p.add_argument(
        "--incident-window",
        type=bounded_int(0, MAX_INCIDENT_WINDOW_DAYS),
        default=DEFAULT_INCIDENT_WINDOW_DAYS,
        metavar="DAYS",
        help="a new alert joins an unresolved incident of its site and family when at most DAYS from its first "
        f"alarm, 0 to {MAX_INCIDENT_WINDOW_DAYS} (default %(default)s)",
    )
    p.add_argument("--no-images", action="store_true", help="do not load the model to cache image features")
    p.set_defaults(handler=_drift)
    _register_incident(sub, add)
    a = add(sub, "alert", "list, acknowledge or resolve drift alerts")
    asub = a.add_subparsers(dest="alert_command", required=True, parser_class=type(a))
    ls = add(asub, "list", "drift alerts, newest first")
    ls.add_argument("--site", default=None)
    ls.add_argument("--status", default=None, help="comma-separated: open,acknowledged,resolved")
    ls.set_defaults(handler=_alert_list)
    for verb, help_ in (("ack", "acknowledge an open alert"), ("resolve", "resolve an alert (restarts its chart)")):
        q = add(asub, verb, help_)
        q.add_argument("alert_id", type=positive_id, metavar="ALERT_ID", help="the alert's id (see `vigil alert list`)")
        q.add_argument("--note", required=True, help="why (recorded with who and when)")
        q.set_defaults(handler=_alert_change, verb=verb)


def _register_incident(sub: Any, add: AddParser) -> None:
    i = add(sub, "incident", "list, acknowledge or resolve drift incidents (a site's related alerts together)")
    isub = i.add_subparsers(dest="incident_command", required=True, parser_class=type(i))
    ls = add(isub, "list", "drift incidents with their alerts, newest first alarm first")
    ls.add_argument("--site", default=None)
    ls.add_argument("--status", default=None, help="comma-separated: open,acknowledged,resolved")
    ls.set_defaults(handler=_incident_list)
    for verb, help_ in (
        ("ack", "acknowledge an open incident and its open alerts"),
        ("resolve", "resolve an incident and every unresolved alert in it (restarts their charts)"),
    ):
        q = add(isub, verb, help_)
        q.add_argument(
            "incident_id", type=positive_id, metavar="INCIDENT_ID", help="the incident's id (see `vigil incident list`)"
        )
        q.add_argument("--note", required=True, help="why (recorded with who and when)")
        q.set_defaults(handler=_incident_change, verb=verb)


def _window(text: str, option: str) -> Windowing:
    from core.drift.streams import Windowing

    try:
        return Windowing.parse(text)
    except ValueError as exc:
        raise BadInputError(f"{option}: {exc}") from exc


def _drift(args: argparse.Namespace) -> Outcome:
    from core.drift.monitor import MonitorSettings
    from core.services import models as model_service
    from core.services import monitoring
    from core.services.monitoring import MonitoringConfig
    from core.services.store import open_store, utc_now

    distance_window = _window(args.distance_window, "--distance-window")
    if distance_window.label == "day":
        raise BadInputError("--distance-window must be studies:N (distances need a fixed sample size)")
    settings = _settings()
    config = MonitoringConfig(
        settings=MonitorSettings(false_alarm_budget=args.budget),
        windowing=_window(args.window, "--window"),
        distance_window=distance_window,
        batch_size=settings.batch_size,
        incident_window_days=args.incident_window,
    )
    sf = open_store(settings)
    models_dir = settings.home / "models"

    def load(version: str) -> tuple[LoadedModel, None]:
        # Each version serving a site in scope caches the features of the studies it scored.
        return model_service.load_named(sf, version, models_dir=models_dir), None

    run = monitoring.run_monitoring(
        sf, model=None, load=None if args.no_images else load, by=_actor(), now=utc_now, site=args.site, config=config
    )
    return Outcome(run_to_dict(run), _text(run))


def _alarm_dict(report: StreamReport) -> list[JSONValue]:
    return [
        {
            "detector": a.detector,
            "date": a.alarm_date.isoformat(),
            "change_date": a.change_date.isoformat(),
            "statistic": round(a.statistic, 6),
            "limit": round(a.limit, 6),
            "segment": a.segment,
        }
        for a in report.alarms
    ]


def _site_dict(site: SiteMonitoring) -> JSONObject:
    streams: JSONObject = {
        r.stream.name: {
            "status": r.status,
            "message": r.message,
            "window": r.stream.windowing.label,
            "windows": r.stream.n_windows,
            "skipped_values": r.stream.n_missing,
            "alarms": _alarm_dict(r),
        }
        for r in site.reports
    }
    return {
        "model_version": site.model_version,
        "studies": site.n_studies,
        "undated": site.n_undated,
        "streams": streams,
        "not_built": dict(site.missing),
        "novelty": [
            {"attribute": e.attribute, "value": e.value, "date": e.study_date.isoformat(), "study_uid": e.study_uid}
            for e in site.novelty.events
        ],
        "novelty_warming_up": site.novelty.warming_up,
    }


def run_to_dict(run: MonitoringRun) -> JSONObject:
    """The ``vigil drift --json`` object.

    ``incidents`` (every incident of the sites, with its evidence) and ``opened`` (ids of the new
    ones), ``alerts`` (every alert) and ``raised`` (ids of the new ones), the settings and the sites.
    """
    from core.services import monitoring

    view = run.view
    cal = view.calibrations
    return {
        "incidents": [monitoring.incident_to_dict(i) for i in view.incidents],
        "opened": [i.id for i in run.opened],
        "alerts": [monitoring.alert_to_dict(a) for a in view.alerts],
        "raised": [a.id for a in run.raised],
        "model_version": view.model_version,
        "features_computed": run.features_computed,
        "labels_available": view.labels_available,
        "settings": {
            "false_alarm_budget": view.config.settings.false_alarm_budget,
            "budget_statement": view.config.settings.budget_statement(),
            "charts_per_site": view.config.settings.charts_per_site,
            "arl0": view.config.settings.arl0,
            "window": view.config.windowing.label,
            "distance_window": view.config.distance_window.label,
            "cusum": {"k": cal["cusum"].parameter, "h": round(cal["cusum"].threshold, 4)},
            "ewma": {"lambda": cal["ewma"].parameter, "L": round(cal["ewma"].threshold, 4)},
            "alerting": list(view.config.settings.alerting),
            "baseline": {
                "min_values": view.config.settings.min_observations,
                "min_distance_windows": view.config.settings.distance_warmup,
                "min_events": view.config.settings.min_events,
                "max_rate_trials": view.config.settings.max_rate_trials,
                "novelty_studies": view.config.settings.novelty_warmup,
            },
            "incident_window_days": view.config.incident_window_days,
        },
        "sites": {s.site: _site_dict(s) for s in view.sites},
    }


def _alert_line(a: AlertRecord) -> str:
    return f"#{a.id:<4} {a.status!s:<12} {a.alarm_date}  {a.site:<12} {a.summary}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _incident_line(i: Incident) -> str:
    r = i.record
    return f"#{r.id:<4} {r.status!s:<12} {r.first_alarm_date}  {r.site:<12} {r.family:<8} {r.summary}"


def _text(run: MonitoringRun) -> str:
    cal = run.view.calibrations
    lines = [
        f"model {run.view.model_version}; budget {run.view.config.settings.false_alarm_budget:g} false incidents "
        f"a site-year, ARL0 {run.view.config.settings.arl0:,.0f} days per chart "
        f"(CUSUM k={cal['cusum'].parameter:g} h={cal['cusum'].threshold:.3f}, "
        f"EWMA lambda={cal['ewma'].parameter:g} L={cal['ewma'].threshold:.3f}); "
        f"{run.features_computed} image feature rows cached; {_plural(len(run.raised), 'new alarm')}, "
        f"{_plural(len(run.opened), 'new incident')}"
    ]
    for site in run.view.sites:
        warming = [r.stream.name for r in site.reports if r.status != "monitoring"]
        lines.append(f"{site.site}: {site.n_studies} studies; not monitoring yet: {', '.join(warming) or 'none'}")
    unresolved = run.view.unresolved_incidents()
    alarms = sum(len(i.alerts) for i in unresolved)
    lines.append(f"{_plural(len(unresolved), 'unresolved incident')} ({_plural(alarms, 'alarm')})")
    lines += [_incident_line(i) for i in run.view.incidents]
    return "\n".join(lines)


def _statuses(text: str | None, kind: type[AlertStatus] | type[IncidentStatus]) -> tuple[Any, ...] | None:
    if not text:
        return None
    try:
        return tuple(kind(s.strip()) for s in text.split(","))
    except ValueError as exc:
        raise BadInputError(f"--status: {exc} (choose from open, acknowledged, resolved)") from exc


def _alert_list(args: argparse.Namespace) -> Outcome:
    from core.services import monitoring
    from core.services.store import open_store
    from core.store.alerts import AlertStatus

    statuses = _statuses(args.status, AlertStatus)
    records = monitoring.list_alerts(open_store(_settings()), site=args.site, statuses=statuses, by=_actor())
    return Outcome(
        {"alerts": [monitoring.alert_to_dict(a) for a in records]},
        "\n".join(_alert_line(a) for a in records) or "no alerts",
    )


def _alert_change(args: argparse.Namespace) -> Outcome:
    from core.services import monitoring
    from core.services.store import open_store, utc_now

    change = monitoring.acknowledge_alert if args.verb == "ack" else monitoring.resolve_alert
    rec = change(open_store(_settings()), args.alert_id, by=_actor(), note=args.note, now=utc_now)
    return Outcome({"alert": monitoring.alert_to_dict(rec)}, _alert_line(rec))


def _incident_list(args: argparse.Namespace) -> Outcome:
    from core.services import monitoring
    from core.services.store import open_store
    from core.store.incidents import IncidentStatus

    statuses = _statuses(args.status, IncidentStatus)
    found = monitoring.list_incidents(open_store(_settings()), site=args.site, statuses=statuses, by=_actor())
    return Outcome(
        {"incidents": [monitoring.incident_to_dict(i) for i in found]},
        "\n".join(_incident_line(i) for i in found) or "no incidents",
    )


def _incident_change(args: argparse.Namespace) -> Outcome:
    from core.services import monitoring
    from core.services.store import open_store, utc_now

    change = monitoring.acknowledge_incident if args.verb == "ack" else monitoring.resolve_incident
    incident = change(open_store(_settings()), args.incident_id, by=_actor(), note=args.note, now=utc_now)
    evidence = [f"  {_alert_line(a)}" for a in incident.alerts]
    return Outcome(
        {"incident": monitoring.incident_to_dict(incident)}, "\n".join([_incident_line(incident), *evidence])
    )
