"""The consent records as immutable values, read back from the tables.

A record is never changed once written: a correction is a new record naming the one it
supersedes, and a consent's life (given or refused, then withdrawn or expired) is a history of
status entries. These values are what the enforcement, the pages, the receipts and the API read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import RowMapping

from charter.vocabulary import OrgKind
from consent.vocabulary import ConsentStatus, EvidenceKind, Grantor, InformationMethod


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (SQLite hands timestamps back without a zone)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def dump_ids(values: Iterable[str | int]) -> str:
    """A set as the JSON text stored in a scope column: sorted, so equal sets store equal text."""
    return json.dumps(sorted(values), separators=(",", ":"))


def _load(text: str) -> list[Any]:
    loaded = json.loads(text)
    return loaded if isinstance(loaded, list) else []


@dataclass(frozen=True, slots=True)
class RecipientOrg:
    """A recipient organisation, as consent scopes name them: by id or by kind."""

    id: int
    kind: OrgKind


@dataclass(frozen=True, slots=True)
class Scope:
    """What a consent covers: purposes × recipients × categories, minus exclusions.

    Recipients are organisation kinds (« les Missions Locales ») and/or organisations by id;
    exclusions (« pas au bailleur ») win over inclusions.
    """

    purposes: frozenset[str]
    categories: frozenset[str]
    recipient_kinds: frozenset[OrgKind] = frozenset()
    recipient_orgs: frozenset[int] = frozenset()
    excluded_kinds: frozenset[OrgKind] = frozenset()
    excluded_orgs: frozenset[int] = frozenset()

    def reaches(self, recipient: RecipientOrg) -> bool:
        """Whether ``recipient`` is among the recipients and not excluded."""
        if recipient.id in self.excluded_orgs or recipient.kind in self.excluded_kinds:
            return False
        return recipient.id in self.recipient_orgs or recipient.kind in self.recipient_kinds

    def covers(self, purpose: str | None, recipient: RecipientOrg | None) -> bool:
        """Whether the scope covers ``purpose`` towards ``recipient``; ``None`` means any (the
        question « may this category enter the exchange at all », asked when a value is
        recorded)."""
        if purpose is not None and purpose not in self.purposes:
            return False
        return recipient is None or self.reaches(recipient)

    @property
    def empty(self) -> bool:
        """A scope without purpose, category or recipient covers nothing: it is refused."""
        return not (
            self.purposes and self.categories and (self.recipient_kinds or self.recipient_orgs)
        )

    def columns(self) -> dict[str, str]:
        """The scope as the values of its table columns."""
        return {
            "purposes": dump_ids(self.purposes),
            "categories": dump_ids(self.categories),
            "recipient_kinds": dump_ids(k.value for k in self.recipient_kinds),
            "recipient_orgs": dump_ids(self.recipient_orgs),
            "excluded_kinds": dump_ids(k.value for k in self.excluded_kinds),
            "excluded_orgs": dump_ids(self.excluded_orgs),
        }

    @classmethod
    def from_columns(cls, row: Mapping[str, Any] | RowMapping) -> Scope:
        """The scope of a ``consents`` row."""
        return cls(
            purposes=frozenset(str(p) for p in _load(row["purposes"])),
            categories=frozenset(str(c) for c in _load(row["categories"])),
            recipient_kinds=frozenset(OrgKind(k) for k in _load(row["recipient_kinds"])),
            recipient_orgs=frozenset(int(o) for o in _load(row["recipient_orgs"])),
            excluded_kinds=frozenset(OrgKind(k) for k in _load(row["excluded_kinds"])),
            excluded_orgs=frozenset(int(o) for o in _load(row["excluded_orgs"])),
        )


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One entry of a consent's status history: what, when, recorded by whom, asked by whom."""

    id: int
    status: ConsentStatus
    at: datetime
    by_id: int | None
    by_org_id: int | None
    requested_by: Grantor | None


@dataclass(frozen=True, slots=True)
class Information:
    """Prior information of one person, or the documented exception for a holder."""

    id: int
    case_id: int
    subject: Grantor
    exception: bool
    method: InformationMethod | None
    informed_on: date | None
    notice_version: str | None
    has_justification: bool
    informed_by_id: int | None
    recorded_by_id: int | None
    recorded_by_org_id: int
    recorded_at: datetime
    supersedes_id: int | None
    superseded_by: int | None = None

    @property
    def current(self) -> bool:
        """Whether no later record corrects this one."""
        return self.superseded_by is None


@dataclass(frozen=True, slots=True)
class Consent:
    """An accord given (or refused) by one grantor, with its scope, validity and history."""

    id: int
    case_id: int
    grantor: Grantor
    scope: Scope
    valid_from: date
    valid_until: date
    evidence_id: int | None
    charter_version: str
    recorded_by_id: int | None
    recorded_by_org_id: int
    recorded_at: datetime
    supersedes_id: int | None
    history: tuple[StatusEntry, ...]
    superseded_by: int | None = None

    @property
    def status(self) -> ConsentStatus:
        """The latest decision: given, refused or withdrawn (expiry is shown apart)."""
        decisions = [e.status for e in self.history if e.status is not ConsentStatus.EXPIRED]
        return decisions[-1] if decisions else ConsentStatus.REFUSED

    @property
    def current(self) -> bool:
        """Whether no later record corrects this one."""
        return self.superseded_by is None

    @property
    def withdrawal(self) -> StatusEntry | None:
        """The withdrawal entry, if the consent was withdrawn."""
        return next((e for e in self.history if e.status is ConsentStatus.WITHDRAWN), None)

    def in_force(self, day: date) -> bool:
        """Given, not withdrawn, not corrected, and ``day`` within its validity."""
        return (
            self.current
            and self.status is ConsentStatus.GIVEN
            and self.valid_from <= day <= self.valid_until
        )


@dataclass(frozen=True, slots=True)
class Adhesion:
    """The tripartite contract signed by the young person, the counsellor and the référent."""

    id: int
    case_id: int
    signed_on: date
    counsellor_id: int
    referent_id: int
    evidence_id: int
    recorded_by_id: int | None
    recorded_by_org_id: int
    recorded_at: datetime
    supersedes_id: int | None
    superseded_by: int | None = None

    @property
    def current(self) -> bool:
        """Whether no later record corrects this one."""
        return self.superseded_by is None


@dataclass(frozen=True, slots=True)
class Evidence:
    """What proves a consent or a contract: the digest shown, the bytes kept sealed."""

    id: int
    case_id: int
    kind: EvidenceKind
    media_type: str
    size: int
    sha256: str
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Receipt:
    """A receipt handed to a grantor: its reference, what it says (JSON), when, by whom."""

    id: int
    reference: str
    case_id: int
    consent_id: int
    grantor: Grantor
    language: str
    body: dict[str, Any]
    sha256: str
    issued_at: datetime
    issued_by_id: int | None
    issued_by_org_id: int


@dataclass(frozen=True, slots=True)
class History:
    """Every consent record of a case, oldest first, corrections included."""

    information: tuple[Information, ...]
    consents: tuple[Consent, ...]
    adhesions: tuple[Adhesion, ...]
    evidence: Mapping[int, Evidence]
    receipts: tuple[Receipt, ...]
