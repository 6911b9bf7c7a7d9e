"""One small handler per ``vigil`` command: read arguments, call one service, shape the output.

Services (and through them sqlalchemy, numpy, torch, captum, pydicom) are imported inside the
handlers that call them, so that building the parser (``vigil --help``, a usage error) stays fast
and loads none of them; ``tests/test_cli_imports.py`` keeps it so.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import getpass
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cli._args import (
    MAX_SEED,
    bounded_int,
    existing_path,
    finite_float,
    input_dir,
    output_dir,
    output_file,
    positive_id,
    seed,
    version_name,
)
from core.cli._output import Advance, Outcome, progress_bar
from core.cli._paths import check_existing_path, check_input_dir
from core.cli.audit import register_audit
from core.cli.change import register_change
from core.cli.deploy import register_deploy, register_model_tag
from core.cli.drift import register_drift
from core.cli.explain_report import register_explain_report
from core.cli.fhir import register_fhir
from core.cli.outcomes import register_outcomes
from core.cli.users import register_users
from core.cli.validate import register_validate
from core.config import Settings, load_settings
from core.errors import BadInputError

if TYPE_CHECKING:  # torch is imported by the train command only, sqlalchemy by the commands using the store
    from core.bench.store import StoreConfig
    from core.bench.throughput import ThroughputConfig
    from core.models.loading import LoadedModel
    from core.models.training import TrainingConfig
    from core.services.ingestion import IngestReport
    from core.services.prediction import PredictReport, Scorer
    from core.store.engine import SessionFactory

__all__ = [
    "BENCH_SUITES",
    "MAX_BENCH_STUDIES",
    "MAX_EPOCHS",
    "MAX_LOCALIZATION_WEIGHT",
    "MAX_ROUNDS",
    "MAX_STUDIES_PER_SITE",
    "MAX_WORKERS",
    "register",
]

AddParser = Callable[[Any, str, str], argparse.ArgumentParser]


def _settings() -> Settings:
    # The edge: the only place the CLI reads the environment.
    return load_settings(os.environ)


def _store() -> SessionFactory:
    from core.services.store import open_store

    return open_store(_settings())


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register(sub: Any, add: AddParser) -> None:
    """Attach every command to the subparsers ``sub``; ``add`` creates a parser with ``--json``."""
    _register_setup(sub, add)
    _register_sites(sub, add)
    _register_studies(sub, add)
    _register_models(sub, add)
    _register_train_bench(sub, add)
    register_validate(sub, add)
    register_outcomes(sub, add)
    register_fhir(sub, add)
    register_drift(sub, add)
    register_users(sub, add)
    register_explain_report(sub, add)
    register_audit(sub, add)
    register_deploy(sub, add)
    register_change(sub, add)


# --- init, sample data -------------------------------------------------------------------------

#: ``core.sampledata.cohort.MAX_STUDIES_PER_SITE`` (copied so that building the parser does not import
#: the generator; a test keeps the copies equal). 5000 at each of the five sites is about 2 GB of DICOM.
MAX_STUDIES_PER_SITE = 5000
#: The most worker processes ``vigil ingest --workers`` starts (a typo must not fork ten thousand).
MAX_WORKERS = 512
#: ``core.pipeline.engine.ENGINES`` (copied so that building the parser does not import torch; a test
#: keeps the copies equal).
INGEST_ENGINES = ("local", "dask")


def _register_setup(sub: Any, add: AddParser) -> None:
    add(
        sub,
        "init",
        "create or migrate the database, register the bundled model, load and predict the sample cohort (idempotent)",
    ).set_defaults(handler=_init)
    p = add(sub, "sample-data", "write the synthetic multi-site cohort (DICOM + ground truth)")
    p.add_argument("--out", type=output_dir, required=True, help="output folder (created; not a file)")
    p.add_argument("--seed", type=seed, default=0, help=f"random seed, 0 to {MAX_SEED} (default 0)")
    p.add_argument(
        "--studies",
        type=bounded_int(1, MAX_STUDIES_PER_SITE),
        default=None,
        metavar="N",
        help=f"studies per site, 1 to {MAX_STUDIES_PER_SITE} (default: the full cohort, 800 at the benchmark "
        "site and 120 at each deployment site)",
    )
    p.set_defaults(handler=_sample_data)


def _init(args: argparse.Namespace) -> Outcome:
    from core.services import setup
    from core.services.store import utc_now

    settings = _settings()
    with progress_bar(0, "init", enabled=not args.json) as advance:
        report = setup.initialize(settings, actor=_actor(), now=utc_now, progress=advance)
    data = report.to_dict()
    return Outcome(data, report.summary())


def _sample_data(args: argparse.Namespace) -> Outcome:
    from core.sampledata import generate_cohort, read_manifest  # heavy; only this command needs it
    from core.sampledata.fhir_outcomes import OUTCOMES_DIR, write_outcomes

    summary = generate_cohort(args.out, seed=args.seed, studies_per_site=args.studies)
    # What the EMR later says about the same studies (SYNTHETIC FHIR R4), beside the cohort.
    outcomes = write_outcomes(summary.out_dir, read_manifest(summary.manifest_path), seed=args.seed)
    with_outcomes = sum(plan.expected is not None for plan in outcomes.plans)
    data = {
        "out_dir": str(summary.out_dir),
        "studies": summary.n_studies,
        "sites": list(summary.sites),
        "manifest": str(summary.manifest_path),
        "seed": args.seed,
        "outcomes_dir": str(summary.out_dir / OUTCOMES_DIR),
        "studies_with_outcomes": with_outcomes,
    }
    return Outcome(
        data,
        f"wrote {summary.n_studies} synthetic studies for {len(summary.sites)} sites to {args.out}, "
        f"and EMR outcomes (FHIR R4) for {with_outcomes} of them to {summary.out_dir / OUTCOMES_DIR}",
    )


# --- sites, ingest ------------------------------------------------------------------------------


def _register_sites(sub: Any, add: AddParser) -> None:
    p = add(sub, "site", "register or list sites")
    ssub = p.add_subparsers(dest="site_command", required=True, parser_class=type(p))
    a = add(ssub, "add", "register a site (ingest refuses unknown sites)")
    a.add_argument("name")
    a.add_argument("--benchmark", action="store_true", help="the retrospective benchmark site")
    a.set_defaults(handler=_site_add)
    add(ssub, "list", "list registered sites").set_defaults(handler=_site_list)


def _site_add(args: argparse.Namespace) -> Outcome:
    from core.services import sites as site_service
    from core.services.store import utc_now

    rec = site_service.add_site(_store(), args.name, benchmark=args.benchmark, actor=_actor(), now=utc_now)
    return Outcome({"site": rec.name, "benchmark": rec.is_benchmark}, f"registered site {rec.name}")


def _site_list(args: argparse.Namespace) -> Outcome:
    from core.services import sites as site_service

    recs = site_service.list_sites(_store())
    rows = [{"name": r.name, "benchmark": r.is_benchmark, "created_at": r.created_at.isoformat()} for r in recs]
    text = "\n".join(f"{r['name']}{'  (benchmark)' if r['benchmark'] else ''}" for r in rows) or "no sites"
    return Outcome({"sites": rows}, text)


def _register_studies(sub: Any, add: AddParser) -> None:
    p = add(sub, "ingest", "ingest DICOM files or folders through the strict gate")
    p.add_argument("paths", nargs="+", type=existing_path, metavar="PATH")
    p.add_argument("--site", required=True, help="a registered site")
    p.add_argument(
        "--predict",
        action="store_true",
        help="also score each stored study with the serving model as it is stored (the streaming pipeline)",
    )
    p.add_argument(
        "--workers",
        type=bounded_int(1, MAX_WORKERS),
        default=None,
        help=f"gate (and preprocess) in this many worker processes, 1 to {MAX_WORKERS} "
        "(default: one per core with --predict; without either flag files are gated one at a time)",
    )
    p.add_argument(
        "--no-maps",
        dest="maps",
        action="store_false",
        help="with --predict, store scores only; by default each newly scored study's Grad-CAM map is stored "
        "with its score, so the case opens with its map already made",
    )
    p.add_argument(
        "--engine",
        choices=INGEST_ENGINES,
        default="local",
        help="where the gate and preprocessing run: this machine's worker processes (local), or the workers "
        "of a running Dask cluster (dask, with --scheduler), which must see PATH at the same path; "
        "stores and audit entries are written here either way",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", default=None, help="the Dask scheduler, e.g. tcp://10.0.0.5:8786")
    p.set_defaults(handler=_ingest)
    p = add(sub, "predict", "predict studies without a prediction from the serving model")
    p.add_argument("--site", default=None, help="only this site")
    p.add_argument("--all", action="store_true", help="every site (the default when --site is not given)")
    p.add_argument(
        "--no-maps",
        dest="maps",
        action="store_false",
        help="store scores only; by default each newly scored study's Grad-CAM map is stored with its score, "
        "so the case opens with its map already made",
    )
    p.add_argument(
        "--workers",
        type=bounded_int(1, MAX_WORKERS),
        default=None,
        help=f"re-read the stored files in this many worker processes, 1 to {MAX_WORKERS} (for back-filling "
        "an archive when a new version serves); default: one at a time in this process",
    )
    p.set_defaults(handler=_predict)
    p = add(sub, "explain", "explanation map of a study on the image's pixel grid (float32)")
    p.add_argument("study_uid", metavar="STUDY_UID")
    p.add_argument("--method", required=True, help="gradcam | gradientshap | kernelshap")
    p.add_argument("--out", type=output_file(".npy"), default=None, help="write the map as FILE.npy (not a folder)")
    p.add_argument(
        "--export-dicom",
        type=output_dir,
        default=None,
        metavar="DIR",
        help="also write a Secondary Capture and a Segmentation into DIR, in the source study",
    )
    p.set_defaults(handler=_explain)


def _ingest(args: argparse.Namespace) -> Outcome:
    for path in args.paths:
        check_existing_path(path)
    streaming = args.predict or args.workers is not None or not args.maps
    if streaming or args.engine != "local" or args.scheduler is not None:
        return _ingest_streaming(args)
    from core.services import ingestion
    from core.services.deidentify import ingest_deid
    from core.services.store import utc_now

    settings = _settings()
    sf = _store()
    with progress_bar(0, "ingest", enabled=not args.json) as advance:
        report = ingestion.ingest_paths(
            sf,
            args.paths,
            site=args.site,
            dicom_dir=settings.home / "dicom",
            actor=_actor(),
            now=utc_now,
            progress=advance,
            max_file_bytes=settings.max_file_bytes,
            deid=ingest_deid(settings, args.site),
        )
    return _ingest_outcome(report)


def _ingest_outcome(report: IngestReport, extra: dict[str, object] | None = None, tail: str = "") -> Outcome:
    data: dict[str, object] = {
        "site": report.site,
        "ingested": len(report.ingested),
        "duplicates": len(report.duplicates),
        "rejected": [{"path": r.path, "reason": r.reason} for r in report.rejected],
        **(extra or {}),
    }
    lines = [
        f"ingested {len(report.ingested)}, duplicates {len(report.duplicates)}, "
        f"rejected {len(report.rejected)} into site {report.site}{tail}"
    ]
    lines += [f"  rejected {r.path}: {r.reason}" for r in report.rejected]
    return Outcome(data, "\n".join(lines))


def _ingest_streaming(args: argparse.Namespace) -> Outcome:
    """``vigil ingest --predict`` / ``--workers``: the streaming pipeline (gate in workers, batched store)."""
    from core.pipeline import Engine, FlowLimits, StreamingPipeline
    from core.services import models as model_service
    from core.services import prediction
    from core.services.deidentify import ingest_deid
    from core.services.store import utc_now

    engine = Engine(args.engine, args.scheduler)  # before the store opens: a bad pair changes nothing
    if not args.maps and not args.predict:
        raise BadInputError("--no-maps goes with --predict: without it nothing is scored and no map is made")
    if engine.kind != "local" and args.workers is not None:
        raise BadInputError(
            f"--workers {args.workers} starts local processes; a {engine.kind} cluster has its own workers "
            "(`dask worker ADDRESS --nthreads 1 --nworkers N` on each machine)"
        )
    settings = _settings()
    sf = _store()
    model = (
        model_service.load_named(sf, prediction.serving_version(sf, args.site), models_dir=settings.home / "models")
        if args.predict
        else None
    )
    limits = FlowLimits.for_workers(args.workers, settings.batch_size)
    desc = "ingest+predict" if args.predict else "ingest"
    with progress_bar(0, desc, enabled=not args.json, unit="study") as advance:
        pipe = StreamingPipeline(
            sf,
            dicom_dir=settings.home / "dicom",
            model=model,
            limits=limits,
            actor=_actor(),
            now=utc_now,
            max_file_bytes=settings.max_file_bytes,
            maps_dir=settings.artifacts_dir if args.predict and args.maps else None,
            engine=engine,
        )
        with pipe:
            report = pipe.run(
                args.paths,
                site=args.site,
                progress=advance,
                on_total=lambda n: advance(0, total=n),
                deid=ingest_deid(settings, args.site),
            )
        # The serving version changed mid-run: what was stored after the switch is scored by the new one.
        maps_dir = settings.artifacts_dir if args.maps else None
        later = _predict_until_current(sf, settings, args.site, advance, maps_dir) if report.superseded else []
    extra: dict[str, object] = {"workers": pipe.slots, "engine": engine.kind}
    if not args.predict:
        return _ingest_outcome(report.ingest, extra)
    version = later[-1].model_version if later else report.model_version
    scored = report.scored + sum(r.scored for r in later)
    positives = report.positives + sum(r.positives for r in later)
    n_maps = report.maps + sum(r.maps for r in later)
    extra["predict"] = {  # the shape of `vigil predict --json`
        "model_version": version,
        "scored": scored,
        "skipped": report.skipped + sum(r.skipped for r in later),
        "positives": positives,
        "device": report.device,
        "superseded": [{"model_version": report.model_version, "scored": report.scored}] if later else [],
        "maps": n_maps,
    }
    maps = f", {n_maps} Grad-CAM maps stored" if args.maps else ""
    tail = f"; scored {scored} with {version} on {report.device} ({positives} above threshold{maps})"
    return _ingest_outcome(report.ingest, extra, tail)


def _predict_until_current(  # noqa: PLR0913 - the store, the scope and how to score
    sf: SessionFactory,
    settings: Settings,
    site: str | None,
    advance: Advance,
    maps_dir: Path | None,
    scorer: Scorer | None = None,
) -> list[PredictReport]:
    """Score what is pending with the serving version, again after each promotion or rollback mid-run.

    With ``maps_dir``, each new score's Grad-CAM map is stored with it; ``scorer`` (the pipeline's
    workers) scores in place of the one-thread reader.
    """
    from core.services import models as model_service
    from core.services import prediction
    from core.services.store import utc_now

    def load(version: str) -> LoadedModel:
        return model_service.load_named(sf, version, models_dir=settings.home / "models")

    # One pass per version serving a site in scope (sites may be promoted on their own).
    return prediction.predict_serving(
        sf,
        load,
        site=site,
        batch_size=settings.batch_size,
        actor=_actor(),
        now=utc_now,
        progress=advance,
        maps_dir=maps_dir,
        scorer=scorer,
    )


def _predict(args: argparse.Namespace) -> Outcome:
    from core.pipeline import FlowLimits, StoredScorer

    settings = _settings()
    sf = _store()
    maps_dir = settings.artifacts_dir if args.maps else None
    with contextlib.ExitStack() as stack:
        scorer = None
        if args.workers is not None:  # the stored files re-read in worker processes
            limits = FlowLimits.for_workers(args.workers, settings.batch_size)
            scorer = stack.enter_context(StoredScorer(limits, max_file_bytes=settings.max_file_bytes))
        with progress_bar(0, "predict", enabled=not args.json) as advance:
            # a promotion or rollback mid-run: go on with the version that serves now
            reports = _predict_until_current(sf, settings, args.site, advance, maps_dir, scorer)
    report = reports[-1]
    n_maps = sum(r.maps for r in reports)
    data = {
        "model_version": report.model_version,
        "scored": report.scored,
        "skipped": report.skipped,
        "positives": report.positives,
        "device": report.device,
        "site": args.site,
        "superseded": [{"model_version": r.model_version, "scored": r.scored} for r in reports[:-1]],
        "maps": n_maps,
        "workers": args.workers or 0,
    }
    maps = f", {n_maps} Grad-CAM maps stored" if args.maps else ""
    return Outcome(
        data,
        f"scored {report.scored} studies with {report.model_version} on {report.device} "
        f"({report.positives} above threshold{maps}); {report.skipped} stored but not scored",
    )


def _explain(args: argparse.Namespace) -> Outcome:
    import numpy as np

    from core.services import explanation
    from core.services import models as model_service
    from core.services.store import utc_now

    method = explanation.parse_method(args.method)
    # --out and --export-dicom were checked while parsing; together they must not collide either,
    # or the second write would fail after the explanation, its row and its audit entry are stored.
    if args.out is not None and args.export_dicom is not None:
        _check_apart(args.out, args.export_dicom)
    settings = _settings()
    sf = _store()
    model = model_service.load_for_study(sf, args.study_uid, models_dir=settings.home / "models")
    res = explanation.explain_study(
        sf,
        model,
        args.study_uid,
        method=method,
        artifacts_dir=settings.artifacts_dir,
        lock=None,
        actor=_actor(),
        now=utc_now,
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.out, res.heatmap.astype(np.float32))
    exported = []
    if args.export_dicom is not None:
        exported = explanation.export_dicom(sf, res, out_dir=args.export_dicom, actor=_actor(), now=utc_now)
    data = {
        "study_uid": res.study_uid,
        "method": res.method,
        "model_version": res.model_version,
        "predicted_by": res.predicted_by,
        "notice": res.notice,
        "signed": res.signed,
        "shape": list(res.heatmap.shape),
        "sha256": res.sha256,
        "artifact": str(res.artifact_path),
        "out": str(args.out) if args.out else None,
        "dicom": [
            {
                "kind": o.kind,
                "path": str(o.path),
                "sop_class_uid": o.sop_class_uid,
                "sop_instance_uid": o.sop_instance_uid,
            }
            for o in exported
        ],
    }
    lines = [f"{res.method} map {res.heatmap.shape} for {res.study_uid}: {args.out or res.artifact_path}"]
    lines += [f"  {o.kind}: {o.path}" for o in exported]
    if res.notice:
        lines.append(f"NOTE: {res.notice}")
    return Outcome(data, "\n".join(lines))


def _check_apart(out: Path, export_dir: Path) -> None:
    """Refuse an ``--export-dicom`` folder that is ``--out`` or lies under it (the file would be in the way)."""
    out_abs, dir_abs = out.absolute(), export_dir.absolute()
    if dir_abs == out_abs or out_abs in dir_abs.parents:
        raise BadInputError(f"--export-dicom {export_dir} would need --out {out} to be a folder; name another folder")


# --- models, audit ------------------------------------------------------------------------------


def _register_models(sub: Any, add: AddParser) -> None:
    p = add(sub, "model", "list or show model cards")
    msub = p.add_subparsers(dest="model_command", required=True, parser_class=type(p))
    add(msub, "list", "registered model versions").set_defaults(handler=_model_list)
    s = add(msub, "show", "a model card, as stored")
    s.add_argument("version")
    s.set_defaults(handler=_model_show)
    register_model_tag(msub, add)


def _model_list(args: argparse.Namespace) -> Outcome:
    from core.services import models as model_service

    models = model_service.list_models(_store())
    rows = [
        {
            "number": m.number,
            "version": m.version,
            "serving": m.serving,
            "created_at": m.created_at,
            "content_sha256": m.content_sha256,
            "tags": list(m.tags),
            "metrics": m.card.metrics,
            "parent_version": m.card.parent_version,
        }
        for m in models
    ]
    text = (
        "\n".join(
            f"#{r['number']} {r['version']}{'  (serving)' if r['serving'] else ''}"
            f"{'  [' + ', '.join(m.tags) + ']' if m.tags else ''}  parent {r['parent_version'] or '-'}"
            for r, m in zip(rows, models, strict=True)
        )
        or "no models"
    )
    return Outcome({"models": rows}, text)


def _model_show(args: argparse.Namespace) -> Outcome:
    from core.services import models as model_service

    card = model_service.get_card(_store(), args.version).to_dict()
    return Outcome(card, json.dumps(card, indent=2, sort_keys=True))


# --- train, bench -------------------------------------------------------------------------------

#: The bundled model's recipe as ``TrainingConfig`` holds it (copied here so that building the parser
#: does not import torch; a test keeps the copies equal).
_DEFAULT_EPOCHS = 6
_DEFAULT_CROP_EPOCHS = 56
_DEFAULT_PRECISION = "float64"
_DEFAULT_LOCALIZATION_WEIGHT = 1.0
#: ``core.bench.suites.SUITES``' names (copied for the same reason; a test keeps them equal).
BENCH_SUITES = (
    "foundation",
    "metrics",
    "drift",
    "ui",
    "explanations",
    "alerts",
    "fhir",
    "audit",
    "throughput",
    "store",
)
#: The most prediction rows ``vigil bench --suite store`` generates (1,000,000 takes minutes on SQLite).
MAX_BENCH_ROWS = 10_000_000
#: The most studies ``vigil bench --suite throughput`` generates (about 1.3 GB of DICOM at sample sizes).
MAX_BENCH_STUDIES = 100_000
#: Bounds that keep a typo from running for days (the bundled recipe uses 6 and 56 epochs, 5 rounds).
MAX_EPOCHS = 1000
MAX_ROUNDS = 100
#: A thousand times the bundled recipe's weight: beyond it the term swamps the classification loss.
MAX_LOCALIZATION_WEIGHT = 1000.0


def _register_train_bench(sub: Any, add: AddParser) -> None:
    p = add(
        sub,
        "train",
        "train the demonstration network on a cohort's benchmark site (--cohort, --out), or retrain a registered "
        "version on the labels of record outside the locked hold-out and register the challenger (--from)",
    )
    p.add_argument("--cohort", type=input_dir, default=None, help="a labelled cohort folder (see `vigil sample-data`)")
    p.add_argument("--eval-cohort", type=input_dir, default=None, help="an independent cohort evaluated in full")
    p.add_argument("--out", type=output_dir, default=None, help="folder for <version>.pt and card.json")
    p.add_argument(
        "--for-incident",
        type=positive_id,
        default=None,
        metavar="ID",
        help="with --from: the confirmed drift incident this retraining answers (recorded in the audit entry)",
    )
    p.add_argument(
        "--from",
        dest="parent",
        default=None,
        metavar="VERSION",
        help="fine-tune this registered version on the stored labels of record (not the hold-out) and register "
        "the result as --version (a challenger; promote it with `vigil deploy promote` after the gate)",
    )
    p.add_argument(
        "--seed", type=seed, default=0, help=f"random seed, 0 to {MAX_SEED} (default 0: the bundled model's)"
    )
    p.add_argument(
        "--epochs",
        type=bounded_int(1, MAX_EPOCHS),
        default=None,
        help=f"whole-film epochs, 1 to {MAX_EPOCHS} (default {_DEFAULT_EPOCHS}, the bundled recipe; with --from, 4)",
    )
    p.add_argument(
        "--precision",
        choices=("float64", "float32"),
        default=_DEFAULT_PRECISION,
        help=f"training arithmetic (default {_DEFAULT_PRECISION}: the same network on any machine; "
        "float32 is about twice as fast but reproducible only on the same machine)",
    )
    p.add_argument(
        "--localization-weight",
        type=finite_float(0.0, MAX_LOCALIZATION_WEIGHT),
        default=_DEFAULT_LOCALIZATION_WEIGHT,
        help="weight of the training-only nodule-localization term on the Grad-CAM layer, "
        f"0 to {MAX_LOCALIZATION_WEIGHT:g} (default {_DEFAULT_LOCALIZATION_WEIGHT:g}; 0 turns it off)",
    )
    p.add_argument(
        "--crop-epochs",
        type=bounded_int(0, MAX_EPOCHS),
        default=_DEFAULT_CROP_EPOCHS,
        help=f"lesion-crop epochs before the whole-film ones, 0 to {MAX_EPOCHS} (default {_DEFAULT_CROP_EPOCHS})",
    )
    p.add_argument(
        "--version", type=version_name, default=None, help="model version name (default: the bundled model's)"
    )
    p.add_argument(
        "--l2sp-weight",
        type=finite_float(0.0, 1e6),
        default=None,
        help="with --from: weight of the L2-SP pull toward the parent's weights, 0 to 1e6 (default: the recipe's)",
    )
    p.add_argument(
        "--threshold-rule",
        choices=("keep_sensitivity", "dominate_parent", "youden"),
        default=None,
        help="with --from: how the operating threshold is chosen on the validation studies (default: the recipe's)",
    )
    p.add_argument(
        "--threshold-site",
        action="append",
        default=None,
        metavar="SITE",
        dest="threshold_sites",
        help="with --from: choose the threshold on this site's validation studies only (repeat for several; "
        "for a change meant for those sites, judged by `validate-change --scope`)",
    )
    p.set_defaults(handler=_train)
    p = add(sub, "bench", "speed ratios measured side by side, each with an equality guard")
    p.add_argument("--suite", choices=BENCH_SUITES, default="foundation", help="which suite (default: foundation)")
    p.add_argument(
        "--rounds",
        type=bounded_int(1, MAX_ROUNDS),
        default=5,
        help=f"interleaved timing rounds, 1 to {MAX_ROUNDS} (default 5)",
    )
    p.add_argument(
        "--studies",
        type=bounded_int(1, MAX_BENCH_STUDIES),
        default=None,
        help=f"throughput suite: studies generated, 1 to {MAX_BENCH_STUDIES} (default 300)",
    )
    p.add_argument(
        "--workers",
        type=bounded_int(1, MAX_WORKERS),
        default=None,
        help=f"throughput suite: worker processes, 1 to {MAX_WORKERS} (default: one per core)",
    )
    p.add_argument(
        "--film-size",
        type=bounded_int(64, 4096),
        default=None,
        metavar="PIXELS",
        help="throughput suite: enlarge every generated film to PIXELS² (2048: a real chest radiograph), "
        "64 to 4096 (default: the generator's 240 to 320)",
    )
    p.add_argument(
        "--batch-size",
        type=bounded_int(1, 4096),
        default=None,
        help="throughput suite: studies per forward pass and transaction, 1 to 4096 (default 64)",
    )
    p.add_argument(
        "--rows",
        type=bounded_int(1000, MAX_BENCH_ROWS),
        default=None,
        help=f"store suite: SYNTHETIC prediction rows of the large store, 1000 to {MAX_BENCH_ROWS} "
        "(default 100000; compared with a 10000-row store, or rows/10 when smaller)",
    )
    p.add_argument(
        "--store-reads",
        default=None,
        help="store suite: comma-separated reads to time among page, validate, drift (default all three)",
    )
    p.add_argument(
        "--store-server",
        metavar="URL",
        default=None,
        help="store suite: build each store as a scratch database on this PostgreSQL server "
        "(postgresql+psycopg://user:password@host:port/postgres, a role that may create databases; "
        "each is dropped after) instead of SQLite files",
    )
    p.add_argument("--record", type=output_dir, default=None, help="write <DIR>/<suite>.json with the figures")
    p.add_argument(
        "--markdown",
        type=output_file(".md"),
        default=None,
        help="regenerate this file (BENCHMARKS.md) from --record DIR (needs --record)",
    )
    p.set_defaults(handler=_bench)


def training_config(args: argparse.Namespace) -> TrainingConfig:
    """The recipe that ``vigil train``'s parsed flags ask for (imports torch)."""
    from core.models.training import TrainingConfig

    return TrainingConfig(
        epochs=_DEFAULT_EPOCHS if args.epochs is None else args.epochs,
        crop_epochs=args.crop_epochs,
        float64=args.precision == "float64",
        localization_weight=args.localization_weight,
    )


