"""Consent records (consent.services): recording, correcting and withdrawing, bad input refused
with a stable code and nothing stored, append-only enforced by the database itself."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from consent import (
    ConsentConflictError,
    ConsentInvalidError,
    ConsentStatus,
    EvidenceKind,
    Grantor,
    Upload,
)
from consent.tables import APPEND_ONLY, consents_table, evidence_table, information_table
from tests.unit.consent.conftest import PNG, SCAN, World


def _rows(world: World, table: str) -> int:
    return int(world.session.scalar(select(func.count()).select_from(text(table))) or 0)


def _refused(world: World, code: str, action: object) -> None:
    before = {t: _rows(world, t) for t in APPEND_ONLY}
    with pytest.raises((ConsentInvalidError, ConsentConflictError)) as caught:
        action()  # type: ignore[operator]
    world.session.rollback()
    assert caught.value.code == code
    assert caught.value.message  # a French sentence for the person
    assert {t: _rows(world, t) for t in APPEND_ONLY} == before


def test_a_consent_is_recorded_with_its_history_evidence_and_a_new_generation(
    world: World,
) -> None:
    world.inform()
    before = world.records.generation(world.case.id)
    consent_id = world.give()
    world.session.commit()
    consent = world.records.consent(world.case.id, consent_id)
    assert consent.status is ConsentStatus.GIVEN and consent.current
    assert [e.status for e in consent.history] == [ConsentStatus.GIVEN]
    assert world.records.generation(world.case.id) > before
    # The scan is sealed: the database holds ciphertext and the digest of the clear bytes
    row = world.session.execute(select(evidence_table)).one()
    assert row.sha256 == hashlib.sha256(SCAN).hexdigest() and SCAN not in row.sealed
    history = world.records.history(world.case.id)
    evidence = history.evidence[row.id]
    assert world.records.open_evidence(evidence, world.sealer) == SCAN


@pytest.mark.parametrize(
    ("code", "change"),
    [
        ("consent_no_scope", {"scope": "empty"}),
        ("consent_invalid_validity", {"valid_until": -1}),
        ("consent_validity_too_long", {"valid_until": 4 * 366}),
        ("consent_unknown_scope", {"scope": "unknown"}),
        ("consent_no_evidence", {"evidence": None}),
        ("evidence_too_large", {"evidence": "large"}),
        ("evidence_invalid", {"evidence": "exe"}),
        ("evidence_invalid", {"evidence": "signature_pdf"}),
    ],
)
def test_bad_input_is_refused_with_its_code_and_nothing_is_stored(
    world: World, code: str, change: dict[str, object]
) -> None:
    world.inform()
    world.session.commit()
    today = world.clock().date()
    kwargs: dict[str, object] = {}
    if change.get("scope") == "empty":
        kwargs["scope"] = world.scope(categories=frozenset())
    if change.get("scope") == "unknown":
        kwargs["scope"] = world.scope(purposes=frozenset({"surveillance"}))
    if "valid_until" in change:
        kwargs["valid_until"] = today + timedelta(days=int(change["valid_until"]))  # type: ignore[call-overload]
    evidence = change.get("evidence", "keep")
    if evidence is None:
        kwargs["evidence"] = None
    elif evidence == "large":
        kwargs["evidence"] = Upload(EvidenceKind.SCAN, SCAN + b"\0" * (5 * 1024 * 1024))
    elif evidence == "exe":
        kwargs["evidence"] = Upload(EvidenceKind.SCAN, b"MZ\x90\x00 not a scan")
    elif evidence == "signature_pdf":
        kwargs["evidence"] = Upload(EvidenceKind.SIGNATURE, SCAN)
    _refused(world, code, lambda: world.give(**kwargs))  # type: ignore[arg-type]


def test_a_refusal_needs_no_evidence_and_covers_nothing(world: World) -> None:
    world.inform()
    consent_id = world.give(given=False, evidence=None)
    consent = world.records.consent(world.case.id, consent_id)
    assert consent.status is ConsentStatus.REFUSED
    assert not consent.in_force(world.clock().date())


def test_a_signature_drawn_in_person_is_evidence(world: World) -> None:
    world.inform()
    consent_id = world.give(evidence=Upload(EvidenceKind.SIGNATURE, PNG))
    history = world.records.history(world.case.id)
    consent = world.records.consent(world.case.id, consent_id)
    assert consent.evidence_id is not None
    assert history.evidence[consent.evidence_id].kind is EvidenceKind.SIGNATURE


def test_an_accord_needs_the_prior_information_of_its_grantor(world: World) -> None:
    _refused(world, "no_prior_information", world.give)
    world.inform()
    world.session.commit()
    _refused(world, "no_prior_information", lambda: world.give(Grantor.PARENT_1))


def test_a_parents_accord_for_an_adult_is_refused(world: World) -> None:
    adult = world.clock().date() - timedelta(days=19 * 365)
    world.inform()
    world.session.commit()
    _refused(world, "parent_consent_for_adult", lambda: world.give(Grantor.PARENT_1, birth=adult))
    _refused(world, "parent_for_adult", lambda: world.inform(Grantor.PARENT_1, birth=adult))


def test_the_exception_needs_a_justification_and_concerns_holders_only(world: World) -> None:
    minor = world.clock().date() - timedelta(days=15 * 365)
    with pytest.raises(ConsentInvalidError) as no_text:
        world.records.inform(
            world.case.id,
            world.actor,
            subject=Grantor.PARENT_2,
            rules=world.rules(),
            birth=minor,
            exception=True,
            justification="trop court",
            sealer=world.sealer,
        )
    assert no_text.value.code == "exception_without_justification"
    world.session.rollback()
    with pytest.raises(ConsentInvalidError) as young:
        world.records.inform(
            world.case.id,
            world.actor,
            subject=Grantor.YOUNG_PERSON,
            rules=world.rules(),
            birth=minor,
            exception=True,
            justification="x" * 40,
            sealer=world.sealer,
        )
    assert young.value.code == "exception_for_young_person"
    world.session.rollback()
    justification = "Informer ce parent exposerait l'enfant : décision du juge des enfants."
    info = world.records.inform(
        world.case.id,
        world.actor,
        subject=Grantor.PARENT_2,
        rules=world.rules(),
        birth=minor,
        exception=True,
        justification=justification,
        sealer=world.sealer,
    )
    world.session.commit()
    assert info.exception and info.has_justification
    # The justification is sealed at rest, and listed for the DPO
    sealed = world.session.execute(select(information_table.c.justification)).scalar_one()
    assert justification.encode() not in sealed
    assert [e.id for e in world.records.exceptions()] == [info.id]
    assert world.records.state(world.case.id).exceptions == {Grantor.PARENT_2}


def test_withdrawal_takes_effect_at_once_and_twice_is_refused(world: World) -> None:
    world.inform()
    consent_id = world.give()
    world.session.commit()
    generation = world.records.generation(world.case.id)
    withdrawn = world.records.withdraw(
        world.case.id, world.actor, consent_id, requested_by=Grantor.YOUNG_PERSON
    )
    world.session.commit()
    assert withdrawn.status is ConsentStatus.WITHDRAWN
    assert (
        withdrawn.withdrawal is not None
        and withdrawn.withdrawal.requested_by is Grantor.YOUNG_PERSON
    )
    assert not withdrawn.in_force(world.clock().date())
    assert world.records.generation(world.case.id) > generation
    _refused(
        world,
        "already_withdrawn",
        lambda: world.records.withdraw(
            world.case.id, world.actor, consent_id, requested_by=Grantor.YOUNG_PERSON
        ),
    )


def test_only_the_grantor_withdraws_and_a_refusal_cannot_be_withdrawn(world: World) -> None:
    world.inform()
    refused_id = world.give(given=False, evidence=None)  # refused first, agreed later
    consent_id = world.give()
    world.session.commit()
    _refused(
        world,
        "withdrawal_not_by_grantor",
        lambda: world.records.withdraw(
            world.case.id, world.actor, consent_id, requested_by=Grantor.PARENT_1
        ),
    )
    _refused(
        world,
        "not_given",
        lambda: world.records.withdraw(
            world.case.id, world.actor, refused_id, requested_by=Grantor.YOUNG_PERSON
        ),
    )


def test_a_correction_supersedes_and_the_corrected_record_stays(world: World) -> None:
    world.inform()
    first = world.give()
    world.session.commit()
    second = world.give(scope=world.scope(categories=frozenset({"identite"})), supersedes=first)
    world.session.commit()
    state = world.records.state(world.case.id)
    assert [c.id for c in state.consents] == [second]
    history = world.records.history(world.case.id)
    assert [(c.id, c.current) for c in history.consents] == [(first, False), (second, True)]
    # A record is corrected once; a correction names a record of the same person
    _refused(world, "already_corrected", lambda: world.give(supersedes=first))
    world.inform(Grantor.PARENT_1, birth=world.clock().date() - timedelta(days=3000))
    world.session.commit()
    _refused(
        world,
        "correction_other_person",
        lambda: world.give(
            Grantor.PARENT_1, birth=world.clock().date() - timedelta(days=3000), supersedes=second
        ),
    )


def test_an_adhesion_is_tripartite_with_evidence(world: World) -> None:
    today = world.clock().date()
    with pytest.raises(ConsentInvalidError) as same:
        world.records.record_adhesion(
            world.case.id,
            world.actor,
            signed_on=today,
            counsellor_id=world.agent.id,
            referent_id=world.agent.id,
            evidence=Upload(EvidenceKind.SCAN, SCAN),
            sealer=world.sealer,
        )
    assert same.value.code == "adhesion_same_person"
    world.session.rollback()
    with pytest.raises(ConsentInvalidError) as future:
        world.records.record_adhesion(
            world.case.id,
            world.actor,
            signed_on=today + timedelta(days=3),
            counsellor_id=world.agent.id,
            referent_id=world.agent.id + 1000,
            evidence=Upload(EvidenceKind.SCAN, SCAN),
            sealer=world.sealer,
        )
    assert future.value.code == "invalid_date"


def test_the_sweep_notes_expiry_once(world: World) -> None:
    world.inform()
    today = world.clock().date()
    consent_id = world.give(
        valid_from=today - timedelta(days=30), valid_until=today + timedelta(days=2)
    )
    world.session.commit()
    assert world.records.expired_unnoted() == []
    ending = world.records.ending_between(today, today + timedelta(days=30))
    assert [c.id for c in ending] == [consent_id]
    world.clock.advance(days=3)
    (due,) = world.records.expired_unnoted()
    assert world.records.note_expiry(due) is True
    world.session.commit()
    assert world.records.note_expiry(due) is False  # noted once, even by a late second sweep
    world.session.rollback()
    noted = world.records.consent(world.case.id, consent_id)
    assert noted.history[-1].status is ConsentStatus.EXPIRED
    assert world.records.expired_unnoted() == []


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_the_database_refuses_update_and_delete_on_consent_records(
    world: World, table: str
) -> None:
    # Given one row in every consent table
    world.inform()
    consent_id = world.give()
    world.records.issue_receipt(
        world.case.id,
        world.actor,
        world.records.consent(world.case.id, consent_id),
        language="fr",
        body={"reference": "R-TEST-0001"},
        reference="R-TEST-0001",
    )
    world.records.record_adhesion(
        world.case.id,
        world.actor,
        signed_on=world.clock().date(),
        counsellor_id=world.agent.id,
        referent_id=_second_user(world),
        evidence=Upload(EvidenceKind.SCAN, SCAN),
        sealer=world.sealer,
    )
    world.session.commit()
    assert _rows(world, table) >= 1
    # When someone tries to change or erase one, the database itself refuses
    statements = [f"UPDATE {table} SET case_id = case_id", f"DELETE FROM {table}"]
    if world.session.get_bind().dialect.name == "postgresql":
        statements.append(f"TRUNCATE {table} CASCADE")
    else:  # a REPLACE deletes the old row: the DELETE trigger must fire (recursive_triggers)
        statements.append(f"INSERT OR REPLACE INTO {table} SELECT * FROM {table}")
    for statement in statements:
        with pytest.raises(Exception, match="append-only"):  # driver-specific error types
            world.session.execute(text(statement))
        world.session.rollback()
    assert _rows(world, table) >= 1


def _second_user(world: World) -> int:
    from hub.models import User

    other = User(
        name="Mina",
        email="mina@ml.example",
        organisation=world.mission_locale,
        created_at=world.clock(),
    )
    world.session.add(other)
    world.session.flush()
    return other.id


def test_a_withdrawn_consent_is_found_by_the_state_as_not_in_force(world: World) -> None:
    world.inform()
    consent_id = world.give()
    world.records.withdraw(
        world.case.id, world.actor, consent_id, requested_by=Grantor.YOUNG_PERSON
    )
    world.session.commit()
    state = world.records.state(world.case.id)
    assert not any(c.in_force(world.clock().date()) for c in state.consents)
    assert world.session.execute(select(func.count()).select_from(consents_table)).scalar() == 1
    # the records read back with aware timestamps on both backends
    assert state.consents[0].recorded_at.tzinfo is not None


def test_a_refusal_next_to_an_accord_in_force_is_refused_the_withdrawal_is_the_way(
    world: World,
) -> None:
    world.inform()
    world.give()
    world.session.commit()
    _refused(
        world, "refusal_while_consent_in_force", lambda: world.give(given=False, evidence=None)
    )


def test_the_exception_cannot_set_aside_a_holder_who_was_informed_or_has_spoken(
    world: World,
) -> None:
    # A minor whose first parent was informed and agreed, then withdrew
    minor = world.clock().date() - timedelta(days=15 * 365)
    world.inform(birth=minor)
    world.inform(Grantor.PARENT_1, birth=minor)
    parent = world.give(Grantor.PARENT_1, birth=minor)
    world.records.withdraw(world.case.id, world.actor, parent, requested_by=Grantor.PARENT_1)
    world.session.commit()

    def exception() -> object:
        return world.records.inform(
            world.case.id,
            world.actor,
            subject=Grantor.PARENT_1,
            rules=world.rules(),
            birth=minor,
            exception=True,
            justification="x" * 40,
            sealer=world.sealer,
        )

    # The exception would give the data flow back: refused
    _refused(world, "exception_after_information", exception)


def test_a_withdrawn_accord_cannot_be_corrected_back_into_force(world: World) -> None:
    world.inform()
    consent_id = world.give()
    world.records.withdraw(
        world.case.id, world.actor, consent_id, requested_by=Grantor.YOUNG_PERSON
    )
    world.session.commit()
    _refused(world, "cannot_correct_withdrawn", lambda: world.give(supersedes=consent_id))


def test_validity_is_three_calendar_years_at_most(world: World) -> None:
    world.inform()
    world.session.commit()
    start = world.clock().date()
    limit = start.replace(year=start.year + 3)
    world.give(valid_from=start, valid_until=limit)
    world.session.commit()
    _refused(
        world,
        "consent_validity_too_long",
        lambda: world.give(valid_from=start, valid_until=limit + timedelta(days=1)),
    )
