"""The consent receipt (consent.receipt): what is shared, with whom, why, for how long, how to
withdraw and how to ask who accessed — in French and English, naming no one."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from charter import charter_type
from charter.model import IsoDuration
from charter.vocabulary import OrgKind
from consent import Consent, ConsentStatus, Grantor, Scope, StatusEntry, receipt_body
from consent.receipt import duration_label

NOW = datetime(2026, 11, 30, 10, tzinfo=UTC)


def _consent(status: tuple[ConsentStatus, ...] = (ConsentStatus.GIVEN,)) -> Consent:
    scope = Scope(
        purposes=frozenset({"suivi_parcours", "orientation"}),
        categories=frozenset({"justice", "logement"}),
        recipient_orgs=frozenset({2}),
        recipient_kinds=frozenset({OrgKind.MISSION_LOCALE}),
        excluded_orgs=frozenset({3}),
    )
    history = tuple(StatusEntry(i, s, NOW, 1, 1, Grantor.PARENT_1) for i, s in enumerate(status))
    return Consent(
        1,
        1,
        Grantor.PARENT_1,
        scope,
        date(2026, 11, 1),
        date(2027, 10, 31),
        None,
        "c:2",
        1,
        1,
        NOW,
        None,
        history,
    )


def _body(language: str, consent: Consent | None = None) -> dict[str, object]:
    return receipt_body(
        reference="R-AAAA-BBBB",
        case_reference="C-7K3Q-X9M2",
        consent=consent or _consent(),
        evidence=None,
        charter=charter_type(2),
        org_names={2: "Mission Locale de Démoville", 3: "Démoville Habitat"},
        controller="Groupe opérationnel du CLSPD de Démoville",
        issued_at=NOW,
        language=language,
    )


def test_the_french_receipt_says_what_with_whom_why_how_long_and_how_to_withdraw() -> None:
    body = _body("fr")
    assert body["reference"] == "R-AAAA-BBBB"
    assert body["subject"] == {"case_reference": "C-7K3Q-X9M2"}
    assert body["grantor"]["label"] == "premier titulaire de l'autorité parentale"  # type: ignore[index]
    purposes = {p["id"] for p in body["purposes"]}  # type: ignore[attr-defined]
    assert purposes == {"suivi_parcours", "orientation"}
    categories = {c["id"]: c for c in body["categories"]}  # type: ignore[attr-defined]
    assert set(categories) == {"justice", "logement"}
    assert "Date de sortie prévisible de détention" in " ".join(categories["justice"]["fields"])
    assert any("6 mois après" in r for r in categories["justice"]["retention"])
    recipients = body["recipients"]
    assert recipients["organisations"] == ["Mission Locale de Démoville"]  # type: ignore[index]
    assert recipients["excluded_organisations"] == ["Démoville Habitat"]  # type: ignore[index]
    assert recipients["kinds"][0]["id"] == "mission_locale"  # type: ignore[index]
    assert body["validity"] == {"from": "2026-11-01", "until": "2027-10-31"}
    assert "retirer votre accord à tout moment" in str(body["withdrawal"])
    assert "qui a reçu ou consulté" in str(body["access"])
    assert "L.132-5" in str(body["legal_basis"])


def test_the_english_receipt_is_complete() -> None:
    body = _body("en")
    assert body["grantor"]["label"] == "first holder of parental authority"  # type: ignore[index]
    assert "withdraw your consent at any time" in str(body["withdrawal"])
    assert all(c["label"] for c in body["categories"])  # type: ignore[attr-defined]
    assert any("months after" in r for c in body["categories"] for r in c["retention"])  # type: ignore[attr-defined]


def test_a_withdrawn_consent_says_so() -> None:
    body = _body("fr", _consent((ConsentStatus.GIVEN, ConsentStatus.WITHDRAWN)))
    assert body["status"]["id"] == "withdrawn" and body["status"]["withdrawn_at"]  # type: ignore[index]


def test_the_receipt_names_no_one_and_refuses_other_languages() -> None:
    text = str(_body("fr"))
    assert "Paul" not in text and "@" not in text
    with pytest.raises(ValueError, match="unsupported"):
        _body("de")


@pytest.mark.parametrize(
    ("duration", "fr", "en"),
    [
        ("P6M", "6 mois", "6 months"),
        ("P1Y", "1 an", "1 year"),
        ("P1Y3M", "1 an et 3 mois", "1 year and 3 months"),
        ("P2Y1M10D", "2 ans, 1 mois et 10 jours", "2 years, 1 month and 10 days"),
    ],
)
def test_durations_read_plainly(duration: str, fr: str, en: str) -> None:
    parsed = IsoDuration.parse(duration)
    assert (duration_label(parsed, "fr"), duration_label(parsed, "en")) == (fr, en)
