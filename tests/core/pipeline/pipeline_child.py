"""Run the pipeline over a store in a process of its own, printing one line per stored batch.

``python -m tests.core.pipeline.pipeline_child HOME PATH...`` ingests and scores the files;
``python -m tests.core.pipeline.pipeline_child --stored HOME`` scores what the store holds with
the pipeline's workers (``vigil predict --workers``). The kill -9 tests start it, wait for a few
batches and kill it with SIGKILL.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from core.config import Settings
from core.pipeline import FlowLimits, StoredScorer, StreamingPipeline
from core.services import models, prediction
from core.services.store import open_store
from tests.core.pipeline.conftest import fixed_clock


def main(argv: list[str]) -> int:
    rescore = argv[0] == "--stored"
    argv = argv[1:] if rescore else argv
    home, paths = Path(argv[0]), [Path(p) for p in argv[1:]]
    settings = Settings(home=home, database_url=f"sqlite:///{home / 'vigil.db'}")
    sf = open_store(settings)
    model = models.load_serving(sf, models_dir=home / "models")
    limits = FlowLimits(workers=2, batch_size=2, max_in_flight=4)

    def stored(n: int) -> None:
        print(f"stored {n}", flush=True)
        time.sleep(0.1)  # keeps the run open long enough for the test's SIGKILL to land midway on any machine

    if rescore:
        with StoredScorer(limits) as scorer:
            prediction.predict_serving(
                sf, lambda _: model, site=None, batch_size=2, actor="t", now=fixed_clock, progress=stored,
                maps_dir=settings.artifacts_dir, scorer=scorer,
            )  # fmt: skip
        print("done", flush=True)
        return 0
    with StreamingPipeline(
        sf, dicom_dir=home / "dicom", model=model, limits=limits, actor="t", now=fixed_clock,
        maps_dir=settings.artifacts_dir,
    ) as pipe:  # fmt: skip
        pipe.run(paths, site="benchmark", progress=stored)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
