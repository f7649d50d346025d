"""Consent records (prior information, consent with its status history, adhesion, sealed
evidence, receipts) with append-only triggers; the case team as named people; notifications;
the outbox of audit events staged with the change they record.

Existing cases keep working: the agent who opened a case joins its team, and an organisation
oriented to a case before teams existed keeps its agents on it (they were all entitled then);
the coordinator or the référent can narrow the team afterwards.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hub.db import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Frozen here (not imported from consent.tables): a migration must not change with the code.
APPEND_ONLY = (
    "consent_information",
    "consents",
    "consent_status",
    "adhesions",
    "consent_evidence",
    "consent_receipts",
)

_PG_FUNCTION = """CREATE OR REPLACE FUNCTION consent_forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING MESSAGE = TG_TABLE_NAME || ' is append-only: record a correction';
END $$"""

_TEAM_FROM_OPENERS = """INSERT INTO case_members (case_id, user_id, organisation_id, added_at)
SELECT c.id, c.opened_by_id, c.opened_by_org_id, c.opened_at FROM cases c
WHERE c.opened_by_id IS NOT NULL"""

# Organisations that followed a case with nobody of theirs on it yet (oriented ones): their
# active agents, except in the référent's own organisation (the référent is its person).
_TEAM_FROM_PARTNERS = """INSERT INTO case_members (case_id, user_id, organisation_id, added_at)
SELECT p.case_id, u.id, p.organisation_id, p.added_at
FROM case_partners p
JOIN users u ON u.organisation_id = p.organisation_id
JOIN user_roles r ON r.user_id = u.id AND r.role = 'agent'
WHERE u.active
  AND NOT EXISTS (SELECT 1 FROM case_members m
                  WHERE m.case_id = p.case_id AND m.organisation_id = p.organisation_id)
  AND NOT EXISTS (SELECT 1 FROM cases c JOIN users ref ON ref.id = c.referent_id
                  WHERE c.id = p.case_id AND ref.organisation_id = p.organisation_id)"""


def _append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for table in APPEND_ONLY:
            for verb in ("update", "delete"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION consent_forbid_change()"
                )
            # TRUNCATE fires no row trigger: refuse it too.
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION consent_forbid_change()"
            )
        return
    for table in APPEND_ONLY:
        for verb in ("update", "delete"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: record a correction'); END"
            )


def upgrade() -> None:
    op.create_table(
        "audit_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_outbox")),
    )
    op.create_index(op.f("ix_audit_outbox_created_at"), "audit_outbox", ["created_at"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("case_reference", sa.String(length=16), nullable=True),
        sa.Column("dedupe_key", sa.String(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("read_at", UTCDateTime(), nullable=True),
        sa.Column("mailed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("user_id", "dedupe_key", name=op.f("uq_notifications_user_id")),
    )
    op.create_index(op.f("ix_notifications_user_id"), "notifications", ["user_id"], unique=False)
    op.create_table(
        "case_members",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("organisation_id", sa.Integer(), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.Column("added_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["added_by_id"], ["users.id"], name=op.f("fk_case_members_added_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_case_members_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_case_members_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_case_members_user_id_users")
        ),
        sa.PrimaryKeyConstraint("case_id", "user_id", name=op.f("pk_case_members")),
    )
    op.create_index(op.f("ix_case_members_user_id"), "case_members", ["user_id"], unique=False)
    op.create_table(
        "consent_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('scan', 'signature')", name=op.f("ck_consent_evidence_kind")),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_consent_evidence_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_evidence")),
    )
    op.create_index(
        op.f("ix_consent_evidence_case_id"), "consent_evidence", ["case_id"], unique=False
    )
    op.create_table(
        "consent_generations",
        sa.Column("case_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_consent_generations_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_consent_generations")),
    )
    op.create_table(
        "consent_information",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=16), nullable=False),
        sa.Column("exception", sa.Boolean(), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=True),
        sa.Column("informed_on", sa.Date(), nullable=True),
        sa.Column("notice_version", sa.String(length=64), nullable=True),
        sa.Column("justification", sa.LargeBinary(), nullable=True),
        sa.Column("informed_by_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by_org_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "method IS NULL OR method IN ('en_personne', 'courrier', 'telephone')",
            name=op.f("ck_consent_information_method"),
        ),
        sa.CheckConstraint(
            "subject IN ('jeune', 'parent_1', 'parent_2', 'tuteur')",
            name=op.f("ck_consent_information_subject"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_consent_information_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["informed_by_id"],
            ["users.id"],
            name=op.f("fk_consent_information_informed_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"],
            ["users.id"],
            name=op.f("fk_consent_information_recorded_by_id_users"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_org_id"],
            ["organisations.id"],
            name=op.f("fk_consent_information_recorded_by_org_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["consent_information.id"],
            name=op.f("fk_consent_information_supersedes_id_consent_information"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_information")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_consent_information_supersedes_id")),
    )
    op.create_index(
        op.f("ix_consent_information_case_id"), "consent_information", ["case_id"], unique=False
    )
    op.create_table(
        "adhesions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("signed_on", sa.Date(), nullable=False),
        sa.Column("counsellor_id", sa.Integer(), nullable=False),
        sa.Column("referent_id", sa.Integer(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by_org_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_adhesions_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["counsellor_id"], ["users.id"], name=op.f("fk_adhesions_counsellor_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["consent_evidence.id"],
            name=op.f("fk_adhesions_evidence_id_consent_evidence"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["users.id"], name=op.f("fk_adhesions_recorded_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_org_id"],
            ["organisations.id"],
            name=op.f("fk_adhesions_recorded_by_org_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["referent_id"], ["users.id"], name=op.f("fk_adhesions_referent_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["adhesions.id"], name=op.f("fk_adhesions_supersedes_id_adhesions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_adhesions")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_adhesions_supersedes_id")),
    )
    op.create_index(op.f("ix_adhesions_case_id"), "adhesions", ["case_id"], unique=False)
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("grantor", sa.String(length=16), nullable=False),
        sa.Column("purposes", sa.Text(), nullable=False),
        sa.Column("categories", sa.Text(), nullable=False),
        sa.Column("recipient_kinds", sa.Text(), nullable=False),
        sa.Column("recipient_orgs", sa.Text(), nullable=False),
        sa.Column("excluded_kinds", sa.Text(), nullable=False),
        sa.Column("excluded_orgs", sa.Text(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("evidence_id", sa.Integer(), nullable=True),
        sa.Column("charter_version", sa.String(length=128), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by_org_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "grantor IN ('jeune', 'parent_1', 'parent_2', 'tuteur')",
            name=op.f("ck_consents_grantor"),
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_consents_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["evidence_id"],
            ["consent_evidence.id"],
            name=op.f("fk_consents_evidence_id_consent_evidence"),
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["users.id"], name=op.f("fk_consents_recorded_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_org_id"],
            ["organisations.id"],
            name=op.f("fk_consents_recorded_by_org_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["consents.id"], name=op.f("fk_consents_supersedes_id_consents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
        sa.UniqueConstraint("supersedes_id", name=op.f("uq_consents_supersedes_id")),
    )
    op.create_index(op.f("ix_consents_case_id"), "consents", ["case_id"], unique=False)
    op.create_index(op.f("ix_consents_valid_until"), "consents", ["valid_until"], unique=False)
    op.create_table(
        "consent_receipts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("consent_id", sa.Integer(), nullable=False),
        sa.Column("grantor", sa.String(length=16), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("issued_by_id", sa.Integer(), nullable=True),
        sa.Column("issued_by_org_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_consent_receipts_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["consent_id"], ["consents.id"], name=op.f("fk_consent_receipts_consent_id_consents")
        ),
        sa.ForeignKeyConstraint(
            ["issued_by_id"], ["users.id"], name=op.f("fk_consent_receipts_issued_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["issued_by_org_id"],
            ["organisations.id"],
            name=op.f("fk_consent_receipts_issued_by_org_id_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_receipts")),
        sa.UniqueConstraint("reference", name=op.f("uq_consent_receipts_reference")),
    )
    op.create_index(
        op.f("ix_consent_receipts_case_id"), "consent_receipts", ["case_id"], unique=False
    )
    op.create_index(
        op.f("ix_consent_receipts_consent_id"), "consent_receipts", ["consent_id"], unique=False
    )
    op.create_table(
        "consent_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consent_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("by_id", sa.Integer(), nullable=True),
        sa.Column("by_org_id", sa.Integer(), nullable=True),
        sa.Column("requested_by", sa.String(length=16), nullable=True),
        sa.CheckConstraint(
            "status IN ('given', 'refused', 'withdrawn', 'expired')",
            name=op.f("ck_consent_status_status"),
        ),
        sa.ForeignKeyConstraint(
            ["by_id"], ["users.id"], name=op.f("fk_consent_status_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["by_org_id"],
            ["organisations.id"],
            name=op.f("fk_consent_status_by_org_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_consent_status_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["consent_id"], ["consents.id"], name=op.f("fk_consent_status_consent_id_consents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_status")),
    )
    op.create_index(op.f("ix_consent_status_case_id"), "consent_status", ["case_id"], unique=False)
    op.create_index(
        op.f("ix_consent_status_consent_id"), "consent_status", ["consent_id"], unique=False
    )
    _append_only()
    op.execute(_TEAM_FROM_OPENERS)
    op.execute(_TEAM_FROM_PARTNERS)


def downgrade() -> None:
    op.drop_index(op.f("ix_consent_status_consent_id"), table_name="consent_status")
    op.drop_index(op.f("ix_consent_status_case_id"), table_name="consent_status")
    op.drop_table("consent_status")
    op.drop_index(op.f("ix_consent_receipts_consent_id"), table_name="consent_receipts")
    op.drop_index(op.f("ix_consent_receipts_case_id"), table_name="consent_receipts")
    op.drop_table("consent_receipts")
    op.drop_index(op.f("ix_consents_valid_until"), table_name="consents")
    op.drop_index(op.f("ix_consents_case_id"), table_name="consents")
    op.drop_table("consents")
    op.drop_index(op.f("ix_adhesions_case_id"), table_name="adhesions")
    op.drop_table("adhesions")
    op.drop_index(op.f("ix_consent_information_case_id"), table_name="consent_information")
    op.drop_table("consent_information")
    op.drop_table("consent_generations")
    op.drop_index(op.f("ix_consent_evidence_case_id"), table_name="consent_evidence")
    op.drop_table("consent_evidence")
    op.drop_index(op.f("ix_case_members_user_id"), table_name="case_members")
    op.drop_table("case_members")
    op.drop_index(op.f("ix_notifications_user_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_index(op.f("ix_audit_outbox_created_at"), table_name="audit_outbox")
    op.drop_table("audit_outbox")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS consent_forbid_change()")
