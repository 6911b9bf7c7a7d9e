"""Run one fuzz target in this process, under a memory cap: ``fuzz`` with atheris, or ``replay`` files.

``python tests/fuzz/run.py fuzz TARGET CORPUS_DIR... [-libFuzzer flags]`` fuzzes TARGET
(:data:`tests.fuzz.targets.TARGETS`) with coverage from ``core``'s imaging and FHIR packages and
the parsers under them (pydicom, fhir.resources, the JSON decoder is C). libFuzzer writes new
inputs into the first corpus folder and any finding as ``crash-*``, ``timeout-*`` or ``oom-*``
under ``-artifact_prefix``; ``-timeout`` and ``-rss_limit_mb`` bound each input.

``python tests/fuzz/run.py replay TARGET FILE...`` runs each file once, in order, each under an
alarm of :data:`REPLAY_TIMEOUT_S` (a hang kills the process with SIGALRM), and prints one line per
file; an exception ends the process with its traceback.

Both cap the address space at :data:`ADDRESS_SPACE_BYTES` first, so an input that makes a parser
allocate without bound fails here with MemoryError instead of exhausting the machine.

libFuzzer's ``-minimize_crash=1`` re-runs its own command line; a Python script is not that
command, so ``VIGIL_FUZZ_COMMAND`` may name an executable that runs ``run.py fuzz TARGET "$@"``
(``tests/fuzz/test_fuzz.py`` writes one) and atheris is told that is the program.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import warnings
from pathlib import Path
from typing import Final

#: The address-space cap (RLIMIT_AS) for the fuzzing process, in bytes.
ADDRESS_SPACE_BYTES: Final = 3 << 30

#: Seconds one input may run when replayed.
REPLAY_TIMEOUT_S: Final = 10

#: Packages whose code atheris instruments for coverage feedback.
INSTRUMENTED: Final = ["core.imaging", "core.fhir", "pydicom", "fhir"]
#: Modules that are data tables, not parsing code: rewriting their bytecode took most of a minute.
NOT_INSTRUMENTED: Final = ["pydicom._dicom_dict", "pydicom._private_dict", "pydicom._uid_dict", "pydicom.sr"]


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))


def _quiet() -> None:
    # pydicom warns about every odd element; millions of inputs would flood the log.
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.CRITICAL)


def fuzz(target: str, argv: list[str]) -> None:
    """Fuzz ``target`` with atheris; ``argv`` is libFuzzer's command line (corpus folders, flags)."""
    import atheris

    from tests.fuzz.targets import load

    with atheris.instrument_imports(include=INSTRUMENTED, exclude=NOT_INSTRUMENTED):
        run = load(target)
    atheris.Setup([os.environ.get("VIGIL_FUZZ_COMMAND", sys.argv[0]), *argv], run)
    atheris.Fuzz()


def replay(target: str, files: list[str]) -> None:
    """Run ``target`` once on each file, each under a SIGALRM of :data:`REPLAY_TIMEOUT_S`."""
    from tests.fuzz.targets import load

    run = load(target)
    for name in files:
        data = Path(name).read_bytes()
        signal.alarm(REPLAY_TIMEOUT_S)  # default action: terminate, even inside C code
        run(data)
        signal.alarm(0)
        print(f"ok {name}", flush=True)


def main() -> None:
    """Parse ``MODE TARGET ARGS...`` and run."""
    mode, target, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    _cap_memory()
    _quiet()
    if mode == "fuzz":
        fuzz(target, rest)
    elif mode == "replay":
        replay(target, rest)
    else:
        raise SystemExit(f"unknown mode {mode!r}: expected fuzz or replay")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for `core`
    main()
