"""The charter-type shipped with Maillon loads, lints clean and keeps its promises."""

from __future__ import annotations

from datetime import date

import pytest

import charter as charter_package
from charter.canonical import canonical_bytes, digest, to_toml
from charter.decide import ReasonCode, Recipient, compile_charter, interpret
from charter.defaults import (
    CHARTER_TYPE_VERSIONS,
    charter_type,
    charter_type_text,
    default_charter,
    default_charter_text,
)
from charter.lint import Severity, lint
from charter.loader import load_charter
from charter.model import FORMAT_1, FORMAT_2, IsoDuration
from charter.versions import diff
from charter.vocabulary import CaseStep, OrgKind, Role, Secrecy, Tier

# The digest of the charter-type version 1 as partners signed it, computed before format 2
# existed. Signatures stored in databases reference it: it must never change.
V1_DIGEST = "sha256:9ebc50ec709d7fdb04368ec4c01b27c5359041bf1c03831576f27d7ef356b7b2"
NO_ACCORD = {"parcours.referent", "parcours.date_entree", "sortie.type", "sortie.date"}


def test_default_charter_loads_from_package_data() -> None:
    charter = default_charter()
    assert charter == load_charter(default_charter_text())
    assert digest(load_charter(to_toml(charter))) == digest(charter)


def test_version_1_lints_without_errors_or_warnings() -> None:
    findings = lint(charter_type(1))
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


# --- versions of the charter-type ------------------------------------------------------------


def test_version_1_keeps_the_digest_partners_signed() -> None:
    assert digest(charter_type(1)) == V1_DIGEST
    assert digest(load_charter(to_toml(charter_type(1)))) == V1_DIGEST
    assert charter_type(1).format == FORMAT_1


def test_the_default_charter_is_version_2() -> None:
    # New groups start under the consent-aware version; groups that signed version 1 keep it
    # until their partners sign the next one.
    assert default_charter() == charter_type(2)
    assert default_charter_text() == charter_type_text(2)
    assert (default_charter().version, default_charter().format) == (2, FORMAT_2)
    assert charter_package.charter_type is charter_type
    assert charter_package.charter_type_text is charter_type_text


def test_unknown_versions_are_refused() -> None:
    assert CHARTER_TYPE_VERSIONS == (1, 2)
    for version in (0, 3):
        with pytest.raises(ValueError, match="charte-type inconnue"):
            charter_type_text(version)


def test_version_2_is_format_2_of_the_same_charter() -> None:
    v1, v2 = charter_type(1), charter_type(2)
    assert (v2.id, v2.version, v2.format) == (v1.id, 2, FORMAT_2)
    assert v2.effective > v1.effective
    assert v2 == load_charter(charter_type_text(2))
    again = load_charter(to_toml(v2))
    assert again == v2 and canonical_bytes(again) == canonical_bytes(v2)
    assert digest(v2) != V1_DIGEST
    assert v2.membership.grace == IsoDuration(days=30)
    consent = v2.consent
    assert consent is not None
    assert (
        consent.birth_date_field,
        consent.minor_age,
        consent.parents_for_minors,
        consent.notice_version,
    ) == ("identite.date_naissance", 18, True, "notice-2026-01")
    birth = v2.field("identite.date_naissance")
    assert birth is not None and (birth.tier, birth.accord) == (Tier.HUB, "identite")
    assert not diff(v1, v2).empty


def test_version_2_states_a_lawful_basis_apart_from_the_accord() -> None:
    v2 = charter_type(2)
    used = set()
    for field in v2.fields:
        if field.secrecy is Secrecy.INTERDIT:
            assert (field.basis, field.accord) == (None, None), field.id
            continue
        assert field.basis is not None and field.basis != "consentement", field.id
        if field.id in NO_ACCORD:
            assert field.accord is None, field.id
        else:
            assert field.accord in v2.consent_category_ids, field.id
            used.add(field.accord)
    assert used == set(v2.consent_category_ids)
    assert {f.id for f in v2.fields if f.accord is None and f.secrecy is not Secrecy.INTERDIT} == (
        NO_ACCORD
    )
    orientation = v2.field("sante.orientation")
    assert orientation is not None
    assert (orientation.basis, orientation.secrecy) == ("CSP L.1110-4", Secrecy.SECRET)
    for field in v2.fields:
        if field.id.startswith("justice.") and field.secrecy is not Secrecy.INTERDIT:
            assert field.offence, field.id
            article = v2.article(field.article)
            assert article is not None and "article 10 du RGPD" in article.text
        if field.secrecy is Secrecy.SECRET and field.id.startswith(("justice.", "famille.")):
            assert field.basis == "CASF L.121-6-2", field.id
    labels = {c.id: c.label_fr for c in v2.accord_categories}
    assert (
        labels["sante"]
        == "Vos droits santé et une orientation vers des soins, jamais de diagnostic"
    )
    assert set(labels) >= {"identite", "justice", "insertion", "logement", "famille", "parcours"}


def test_version_2_lints_without_errors_and_justifies_each_warning() -> None:
    v2 = charter_type(2)
    findings = lint(v2)
    assert not [f for f in findings if f.severity is Severity.ERROR]
    warnings = [f for f in findings if f.severity is Severity.WARNING]
    assert {f.code for f in warnings} == {"offence_to_unbound"}
    lines = charter_type_text(2).splitlines()
    for warning in warnings:
        assert warning.line is not None
        # The comment block right above the rule accepts this very warning and says why.
        above = []
        for line in reversed(lines[: warning.line - 1]):
            if not line.startswith("#"):
                break
            above.append(line)
        assert any("Avertissement « offence_to_unbound » accepté" in c for c in above), warning