def _train(args: argparse.Namespace) -> Outcome:
    if args.parent is not None:
        return _retrain(args)
    retrain_only = {"--l2sp-weight": args.l2sp_weight, "--threshold-rule": args.threshold_rule}
    retrain_only["--threshold-site"] = args.threshold_sites
    if given := [name for name, value in retrain_only.items() if value is not None]:
        raise BadInputError(f"{', '.join(given)} tune a retrain: give --from VERSION too")
    if args.cohort is None or args.out is None:
        raise BadInputError("give --cohort and --out to train from a cohort, or --from VERSION to retrain")
    check_input_dir(args.cohort)  # first: a missing cohort is refused without loading torch
    if args.eval_cohort is not None:
        check_input_dir(args.eval_cohort)
    from core.models.allocator import retain_freed_memory
    from core.models.training import DEFAULT_VERSION, train_model  # heavy; only this command needs it
    from core.store.engine import head_revision

    retain_freed_memory()  # this process exits after training; see core.models.allocator
    with progress_bar(0, "train", enabled=not args.json, unit="epoch") as advance:
        card = train_model(
            cohort_dir=args.cohort,
            eval_cohort_dir=args.eval_cohort,
            out_dir=args.out,
            seed=args.seed,
            store_revision=head_revision(),
            config=training_config(args),
            version=args.version or DEFAULT_VERSION,
            progress=lambda _done, total: advance(1, total=total),  # one call per epoch of either stage
        )
    return Outcome(
        {"version": card.version, "out_dir": str(args.out), "metrics": card.metrics, "seed": args.seed},
        f"trained {card.version} into {args.out}\n{json.dumps(card.metrics, indent=2, sort_keys=True)}",
    )


