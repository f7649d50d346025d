"""Witnesses' cosignatures of the key directory's checkpoints (append-only).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLE = "exchange_directory_cosignatures"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness", sa.String(length=512), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["size"],
            ["exchange_directory_checkpoints.size"],
            name=op.f("fk_exchange_directory_cosignatures_size_exchange_directory_checkpoints"),
        ),
        sa.PrimaryKeyConstraint("size", "witness", name=op.f("pk_exchange_directory_cosignatures")),
    )
    # Append-only like the directory itself (0008 created the PostgreSQL function).
    if op.get_bind().dialect.name == "postgresql":
        for verb in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{verb} BEFORE {verb.upper()} ON {TABLE} "
                "FOR EACH ROW EXECUTE FUNCTION exchange_forbid_change()"
            )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION exchange_forbid_change()"
        )
        return
    for verb in ("update", "delete"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{verb} BEFORE {verb.upper()} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END"
        )


def downgrade() -> None:
    op.drop_table(TABLE)
