"""A federation on one machine: a SuperLink and one SuperNode per site as subprocesses on loopback.

This is Flower's own deployment runtime (the same ``flower-superlink``, ``flower-supernode`` and
``flwr run`` a multi-hospital deployment uses), without TLS, on free ports of 127.0.0.1. Every
process gets a private Flower home, its log file, its own session (so a Ctrl-C reaches Vigil,
which then stops them in order) and a marker in its environment. Stopping sends SIGTERM to each
process group, then SIGKILL, then kills any process still carrying the marker: Flower starts
helpers (SuperExec, the apps) in sessions of their own, which a process-group signal misses.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from core.errors import BadInputError, CheckFailedError
from core.federated.runlog import read_events
from core.types import JSONObject

__all__ = [
    "APP_TOML",
    "ENV_MARKER",
    "FederationFailedError",
    "LocalFederation",
    "SiteNode",
    "marked_pids",
    "stage_app",
]

#: Environment variable carrying a federation's marker into every process it starts.
ENV_MARKER: Final = "VIGIL_FL_FEDERATION"
_CONNECTION: Final = "vigil-local"
_TERMINAL: Final = frozenset({"finished", "failed"})
#: Seconds to wait for the ServerApp's last events once ``flwr run --stream`` has exited.
_LAST_WORDS: Final = 15.0

#: The Flower App's ``pyproject.toml`` as staged for ``flwr run``: its ``[tool.flwr.app]`` is the
#: repository's (a test keeps the two equal).
APP_TOML: Final = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "vigil"
version = "0.1.0"
description = "Vigil's federated training apps."
dependencies = []

[tool.flwr.app]
publisher = "vigil"
fab-include = ["core/**/*.py", "core/**/*.json", "core/**/*.toml"]

[tool.flwr.app.components]
serverapp = "core.federated.server_app:app"
clientapp = "core.federated.client_app:app"

[tool.flwr.app.config]
run-dir = ""
"""


class FederationFailedError(CheckFailedError):
    """The local federation did not start, or its run ended without finishing."""


@dataclass(frozen=True, slots=True)
class SiteNode:
    """One SuperNode: the site it speaks for, its data manifest and its signing key (paths stay local).

    ``environ`` is added to the federation's environment for this node alone (a site's own
    Python path or devices), as a hospital's SuperNode runs in that hospital's environment.
    """

    site: str
    manifest: Path
    key: Path
    environ: Mapping[str, str] = field(default_factory=dict)


