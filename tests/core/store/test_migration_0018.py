"""Migration 0018: ``instance.spacing_source``, backfilled on upgrade, a detector spacing dropped on downgrade."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from core.imaging.spacing import SpacingSource
from core.store import sites, studies
from core.store.engine import alembic_config, make_engine, make_session_factory, migrate
from tests.conftest import NewDatabase
from tests.core.store.conftest import instance_in, study_in

NOW = datetime(2027, 6, 1, tzinfo=UTC)


def test_rows_keep_a_truthful_source_across_a_downgrade_and_upgrade(backend: str, new_database: NewDatabase) -> None:
    # Prepare: one film measured with PixelSpacing, one with ImagerPixelSpacing only
    engine = make_engine(new_database(backend))
    migrate(engine)
    sf = make_session_factory(engine)
    with sf.begin() as session:
        site_id = sites.add_site(session, "north", now=NOW).id
        for n, source in ((1, SpacingSource.PIXEL_SPACING), (2, SpacingSource.IMAGER_PIXEL_SPACING)):
            studies.add_study_with_instance(
                session, site_id=site_id, study=study_in(n), instance=instance_in(n, study=n, spacing_source=source),
                now=NOW,
            )  # fmt: skip

    # Execute: back to 0017 (which knew PixelSpacing only), then forward again
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0017")
    migrate(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT pixel_spacing_row, spacing_source FROM instance ORDER BY id")
        ).all()  # fmt: skip
    engine.dispose()

    # Assert: the PixelSpacing row is backfilled as such; the detector spacing did not pose as PixelSpacing
    assert [tuple(r) for r in rows] == [(0.139, "PixelSpacing"), (None, None)]
