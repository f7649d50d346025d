"""The exchange's tables (SQLAlchemy Core) in the main store's one ``MetaData``, created by the
hub's migrations.

The directory log (entries, tree nodes, signed checkpoints) is append-only: the database refuses
UPDATE and DELETE on it (triggers of migration 0008), as for the audit log. ``exchange_devices``
is the hub's index of the log for fast lookups (current keys per person, client, organisation);
the log stays the authority, and clients trust only the log.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from consent.db import UTCDateTime, metadata

APPEND_ONLY = (
    "exchange_directory_entries",
    "exchange_directory_nodes",
    "exchange_directory_checkpoints",
)

# One row (id 1): the log's size. Appends take its row lock first, so the size read and the
# next entry's index are one atomic step on PostgreSQL and SQLite alike.
directory_head = Table(
    "exchange_directory_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
)

directory_entries = Table(
    "exchange_directory_entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("entry", LargeBinary, nullable=False),  # canonical JSON: what the leaf hashes
    Column("created_at", UTCDateTime, nullable=False),
)

# One row per complete subtree, leaves included (as audit_nodes): any proof in O(log n) rows.
directory_nodes = Table(
    "exchange_directory_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

directory_checkpoints = Table(
    "exchange_directory_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("note", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Witnesses' cosignatures of the directory's checkpoints (c2sp.org/tlog-cosignature), kept so
# that a client or an auditor sees who vouched for which tree. Append-only.
directory_cosignatures = Table(
    "exchange_directory_cosignatures",
    metadata,
    Column(
        "size",
        BigInteger,
        ForeignKey("exchange_directory_checkpoints.size"),
        primary_key=True,
        autoincrement=False,
    ),
    # The witness's verifier key (vkey), as the hub's witness registry holds it.
    Column("witness", String(512), primary_key=True),
    Column("line", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

devices = Table(
    "exchange_devices",
    metadata,
    Column("key_id", String(46), primary_key=True),
    Column("record", Text, nullable=False),
    Column("suite", String(24), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), index=True),
    Column("api_client_id", Integer, ForeignKey("api_clients.id"), index=True),
    Column("organisation_id", Integer, ForeignKey("organisations.id"), nullable=False),
    Column("label", String(80), nullable=False),
    Column("added_idx", BigInteger, nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("revoked_idx", BigInteger),
    Column("revoked_at", UTCDateTime),
    CheckConstraint("(user_id IS NULL) <> (api_client_id IS NULL)", name="one_owner"),
)

# A person's recovery backup: their device keys sealed under a passphrase the hub never sees.
recovery_backups = Table(
    "exchange_recovery_backups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False, index=True),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# A relayed form: the envelope as received (ciphertext only) and what the hub needs to route it
# and enforce consent and retention on delivery. ``digest`` (SHA-256 of the stored bytes) makes
# a retried send with the same form id a no-op, and a different one a conflict.
forms = Table(
    "exchange_forms",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("form_id", String(28), nullable=False, unique=True),
    Column("case_id", Integer, ForeignKey("cases.id"), nullable=False, index=True),
    Column("sender_key_id", String(46), nullable=False),
    Column("sender_user_id", Integer, ForeignKey("users.id")),
    Column("sender_client_id", Integer, ForeignKey("api_clients.id")),
    Column("sender_org_id", Integer, ForeignKey("organisations.id"), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("charter_ref", String(80), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

form_recipients = Table(
    "exchange_form_recipients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("form_row_id", Integer, ForeignKey("exchange_forms.id"), nullable=False, index=True),
    Column("key_id", String(46), nullable=False),
    Column("view_id", String(4), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), index=True),
    Column("api_client_id", Integer, ForeignKey("api_clients.id"), index=True),
    Column("organisation_id", Integer, ForeignKey("organisations.id"), nullable=False),
    Column("delivered_at", UTCDateTime),
    Column("opened_at", UTCDateTime),
    UniqueConstraint("form_row_id", "key_id"),
    CheckConstraint("(user_id IS NULL) <> (api_client_id IS NULL)", name="one_owner"),
)