def stage_app(core_dir: Path, app_dir: Path) -> Path:
    """Copy the ``core`` package's Python and data files and :data:`APP_TOML` into ``app_dir``.

    ``flwr run`` packs the app from this snapshot, so files being edited in the working tree
    while a run starts cannot end up half in it, and an installed (non-editable) Vigil works too.
    """
    target = app_dir / "core"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(
        core_dir,
        target,
        ignore=lambda _d, names: [
            n for n in names if n == "__pycache__" or ("." in n and not n.endswith((".py", ".json", ".toml")))
        ],
    )
    (app_dir / "pyproject.toml").write_text(APP_TOML, encoding="utf-8")
    return app_dir


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FederationFailedError(f"the SuperLink exited with code {proc.returncode}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    raise FederationFailedError(f"the SuperLink did not open port {port} within {timeout:.0f} s: {_tail(log)}")


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def marked_pids(marker: str) -> list[int]:
    """Processes whose environment carries ``ENV_MARKER=marker`` (Linux ``/proc``; ``[]`` elsewhere)."""
    needle = f"{ENV_MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return sorted(pid for pid in found if pid != os.getpid())


def _check_node_value(value: str) -> str:
    # flower-supernode's --node-config is split on spaces and quotes: a path holding one would be cut.
    if any(c.isspace() or c in "\"'=" for c in value):
        raise BadInputError(f"{value!r} cannot be passed to a SuperNode: it holds a space, a quote or '='")
    return value


class LocalFederation:
    """Start a SuperLink and ``sites`` SuperNodes on entry, stop every process on exit.

    Parameters
    ----------
    work_dir : Path
        Receives the Flower homes and the processes' logs (``logs/``).
    sites : sequence of SiteNode
    environ : mapping of str to str
        The environment the processes inherit (the caller's, read at the edge).
    bin_dir : Path, optional
        Where ``flower-superlink``, ``flower-supernode``, ``flower-superexec`` and ``flwr`` are;
        the running Python's ``bin`` by default.
    startup_timeout : float
        Seconds the SuperLink has to open its port.
    """

    def __init__(
        self,
        *,
        work_dir: Path,
        sites: Sequence[SiteNode],
        environ: Mapping[str, str],
        bin_dir: Path | None = None,
        startup_timeout: float = 90.0,
    ) -> None:
        self.work_dir = work_dir
        self.environ = dict(environ)
        self.sites = tuple(sites)
        for node in self.sites:
            for value in (node.site, str(node.manifest), str(node.key)):
                _check_node_value(value)
        self.bin_dir = bin_dir or Path(sys.executable).parent
        self.startup_timeout = startup_timeout
        self.marker = uuid.uuid4().hex
        self.port = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        (work_dir / "logs").mkdir(parents=True, exist_ok=True)

    def _env(self, home: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {**self.environ, **(extra or {})}
        env["FLWR_HOME"] = str(self.work_dir / "flwr-home" / home)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env[ENV_MARKER] = self.marker
        Path(env["FLWR_HOME"]).mkdir(parents=True, exist_ok=True)
        return env

    def _start(
        self, args: list[str], *, home: str, log: str, extra: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with (self.work_dir / "logs" / log).open("wb") as out:
            proc = subprocess.Popen(
                args, env=self._env(home, extra), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Self:
        try:
            self.port = free_port()
            link = self._start(
                [
                    str(self.bin_dir / "flower-superlink"),
                    "--insecure",
                    "--disable-runtime-dependency-installation",
                    "--host", "127.0.0.1",
                    "--port", str(self.port),
                ],
                home="superlink",
                log="superlink.log",
            )  # fmt: skip
            _wait_for_port(self.port, link, self.startup_timeout, self.work_dir / "logs" / "superlink.log")
            for node in self.sites:
                config = f"site='{node.site}' data-manifest='{node.manifest}' signing-key='{node.key}'"
                self._start(
                    [
                        str(self.bin_dir / "flower-supernode"),
                        "--insecure",
                        "--superlink", f"127.0.0.1:{self.port}",
                        "--port", str(free_port()),
                        "--node-config", config,
                    ],
                    home=f"site-{node.site}",
                    log=f"supernode-{node.site}.log",
                    extra=node.environ,
                )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def run(
        self,
        app_dir: Path,
        run_dir: Path,
        *,
        on_event: Callable[[JSONObject], None],
        timeout: float,
        poll: float = 0.5,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> list[JSONObject]:
        """Submit the app with ``flwr run``, pass each new event of ``run_dir`` to ``on_event``, return them all.

        ``interrupted`` is asked between polls; when it says True the run stops with
        ``KeyboardInterrupt`` there, never inside ``on_event`` (which may be writing to the store).

        Returns when the run's log says ``finished`` or ``failed`` (and ``flwr run`` has exited
        or been stopped).

        Raises
        ------
        FederationFailedError
            ``flwr run`` failed before the run began, a Flower process died, or ``timeout``
            seconds passed without a ``finished`` or ``failed`` event.
        """
        home = self._env("cli")["FLWR_HOME"]
        (Path(home) / "config.toml").write_text(
            f'[superlink]\ndefault = "{_CONNECTION}"\n\n[superlink.{_CONNECTION}]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n',
            encoding="utf-8",
        )
        submit = self._start(
            [
                str(self.bin_dir / "flwr"), "run", str(app_dir), _CONNECTION, "--stream",
                "--run-config", f'run-dir="{run_dir}"',
            ],
            home="cli",
            log="flwr-run.log",
        )  # fmt: skip
        events: list[JSONObject] = []
        now = time.monotonic()
        deadline, submit_gone = now + timeout, now + timeout
        while time.monotonic() < min(deadline, submit_gone):
            if interrupted():
                raise KeyboardInterrupt
            new = read_events(run_dir, skip=len(events))
            for event in new:
                on_event(event)
            events += new
            if any(e.get("event") in _TERMINAL for e in new):
                return events
            self._check_alive(submit)
            if submit.poll() == 0 and submit_gone > time.monotonic() + _LAST_WORDS:
                # `flwr run --stream` ends with the run; the ServerApp's last lines may still be on their way.
                submit_gone = time.monotonic() + _LAST_WORDS
            time.sleep(poll)
        log = _tail(self.work_dir / "logs" / "flwr-run.log")
        if time.monotonic() >= deadline:
            raise FederationFailedError(f"the run did not finish within {timeout:.0f} s: {log}")
        raise FederationFailedError(f"the run ended without the ServerApp saying it finished or failed: {log}")

    def _check_alive(self, submit: subprocess.Popen[bytes]) -> None:
        if submit.poll() not in (None, 0):
            raise FederationFailedError(
                f"flwr run exited with code {submit.returncode}: {_tail(self.work_dir / 'logs' / 'flwr-run.log')}"
            )
        for proc in self.procs[: 1 + len(self.sites)]:
            if proc.poll() is not None:
                raise FederationFailedError(f"a Flower process exited with code {proc.returncode}: {proc.args!r}")

    def stop(self, *, grace: float = 5.0) -> None:
        """Stop every process this federation started, and any helper they started."""
        for proc in reversed(self.procs):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        _kill_marked(self.marker, deadline=time.monotonic() + grace)
        self.procs.clear()


def _kill_marked(marker: str, *, deadline: float) -> None:
    """SIGKILL every process carrying ``marker`` until none is left, or ``deadline`` passes.

    One sweep is not enough: a process just killed is still listed until the kernel has torn it
    down, and a helper may have started another one between the listing and the kill.
    """
    while pids := marked_pids(marker):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
