"""Counts of refused anonymous requests per client and minute, recorded in the audit log as
one counted event each (instead of one event per request that anyone could send).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refusal_counts",
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("minute", UTCDateTime(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("recorded", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client", "minute", name=op.f("pk_refusal_counts")),
    )
    op.create_index(op.f("ix_refusal_counts_minute"), "refusal_counts", ["minute"])


def downgrade() -> None:
    op.drop_index(op.f("ix_refusal_counts_minute"), table_name="refusal_counts")
    op.drop_table("refusal_counts")
