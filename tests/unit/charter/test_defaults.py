"""The charter-type shipped with Maillon loads, lints clean and keeps its promises."""

from __future__ import annotations

from datetime import date

from charter.canonical import digest, to_toml
from charter.decide import ReasonCode, Recipient, compile_charter
from charter.defaults import default_charter, default_charter_text
from charter.lint import Severity, lint
from charter.loader import load_charter
from charter.vocabulary import OrgKind, Role, Secrecy, Tier


def test_default_charter_loads_from_package_data() -> None:
    charter = default_charter()
    assert charter == load_charter(default_charter_text())
    assert digest(load_charter(to_toml(charter))) == digest(charter)


def test_default_charter_lints_without_errors_or_warnings() -> None:
    findings = lint(default_charter())
    assert [f for f in findings if f.severity is not Severity.INFO] == []


def test_default_charter_states_the_national_framework() -> None:
    text = " ".join(a.text for a in default_charter().articles).replace("\n", " ")
    for promise in (
        "L.132-5",
        "L.121-6-2",
        "strictement nécessaires",
        "tiers",
        "séance plénière",
        "ne pas partager",
        "chaque année",
        "six mois après la fin",
        "autorité parentale",
        "signé la version en vigueur",
    ):
        assert promise in text, promise


def test_no_diagnosis_ever_travels() -> None:
    charter = default_charter()
    for field in charter.fields:
        if "diagnostic" in field.id or "traitement" in field.label_fr.lower():
            assert field.secrecy is Secrecy.INTERDIT
    everyone = [Recipient(frozenset(Role), kind, True) for kind in OrgKind]
    compiled = compile_charter(charter)
    for recipient in everyone:
        for purpose in charter.purpose_ids:
            decision = compiled.view(
                recipient,
                purpose,
                charter.field_ids,
                at=date(2025, 3, 10),
                meeting_dates=[date(2025, 3, 10)],
            )
            assert "sante.diagnostic" not in decision.allowed_fields


def test_release_date_reaches_the_mission_locale_and_is_processed_by_the_hub() -> None:
    charter = default_charter()
    field = charter.field("justice.date_sortie")
    assert field is not None and field.tier is Tier.HUB
    compiled = compile_charter(charter)
    published = compiled.publish(OrgKind.SPIP, ["justice.date_sortie"])
    assert published.all_allowed
    referent = Recipient.of(Role.REFERENT, org_kind=OrgKind.MISSION_LOCALE, group_member=False)
    seen = compiled.view(
        referent,
        "suivi_parcours",
        ["justice.date_sortie", "sante.orientation"],
        sender_org_kind=OrgKind.SPIP,
    )
    assert seen.allowed_fields == {"justice.date_sortie"}
    assert seen.reason("sante.orientation").code is ReasonCode.SECRET_NOT_BOUND


def test_police_sees_the_minimum_only_on_meeting_day() -> None:
    compiled = compile_charter(default_charter())
    police = Recipient.of(Role.GROUP_MEMBER, org_kind=OrgKind.POLICE, group_member=True)
    fields = ["identite.nom", "justice.date_sortie", "parcours.etapes"]
    on_day = compiled.view(
        police, "revue_mensuelle", fields, at=date(2025, 3, 10), meeting_dates=[date(2025, 3, 10)]
    )
    day_after = compiled.view(
        police, "revue_mensuelle", fields, at=date(2025, 3, 11), meeting_dates=[date(2025, 3, 10)]
    )
    assert on_day.allowed_fields == {"identite.nom"}
    assert day_after.allowed_fields == frozenset()


def test_dpo_and_admin_never_see_content() -> None:
    charter = default_charter()
    compiled = compile_charter(charter)
    for role in (Role.DPO, Role.ADMIN):
        for kind in OrgKind:
            for purpose in charter.purpose_ids:
                decision = compiled.view(
                    Recipient.of(role, org_kind=kind, group_member=True),
                    purpose,
                    charter.field_ids,
                    at=date(2025, 3, 10),
                    meeting_dates=[date(2025, 3, 10)],
                )
                assert decision.allowed_fields == frozenset()
