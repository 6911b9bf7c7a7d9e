"""Persistence: the only package that imports SQLAlchemy.

``engine`` creates engines, session factories and runs Alembic migrations; ``tables`` holds
the schema; one module per concept (``sites``, ``studies``, ``model_versions``,
``predictions``, ``explanations``, ``users``, ``audit_log``) holds functions that take a
``Session`` first, never commit, and return frozen records.
"""