def _retrain(args: argparse.Namespace) -> Outcome:
    if args.version is None:
        raise BadInputError("--from needs --version NAME for the challenger")
    if args.cohort is not None or args.out is not None or args.eval_cohort is not None:
        raise BadInputError(
            "--from retrains on the stored labels of record: leave out --cohort, --out and --eval-cohort"
        )
    from core.models.allocator import retain_freed_memory
    from core.models.finetune import FinetuneConfig
    from core.services import retrain
    from core.services.store import utc_now

    retain_freed_memory()
    settings = _settings()
    epochs = FinetuneConfig().epochs if args.epochs is None else args.epochs
    config = FinetuneConfig(epochs=epochs, float64=args.precision == "float64")
    if args.l2sp_weight is not None:
        config = dataclasses.replace(config, l2sp_weight=args.l2sp_weight)
    if args.threshold_rule is not None:
        config = dataclasses.replace(config, threshold_rule=args.threshold_rule)
    if args.threshold_sites:
        config = dataclasses.replace(config, threshold_sites=tuple(sorted(set(args.threshold_sites))))
    with progress_bar(0, "retrain", enabled=not args.json, unit="epoch") as advance:
        registered = retrain.retrain(
            _store(),
            args.parent,
            version=args.version,
            seed=args.seed,
            config=config,
            models_dir=settings.home / "models",
            work_dir=settings.home / "training",
            actor=_actor(),
            now=utc_now,
            for_incident=args.for_incident,
            progress=lambda _done, total: advance(1, total=total),
        )
    card = registered.card
    data = {
        "version": card.version,
        "number": registered.number,
        "parent_version": card.parent_version,
        "content_sha256": registered.content_sha256,
        "weights_sha256": card.weights["sha256"],
        "training_data": {k: v for k, v in card.training_data.items() if k != "studies"},
        "hyperparameters": card.hyperparameters,
        "metrics": card.metrics,
        "seed": args.seed,
    }
    return Outcome(
        data,
        f"registered challenger #{registered.number} {card.version} (parent {card.parent_version}); "
        f"next: `vigil validate-change {card.version}`",
    )


