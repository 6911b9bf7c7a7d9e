"""Coverage-guided fuzzing (atheris) of the DICOM gate and the FHIR parser, time-boxed, and the corpus replay.

Each target runs in a child process capped at :data:`tests.fuzz.run.ADDRESS_SPACE_BYTES` of
address space, with libFuzzer's per-input ``-timeout`` and ``-rss_limit_mb``: a crash (any
exception but the parser's documented error), a hang or a memory blow-up is a finding. A finding
is minimized (``-minimize_crash=1``) into ``tests/fuzz/regressions/<corpus>/`` and the test fails
naming it; commit the file with the fix, and :func:`test_the_corpus_and_every_past_finding_replay`
replays it on every run from then on.

The fuzzing test prints ``fuzz: executions N, unique crashes 0``, the README's figure
(``.venv/bin/pytest -q -s -p no:cacheprovider tests/fuzz/test_fuzz.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

HERE: Final = Path(__file__).resolve().parent
RUN: Final = HERE / "run.py"
CORPUS: Final = HERE / "corpus"
REGRESSIONS: Final = HERE / "regressions"

#: Target name -> the folder of its seeds (under CORPUS) and of its findings (under REGRESSIONS).
FOLDERS: Final = {"dicom-gate": "dicom", "fhir-parser": "fhir"}

#: Seconds of fuzzing per target (two targets: under a minute in all).
FUZZ_SECONDS: Final = 20
#: libFuzzer's per-input limits: seconds, and resident memory in MiB.
INPUT_TIMEOUT_S: Final = 10
RSS_LIMIT_MB: Final = 1536
#: Seconds libFuzzer may spend shrinking one finding.
MINIMIZE_SECONDS: Final = 30

_FINDING_KINDS: Final = ("crash", "timeout", "oom", "leak", "slow-unit")


def _env() -> dict[str, str]:
    # One BLAS thread: the fuzzers share the machine with the rest of the suite.
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _inputs(target: str) -> list[Path]:
    folder = FOLDERS[target]
    return sorted(p for d in (CORPUS / folder, REGRESSIONS / folder) if d.is_dir() for p in d.iterdir() if p.is_file())


def _command(target: str, where: Path) -> Path:
    """An executable that runs ``run.py fuzz TARGET``, for libFuzzer to re-run while minimizing.

    The shell forks the fuzzer instead of exec'ing it: Linux keeps a process's peak resident size
    (``ru_maxrss``, which libFuzzer's ``-rss_limit_mb`` reads) across exec, and a child started from
    the test run inherits the whole pytest process's peak. Late in the full suite that alone
    (about 1.6 GB) passed the limit, and every first input was reported as out of memory.
    """
    script = where / f"fuzz-{target}"
    body = f'#!/bin/sh\n"{sys.executable}" "{RUN}" fuzz {target} "$@"\nexit $?\n'
    script.write_text(body, encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _fuzz(target: str, work: Path) -> tuple[int, list[Path], str]:
    """Fuzz ``target`` for FUZZ_SECONDS from its seeds and findings; return executions, findings, log tail."""
    new_inputs, artifacts = work / "corpus", work / "artifacts"
    new_inputs.mkdir(parents=True)
    artifacts.mkdir()
    folder = FOLDERS[target]
    seeds = [str(d) for d in (CORPUS / folder, REGRESSIONS / folder) if d.is_dir() and any(d.iterdir())]
    flags = [f"-max_total_time={FUZZ_SECONDS}", f"-timeout={INPUT_TIMEOUT_S}", f"-rss_limit_mb={RSS_LIMIT_MB}"]
    flags += [f"-artifact_prefix={artifacts}/", "-print_final_stats=1"]
    done = subprocess.run(
        [str(_command(target, work)), *flags, str(new_inputs), *seeds],
        env={**_env(), "VIGIL_FUZZ_COMMAND": str(_command(target, work))},
        capture_output=True,
        text=True,
        timeout=FUZZ_SECONDS + 120,
        check=False,
    )
    log = done.stdout + done.stderr
    executions = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    findings = sorted(p for p in artifacts.iterdir() if p.name.startswith(_FINDING_KINDS))
    if executions is None or (done.returncode != 0 and not findings):
        raise AssertionError(
            f"{target}: the fuzzer stopped without its statistics (exit {done.returncode}):\n{log[-4000:]}"
        )
    return int(executions.group(1)), findings, log[-4000:]


def _minimize(target: str, finding: Path, work: Path) -> Path:
    """Shrink ``finding`` into the regression corpus and return where it went."""
    data = finding.read_bytes()
    kind = finding.name.split("-")[0]
    out = REGRESSIONS / FOLDERS[target] / f"{kind}-{hashlib.sha1(data).hexdigest()}"  # noqa: S324  (a name, not security)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)  # kept as found if minimizing fails (a timeout cannot be minimized)
    command = _command(target, work)
    subprocess.run(
        [
            str(command),
            "-minimize_crash=1",
            f"-max_total_time={MINIMIZE_SECONDS}",
            f"-timeout={INPUT_TIMEOUT_S}",
            f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-exact_artifact_path={out}",
            str(finding),
        ],
        env={**_env(), "VIGIL_FUZZ_COMMAND": str(command)},
        capture_output=True,
        timeout=MINIMIZE_SECONDS + 120,
        check=False,
    )
    return out


def fuzz_figure(executions: int, crashes: int) -> str:
    """The line the fuzzing test prints, which the README's reliability section quotes."""
    return f"fuzz: executions {executions}, unique crashes {crashes}"


@pytest.mark.parametrize("target", sorted(FOLDERS))
def test_the_corpus_and_every_past_finding_replay(target: str) -> None:
    # Prepare
    inputs = _inputs(target)

    # Execute: in a child under the same memory cap, each input under an alarm
    done = subprocess.run(
        [sys.executable, str(RUN), "replay", target, *map(str, inputs)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    # Assert
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.splitlines() == [f"ok {p}" for p in inputs]
    assert len(inputs) >= 5


def test_fuzzing_finds_no_crash_hang_or_memory_blowup(tmp_path: Path) -> None:
    # Execute: each target in turn, from its seeds and past findings
    executions: dict[str, int] = {}
    kept: list[Path] = []
    tails: list[str] = []
    for target in sorted(FOLDERS):
        count, findings, tail = _fuzz(target, tmp_path / target)
        executions[target] = count
        kept += [_minimize(target, f, tmp_path / target) for f in findings]
        if findings:
            tails.append(f"--- {target}\n{tail}")
        print(f"\nfuzz [{target}]: executions {count}, unique crashes {len(findings)}")
    print(fuzz_figure(sum(executions.values()), len(kept)))

    # Assert: no finding, and each target really ran (a broken harness runs nothing)
    assert not kept, (
        f"fuzzing found {len(kept)} input(s), minimized into {kept}; commit them with the fix:\n" + "\n".join(tails)
    )
    assert all(count >= 100 for count in executions.values()), executions
