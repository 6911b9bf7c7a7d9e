"""Where a trained model came from: the code revision and the software and floating-point environment."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import torch

from core.types import JSONObject

__all__ = ["code_version", "environment"]


def code_version() -> str:
    """``git:<commit>`` of the checkout (``+dirty`` when ``core/`` differs from it), else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--", "core")
    except (OSError, subprocess.SubprocessError):
        return f"vigil {_version('vigil')}"
    return f"git:{sha}{'+dirty' if dirty else ''}"


def environment(packages: Sequence[str]) -> JSONObject:
    """Versions of ``packages``, Python, the platform, torch's threads, CPU kernel level and processor."""
    env: JSONObject = {p: _version(p) for p in packages}
    env["python"] = platform.python_version()
    env["platform"] = platform.platform()
    env["torch_threads"] = torch.get_num_threads()
    # Float32 weights are byte-reproducible only on the same floating-point environment: the CPU
    # kernels torch dispatched to (AVX2, AVX512, ...) and the processor, so the card names both.
    env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    env["processor"] = _processor_name()
    return env


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _processor_name() -> str:
    """The CPU model as the OS reports it (``/proc/cpuinfo`` on Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
