"""The streaming path from files to stored scores, with bounded memory.

Gate and preprocess in worker processes (:mod:`core.pipeline.work`, :mod:`core.pipeline.pool`) or
on a Dask cluster's workers (:mod:`core.pipeline.engine`);
store, score and audit in batches in the main process (:mod:`core.pipeline.run`); re-read stored
studies for scoring the same way (:mod:`core.pipeline.stored`).
"""

from __future__ import annotations

from core.pipeline.engine import ENGINES, Engine
from core.pipeline.pool import FlowLimits, default_workers
from core.pipeline.run import PipelineReport, StreamingPipeline
from core.pipeline.stored import StoredScorer

__all__ = ["ENGINES", "Engine", "FlowLimits", "PipelineReport", "StoredScorer", "StreamingPipeline", "default_workers"]
