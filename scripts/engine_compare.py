"""scripts/engine-compare's body, run by it with the repository's .venv (what it measures is said there).

A file rather than standard input: the local engine's worker processes start by importing it.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from core.bench.films import enlarge_film
from core.config import Settings
from core.models.card import read_card
from core.models.loading import BUNDLED_DIR
from core.pipeline import Engine, FlowLimits, StreamingPipeline, default_workers
from core.sampledata import SITES, generate_cohort
from core.services import models, sites
from core.services.store import open_store


def now() -> datetime:
    """The stores' clock."""
    return datetime.now(UTC)


def new_store(home: Path) -> tuple[object, object]:
    """A new SQLite store under ``home`` with the bundled model serving a site ``bench``."""
    home.mkdir(parents=True)
    sf = open_store(Settings(home=home, database_url=f"sqlite:///{home / 'vigil.db'}"))
    card = read_card(BUNDLED_DIR / "card.json")
    models.register_model(sf, card, source_dir=BUNDLED_DIR, models_dir=home / "models", actor="bench", now=now)
    sites.add_site(sf, "bench", benchmark=True, actor="bench", now=now)
    return sf, models.load_serving(sf, models_dir=home / "models")


def start_cluster(tmp: Path, workers: int) -> tuple[str, list[subprocess.Popen[bytes]], float]:
    """``dask scheduler`` and ``workers`` one-thread ``dask worker`` processes on loopback; seconds until all joined."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    info = tmp / "scheduler.json"
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                *common,
                "--port",
                "0",
                "--scheduler-file",
                str(info),
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
    ]
    while not (info.is_file() and info.stat().st_size):
        time.sleep(0.05)
    address = json.loads(info.read_text())["address"]
    procs += [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_worker",
                address,
                *common,
                "--nthreads",
                "1",
                "--no-nanny",
                "--local-directory",
                str(tmp / f"w{n}"),
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        for n in range(workers)
    ]
    from distributed import Client

    with Client(address, set_as_default=False) as c:
        c.wait_for_workers(workers)
    return address, procs, time.perf_counter() - t0


def main() -> None:
    """Interleaved rounds, local then dask, each into a new store; one JSON object on stdout."""
    p = argparse.ArgumentParser(prog="scripts/engine-compare")
    p.add_argument("--studies", type=int, default=300)
    p.add_argument("--workers", type=int, default=default_workers())
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--film-size", type=int, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="vigil-engines-") as tmp:
        root = Path(tmp)
        per_site = {s.name: args.studies // len(SITES) + (i < args.studies % len(SITES)) for i, s in enumerate(SITES)}
        generate_cohort(root / "cohort", seed=19, studies_per_site=per_site)
        files = sorted((root / "cohort").rglob("*.dcm"))
        if args.film_size:
            for f in files:
                enlarge_film(f, size=args.film_size)
        address, procs, startup = start_cluster(root, args.workers)
        rates = {"local": [], "dask": []}
        try:
            for r in range(args.rounds):
                for kind in ("local", "dask"):
                    engine = Engine(kind, address if kind == "dask" else None)
                    sf, model = new_store(root / f"{kind}-{r}")
                    limits = FlowLimits.for_workers(args.workers, 64)
                    with StreamingPipeline(
                        sf,
                        dicom_dir=root / f"{kind}-{r}" / "dicom",
                        model=model,
                        limits=limits,
                        actor="bench",
                        now=now,
                        engine=engine,
                    ) as pipe:
                        pipe.warm_up()
                        t0 = time.perf_counter()
                        report = pipe.run(files, site="bench")
                        seconds = time.perf_counter() - t0
                    assert len(report.ingest.ingested) == len(files) and report.scored == len(files), report
                    rates[kind].append(len(files) / seconds)
        finally:
            for proc in procs:
                proc.terminate()
        local, dask = statistics.median(rates["local"]), statistics.median(rates["dask"])
        sys.stdout.write(
            json.dumps(
                {
                    "studies": len(files),
                    "workers": args.workers,
                    "rounds": args.rounds,
                    "film_size": args.film_size,
                    "cpus": os.cpu_count(),
                    "dask_cluster_start_s": round(startup, 2),
                    "studies_per_s": {"local": round(local, 1), "dask": round(dask, 1)},
                    "dask_over_local": round(dask / local, 3),
                    "rounds_studies_per_s": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":  # the pipeline's worker processes import this file again
    main()