def _throughput_config(args: argparse.Namespace) -> ThroughputConfig | None:
    """The throughput suite's size from its four options; None when none is given."""
    if all(v is None for v in (args.studies, args.workers, args.batch_size, args.film_size)):
        return None
    if args.suite != "throughput":
        raise BadInputError(
            f"--studies, --workers, --batch-size and --film-size size the throughput suite, not {args.suite!r}"
        )
    from core.bench.throughput import ThroughputConfig

    default = ThroughputConfig()
    return ThroughputConfig(
        studies=args.studies or default.studies,
        workers=args.workers,
        batch_size=args.batch_size or default.batch_size,
        film_size=args.film_size,
    )


def _store_config(args: argparse.Namespace) -> StoreConfig | None:
    """The store suite's sizes, reads and server from ``--rows``, ``--store-reads``, ``--store-server``.

    None when none is given.
    """
    given = {flag: getattr(args, flag, None) for flag in ("rows", "store_reads", "store_server")}
    if all(v is None for v in given.values()):
        return None
    if args.suite != "store":
        flag = next(f for f, v in given.items() if v is not None).replace("_", "-")
        raise BadInputError(f"--{flag} configures the store suite, not {args.suite!r}")
    from core.bench.store import StoreConfig

    reads = given["store_reads"]
    names = () if reads is None else tuple(r.strip() for r in reads.split(","))
    return StoreConfig.for_rows(args.rows or StoreConfig().large, names, server=given["store_server"])


