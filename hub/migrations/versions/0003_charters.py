"""Charter versions, partner signatures and declinations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "charter_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("charter_id", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=False),
        sa.Column("published_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["operational_groups.id"],
            name="fk_charter_versions_group_id_operational_groups",
        ),
        sa.ForeignKeyConstraint(
            ["published_by_id"], ["users.id"], name="fk_charter_versions_published_by_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_charter_versions"),
        sa.UniqueConstraint("group_id", "version", name="uq_charter_versions_group_id"),
    )
    op.create_index("ix_charter_versions_group_id", "charter_versions", ["group_id"])
    op.create_table(
        "charter_signatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("signatory", sa.String(200), nullable=False),
        sa.Column("signed_by_id", sa.Integer(), nullable=True),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["charter_versions.id"],
            name="fk_charter_signatures_version_id_charter_versions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name="fk_charter_signatures_organisation_id_organisations",
        ),
        sa.ForeignKeyConstraint(
            ["signed_by_id"], ["users.id"], name="fk_charter_signatures_signed_by_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_charter_signatures"),
        sa.UniqueConstraint(
            "version_id", "organisation_id", name="uq_charter_signatures_version_id"
        ),
    )
    op.create_table(
        "charter_declinations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("field_glob", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("withdrawn_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["operational_groups.id"],
            name="fk_charter_declinations_group_id_operational_groups",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name="fk_charter_declinations_organisation_id_organisations",
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["users.id"], name="fk_charter_declinations_recorded_by_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_charter_declinations"),
    )
    op.create_index("ix_charter_declinations_group_id", "charter_declinations", ["group_id"])


def downgrade() -> None:
    op.drop_index("ix_charter_declinations_group_id", table_name="charter_declinations")
    op.drop_table("charter_declinations")
    op.drop_table("charter_signatures")
    op.drop_index("ix_charter_versions_group_id", table_name="charter_versions")
    op.drop_table("charter_versions")
