"""A throwaway Orthanc PACS with its DICOMweb plugin, on loopback, for the PACS tests.

Orthanc 1.10 (Debian's ``orthanc`` and ``orthanc-dicomweb`` packages) has no bind-address
option, so the server is locked down instead: its DICOM port is off (``DicomServerEnabled``
false), HTTP answers loopback clients only (``RemoteAccessAllowed`` false), every request needs
the registered user's password (``AuthenticationEnabled``), and each server gets a storage
directory of its own under the system temporary directory and a free HTTP port. The Debian
service (``/etc/orthanc``) is never used: the server runs from a configuration file written
here, as a child of the test process (``setpriv --pdeathsig`` stops it if the tests die).

``scripts/install-system-deps`` installs the packages; when Orthanc or the plugin is missing the
tests fail, they are never skipped. The plugin is looked for where Debian puts it
(``/usr/share/orthanc/plugins/libOrthancDicomWeb.so``, a link into ``/usr/lib/orthanc``), or at
``VIGIL_TEST_ORTHANC_PLUGIN``.

Some behaviour no Orthanc shows on request: pages capped below the ``limit`` asked for (Orthanc
1.10's ``LimitFindResults`` does cap them, but it also hides every study past the cap, whatever
the ``offset``: measured, so it cannot test paging), a server that ignores ``offset``, malformed
search results, oversized or endless answers, an error body that echoes the request's headers.
:class:`ScriptedDicomweb` is a few-line HTTP server on loopback that answers what a test scripts.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from tests.child_server import free_port, stop_and_remove, tail

__all__ = [
    "Answer",
    "OrthancError",
    "OrthancServer",
    "ScriptedDicomweb",
    "find_orthanc",
    "json_answer",
    "orthanc",
    "qido_pages",
    "start_orthanc",
    "study_item",
]

#: Overrides the plugin's path (a build of one's own).
ENV_PLUGIN: Final = "VIGIL_TEST_ORTHANC_PLUGIN"
#: Where Debian's packages put the server and the DICOMweb plugin.
_BINARIES: Final = ("Orthanc", "/usr/sbin/Orthanc")
_PLUGIN_GLOBS: Final = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so*")
#: Seconds to wait for a new server to answer.
START_TIMEOUT_S: Final = 60.0
USERNAME: Final = "vigil-test"


class OrthancError(RuntimeError):
    """The test Orthanc could not be found, started or used."""


def find_orthanc() -> tuple[Path, Path]:
    """The Orthanc program and its DICOMweb plugin.

    Raises
    ------
    OrthancError
        Either is missing; the message says how to install them.
    """
    binary = next((Path(found) for name in _BINARIES if (found := shutil.which(name))), None)
    plugin = _plugin()
    if binary is None or plugin is None:
        missing = " and ".join(
            what for what, path in (("Orthanc", binary), ("its DICOMweb plugin", plugin)) if path is None
        )
        raise OrthancError(
            f"{missing} not found: run scripts/install-system-deps (Debian packages 'orthanc' and "
            f"'orthanc-dicomweb'), or set {ENV_PLUGIN} to libOrthancDicomWeb.so"
        )
    return binary, plugin


def _plugin() -> Path | None:
    if named := os.environ.get(ENV_PLUGIN):
        return Path(named) if Path(named).is_file() else None
    for pattern in _PLUGIN_GLOBS:
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found and found[0].is_file():
            return found[0]
    return None


class OrthancServer:
    """One running Orthanc: its URLs and password, REST helpers for the tests, and :meth:`stop`."""

    def __init__(self, root: Path, process: subprocess.Popen[bytes], port: int, password: str) -> None:
        self.root, self.process, self.port, self.password = root, process, port, password
        self.username = USERNAME
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        """The REST root (``http://127.0.0.1:PORT``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb base URL Vigil is configured with."""
        return f"{self.url}/dicom-web"

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.auth = (self.username, self.password)
        return session

    def upload(self, files: Iterable[Path]) -> list[str]:
        """Store each DICOM file through the REST API (``POST /instances``); their Orthanc ids."""
        ids = []
        with self._session() as session:
            for path in files:
                answer = session.post(f"{self.url}/instances", data=path.read_bytes(), timeout=30)
                answer.raise_for_status()
                ids.append(str(answer.json()["ID"]))
        return ids

    def upload_bytes(self, data: bytes) -> None:
        """Store one DICOM file given as bytes."""
        with self._session() as session:
            session.post(f"{self.url}/instances", data=data, timeout=30).raise_for_status()

    def study_instances(self, study_uid: str) -> list[dict[str, object]]:
        """The instances Orthanc holds for ``study_uid`` (its ``/tools/find`` answer, expanded)."""
        query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
        with self._session() as session:
            answer = session.post(f"{self.url}/tools/find", json=query, timeout=30)
            answer.raise_for_status()
            found: list[dict[str, object]] = answer.json()
            return found

    def instance_file(self, orthanc_id: str) -> bytes:
        """The stored DICOM file of one instance."""
        with self._session() as session:
            answer = session.get(f"{self.url}/instances/{orthanc_id}/file", timeout=30)
            answer.raise_for_status()
            return answer.content

    def clear(self) -> None:
        """Delete every patient (and with them every study): each test starts from an empty PACS."""
        with self._session() as session:
            for patient in session.get(f"{self.url}/patients", timeout=30).json():
                session.delete(f"{self.url}/patients/{patient}", timeout=30).raise_for_status()

    def stop(self) -> None:
        """Stop the server and delete its storage; idempotent."""
        stop_and_remove(self.process, self.root)

    def log(self) -> str:
        """The server's log, for a failing test's message."""
        return tail(self.root / "orthanc.log", missing="(no log)")


def start_orthanc() -> OrthancServer:
    """Start a new, empty Orthanc on a free loopback port and wait until it answers.

    Raises
    ------
    OrthancError
        Not installed, or it did not start.
    """
    binary, plugin = find_orthanc()
    root = Path(tempfile.mkdtemp(prefix="vigil-orthanc-"))
    port, password = free_port(), secrets.token_hex(16)
    config = {
        "Name": "vigil-test",
        "StorageDirectory": str(root / "storage"),
        "IndexDirectory": str(root / "storage"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USERNAME: password},
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StorageCompression": False,
        "HttpThreadsCount": 8,
    }
    (root / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
    command = [shutil.which("setpriv") or "setpriv", "--pdeathsig", "TERM", str(binary), str(root / "orthanc.json")]
    with (root / "orthanc.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    server = OrthancServer(root, process, port, password)
    _wait_ready(server)
    return server


def _wait_ready(server: OrthancServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            answer = requests.get(f"{server.url}/system", auth=(server.username, server.password), timeout=2)
            if answer.status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            log = server.log()
            server.stop()
            raise OrthancError(f"Orthanc did not start within {START_TIMEOUT_S:.0f} s:\n{log}")
        time.sleep(0.1)


#: The session's server, shared by every module that imports :func:`orthanc`.
_SHARED: list[OrthancServer] = []


@pytest.fixture(scope="session")
def orthanc() -> Iterator[OrthancServer]:
    """The session's Orthanc, started on first use and stopped at the end; emptied before each user.

    Fails (never skips) when Orthanc is not installed: ``scripts/install-system-deps`` installs it.
    """
    owner = not _SHARED
    if owner:
        _SHARED.append(start_orthanc())
    yield _SHARED[0]
    if owner:
        _SHARED.pop().stop()


# --- a scripted DICOMweb server ------------------------------------------------------------------

#: What a scripted server sends: status, headers, and the body in chunks (no ``Content-Length``
#: header: the body ends when the connection closes, so its size is known only by reading it).
Answer = tuple[int, dict[str, str], Iterable[bytes]]
#: Scripts an answer from the request's method, path, query and headers.
Script = Callable[[str, str, dict[str, str], dict[str, str]], Answer]


class ScriptedDicomweb:
    """An HTTP server on 127.0.0.1 (a free port, a thread of the test process) answering as ``script`` says.

    Use as a context manager; :attr:`requests` lists ``(method, path, query)`` of each request.
    """

    def __init__(self, script: Script) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                outer.requests.append((self.command, parts.path, query))
                status, headers, body = script(self.command, parts.path, query, dict(self.headers.items()))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for chunk in body:
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):  # the client refused to read on
                    pass

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The DICOMweb base URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/dicom-web"

    def __enter__(self) -> ScriptedDicomweb:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def json_answer(value: object, *, status: int = 200) -> Answer:
    """``value`` as a DICOM JSON answer."""
    return status, {"Content-Type": "application/dicom+json"}, [json.dumps(value).encode("utf-8")]


def study_item(uid: str, *, day: str = "20240105", count: object = 1) -> dict[str, object]:
    """One QIDO-RS study result; ``count=None`` leaves NumberOfStudyRelatedInstances out."""
    item: dict[str, object] = {
        "0020000D": {"vr": "UI", "Value": [uid]},
        "00080020": {"vr": "DA", "Value": [day]},
        "00080061": {"vr": "CS", "Value": ["DX"]},
    }
    if count is not None:
        item["00201208"] = {"vr": "IS", "Value": [count]}
    return item


def qido_pages(items: list[dict[str, object]], *, cap: int | None = None, ignore_offset: bool = False) -> Script:
    """Answer study searches from ``items``: at most ``cap`` per page, and ``offset`` honoured or not.

    A search for a study's instances answers an empty list.
    """

    def script(_method: str, path: str, query: dict[str, str], _headers: dict[str, str]) -> Answer:
        if not path.endswith("/studies"):
            return json_answer([])
        limit = int(query.get("limit", len(items)))
        offset = 0 if ignore_offset else int(query.get("offset", 0))
        return json_answer(items[offset : offset + min(limit, cap or limit)])

    return script
