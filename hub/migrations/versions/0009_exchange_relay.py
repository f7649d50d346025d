"""Relayed liaison forms (ciphertext only) and their recipient devices.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchange_forms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("form_id", sa.String(length=28), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("sender_key_id", sa.String(length=46), nullable=False),
        sa.Column("sender_user_id", sa.Integer(), nullable=True),
        sa.Column("sender_client_id", sa.Integer(), nullable=True),
        sa.Column("sender_org_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("charter_ref", sa.String(length=80), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_exchange_forms_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["sender_client_id"],
            ["api_clients.id"],
            name=op.f("fk_exchange_forms_sender_client_id_api_clients"),
        ),
        sa.ForeignKeyConstraint(
            ["sender_org_id"],
            ["organisations.id"],
            name=op.f("fk_exchange_forms_sender_org_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["sender_user_id"], ["users.id"], name=op.f("fk_exchange_forms_sender_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_forms")),
        sa.UniqueConstraint("form_id", name=op.f("uq_exchange_forms_form_id")),
    )
    op.create_index(op.f("ix_exchange_forms_case_id"), "exchange_forms", ["case_id"])
    op.create_index(op.f("ix_exchange_forms_expires_at"), "exchange_forms", ["expires_at"])
    op.create_table(
        "exchange_form_recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("form_row_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=46), nullable=False),
        sa.Column("view_id", sa.String(length=4), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("api_client_id", sa.Integer(), nullable=True),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("opened_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (api_client_id IS NULL)",
            name=op.f("ck_exchange_form_recipients_one_owner"),
        ),
        sa.ForeignKeyConstraint(
            ["api_client_id"],
            ["api_clients.id"],
            name=op.f("fk_exchange_form_recipients_api_client_id_api_clients"),
        ),
        sa.ForeignKeyConstraint(
            ["form_row_id"],
            ["exchange_forms.id"],
            name=op.f("fk_exchange_form_recipients_form_row_id_exchange_forms"),
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_exchange_form_recipients_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_exchange_form_recipients_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_form_recipients")),
        sa.UniqueConstraint(
            "form_row_id", "key_id", name=op.f("uq_exchange_form_recipients_form_row_id")
        ),
    )
    for column in ("api_client_id", "form_row_id", "user_id"):
        op.create_index(
            op.f(f"ix_exchange_form_recipients_{column}"), "exchange_form_recipients", [column]
        )


def downgrade() -> None:
    for column in ("api_client_id", "form_row_id", "user_id"):
        op.drop_index(
            op.f(f"ix_exchange_form_recipients_{column}"), table_name="exchange_form_recipients"
        )
    op.drop_table("exchange_form_recipients")
    op.drop_index(op.f("ix_exchange_forms_expires_at"), table_name="exchange_forms")
    op.drop_index(op.f("ix_exchange_forms_case_id"), table_name="exchange_forms")
    op.drop_table("exchange_forms")
