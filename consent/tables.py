"""The consent package's tables (SQLAlchemy Core), created by the hub's migrations.

Three records, never merged — prior information, consent (with its status history) and adhesion
— plus the sealed evidence they cite, the receipts handed out, and one counter per case. All are
append-only except the counter: a correction is a new row that supersedes (``supersedes_id``),
never an UPDATE, and the database refuses UPDATE and DELETE on them (triggers created by the
hub's migration 0006, from :data:`APPEND_ONLY`). They live in the main store's one ``MetaData``
(:mod:`consent.db`), so their foreign keys to the hub's ``cases``, ``users`` and
``organisations`` are real; nothing here imports the hub. Hot paths query them through Core.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)

from consent.db import UTCDateTime, metadata
from consent.vocabulary import ConsentStatus, EvidenceKind, Grantor, InformationMethod


def _case() -> Column[int]:
    return Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True)


def _user(name: str, *, nullable: bool = True) -> Column[int]:
    return Column(name, Integer, ForeignKey("users.id"), nullable=nullable)


def _org(name: str, *, nullable: bool = False) -> Column[int]:
    return Column(name, Integer, ForeignKey("organisations.id"), nullable=nullable)


def _one_of(column: str, values: type[StrEnum], name: str | None = None) -> CheckConstraint:
    # Closed vocabularies are checked by the database too, as for the hub's enums.
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name or column)


# Prior information of the young person or of a holder of parental authority — or, for a holder,
# the documented exception « contraire à l'intérêt de l'enfant » (justification sealed).
information_table = Table(
    "consent_information",
    metadata,
    Column("id", Integer, primary_key=True),
    _case(),
    Column("subject", String(16), nullable=False),
    Column("exception", Boolean, nullable=False),
    Column("method", String(16)),
    Column("informed_on", Date),
    Column("notice_version", String(64)),
    Column("justification", LargeBinary),
    _user("informed_by_id"),
    _user("recorded_by_id"),
    _org("recorded_by_org_id"),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("supersedes_id", Integer, ForeignKey("consent_information.id"), unique=True),
    _one_of("subject", Grantor),
    CheckConstraint(
        f"method IS NULL OR method IN ({', '.join(repr(m.value) for m in InformationMethod)})",
        name="method",
    ),
)

# The accord itself: grantor, scope, validity, evidence. Its status lives in consent_status.
consents_table = Table(
    "consents",
    metadata,
    Column("id", Integer, primary_key=True),
    _case(),
    Column("grantor", String(16), nullable=False),
    Column("purposes", Text, nullable=False),  # JSON arrays, sorted: see consent.records
    Column("categories", Text, nullable=False),
    Column("recipient_kinds", Text, nullable=False),
    Column("recipient_orgs", Text, nullable=False),
    Column("excluded_kinds", Text, nullable=False),
    Column("excluded_orgs", Text, nullable=False),
    Column("valid_from", Date, nullable=False),
    Column("valid_until", Date, nullable=False, index=True),
    Column("evidence_id", Integer, ForeignKey("consent_evidence.id")),
    Column("charter_version", String(128), nullable=False),
    _user("recorded_by_id"),
    _org("recorded_by_org_id"),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("supersedes_id", Integer, ForeignKey("consents.id"), unique=True),
    _one_of("grantor", Grantor),
)

# Status history of each consent: given or refused when recorded, then withdrawn or expired.
status_table = Table(
    "consent_status",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("consent_id", Integer, ForeignKey("consents.id"), nullable=False, index=True),
    _case(),
    Column("status", String(16), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    _user("by_id"),
    _org("by_org_id", nullable=True),
    Column("requested_by", String(16)),
    _one_of("status", ConsentStatus),
)

# The tripartite contract: the young person, the counsellor and the référent.
adhesions_table = Table(
    "adhesions",
    metadata,
    Column("id", Integer, primary_key=True),
    _case(),
    Column("signed_on", Date, nullable=False),
    _user("counsellor_id", nullable=False),
    _user("referent_id", nullable=False),
    Column("evidence_id", Integer, ForeignKey("consent_evidence.id"), nullable=False),
    _user("recorded_by_id"),
    _org("recorded_by_org_id"),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Column("supersedes_id", Integer, ForeignKey("adhesions.id"), unique=True),
)

# A scan of a signed form or a signature drawn in person, sealed under the case's key; the
# SHA-256 of the clear bytes is what records cite.
evidence_table = Table(
    "consent_evidence",
    metadata,
    Column("id", Integer, primary_key=True),
    _case(),
    Column("kind", String(16), nullable=False),
    Column("media_type", String(32), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    _one_of("kind", EvidenceKind),
)

# Receipts handed to the young person or a parent: what they say, kept so the DPO can look one
# up by its reference.
receipts_table = Table(
    "consent_receipts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("reference", String(16), nullable=False, unique=True),
    _case(),
    Column("consent_id", Integer, ForeignKey("consents.id"), nullable=False, index=True),
    Column("grantor", String(16), nullable=False),
    Column("language", String(2), nullable=False),
    Column("body", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("issued_at", UTCDateTime(), nullable=False),
    _user("issued_by_id"),
    _org("issued_by_org_id"),
)

# One counter per case, bumped by every consent change in the same transaction. A read checks
# it again after recording its audit event: if it moved, the read is decided again (see
# consent.enforce). Updating it also serialises concurrent changes to one case's consent.
generations_table = Table(
    "consent_generations",
    metadata,
    Column("case_id", Integer, ForeignKey("cases.id"), primary_key=True, autoincrement=False),
    Column("generation", Integer, nullable=False),
)

APPEND_ONLY = (
    "consent_information",
    "consents",
    "consent_status",
    "adhesions",
    "consent_evidence",
    "consent_receipts",
)