def _bench_command(args: argparse.Namespace) -> str:
    """The command line that measured a record, from the options that change what is measured."""
    parts = ["vigil bench --suite", args.suite, "--rounds", str(args.rounds)]
    for flag in ("rows", "store_reads", "studies", "film_size", "workers", "batch_size"):
        value = getattr(args, flag, None)
        if value is not None:
            parts += [f"--{flag.replace('_', '-')}", str(value)]
    if getattr(args, "store_server", None) is not None:
        parts += ["--store-server", "URL"]  # never the URL itself: it may carry a password
    return " ".join([*parts, "--record benchmarks"])


def _bench(args: argparse.Namespace) -> Outcome:
    from core.bench.report import render_markdown
    from core.bench.suites import record, run_suite

    if args.markdown is not None and args.record is None:
        raise BadInputError(f"--markdown {args.markdown} is written from --record DIR's figures: give --record too")
    run = run_suite(
        args.suite,
        sample_dir=_settings().sample_data_dir,
        rounds=args.rounds,
        throughput_config=_throughput_config(args),
        store_config=_store_config(args),
    )
    if args.record is not None:
        record(run, args.record, command=_bench_command(args))
        if args.markdown is not None:
            notes_file = args.record / "NOTES.md"
            notes = notes_file.read_text(encoding="utf-8") if notes_file.is_file() else ""
            args.markdown.write_text(render_markdown(args.record, notes=notes), encoding="utf-8")
    lines = [f"{'PASS' if r.passed else 'FAIL'}  {r.ratio:8.3f} <= {r.target:<6}  {r.name}" for r in run.results]
    return Outcome(run.to_dict(), "\n".join(lines), ok=run.passed)
