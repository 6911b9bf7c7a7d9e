"""What the throwaway servers the tests start (PostgreSQL, Orthanc, Streamlit) share."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

__all__ = ["free_port", "stop_and_remove", "tail"]


def free_port() -> int:
    """A TCP port free on loopback now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def stop_and_remove(process: subprocess.Popen[bytes], root: Path, *, sig: signal.Signals = signal.SIGTERM) -> None:
    """Stop ``process`` with ``sig`` (killed after 30 s) and delete its folder ``root``; idempotent."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    shutil.rmtree(root, ignore_errors=True)


def tail(log: Path, *, missing: str) -> str:
    """The last 4000 characters of a server's log, for a failing test's message."""
    try:
        return log.read_text(encoding="utf-8", errors="replace")[-4000:]
    except OSError:
        return missing