def test_version_2_states_the_consent_framework() -> None:
    v2 = charter_type(2)
    text = " ".join(a.text for a in v2.articles).replace("\n", " ")
    for promise in (
        "L.132-5",
        "L.121-6-2",
        "L.1110-4",
        "article 10 du RGPD",
        "mission d'intérêt public",
        "L'accord du jeune n'est pas la base légale",
        "contraire à l'intérêt de l'enfant",
        "signalée au délégué à la protection des données",
        "version de la notice",
        "accord exprès et formalisé de chaque titulaire de l'autorité parentale",
        "appréciée à la date de chaque échange",
        "exclure un destinataire",
        "durée déterminée",
        "retirer leur accord à tout moment",
        "prend effet immédiatement",
        "récépissé",
        "contrat d'engagement tripartite",
        "signé la version en vigueur",
        "trente jours à compter de la publication",
        "sans jamais mentionner de diagnostic",
        "six mois après la fin",
        "séance plénière",
        "ne pas partager",
    ):
        assert promise in text, promise


def test_version_2_decides_on_the_accord() -> None:
    v2 = charter_type(2)
    referent = Recipient.of(Role.REFERENT, org_kind=OrgKind.MISSION_LOCALE, group_member=False)
    fields = ["justice.date_sortie", "parcours.referent", "sortie.type", "identite.nom"]
    for engine in (compile_charter(v2), interpret(v2)):
        # No accord in force: only the group's own decisions pass.
        none = engine.view(
            referent,
            "suivi_parcours",
            fields,
            sender_org_kind=OrgKind.SPIP,
            consented_categories=frozenset(),
        )
        assert none.allowed_fields == {"parcours.referent", "sortie.type"}
        assert none.reason("justice.date_sortie").code is ReasonCode.NO_CONSENT
        assert none.reason("justice.date_sortie").article == "art-5"
        justice = engine.view(
            referent,
            "suivi_parcours",
            fields,
            sender_org_kind=OrgKind.SPIP,
            consented_categories={"justice"},
        )
        assert justice.allowed_fields == {"justice.date_sortie", "parcours.referent", "sortie.type"}


@pytest.mark.parametrize(
    "kind",
    [
        OrgKind.SPIP,
        OrgKind.PJJ,
        OrgKind.MISSION_LOCALE,
        OrgKind.PREVENTION_SPECIALISEE,
        OrgKind.CONSEIL_DEPARTEMENTAL,
    ],
)
def test_version_2_case_team_agents_read_the_shared_file_of_steps(kind: OrgKind) -> None:
    compiled = compile_charter(charter_type(2))
    agent = Recipient.of(Role.AGENT, org_kind=kind, group_member=False)
    decision = compiled.view(
        agent,
        "suivi_parcours",
        ["parcours.etapes", "parcours.contrat"],
        sender_org_kind=OrgKind.SPIP,
    )
    assert decision.all_allowed
    # Version 1 showed them to the référent (and to justice agents) only.
    old = compile_charter(charter_type(1)).view(
        agent, "suivi_parcours", ["parcours.etapes"], sender_org_kind=OrgKind.SPIP
    )
    assert old.all_allowed is (kind in {OrgKind.SPIP, OrgKind.PJJ})


def test_version_2_keeps_the_promises_of_version_1() -> None:
    v1, v2 = charter_type(1), charter_type(2)
    # The same purposes, now bound to the steps of a case where they apply
    assert [(p.id, p.label_fr, p.article) for p in v2.purposes] == [
        (p.id, p.label_fr, p.article) for p in v1.purposes
    ]
    steps = {p.id: p.steps for p in v2.purposes}
    assert steps["reperage"] == {CaseStep.REPERAGE}
    assert steps["suivi_parcours"] == {CaseStep.SUIVI, CaseStep.SORTIE}
    assert steps["revue_mensuelle"] is None
    assert v2.publish == v1.publish
    assert v2.secret_bound == v1.secret_bound
    assert v2.retention == v1.retention
    assert [r.id for r in v1.view] == [r.id for r in v2.view if r.id != "voir-equipe-suivi"]
    assert all(
        r == v2_rule
        for r, v2_rule in zip(
            v1.view, (r for r in v2.view if r.id != "voir-equipe-suivi"), strict=True
        )
    )
    assert [f.id for f in v1.fields] == [f.id for f in v2.fields]
    for old in v1.fields:
        new = v2.field(old.id)
        assert new is not None
        assert (new.tier, new.secrecy, new.category) == (old.tier, old.secrecy, old.category)
    compiled = compile_charter(v2)
    police = Recipient.of(Role.GROUP_MEMBER, org_kind=OrgKind.POLICE, group_member=True)
    everyone = [Recipient(frozenset(Role), kind, True) for kind in OrgKind]
    for recipient in everyone:
        for purpose in v2.purpose_ids:
            seen = compiled.view(
                recipient,
                purpose,
                v2.field_ids,
                at=date(2027, 3, 10),
                meeting_dates=[date(2027, 3, 10)],
            )
            assert "sante.diagnostic" not in seen.allowed_fields
            assert "justice.casier_judiciaire" not in seen.allowed_fields
    on_day = compiled.view(
        police,
        "revue_mensuelle",
        ["identite.nom", "justice.date_sortie"],
        at=date(2027, 3, 10),
        meeting_dates=[date(2027, 3, 10)],
    )
    assert on_day.allowed_fields == {"identite.nom"}
