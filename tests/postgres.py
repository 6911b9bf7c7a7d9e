"""A throwaway PostgreSQL server for the test session, and fresh databases on it.

The store, audit and service contract suites run on PostgreSQL as well as on SQLite. Unless
``VIGIL_TEST_POSTGRES_URL`` names a server (``postgresql+psycopg://user:password@host/postgres``,
a role allowed to create databases), the session starts its own cluster: ``initdb`` into a new
directory under the system temporary directory, a server that listens on 127.0.0.1 only (a free
port) with its Unix socket in that directory, and ``fsync`` off, since nothing in it has to
survive a crash. PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` account that Debian's package creates. ``scripts/install-system-deps`` installs the
server; when its programs are missing the tests fail, they are never skipped.

Each test gets its own database and the database is dropped afterwards. Migrating from scratch
costs about a second on PostgreSQL, so databases that start at the newest revision are copies of
one template migrated once per session (``CREATE DATABASE ... TEMPLATE``).
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from sqlalchemy import URL, Engine, create_engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from core.store.engine import make_engine, migrate
from tests.child_server import free_port, stop_and_remove, tail

__all__ = ["ENV_URL", "PostgresError", "PostgresServer", "find_bin_dir", "start_server"]

#: Names a server to use instead of starting one.
ENV_URL: Final = "VIGIL_TEST_POSTGRES_URL"

#: The account that runs the cluster when the tests run as root (created by Debian's package).
SERVER_ACCOUNT: Final = "postgres"

#: Seconds to wait for a new server to accept connections.
START_TIMEOUT_S: Final = 60.0

#: Server settings for a disposable cluster: durability off, nothing heard beyond loopback.
_SETTINGS: Final = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "logging_collector": "off",
}


class PostgresError(RuntimeError):
    """The test PostgreSQL server could not be found, started or used."""


def find_bin_dir() -> Path:
    """Return the directory holding ``initdb`` and ``postgres``, newest version first.

    Debian puts the server programs in ``/usr/lib/postgresql/<major>/bin``, off ``PATH``;
    other systems put ``initdb`` on it.

    Raises
    ------
    PostgresError
        If no PostgreSQL server is installed.
    """
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: _major(p.parent.name), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "postgres").is_file():
            return directory
    raise PostgresError(
        "PostgreSQL server programs (initdb, postgres) not found: run scripts/install-system-deps "
        f"(Debian package 'postgresql'), or set {ENV_URL} to a server the tests may create databases on"
    )


def _major(name: str) -> int:
    return int(name) if name.isdigit() else -1


class PostgresServer:
    """A PostgreSQL server on which the tests create and drop their databases.

    Parameters
    ----------
    admin_url : str or URL
        A role that may create databases, connected to a maintenance database (``postgres``).
    on_close : callable, optional
        Called by :meth:`close` after the template is dropped (stops a cluster this session started).
    """

    def __init__(self, admin_url: str | URL, *, on_close: Callable[[], None] | None = None) -> None:
        self.admin_url = make_url(admin_url)
        self._admin: Engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self._names = (f"vigil_test_{os.getpid()}_{n}" for n in itertools.count())
        self._template: str | None = None
        self._version: int | None = None
        self._on_close = on_close

    def url(self, database: str) -> str:
        """Return the URL of ``database`` on this server, password included."""
        return self.admin_url.set(database=database).render_as_string(hide_password=False)

    def create_database(self, *, migrated: bool = False) -> str:
        """Create a new database and return its URL.

        Parameters
        ----------
        migrated : bool, default False
            Start from a copy of a database already migrated to the newest revision (the
            template is built once, by :func:`core.store.engine.migrate`); otherwise empty.
        """
        name = next(self._names)
        template = self._migrated_template() if migrated else "template0"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{self._copy_strategy()}')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url`` (made by :meth:`create_database`), closing its connections."""
        name = make_url(url).database
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drop the template and, for a cluster the session started, stop it and delete its files."""
        try:
            if self._template is not None:
                self._execute(f'DROP DATABASE IF EXISTS "{self._template}" WITH (FORCE)')
        finally:
            self._admin.dispose()
            if self._on_close is not None:
                self._on_close()

    def _migrated_template(self) -> str:
        if self._template is None:
            name = next(self._names)
            self._execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
            engine = make_engine(self.url(name))
            try:
                migrate(engine)
            finally:
                engine.dispose()  # a template must have no open connections when it is copied
            self._template = name
        return self._template

    def _copy_strategy(self) -> str:
        # PostgreSQL 15 copies a small template about twice as fast file by file as through the WAL.
        if self._version is None:
            with self._admin.connect() as connection:
                self._version = int(connection.exec_driver_sql("SHOW server_version_num").scalar_one())
        return " STRATEGY FILE_COPY" if self._version >= 150000 else ""

    def _execute(self, sql: str) -> None:
        with self._admin.connect() as connection:
            connection.exec_driver_sql(sql)


def start_server() -> PostgresServer:
    """Return the server named by ``VIGIL_TEST_POSTGRES_URL``, or start a throwaway cluster.

    Raises
    ------
    PostgresError
        If no server is named and none can be started (not installed, or it fails to start).
    """
    named = os.environ.get(ENV_URL)
    if named:
        return PostgresServer(named)
    cluster = _Cluster.start(find_bin_dir())
    return PostgresServer(cluster.url, on_close=cluster.stop)


class _Cluster:
    """A cluster in a temporary directory, run by ``postgres`` as a child of this process."""

    def __init__(self, root: Path, process: subprocess.Popen[bytes], url: str) -> None:
        self.root, self.process, self.url = root, process, url
        atexit.register(self.stop)  # also when the session ends without its fixture teardown

    @classmethod
    def start(cls, bin_dir: Path) -> _Cluster:
        root = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
        try:
            run_as = _account_prefix(root)
            password = secrets.token_hex(16)
            (root / "pwfile").write_text(password + "\n", encoding="utf-8")
            initdb = [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", "vigil", "-E", "UTF8"]
            initdb += ["--locale=C", "--auth=scram-sha-256", f"--pwfile={root / 'pwfile'}", "--no-sync"]
            _run("initdb", [*run_as, *initdb], root)
            port = free_port()
            settings = {**_SETTINGS, "port": str(port), "unix_socket_directories": str(root)}
            command = [*run_as, str(bin_dir / "postgres"), "-D", str(root / "data")]
            command += [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
            with (root / "server.log").open("wb") as log:
                process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        url = f"postgresql+psycopg://vigil:{password}@127.0.0.1:{port}/postgres"
        cluster = cls(root, process, url)
        cluster._wait_ready()
        return cluster

    def stop(self) -> None:
        """Shut the server down ("fast": end sessions, no checkpoint wait) and delete its files; idempotent."""
        stop_and_remove(self.process, self.root, sig=signal.SIGINT)

    def _wait_ready(self) -> None:
        engine = create_engine(self.url, poolclass=NullPool, connect_args={"connect_timeout": 2})
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while not self._accepts(engine):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self._log()
                    self.stop()
                    raise PostgresError(f"PostgreSQL did not start within {START_TIMEOUT_S:.0f} s:\n{log}")
                time.sleep(0.1)
        finally:
            engine.dispose()

    @staticmethod
    def _accepts(engine: Engine) -> bool:
        try:
            with engine.connect():
                return True
        except OperationalError:  # still starting up
            return False

    def _log(self) -> str:
        return tail(self.root / "server.log", missing="(no server log)")


def _account_prefix(root: Path) -> list[str]:
    """Command prefix that runs the server's programs; as root, as the ``postgres`` account.

    ``setpriv --pdeathsig`` also shuts the server down if this process dies without cleaning up
    (killed, or a crash), so no server outlives its test session.
    """
    prefix = [shutil.which("setpriv") or "setpriv", "--pdeathsig", "INT"]
    if os.geteuid() != 0:
        return prefix
    try:
        account = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError as exc:
        raise PostgresError(
            f"PostgreSQL refuses to run as root and there is no {SERVER_ACCOUNT!r} account to run it as "
            "(Debian's postgresql package creates it)"
        ) from exc
    os.chown(root, account.pw_uid, account.pw_gid)
    return [*prefix, "--reuid", str(account.pw_uid), "--regid", str(account.pw_gid), "--init-groups"]


def _run(what: str, command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PostgresError(f"{what} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
