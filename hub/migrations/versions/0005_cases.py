"""Cases known to the hub by a pseudonymous reference, their partners, their hub-tier values
(sealed at rest under per-case keys) and the meetings of operational groups.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(16), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("opened_by_org_id", sa.Integer(), nullable=False),
        sa.Column("opened_by_id", sa.Integer(), nullable=True),
        sa.Column("referent_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("status IN ('reperage', 'suivi', 'sortie')", name="ck_cases_status"),
        sa.ForeignKeyConstraint(
            ["group_id"], ["operational_groups.id"], name="fk_cases_group_id_operational_groups"
        ),
        sa.ForeignKeyConstraint(
            ["opened_by_org_id"],
            ["organisations.id"],
            name="fk_cases_opened_by_org_id_organisations",
        ),
        sa.ForeignKeyConstraint(["opened_by_id"], ["users.id"], name="fk_cases_opened_by_id_users"),
        sa.ForeignKeyConstraint(["referent_id"], ["users.id"], name="fk_cases_referent_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
        sa.UniqueConstraint("reference", name="uq_cases_reference"),
    )
    op.create_index("ix_cases_group_id", "cases", ["group_id"])
    op.create_index("ix_cases_referent_id", "cases", ["referent_id"])
    op.create_table(
        "case_partners",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name="fk_case_partners_case_id_cases", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name="fk_case_partners_organisation_id_organisations",
        ),
        sa.PrimaryKeyConstraint("case_id", "organisation_id", name="pk_case_partners"),
    )
    op.create_table(
        "case_fields",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("field_id", sa.String(100), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("published_by_org_id", sa.Integer(), nullable=False),
        sa.Column("published_by_id", sa.Integer(), nullable=True),
        sa.Column("published_at", UTCDateTime(), nullable=False),
        sa.Column("charter_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name="fk_case_fields_case_id_cases", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["published_by_org_id"],
            ["organisations.id"],
            name="fk_case_fields_published_by_org_id_organisations",
        ),
        sa.ForeignKeyConstraint(
            ["published_by_id"], ["users.id"], name="fk_case_fields_published_by_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_case_fields"),
        sa.UniqueConstraint("case_id", "field_id", name="uq_case_fields_case_id"),
    )
    op.create_table(
        "group_meetings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("meets_on", sa.Date(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["operational_groups.id"],
            name="fk_group_meetings_group_id_operational_groups",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name="fk_group_meetings_created_by_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_group_meetings"),
        sa.UniqueConstraint("group_id", "meets_on", name="uq_group_meetings_group_id"),
    )
    op.create_index("ix_group_meetings_group_id", "group_meetings", ["group_id"])


def downgrade() -> None:
    op.drop_index("ix_group_meetings_group_id", table_name="group_meetings")
    op.drop_table("group_meetings")
    op.drop_table("case_fields")
    op.drop_table("case_partners")
    op.drop_index("ix_cases_referent_id", table_name="cases")
    op.drop_index("ix_cases_group_id", table_name="cases")
    op.drop_table("cases")
