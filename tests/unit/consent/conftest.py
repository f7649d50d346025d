"""A migrated main store with one case, on SQLite and PostgreSQL, for the consent package."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest
from sqlalchemy.orm import Session

from charter import charter_type
from charter.vocabulary import OrgKind
from consent import Actor, ConsentRecords, ConsentRules, Grantor, InformationMethod, Scope, Upload
from consent.vocabulary import EvidenceKind
from hub.config import Config
from hub.db import make_engine, make_session_factory
from hub.models import Case, OperationalGroup, Organisation, User
from hub.vault import CaseSealer, FieldVault
from tests.conftest import FakeClock

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
SCAN = b"%PDF-1.7\n% signed consent form\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
SCAN_UPLOAD = Upload(EvidenceKind.SCAN, SCAN)


@dataclass
class World:
    """One case of a group with two partner organisations and a professional."""

    session: Session
    clock: FakeClock
    records: ConsentRecords
    case: Case
    spip: Organisation
    mission_locale: Organisation
    bailleur: Organisation
    agent: User
    sealer: CaseSealer

    @property
    def actor(self) -> Actor:
        return Actor(self.agent.id, self.spip.id)

    def rules(self, **overrides: object) -> ConsentRules:
        base = ConsentRules.of(charter_type(2))
        values = {
            "birth_date_field": base.birth_date_field,
            "minor_age": base.minor_age,
            "parents_for_minors": base.parents_for_minors,
            "notice_version": base.notice_version,
            "article": base.article,
        }
        values.update(overrides)
        return ConsentRules(**values)  # type: ignore[arg-type]

    def inform(self, subject: Grantor = Grantor.YOUNG_PERSON, **kwargs: object) -> None:
        self.records.inform(
            self.case.id,
            self.actor,
            subject=subject,
            rules=kwargs.pop("rules", self.rules()),  # type: ignore[arg-type]
            birth=kwargs.pop("birth", None),  # type: ignore[arg-type]
            method=InformationMethod.IN_PERSON,
            informed_on=self.clock().date(),
            sealer=self.sealer,
            **kwargs,  # type: ignore[arg-type]
        )

    def scope(self, **changes: object) -> Scope:
        values: dict[str, object] = {
            "purposes": frozenset({"suivi_parcours", "orientation"}),
            "categories": frozenset({"justice", "identite"}),
            "recipient_orgs": frozenset({self.mission_locale.id}),
        }
        values.update(changes)
        return Scope(**values)  # type: ignore[arg-type]

    def give(
        self,
        grantor: Grantor = Grantor.YOUNG_PERSON,
        *,
        scope: Scope | None = None,
        valid_from: date | None = None,
        valid_until: date | None = None,
        birth: date | None = None,
        given: bool = True,
        evidence: Upload | None = SCAN_UPLOAD,
        rules: ConsentRules | None = None,
        supersedes: int | None = None,
    ) -> int:
        today = self.clock().date()
        charter = charter_type(2)
        consent = self.records.record_consent(
            self.case.id,
            self.actor,
            grantor=grantor,
            given=given,
            scope=scope or self.scope(),
            valid_from=valid_from or today,
            valid_until=valid_until or date(today.year + 1, today.month, today.day),
            rules=rules or self.rules(),
            birth=birth,
            purposes=charter.purpose_ids,
            categories=charter.consent_category_ids,
            charter_version="charte-type-clspd-jeunes-justice:2",
            evidence=evidence,
            sealer=self.sealer,
            supersedes=supersedes,
        )
        return consent.id


@pytest.fixture
def world(config: Config) -> Iterator[World]:
    """A case on the selected backend (SQLite copy of the migrated template, or PostgreSQL)."""
    engine = make_engine(config.database_url)
    session = make_session_factory(engine)()
    clock = FakeClock(NOW)
    spip = Organisation(name="SPIP", kind=OrgKind.SPIP, created_at=NOW)
    mission_locale = Organisation(
        name="Mission Locale", kind=OrgKind.MISSION_LOCALE, created_at=NOW
    )
    bailleur = Organisation(name="Bailleur", kind=OrgKind.BAILLEUR, created_at=NOW)
    agent = User(name="Paul", email="paul@spip.example", organisation=spip, created_at=NOW)
    group = OperationalGroup(name="GO", territory="T", created_at=NOW)
    session.add_all([spip, mission_locale, bailleur, agent, group])
    session.flush()
    vault = FieldVault(secrets.token_bytes(32))
    reference = "C-TEST-0001"
    case = Case(
        reference=reference,
        group_id=group.id,
        opened_by_org_id=spip.id,
        status="suivi",
        opened_at=NOW,
        wrapped_key=vault.new_case_key(reference),
    )
    session.add(case)
    session.commit()
    yield World(
        session,
        clock,
        ConsentRecords(session, clock=clock),
        case,
        spip,
        mission_locale,
        bailleur,
        agent,
        vault.for_case(case.wrapped_key, reference),
    )
    session.close()
    engine.dispose()
