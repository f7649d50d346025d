"""The hub's own records: organisations, users, operational groups, and what login needs.

No case content lives here. Users hold names and emails (they are professionals, not the young
people followed); audit events refer to them by id only.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

import exchange.server.tables  # noqa: F401 - the exchange's tables join the one MetaData
from charter.vocabulary import OrgKind, Role
from hub.db import Base, utcnow


def new_nonce() -> str:
    """A fresh per-user session nonce; changing it ends every session of the user."""
    return secrets.token_urlsafe(16)


def new_public_id() -> str:
    """An opaque public identifier (used in URLs and audit events instead of names)."""
    return uuid.uuid4().hex


def _enum(enum_cls: type[OrgKind] | type[Role], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint so PostgreSQL and SQLite behave alike and
    # adding a value is a simple migration.
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Organisation(Base):
    """A partner organisation (SPIP, Mission Locale, commune…)."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[OrgKind] = mapped_column(_enum(OrgKind, "org_kind"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="organisation")


class User(Base):
    """A person who logs in. Password and TOTP are both mandatory."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    password_hash: Mapped[str | None] = mapped_column(String(256), default=None)
    totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    # Highest TOTP time step accepted; a code is accepted only for a strictly higher step,
    # which an atomic conditional UPDATE enforces even under concurrent requests.
    totp_last_step: Mapped[int | None] = mapped_column(Integer, default=None)
    session_nonce: Mapped[str] = mapped_column(String(32), default=new_nonce)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    locked_by_failures: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    password_changed_at: Mapped[datetime | None] = mapped_column(default=None)

    organisation: Mapped[Organisation] = relationship(back_populates="users")
    role_rows: Mapped[list[UserRole]] = relationship(cascade="all, delete-orphan", lazy="selectin")

    @property
    def roles(self) -> frozenset[Role]:
        """The roles this user holds."""
        return frozenset(row.role for row in self.role_rows)

    def has_role(self, role: Role) -> bool:
        """Whether the user holds ``role``."""
        return role in self.roles

    def set_roles(self, roles: set[Role] | frozenset[Role]) -> None:
        """Replace the user's roles."""
        keep = [row for row in self.role_rows if row.role in roles]
        present = {row.role for row in keep}
        self.role_rows = keep + [UserRole(role=r) for r in sorted(roles - present)]

    # -- Flask-Login protocol (plain attributes: no Flask import in the model) --------------

    @property
    def is_authenticated(self) -> bool:
        """A loaded user is authenticated (the loader already checked nonce and state)."""
        return True

    @property
    def is_active(self) -> bool:
        """Disabled users and users of suspended organisations cannot log in."""
        return self.active and self.organisation.active

    @property
    def is_anonymous(self) -> bool:
        """Never anonymous."""
        return False

    def get_id(self) -> str:
        """Session identity: public id and per-user nonce (a new nonce ends every session)."""
        return f"{self.public_id}:{self.session_nonce}"

    @property
    def mfa_enrolled(self) -> bool:
        """Whether the user has a confirmed TOTP secret."""
        return self.totp_secret is not None


class UserRole(Base):
    """One role held by one user."""

    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), primary_key=True)


class OperationalGroup(Base):
    """An operational group of a CLSPD/CISPD: the partners who follow young people together."""

    __tablename__ = "operational_groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    territory: Mapped[str] = mapped_column(String(200))
    coordinator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    coordinator: Mapped[User | None] = relationship(foreign_keys=[coordinator_id])
    memberships: Mapped[list[GroupMembership]] = relationship(
        cascade="all, delete-orphan", back_populates="group"
    )

    @property
    def members(self) -> list[User]:
        """The users sitting in this group."""
        return [m.user for m in self.memberships]


