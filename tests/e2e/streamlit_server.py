"""``streamlit run serve.py`` on a free loopback port for a browser test, and the Chromium it drives.

Chromium is the distribution's (no browser download); as root it needs ``--no-sandbox``, and the
other flags keep it off the closed network.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.child_server import free_port
from tests.ui.installation import Installation

__all__ = ["ARTIFACTS", "CHROMIUM", "CHROMIUM_ARGS", "REPO", "serve"]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT_S = 90.0


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                if response.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"streamlit did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def serve(inst: Installation, log: Path, *, config: Path | None = None) -> Iterator[str]:
    """Serve ``inst`` until the block ends; yields the base URL. Streamlit's output goes to ``log``.

    ``config`` is given to the server as ``VIGIL_CONFIG`` (none by default).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "VIGIL_CONFIG"} | inst.env | {"OMP_NUM_THREADS": "1"}
    if config is not None:
        env["VIGIL_CONFIG"] = str(config)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
