"""The fuzz targets: bytes in; a result or the one documented error out. Anything else is a finding.

``dicom-gate`` is the ingest gate (:func:`core.imaging.gate.check_file`), which promises that
every failure leaves as :class:`~core.errors.DicomRejectedError` with a one-sentence reason, and
that an accepted instance holds exactly the bytes it was given. ``fhir-parser`` is
:func:`core.fhir.parse.parse_payload`, which promises :class:`~core.errors.FhirPayloadError`;
each input is parsed both as JSON and as NDJSON, the two ways a payload's name selects.

:func:`load` imports only the parser a target needs, when it is called: the fuzzer calls it
inside atheris' instrumentation, and each instrumented module costs start-up time.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

__all__ = ["TARGETS", "load"]

Target = Callable[[bytes], None]


def _scratch_file() -> Path:
    """A file of its own that each DICOM input is written to (the gate reads paths), removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="vigil-fuzz-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder / "input.dcm"


def _dicom_gate() -> Target:
    from core.errors import DicomRejectedError
    from core.imaging.gate import check_file

    path = _scratch_file()

    def run(data: bytes) -> None:
        path.write_bytes(data)
        try:
            accepted = check_file(path)
        except DicomRejectedError as exc:
            if not exc.reason.strip() or "\n" in exc.reason:
                raise AssertionError(f"a rejection that is not one sentence: {exc.reason!r}") from exc
            return
        if accepted.data != data:
            raise AssertionError("the gate accepted other bytes than it was given")

    return run


def _fhir_parser() -> Target:
    from core.errors import FhirPayloadError
    from core.fhir.parse import parse_payload

    def run(data: bytes) -> None:
        for name in ("fuzz.json", "fuzz.ndjson"):
            try:
                parse_payload(data, name=name)
            except FhirPayloadError:
                pass

    return run


#: Target name -> the function that imports its parser and returns the target.
TARGETS: Final[dict[str, Callable[[], Target]]] = {"dicom-gate": _dicom_gate, "fhir-parser": _fhir_parser}


def load(name: str) -> Target:
    """Import ``name``'s parser and return its target: ``target(data)`` raises only on a finding."""
    return TARGETS[name]()
