"""Alembic revisions, one file each, frozen once released."""
