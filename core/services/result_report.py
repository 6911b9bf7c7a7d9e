"""The serving model's result on a study as a DICOM Structured Report, for the PACS.

The report states what the stored prediction says (score, the threshold it was judged against,
the finding) under the version that made it; nothing is recomputed here.
"""

from __future__ import annotations

from pathlib import Path

from core import __version__
from core.errors import BadInputError
from core.imaging.export import ExportedObject
from core.imaging.sr import ModelResult, write_model_result_sr
from core.store import deployments, predictions, studies
from core.store.engine import SessionFactory

__all__ = ["MODEL_NAME", "export_result_sr"]

#: What the report names as the algorithm; the version says which one.
MODEL_NAME = "Vigil chest radiograph nodule classifier"


def export_result_sr(sf: SessionFactory, study_uid: str, *, out_dir: Path) -> ExportedObject:
    """Write the stored result on ``study_uid`` of the version serving its site as an SR into ``out_dir``.

    Raises
    ------
    UnknownStudyError
        No such study.
    BadInputError
        No version serves its site, the version serving it has not scored the study (run ``vigil predict``),
        or its image could not be scored; nothing is written.
    """
    with sf() as session:
        instances = studies.list_instances(session, study_uid)  # refuses an unknown study
        site = studies.get_study(session, study_uid).site_name
        serving = deployments.version_serving(session, site)
        if serving is None:
            raise BadInputError("no model version serves yet; `vigil init` registers the first")
        source = instances[0]
        prediction = predictions.prediction_for(session, source.id, serving.id)
    if prediction is None:
        raise BadInputError(
            f"study {study_uid} has no result from {serving.version}, the version serving site {site!r}: "
            "run `vigil predict`"
        )
    if prediction.score is None:
        raise BadInputError(f"study {study_uid} could not be scored by {serving.version}: no result to report")
    result = ModelResult(
        model_name=MODEL_NAME,
        model_version=serving.version,
        score=prediction.score,
        threshold=prediction.threshold,
        content_datetime=prediction.created_at,
        software_version=__version__,
    )
    return write_model_result_sr(Path(source.path), result, out_dir=out_dir)
