"""The key directory (entries, tree nodes, signed checkpoints: append-only), the hub's index of
device keys, and people's recovery backups.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Frozen here (not imported from exchange.server.tables): a migration must not change with code.
APPEND_ONLY = (
    "exchange_directory_entries",
    "exchange_directory_nodes",
    "exchange_directory_checkpoints",
)

_PG_FUNCTION = """CREATE OR REPLACE FUNCTION exchange_forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only';
END $$"""


def _append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for table in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION exchange_forbid_change()"
                )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION exchange_forbid_change()"
            )
        return
    for table in APPEND_ONLY:
        for verb in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def upgrade() -> None:
    op.create_table(
        "exchange_directory_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_directory_head")),
    )
    op.create_table(
        "exchange_directory_entries",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_exchange_directory_entries")),
    )
    op.create_table(
        "exchange_directory_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_exchange_directory_nodes")),
    )
    op.create_table(
        "exchange_directory_checkpoints",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_exchange_directory_checkpoints")),
    )
    op.create_table(
        "exchange_devices",
        sa.Column("key_id", sa.String(length=46), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("suite", sa.String(length=24), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("api_client_id", sa.Integer(), nullable=True),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("added_idx", sa.BigInteger(), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_idx", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (api_client_id IS NULL)",
            name=op.f("ck_exchange_devices_one_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["api_client_id"],
            ["api_clients.id"],
            name=op.f("fk_exchange_devices_api_client_id_api_clients"),
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_exchange_devices_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_exchange_devices_user_id_users")
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_exchange_devices")),
    )
    op.create_index(
        op.f("ix_exchange_devices_api_client_id"), "exchange_devices", ["api_client_id"]
    )
    op.create_index(op.f("ix_exchange_devices_user_id"), "exchange_devices", ["user_id"])
    op.create_table(
        "exchange_recovery_backups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_exchange_recovery_backups_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_recovery_backups")),
    )
    op.create_index(
        op.f("ix_exchange_recovery_backups_user_id"), "exchange_recovery_backups", ["user_id"]
    )
    _append_only()


def downgrade() -> None:
    op.drop_index(
        op.f("ix_exchange_recovery_backups_user_id"), table_name="exchange_recovery_backups"
    )
    op.drop_table("exchange_recovery_backups")
    op.drop_index(op.f("ix_exchange_devices_user_id"), table_name="exchange_devices")
    op.drop_index(op.f("ix_exchange_devices_api_client_id"), table_name="exchange_devices")
    op.drop_table("exchange_devices")
    op.drop_table("exchange_directory_checkpoints")
    op.drop_table("exchange_directory_nodes")
    op.drop_table("exchange_directory_entries")
    op.drop_table("exchange_directory_head")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS exchange_forbid_change()")