class GroupMembership(Base):
    """A user sitting in an operational group."""

    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("operational_groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(default=utcnow)

    group: Mapped[OperationalGroup] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship()


class Invitation(Base):
    """A one-time link to set a password and enrol TOTP (invitation or MFA reset)."""

    __tablename__ = "invitations"
    __table_args__ = (CheckConstraint("purpose IN ('invite', 'mfa_reset')", name="purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # Only a SHA-256 of the token is stored: a database dump gives no usable link. It is empty
    # until the token is minted (by the mail task, so the token never sits in the broker).
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    purpose: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    mail_sent_at: Mapped[datetime | None] = mapped_column(default=None)
    # The TOTP secret offered on the enrolment page, kept server-side (not in the cookie)
    # until the person confirms it with a code.
    pending_totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)

    user: Mapped[User] = relationship(foreign_keys=[user_id])


class RecoveryCode(Base):
    """A single-use recovery code, usable instead of a TOTP code."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiClient(Base):
    """An organisation's system that calls the API (RFC 7523 private_key_jwt)."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True, default=new_public_id)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(String(200))
    # Public key as a JWK (Ed25519, P-256 or RSA); its type fixes the algorithms it verifies
    # (hub.api_auth). The private key never reaches the hub.
    public_jwk: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    organisation: Mapped[Organisation] = relationship()


class UsedAssertion(Base):
    """A client assertion's ``jti``, kept until it expires so it cannot be replayed."""

    __tablename__ = "used_assertions"
    __table_args__ = (UniqueConstraint("client_id", "jti"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    jti: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class CharterVersion(Base):
    """A published version of an operational group's charter (TOML text, as signed)."""

    __tablename__ = "charter_versions"
    __table_args__ = (UniqueConstraint("group_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("operational_groups.id"), index=True)
    charter_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    text: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(80))
    published_at: Mapped[datetime] = mapped_column()
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)

    group: Mapped[OperationalGroup] = relationship()
    signatures: Mapped[list[CharterSignature]] = relationship(
        back_populates="charter_version", cascade="all, delete-orphan"
    )


class CharterSignature(Base):
    """A partner organisation signed one charter version (named signatory, fresh MFA)."""

    __tablename__ = "charter_signatures"
    __table_args__ = (UniqueConstraint("version_id", "organisation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("charter_versions.id", ondelete="CASCADE"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    signatory: Mapped[str] = mapped_column(String(200))
    signed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    signed_at: Mapped[datetime] = mapped_column()
    digest: Mapped[str] = mapped_column(String(80))

    charter_version: Mapped[CharterVersion] = relationship(back_populates="signatures")
    organisation: Mapped[Organisation] = relationship()


class CharterDeclination(Base):
    """A partner declines to share a field in a group, with its recorded reason."""

    __tablename__ = "charter_declinations"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("operational_groups.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    field_glob: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column()
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    withdrawn_at: Mapped[datetime | None] = mapped_column(default=None)

    organisation: Mapped[Organisation] = relationship()


CASE_STATUSES = ("reperage", "suivi", "sortie")


class Case(Base):
    """A young person followed by an operational group, known to the hub only by a reference.

    The hub holds no name here: identity travels only in sealed liaison forms. What the hub
    holds (tier ``hub`` fields of the charter) is in :class:`CaseField`, encrypted under this
    case's own key (``wrapped_key``); deleting that key destroys every value (crypto-shredding).
    """

    __tablename__ = "cases"
    __table_args__ = (CheckConstraint("status IN ('reperage', 'suivi', 'sortie')", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # Pseudonymous and random: says nothing about the person, safe in URLs and audit events.
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("operational_groups.id"), index=True)
    opened_by_org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    referent_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id"), default=None, index=True
    )
    status: Mapped[str] = mapped_column(String(16), default="reperage")
    opened_at: Mapped[datetime] = mapped_column()
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)

    group: Mapped[OperationalGroup] = relationship()
    opened_by_org: Mapped[Organisation] = relationship(foreign_keys=[opened_by_org_id])
    referent: Mapped[User | None] = relationship(foreign_keys=[referent_id])
    partners: Mapped[list[CasePartner]] = relationship(
        cascade="all, delete-orphan", back_populates="case", lazy="selectin"
    )
    fields: Mapped[list[CaseField]] = relationship(
        cascade="all, delete-orphan", back_populates="case"
    )
    members: Mapped[list[CaseMember]] = relationship(
        cascade="all, delete-orphan", back_populates="case", lazy="selectin"
    )

    @property
    def member_ids(self) -> frozenset[int]:
        """The professionals assigned to the case (the référent aside)."""
        return frozenset(m.user_id for m in self.members)

    @property
    def partner_org_ids(self) -> frozenset[int]:
        """The organisations following the case."""
        return frozenset(p.organisation_id for p in self.partners)


class CasePartner(Base):
    """An organisation following a case: its agents have a need to know (need-to-know)."""

    __tablename__ = "case_partners"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    added_at: Mapped[datetime] = mapped_column()

    case: Mapped[Case] = relationship(back_populates="partners")
    organisation: Mapped[Organisation] = relationship(lazy="joined")


class CaseMember(Base):
    """A named professional of a following organisation, assigned to the case (need-to-know is
    per person: other agents of the same organisation take no part)."""

    __tablename__ = "case_members"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    added_at: Mapped[datetime] = mapped_column()
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)

    case: Mapped[Case] = relationship(back_populates="members")
    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")


class CaseField(Base):
    """One tier ``hub`` value of a case, sealed at rest, with who published it under which
    charter version (the recipient's view decision depends on the publisher's kind)."""

    __tablename__ = "case_fields"
    __table_args__ = (UniqueConstraint("case_id", "field_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    field_id: Mapped[str] = mapped_column(String(100))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    published_by_org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    published_at: Mapped[datetime] = mapped_column()
    charter_version: Mapped[int] = mapped_column(Integer)

    case: Mapped[Case] = relationship(back_populates="fields")
    published_by_org: Mapped[Organisation] = relationship(lazy="joined")


class GroupMeeting(Base):
    """A meeting of an operational group (monthly review): charter rules limited to a window
    around meetings apply only around these dates."""

    __tablename__ = "group_meetings"
    __table_args__ = (UniqueConstraint("group_id", "meets_on"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("operational_groups.id"), index=True)
    meets_on: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column()
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)


class Notification(Base):
    """Something awaits a person in Maillon. Never personal data: a kind, a pseudonymous case
    reference and a link are all it holds, in the app as in the e-mail it may trigger."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("user_id", "dedupe_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    case_reference: Mapped[str | None] = mapped_column(String(16), default=None)
    # Exactly once per recipient and event: a second delivery of the same event is a no-op.
    dedupe_key: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column()
    read_at: Mapped[datetime | None] = mapped_column(default=None)
    mailed_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditOutbox(Base):
    """An audit event staged in the same transaction as the change it records.

    For changes that must take effect *before* they are placed in the log — a consent
    withdrawal must be in force before any later read can be positioned after it — the event is
    staged here, committed with the change, then appended and deleted; if the log cannot be
    written the row stays and the beat appends it (``hub.tasks.flush_audit_outbox``): at least
    once, never lost.
    """

    __tablename__ = "audit_outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    event: Mapped[str] = mapped_column(Text)  # the NewEvent's fields as JSON
    created_at: Mapped[datetime] = mapped_column(index=True)


class RefusalCount(Base):
    """Refused anonymous requests of one client in one minute (see :mod:`hub.refusals`).

    ``client`` is the keyed hash of the address the audit log uses (never the address), or
    one of two reserved names: :data:`hub.refusals.ALL_CLIENTS` counts the refusals of clients
    beyond the per-minute cap together, :data:`hub.refusals.CLIENTS` counts the distinct clients
    seen. ``recorded`` says how many of ``refused`` already have their own event (0 or 1); the
    beat records the rest as one counted event once the minute is over, then deletes the row.
    """

    __tablename__ = "refusal_counts"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    refused: Mapped[int] = mapped_column()
    recorded: Mapped[int] = mapped_column()
