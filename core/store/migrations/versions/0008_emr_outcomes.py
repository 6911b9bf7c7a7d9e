"""EMR outcomes from FHIR: ingest runs, evidence and its links, patients by pseudonym, unmapped codes, pull marks.

Revision ID: 0008
Revises: 0007
Create Date: 2027-02-01

Creates ``emr_ingest_run``, ``emr_evidence``, ``emr_patient``, ``emr_unmapped_code`` and
``emr_pull_mark``. New tables only, so SQLite and PostgreSQL take the same plain ``CREATE TABLE``.
No existing table changes: an EMR outcome that links to a study is an ``outcome`` row of source
``emr``, which ``0003`` already allows. Frozen like ``0001``: written out in full rather than
importing ``core.store.tables``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None

CODE = 64
UID = 64
SHA256_HEX = 64


def upgrade() -> None:
    """Create the five EMR tables with their constraints and indexes."""
    op.create_table(
        "emr_ingest_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source_name", sa.Text(), nullable=False),
        sa.Column("payload_sha256", sa.String(length=SHA256_HEX), nullable=False),
        sa.Column("kind", sa.String(length=CODE), nullable=False),
        sa.Column("mapping_version", sa.String(length=CODE), nullable=False),
        sa.Column("n_entries", sa.Integer(), nullable=False),
        sa.Column("n_accepted", sa.Integer(), nullable=False),
        sa.Column("n_rejected", sa.Integer(), nullable=False),
        sa.Column("n_unmapped", sa.Integer(), nullable=False),
        sa.Column("n_evidence", sa.Integer(), nullable=False),
        sa.Column("n_linked", sa.Integer(), nullable=False),
        sa.Column("n_outcomes", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emr_ingest_run")),
    )
    op.create_index(op.f("ix_emr_ingest_run_payload_sha256"), "emr_ingest_run", ["payload_sha256"], unique=False)
    op.create_table(
        "emr_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=CODE), nullable=False),
        sa.Column("patient", sa.String(length=CODE), nullable=True),
        sa.Column("study_uid", sa.String(length=UID), nullable=True),
        sa.Column("accession", sa.String(length=CODE), nullable=True),
        sa.Column("effective", sa.Date(), nullable=True),
        sa.Column("outcome", sa.String(length=CODE), nullable=False),
        sa.Column("evidence_type", sa.String(length=CODE), nullable=False),
        sa.Column("strength", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.Column("display", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("ingest_run_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("link_method", sa.String(length=CODE), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('finding_confirmed', 'finding_excluded', 'indeterminate')",
            name=op.f("ck_emr_evidence_outcome_known"),
        ),
        sa.CheckConstraint(
            "evidence_type IN ('histopathology', 'follow_up_imaging', 'clinical_diagnosis', 'note_mention')",
            name=op.f("ck_emr_evidence_evidence_type_known"),
        ),
        sa.CheckConstraint(
            "link_method IN ('study_uid', 'accession', 'patient_date', '')",
            name=op.f("ck_emr_evidence_link_method_known"),
        ),
        sa.ForeignKeyConstraint(
            ["ingest_run_id"], ["emr_ingest_run.id"], name=op.f("fk_emr_evidence_ingest_run_id_emr_ingest_run")
        ),
        sa.ForeignKeyConstraint(["study_id"], ["study.id"], name=op.f("fk_emr_evidence_study_id_study")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emr_evidence")),
        sa.UniqueConstraint("ref", "version", name=op.f("uq_emr_evidence_ref_version")),
    )
    op.create_index(op.f("ix_emr_evidence_patient"), "emr_evidence", ["patient"], unique=False)
    op.create_index(op.f("ix_emr_evidence_ingest_run_id"), "emr_evidence", ["ingest_run_id"], unique=False)
    op.create_index(op.f("ix_emr_evidence_study_id"), "emr_evidence", ["study_id"], unique=False)
    op.create_table(
        "emr_patient",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(length=CODE), nullable=False),
        sa.Column("gender", sa.String(length=CODE), nullable=False),
        sa.Column("age_band", sa.String(length=CODE), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emr_patient")),
        sa.UniqueConstraint("pseudonym", name=op.f("uq_emr_patient_pseudonym")),
    )
    op.create_table(
        "emr_unmapped_code",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.Column("resource_type", sa.String(length=CODE), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emr_unmapped_code")),
        sa.UniqueConstraint(
            "system", "code", "resource_type", name=op.f("uq_emr_unmapped_code_system_code_resource_type")
        ),
    )
    op.create_table(
        "emr_pull_mark",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server", sa.String(length=512), nullable=False),
        sa.Column("resource_type", sa.String(length=CODE), nullable=False),
        sa.Column("mark", sa.String(length=CODE), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emr_pull_mark")),
        sa.UniqueConstraint("server", "resource_type", name=op.f("uq_emr_pull_mark_server_resource_type")),
    )


def downgrade() -> None:
    """Drop the five EMR tables (their rows go with them)."""
    op.drop_table("emr_pull_mark")
    op.drop_table("emr_unmapped_code")
    op.drop_table("emr_patient")
    op.drop_index(op.f("ix_emr_evidence_study_id"), table_name="emr_evidence")
    op.drop_index(op.f("ix_emr_evidence_ingest_run_id"), table_name="emr_evidence")
    op.drop_index(op.f("ix_emr_evidence_patient"), table_name="emr_evidence")
    op.drop_table("emr_evidence")
    op.drop_index(op.f("ix_emr_ingest_run_payload_sha256"), table_name="emr_ingest_run")
    op.drop_table("emr_ingest_run")
