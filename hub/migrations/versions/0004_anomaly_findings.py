"""Anomaly findings of the DPO console and the scans that produced them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "anomaly_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("actor_user", sa.String(128), nullable=False),
        sa.Column("actor_org", sa.String(128), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("reviewed_at", UTCDateTime(), nullable=True),
        sa.Column("reviewed_by_id", sa.Integer(), nullable=True),
        sa.Column("review_note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reviewed_by_id"], ["users.id"], name="fk_anomaly_findings_reviewed_by_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_anomaly_findings"),
    )
    op.create_index("ix_anomaly_findings_first_seq", "anomaly_findings", ["first_seq"])
    op.create_index("ix_anomaly_findings_reviewed_at", "anomaly_findings", ["reviewed_at"])
    op.create_table(
        "anomaly_scans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scanned_from", sa.BigInteger(), nullable=False),
        sa.Column("scanned_until", sa.BigInteger(), nullable=False),
        sa.Column("ran_at", UTCDateTime(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_anomaly_scans"),
        sa.UniqueConstraint("scanned_from", name="uq_anomaly_scans_scanned_from"),
    )


def downgrade() -> None:
    op.drop_table("anomaly_scans")
    op.drop_index("ix_anomaly_findings_reviewed_at", table_name="anomaly_findings")
    op.drop_index("ix_anomaly_findings_first_seq", table_name="anomaly_findings")
    op.drop_table("anomaly_findings")
