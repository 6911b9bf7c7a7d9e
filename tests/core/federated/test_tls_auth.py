"""Flower's TLS and SuperNode authentication, run for real on loopback with certificates made here.

One SuperLink with ``--ssl-*`` and ``--enable-supernode-auth``; one SuperNode key registered with
``flwr supernode register``. Four SuperNodes then try to join: the registered one (it comes
online), one with a key never registered (refused at activation), one with no key (it asks to
register itself, which ``--enable-supernode-auth`` refuses) and one that does not hold the CA
certificate (its TLS handshake fails). These are the README's "Several hospitals" commands,
with loopback addresses in place of the coordinating centre's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.federated.launcher import ENV_MARKER, free_port, marked_pids
from tests.tls_material import ServerCerts, write_node_key, write_server_certs

BIN = Path(sys.executable).parent
_CONNECTION = "coordinating"
#: Flower's reason when a SuperNode cannot connect to the SuperLink (Flower 1.42's ref-exit-codes/305);
#: the process itself exits with 1 for every error code.
_CANNOT_CONNECT = "Exit Code: 305"


@dataclass
class Federation:
    """Flower processes of one test, each in its own session and carrying one marker, with their logs."""

    work: Path
    marker: str
    procs: dict[str, subprocess.Popen[bytes]]

    def env(self, home: str) -> dict[str, str]:
        flwr_home = self.work / "homes" / home
        flwr_home.mkdir(parents=True, exist_ok=True)
        # The SuperLink starts `flower-superexec` by name: the venv's bin must be on PATH.
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        # Flower reports errors to its telemetry service unless told not to; a test reaches no network.
        return {
            **os.environ, "FLWR_HOME": str(flwr_home), "PATH": path, ENV_MARKER: self.marker,
            "FLWR_TELEMETRY_ENABLED": "0",
        }  # fmt: skip

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with self.log(name).open("wb") as out:
            proc = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]], env=self.env(name), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> Path:
        return self.work / f"{name}.log"

    def flwr(self, *args: str) -> dict[str, object]:
        """Run ``flwr ARGS --format json`` as the coordinating centre's operator; return its JSON answer."""
        done = subprocess.run(
            [str(BIN / "flwr"), *args, "--format", "json"], env=self.env("cli"), capture_output=True, timeout=60,
            check=False,
        )  # fmt: skip
        out = done.stdout.decode(errors="replace")
        answer: dict[str, object] = json.loads(out[out.index("{") :])
        assert answer.get("success") is True, f"flwr {' '.join(args)} failed: {out} {done.stderr!r}"
        return answer

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # SuperExec and app processes run in sessions of their own; the marker finds them.
        for pid in marked_pids(self.marker):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    fed = Federation(tmp_path, uuid.uuid4().hex, {})
    try:
        yield fed
    finally:
        fed.stop()
        time.sleep(0.5)
        assert marked_pids(fed.marker) == [], "a Flower process outlived the test"


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the SuperLink exited: {log.read_text(errors='replace')[-2000:]}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    pytest.fail(f"the SuperLink did not open port {port}: {log.read_text(errors='replace')[-2000:]}")


def _start_superlink(fed: Federation, certs: ServerCerts) -> int:
    port = free_port()
    link = fed.start(
        "superlink",
        [
            "flower-superlink",
            "--ssl-ca-certfile", str(certs.ca), "--ssl-certfile", str(certs.cert), "--ssl-keyfile", str(certs.key),
            "--enable-supernode-auth", "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1", "--port", str(port),
        ],
    )  # fmt: skip
    _wait_for_port(port, link, fed.log("superlink"))
    (fed.work / "homes" / "cli").mkdir(parents=True, exist_ok=True)
    (fed.work / "homes" / "cli" / "config.toml").write_text(
        f'[superlink]\ndefault = "{_CONNECTION}"\n\n[superlink.{_CONNECTION}]\n'
        f'address = "127.0.0.1:{port}"\nroot-certificates = "{certs.ca}"\n',
        encoding="utf-8",
    )
    return port


def _start_supernode(
    fed: Federation, name: str, port: int, key: Path | None, ca: Path | None
) -> subprocess.Popen[bytes]:
    trust = ["--root-certificates", str(ca)] if ca else []
    # Without a key a SuperNode asks the Fleet API to register it; only --enable-supernode-auth stops that.
    auth = ["--auth-supernode-private-key", str(key)] if key else []
    return fed.start(
        name,
        [
            "flower-supernode", "--superlink", f"127.0.0.1:{port}", *trust, *auth, "--port", str(free_port()),
            "--max-retries", "2", "--max-wait-time", "20",
        ],
    )  # fmt: skip


def _nodes(fed: Federation) -> list[dict[str, str]]:
    nodes = fed.flwr("supernode", "ls", _CONNECTION)["nodes"]
    assert isinstance(nodes, list)
    return nodes


def _wait_online(fed: Federation, node_id: str, timeout: float = 60.0) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        nodes = _nodes(fed)
        if any(n["node-id"] == node_id and n["status"] == "online" for n in nodes):
            return nodes
        time.sleep(1)
    pytest.fail(f"node {node_id} never came online: {fed.log('registered').read_text(errors='replace')[-2000:]}")


def _exit_code(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{proc.args!r} was still running after {timeout:.0f} s")


def test_only_the_registered_supernode_holding_the_ca_joins(federation: Federation, tmp_path: Path) -> None:
    certs = write_server_certs(tmp_path / "centre")
    registered_key, registered_pub = write_node_key(tmp_path / "northfield", "node")
    stranger_key, _ = write_node_key(tmp_path / "stranger", "node")
    port = _start_superlink(federation, certs)

    node_id = str(
        federation.flwr("supernode", "register", str(registered_pub), _CONNECTION, "--name", "northfield")["node-id"]
    )
    registered = _start_supernode(federation, "registered", port, registered_key, certs.ca)
    stranger = _start_supernode(federation, "stranger", port, stranger_key, certs.ca)
    keyless = _start_supernode(federation, "keyless", port, None, certs.ca)
    # The registered key, but without the centre's CA: the node must not trust the SuperLink.
    untrusting = _start_supernode(federation, "untrusting", port, registered_key, None)

    nodes = _wait_online(federation, node_id)
    assert registered.poll() is None
    assert [n["node-id"] for n in nodes] == [node_id], "only the registered key may appear in the federation"

    assert _exit_code(stranger) == 1
    refusal = federation.log("stranger").read_text(errors="replace")
    assert _CANNOT_CONNECT in refusal
    assert "Failed to activate SuperNode" in refusal
    assert "No SuperNode found with the given public key" in federation.log("superlink").read_text(errors="replace")

    assert _exit_code(keyless) == 1
    self_registration = federation.log("keyless").read_text(errors="replace")
    assert _CANNOT_CONNECT in self_registration
    assert "All SuperNodes must be registered via the CLI" in self_registration

    assert _exit_code(untrusting) == 1
    distrust = federation.log("untrusting").read_text(errors="replace")
    assert _CANNOT_CONNECT in distrust
    assert "CERTIFICATE_VERIFY_FAILED" in distrust
    assert [n["node-id"] for n in _nodes(federation)] == [node_id]
