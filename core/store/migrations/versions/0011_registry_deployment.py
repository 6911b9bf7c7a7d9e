"""Model registry, change control and blue-green deployment: immutable versions, tags, hold-out, gate, switches.

Revision ID: 0011
Revises: 0010
Create Date: 2027-04-01

- ``model_version.content_sha256``: the content address (``core.models.address``: SHA-256 of the
  canonical JSON of the card without ``version`` and ``created_at``, and the weights hash),
  backfilled for versions registered before, unique.
- ``model_version`` is immutable at the database: an UPDATE of any column but ``is_serving`` (the
  serving pointer, moved only together with a ``deployment`` row) and any DELETE are refused.
- ``model_tag``: tags added to a version (a clearance number, "pilot"), never changed or removed.
- ``holdout_study``: the locked, site-stratified hold-out; a study in it is never trained on.
- ``change_validation``: each gate run of a challenger against the champion under a plan.
- ``deployment``: every switch of the serving version (initial, promote, rollback), with the
  electronic signature of a promotion; "which version served at time T" is read from it.

The four new tables are append-only at the database like ``audit_entry`` (migration ``0010``).
Frozen like ``0001``: written out in full rather than importing ``core.store.tables`` (the
backfill's canonical JSON is the one ``core.audit.chain.canonical_json`` writes).
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

CODE = 64
SHA256_HEX = 64
NAME = 128
APPEND_ONLY: Final = ("model_tag", "holdout_study", "change_validation", "deployment")
IMMUTABLE_COLUMNS: Final = ("id", "version", "card_json", "weights_sha256", "content_sha256", "created_at")
VERSION_MESSAGE: Final = "a registered model version is immutable"


def upgrade() -> None:
    """Add the content address, the new tables and the guards."""
    with op.batch_alter_table("model_version") as batch:
        batch.add_column(sa.Column("content_sha256", sa.String(length=SHA256_HEX), nullable=True))
    _backfill_content_addresses()
    op.create_index("ix_model_version_content_sha256", "model_version", ["content_sha256"], unique=True)
    _create_tables()
    # The version serving before history was kept served from its registration on: say so once.
    op.execute(
        "INSERT INTO deployment (model_version_id, action, slot, switched_by, switched_at, reason) "
        "SELECT id, 'initial', 'blue', 'migration 0011', created_at, "
        "'serving since registration, before deployment history was recorded' FROM model_version WHERE is_serving"
    )
    _guards(upgrade=True)


def downgrade() -> None:
    """Drop the guards, the tables and the content address."""
    _guards(upgrade=False)
    for table in reversed(APPEND_ONLY):
        op.drop_table(table)
    op.drop_index("ix_model_version_content_sha256", table_name="model_version")
    with op.batch_alter_table("model_version") as batch:
        batch.drop_column("content_sha256")


def _backfill_content_addresses() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, card_json, weights_sha256 FROM model_version")).all()
    for row_id, card_json, weights_sha256 in rows:
        card = {k: v for k, v in json.loads(card_json).items() if k not in ("version", "created_at")}
        content = {"card": card, "weights_sha256": weights_sha256}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        address = hashlib.sha256(text.encode("utf-8")).hexdigest()
        bind.execute(sa.text("UPDATE model_version SET content_sha256 = :a WHERE id = :i"), {"a": address, "i": row_id})


def _create_tables() -> None:
    op.create_table(
        "model_tag",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=NAME), nullable=False),
        sa.Column("actor", sa.String(length=NAME), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_version.id"], name=op.f("fk_model_tag_model_version_id_model_version")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_tag")),
        sa.UniqueConstraint("model_version_id", "tag", name=op.f("uq_model_tag_model_version_id_tag")),
    )
    op.create_table(
        "holdout_study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("lock_sha256", sa.String(length=SHA256_HEX), nullable=False),
        sa.Column("actor", sa.String(length=NAME), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_holdout_study_study_id_study")),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], name=op.f("fk_holdout_study_site_id_site")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holdout_study")),
        sa.UniqueConstraint("study_id", name=op.f("uq_holdout_study_study_id")),
    )
    op.create_table(
        "change_validation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("challenger_id", sa.Integer(), nullable=False),
        sa.Column("champion_id", sa.Integer(), nullable=False),
        sa.Column("plan_id", sa.String(length=NAME), nullable=False),
        sa.Column("plan_version", sa.String(length=CODE), nullable=False),
        sa.Column("plan_sha256", sa.String(length=SHA256_HEX), nullable=False),
        sa.Column("holdout_sha256", sa.String(length=SHA256_HEX), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("significant_change", sa.Boolean(), nullable=False),
        sa.Column("report_json", sa.Text(), nullable=False),
        sa.Column("report_sha256", sa.String(length=SHA256_HEX), nullable=False),
        sa.Column("actor", sa.String(length=NAME), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["challenger_id"], ["model_version.id"], name=op.f("fk_change_validation_challenger_id_model_version")
        ),
        sa.ForeignKeyConstraint(
            ["champion_id"], ["model_version.id"], name=op.f("fk_change_validation_champion_id_model_version")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_validation")),
    )
    op.create_index("ix_change_validation_challenger_id", "change_validation", ["challenger_id"])
    op.create_table(
        "deployment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("previous_version_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=CODE), nullable=False),
        sa.Column("slot", sa.String(length=CODE), nullable=False),
        sa.Column("validation_id", sa.Integer(), nullable=True),
        sa.Column("switched_by", sa.String(length=NAME), nullable=False),
        sa.Column("switched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signer", sa.String(length=NAME), nullable=True),
        sa.Column("signature_meaning", sa.Text(), nullable=True),
        sa.Column("signature_sha256", sa.String(length=SHA256_HEX), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_version.id"], name=op.f("fk_deployment_model_version_id_model_version")
        ),
        sa.ForeignKeyConstraint(
            ["previous_version_id"], ["model_version.id"], name=op.f("fk_deployment_previous_version_id_model_version")
        ),
        sa.ForeignKeyConstraint(
            ["validation_id"], ["change_validation.id"], name=op.f("fk_deployment_validation_id_change_validation")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment")),
    )
    op.create_index("ix_deployment_switched_at", "deployment", ["switched_at"])


def _guards(*, upgrade: bool) -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        statements = _sqlite_upgrade() if upgrade else _sqlite_downgrade()
    elif dialect == "postgresql":
        statements = _postgresql_upgrade() if upgrade else _postgresql_downgrade()
    else:
        statements = ()
    for statement in statements:
        op.execute(statement)


def _sqlite_upgrade() -> tuple[str, ...]:
    columns = ", ".join(IMMUTABLE_COLUMNS)
    version = (
        f"CREATE TRIGGER model_version_no_update BEFORE UPDATE OF {columns} ON model_version "
        f"BEGIN SELECT RAISE(ABORT, '{VERSION_MESSAGE}'); END",
        f"CREATE TRIGGER model_version_no_delete BEFORE DELETE ON model_version "
        f"BEGIN SELECT RAISE(ABORT, '{VERSION_MESSAGE}'); END",
    )
    tables = tuple(
        f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        for table in APPEND_ONLY
        for verb in ("UPDATE", "DELETE")
    )
    return version + tables


def _sqlite_downgrade() -> tuple[str, ...]:
    names = ["model_version_no_update", "model_version_no_delete"]
    names += [f"{table}_no_{verb}" for table in APPEND_ONLY for verb in ("update", "delete")]
    return tuple(f"DROP TRIGGER IF EXISTS {name}" for name in names)


def _postgresql_upgrade() -> tuple[str, ...]:
    changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in IMMUTABLE_COLUMNS)
    statements = [
        # Concatenated rather than RAISE's "%" placeholder: see migration 0010.
        "CREATE FUNCTION model_version_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP = 'DELETE' OR TG_OP = 'TRUNCATE' OR {changed} THEN "
        f"RAISE EXCEPTION USING MESSAGE = '{VERSION_MESSAGE}: ' || TG_OP || ' on model_version refused'; "
        "END IF; RETURN NEW; END $$",
        "CREATE TRIGGER model_version_no_update BEFORE UPDATE ON model_version "
        "FOR EACH ROW EXECUTE FUNCTION model_version_refuse_change()",
        "CREATE TRIGGER model_version_no_delete BEFORE DELETE ON model_version "
        "FOR EACH ROW EXECUTE FUNCTION model_version_refuse_change()",
        "CREATE FUNCTION append_only_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only: ' || TG_OP || ' refused'; END $$",
    ]
    for table in APPEND_ONLY:
        for verb in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION append_only_refuse_change()"
            )
        statements.append(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION append_only_refuse_change()"
        )
    return tuple(statements)


def _postgresql_downgrade() -> tuple[str, ...]:
    statements = [
        "DROP TRIGGER IF EXISTS model_version_no_update ON model_version",
        "DROP TRIGGER IF EXISTS model_version_no_delete ON model_version",
        "DROP FUNCTION IF EXISTS model_version_refuse_change()",
    ]
    statements += [
        f"DROP TRIGGER IF EXISTS {table}_no_{verb} ON {table}"
        for table in APPEND_ONLY
        for verb in ("update", "delete", "truncate")
    ]
    statements.append("DROP FUNCTION IF EXISTS append_only_refuse_change()")
    return tuple(statements)
