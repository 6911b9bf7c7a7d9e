"""``vigil drift`` (run the monitors, print the alerts) and ``vigil alert list|ack|resolve``.

Registered by the lead beside the other commands: ``register_drift(sub, add)`` has the shape of
``core.cli.commands``' ``_register_*`` functions.
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from core.cli._args import finite_float, positive_id
from core.cli._output import Outcome
from core.config import Settings, load_settings
from core.drift.monitor import MonitorSettings, StreamReport
from core.drift.streams import Windowing
from core.errors import BadInputError
from core.services.store import open_store, utc_now
from core.store.alerts import AlertRecord, AlertStatus
from core.types import JSONObject, JSONValue

if TYPE_CHECKING:  # the monitoring service loads torch; the handlers import it, the parser does not
    from core.services.monitoring import MonitoringRun, SiteMonitoring

__all__ = ["MAX_ARL0", "register_drift", "run_to_dict"]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]

#: The largest in-control ARL accepted: charts are calibrated by simulating ``3 * arl0`` observations
#: per stream, so memory and time grow with it (an ARL0 of 2**31 asked for terabytes). At one window
#: a day, 100,000 windows is centuries between false alarms: far beyond any useful setting.
MAX_ARL0 = 100_000.0


def _settings() -> Settings:
    # The edge: the only place these commands read the environment.
    return load_settings(os.environ)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register_drift(sub: Any, add: AddParser) -> None:
    """Attach ``drift`` and ``alert`` to the subparsers ``sub``; ``add`` creates a parser with ``--json``."""
    p = add(sub, "drift", "run the drift monitors over the store and print the alerts")
    p.add_argument("--site", default=None, help="one site (default: every deployment site)")
    p.add_argument("--window", default="day", help="windows of the mean and rate streams: day | studies:N")
    p.add_argument("--distance-window", default="studies:25", help="windows of PSI, KS and AUC: studies:N")
    p.add_argument(
        "--arl0",
        type=finite_float(1.0, MAX_ARL0, above=True),
        default=MonitorSettings().arl0,
        help=f"in-control ARL of each chart, above 1 and at most {MAX_ARL0:g} (default %(default)g)",
    )
    p.add_argument("--no-images", action="store_true", help="do not load the model to cache image features")
    p.set_defaults(handler=_drift)
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


def _window(text: str, option: str) -> Windowing:
    try:
        return Windowing.parse(text)
    except ValueError as exc:
        raise BadInputError(f"{option}: {exc}") from exc


def _drift(args: argparse.Namespace) -> Outcome:
    from core.services import models as model_service
    from core.services import monitoring
    from core.services.monitoring import MonitoringConfig

    distance_window = _window(args.distance_window, "--distance-window")
    if distance_window.label == "day":
        raise BadInputError("--distance-window must be studies:N (distances need a fixed sample size)")
    settings = _settings()
    config = MonitoringConfig(
        settings=MonitorSettings(arl0=args.arl0),
        windowing=_window(args.window, "--window"),
        distance_window=distance_window,
        batch_size=settings.batch_size,
    )
    sf = open_store(settings)
    model = None if args.no_images else model_service.load_serving(sf, models_dir=settings.home / "models")
    run = monitoring.run_monitoring(sf, model=model, by=_actor(), now=utc_now, site=args.site, config=config)
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
    """The ``vigil drift --json`` object: ``alerts`` (every alert of the sites), ``raised`` and the settings."""
    from core.services import monitoring

    view = run.view
    cal = view.calibrations
    return {
        "alerts": [monitoring.alert_to_dict(a) for a in view.alerts],
        "raised": [a.id for a in run.raised],
        "model_version": view.model_version,
        "features_computed": run.features_computed,
        "labels_available": view.labels_available,
        "settings": {
            "arl0": view.config.settings.arl0,
            "window": view.config.windowing.label,
            "distance_window": view.config.distance_window.label,
            "cusum": {"k": cal["cusum"].parameter, "h": round(cal["cusum"].threshold, 4)},
            "ewma": {"lambda": cal["ewma"].parameter, "L": round(cal["ewma"].threshold, 4)},
            "alerting": list(view.config.settings.alerting),
            "warmup_windows": view.config.settings.warmup,
        },
        "sites": {s.site: _site_dict(s) for s in view.sites},
    }


def _alert_line(a: AlertRecord) -> str:
    return f"#{a.id:<4} {a.status!s:<12} {a.alarm_date}  {a.site:<12} {a.summary}"


def _text(run: MonitoringRun) -> str:
    cal = run.view.calibrations
    lines = [
        f"model {run.view.model_version}; ARL0 {run.view.config.settings.arl0:g} per chart "
        f"(CUSUM k={cal['cusum'].parameter:g} h={cal['cusum'].threshold:.3f}, "
        f"EWMA lambda={cal['ewma'].parameter:g} L={cal['ewma'].threshold:.3f}); "
        f"{run.features_computed} image feature rows cached; {len(run.raised)} new alert(s)"
    ]
    for site in run.view.sites:
        warming = [r.stream.name for r in site.reports if r.status != "monitoring"]
        lines.append(f"{site.site}: {site.n_studies} studies; not monitoring yet: {', '.join(warming) or 'none'}")
    lines += [_alert_line(a) for a in run.view.alerts] or ["no alerts"]
    return "\n".join(lines)


def _alert_list(args: argparse.Namespace) -> Outcome:
    from core.services import monitoring

    statuses = None
    if args.status:
        try:
            statuses = tuple(AlertStatus(s.strip()) for s in args.status.split(","))
        except ValueError as exc:
            raise BadInputError(f"--status: {exc} (choose from open, acknowledged, resolved)") from exc
    records = monitoring.list_alerts(open_store(_settings()), site=args.site, statuses=statuses, by=_actor())
    return Outcome(
        {"alerts": [monitoring.alert_to_dict(a) for a in records]},
        "\n".join(_alert_line(a) for a in records) or "no alerts",
    )


def _alert_change(args: argparse.Namespace) -> Outcome:
    from core.services import monitoring

    change = monitoring.acknowledge_alert if args.verb == "ack" else monitoring.resolve_alert
    rec = change(open_store(_settings()), args.alert_id, by=_actor(), note=args.note, now=utc_now)
    return Outcome({"alert": monitoring.alert_to_dict(rec)}, _alert_line(rec))
