"""The shared test installation on each backend: a SQLite file copy or a PostgreSQL database copy.

``tests/ui/installation.py`` builds one installation per session (``vigil init``'s use case with
the random model) and each test copies its home, SQLite file included. For PostgreSQL the same
use case runs once more, against a database on the session's server, with the same cohort and
model; each test then gets a ``CREATE DATABASE ... TEMPLATE`` copy of that database (a fraction of
a second) and its own copy of the home (stored DICOM files and models).
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from unittest import mock

import pytest
from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool

import core.services.models as model_service
from core.services import auth, setup
from tests.postgres import PostgresServer
from tests.ui.installation import Installation, clock, copy_installation, shared_template

__all__ = ["installation_on"]

_PG_TEMPLATES: dict[int, Installation] = {}
_NUMBERS = itertools.count()


def installation_on(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> Installation:
    """Return a private copy of the session's installation on ``backend`` (``sqlite-file`` or ``postgresql``)."""
    template = shared_template(tmp_path_factory.getbasetemp())
    if backend == "sqlite-file":
        return copy_installation(template, tmp_path)
    if backend != "postgresql":
        raise ValueError(f"unknown backend {backend!r}")
    server: PostgresServer = request.getfixturevalue("postgres_server")
    pg_template = _postgres_template(server, template, tmp_path_factory.getbasetemp())
    url = _clone(server, pg_template.database_url)
    request.addfinalizer(lambda: server.drop_database(url))
    shutil.copytree(pg_template.home, tmp_path / "home")
    return Installation(home=tmp_path / "home", database_url=url, cohort_dir=template.cohort_dir)


def _postgres_template(server: PostgresServer, sqlite_template: Installation, base: Path) -> Installation:
    """``vigil init`` on a database of ``server``, from the SQLite template's cohort and random model, once."""
    if id(server) not in _PG_TEMPLATES:
        root = base / "vigil-template-postgresql"
        inst = Installation(
            home=root / "home", database_url=server.create_database(), cohort_dir=sqlite_template.cohort_dir
        )
        inst.home.mkdir(parents=True, exist_ok=True)
        # The random model build_installation wrote beside the SQLite template's home.
        with mock.patch.object(model_service, "BUNDLED_DIR", sqlite_template.home.parent / "model"):
            setup.initialize(inst.settings, actor="system", now=clock)
        auth.seed_demo_users(inst.session_factory(), now=clock)
        # A template must have no connections when it is copied: end those init's pools left open.
        _execute(
            server,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (make_url(inst.database_url).database,),
        )
        _PG_TEMPLATES[id(server)] = inst
    return _PG_TEMPLATES[id(server)]


def _clone(server: PostgresServer, template_url: str) -> str:
    """Create a database that starts as a copy of ``template_url``'s and return its URL."""
    name = f"vigil_installation_{os.getpid()}_{next(_NUMBERS)}"
    # FILE_COPY (PostgreSQL 15+) copies a small database about twice as fast as through the WAL.
    _execute(server, f'CREATE DATABASE "{name}" TEMPLATE "{make_url(template_url).database}" STRATEGY FILE_COPY')
    return server.url(name)


def _execute(server: PostgresServer, sql: str, parameters: tuple[object, ...] = ()) -> None:
    admin = create_engine(server.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(sql, parameters)
    finally:
        admin.dispose()
