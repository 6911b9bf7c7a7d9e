"""Alembic script directory for ``core.store`` (``env.py``, ``versions/``)."""
