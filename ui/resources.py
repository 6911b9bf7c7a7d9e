"""Process-wide resources, created once per server process and shared by every browser session.

Configuration enters here (rule R6): ``VIGIL_CONFIG``, ``VIGIL_HOME`` and ``VIGIL_DATABASE_URL``
are read on each call, and the objects built from them are cached per value, so one process can
serve two databases one after the other (the benchmarks do) and never mixes them up.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import lru_cache
from pathlib import Path

import streamlit as st

from core.config import Settings, load_settings
from core.errors import VigilError
from core.models.loading import LoadedModel
from core.services import audit_checkpoints
from core.services import models as model_service
from core.services.store import open_store, utc_now
from core.store.engine import SessionFactory, make_session_factory

__all__ = ["checkpoint_if_due", "model", "read_session_factory", "session_factory", "settings", "utc_now"]

_log = logging.getLogger(__name__)
#: Seconds between two automatic-checkpoint checks of one server process.
_CHECKPOINT_CHECK_EVERY_S = 60.0
_checkpoint_lock = threading.Lock()
_next_checkpoint_check = [0.0]


def settings() -> Settings:
    """The installation's settings, from the environment at the edge."""
    env = os.environ
    return _settings(env.get("VIGIL_CONFIG", ""), env.get("VIGIL_HOME", ""), env.get("VIGIL_DATABASE_URL", ""))


@lru_cache(maxsize=8)
def _settings(config: str, home: str, url: str) -> Settings:
    # A pure function of three strings (and the TOML file they name): a plain memo, because
    # every rerun asks for the settings several times and st.cache_resource hashes its arguments.
    environ = {k: v for k, v in (("VIGIL_CONFIG", config), ("VIGIL_HOME", home), ("VIGIL_DATABASE_URL", url)) if v}
    return load_settings(environ, cwd=Path.cwd())


def session_factory() -> SessionFactory:
    """Sessions for actions that write (one ``begin()`` per user action)."""
    cfg = settings()
    return _factories(cfg.database_url, str(cfg.home))[0]


def read_session_factory() -> SessionFactory:
    """Sessions for pages that only read; on SQLite they never wait for a writer."""
    cfg = settings()
    return _factories(cfg.database_url, str(cfg.home))[1]


@st.cache_resource(show_spinner=False)
def _factories(url: str, home: str) -> tuple[SessionFactory, SessionFactory]:
    # open_store migrates to the newest schema once per process and database.
    writer = open_store(Settings(home=Path(home), database_url=url))
    return writer, make_session_factory(writer.kw["bind"], read_only=True)


def checkpoint_if_due() -> None:
    """Sign an audit checkpoint when the configured policy says one is due (at most once a minute).

    Called on every page load, so that the "every T minutes" rule holds while people use the
    app; the check itself is three indexed reads. A checkpoint that cannot be signed (a broken
    chain, an unusable key) is logged for the administrator; the page still renders.
    """
    now = time.monotonic()
    with _checkpoint_lock:
        if now < _next_checkpoint_check[0]:
            return
        _next_checkpoint_check[0] = now + _CHECKPOINT_CHECK_EVERY_S
    cfg = settings()
    try:
        audit_checkpoints.checkpoint_if_due(
            session_factory(),
            audit_checkpoints.CheckpointPlaces.from_settings(cfg),
            audit_checkpoints.checkpoint_policy(cfg),
            now=utc_now,
        )
    except VigilError as exc:
        _log.warning("an audit checkpoint was due but not signed: %s", exc)


def model(version: str | None = None) -> tuple[LoadedModel, threading.Lock]:
    """A model version's loaded model, shared by every session, and the lock its explanations hold (rule R12).

    ``version`` is the one serving the study being explained (``explanation.explain_case`` names
    it); None means the fleet-wide serving version. Cached per version, so sites served by two
    versions each get their own, and a promotion or a rollback loads the new version instead of
    explaining with the old one. Only the cold path (a study without a stored explanation) calls it.
    """
    cfg = settings()
    if version is None:
        serving = [m.version for m in model_service.list_models(read_session_factory()) if m.serving]
        version = serving[0] if serving else ""
    return _model(cfg.database_url, str(cfg.home), version)


# Up to four versions at once: a fleet version, a site's challenger, and what each replaced.
@st.cache_resource(show_spinner="Loading the model once for this server...", max_entries=4)
def _model(url: str, home: str, version: str) -> tuple[LoadedModel, threading.Lock]:
    # url and version are cache keys only: a new database or serving version loads afresh.
    models_dir = Path(home) / "models"
    if not version:  # nothing serving: load_serving says so in words
        loaded = model_service.load_serving(read_session_factory(), models_dir=models_dir)
    else:
        loaded = model_service.load_named(read_session_factory(), version, models_dir=models_dir)
    return loaded, threading.Lock()
