"""The consent receipt: what is shared, with whom, why, for how long, and how to withdraw.

A plain-language document handed to the young person (and one to each parent) when an accord is
recorded — and a JSON form for organisation systems, in the spirit of the Kantara consent
receipt (subject reference, grantor, controller, purposes, recipients, categories, validity,
withdrawal and access routes). It names no one: the young person is the case's pseudonymous
reference, parents are « premier titulaire »…, partners are organisations.

Pure: built from the charter, the consent and the organisations' names; the hub stores it
(``consent_receipts``, so the DPO can look it up by reference) and prints it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from charter import Charter
from charter.model import IsoDuration
from charter.vocabulary import (
    CATEGORY_LABELS_FR,
    ORG_KIND_LABELS_EN,
    ORG_KIND_LABELS_FR,
    RETENTION_EVENT_LABELS_FR,
    Category,
    RetentionEvent,
)
from consent.records import Consent, Evidence
from consent.vocabulary import (
    EVIDENCE_LABELS_EN,
    EVIDENCE_LABELS_FR,
    GRANTOR_LABELS_EN,
    GRANTOR_LABELS_FR,
    STATUS_LABELS_EN,
    STATUS_LABELS_FR,
)

RECEIPT_VERSION = "maillon-consent-receipt-1"
LANGUAGES = ("fr", "en")

_RETENTION_EVENT_EN = {
    RetentionEvent.CASE_CLOSED: "the end of the follow-up",
    RetentionEvent.MEASURE_ENDED: "the end of the judicial measure",
}

_TEXTS: dict[str, dict[str, str]] = {
    "fr": {
        "withdrawal": (
            "Vous pouvez retirer votre accord à tout moment, sans avoir à vous justifier : "
            "dites-le à votre référent de parcours ou à tout professionnel qui vous suit, ou "
            "écrivez au délégué à la protection des données. Le retrait prend effet aussitôt : "
            "plus aucune information n'est échangée sur la base de cet accord et les fiches "
            "déjà envoyées ne sont plus remises."
        ),
        "access": (
            "Vous pouvez demander qui a reçu ou consulté les informations vous concernant, et "
            "quand : adressez-vous au délégué à la protection des données en citant la "
            "référence de ce reçu. Vous pouvez aussi demander la rectification d'une "
            "information inexacte et saisir la CNIL."
        ),
        "basis": (
            "Les échanges du groupe opérationnel relèvent de sa mission d'intérêt public "
            "(article L.132-5 du code de la sécurité intérieure) ; votre accord détermine en "
            "plus ce qui peut être partagé à votre sujet, avec qui et pourquoi."
        ),
        "no_retention": "durée fixée par la charte",
    },
    "en": {
        "withdrawal": (
            "You may withdraw your consent at any time without giving a reason: tell your "
            "path referent or any professional who follows you, or write to the data "
            "protection officer. Withdrawal takes effect at once: no information is exchanged "
            "on the basis of this consent any more, and forms already sent are no longer "
            "delivered."
        ),
        "access": (
            "You may ask who received or consulted information about you, and when: write to "
            "the data protection officer quoting this receipt's reference. You may also ask "
            "for inaccurate information to be corrected and complain to the CNIL."
        ),
        "basis": (
            "The operational group's exchanges are part of its public-interest mission "
            "(article L.132-5 of the French internal security code); your consent further "
            "decides what may be shared about you, with whom and why."
        ),
        "no_retention": "period set by the charter",
    },
}


def duration_label(duration: IsoDuration, language: str) -> str:
    """« 6 mois », « 1 an et 3 mois »… / "6 months", "1 year and 3 months"."""
    fr = language == "fr"
    parts: list[str] = []
    for count, one_fr, many_fr, one_en, many_en in (
        (duration.years, "an", "ans", "year", "years"),
        (duration.months, "mois", "mois", "month", "months"),
        (duration.weeks, "semaine", "semaines", "week", "weeks"),
        (duration.days, "jour", "jours", "day", "days"),
    ):
        if count:
            word = (
                (one_fr if count == 1 else many_fr) if fr else (one_en if count == 1 else many_en)
            )
            parts.append(f"{count} {word}")
    joiner = " et " if fr else " and "
    return joiner.join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)


def _retention(charter: Charter, category: Category, language: str) -> str:
    rule = charter.retention_for(category)
    if rule is None:
        return _TEXTS[language]["no_retention"]
    event = (
        RETENTION_EVENT_LABELS_FR[rule.from_event]
        if language == "fr"
        else _RETENTION_EVENT_EN[rule.from_event]
    )
    link = "après" if language == "fr" else "after"
    return f"{duration_label(rule.duration, language)} {link} {event}"


def _category_label(charter: Charter, category_id: str, language: str) -> str:
    found = charter.consent_category(category_id)
    if found is not None:
        return found.label_fr if language == "fr" else found.label_en
    try:
        return CATEGORY_LABELS_FR[Category(category_id)]
    except ValueError:
        return category_id


def receipt_body(
    *,
    reference: str,
    case_reference: str,
    consent: Consent,
    evidence: Evidence | None,
    charter: Charter,
    org_names: Mapping[int, str],
    controller: str,
    issued_at: datetime,
    language: str,
) -> dict[str, Any]:
    """The receipt of ``consent`` in ``language`` (``fr`` or ``en``), as JSON-ready values."""
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}")
    fr = language == "fr"
    scope = consent.scope
    kinds = ORG_KIND_LABELS_FR if fr else ORG_KIND_LABELS_EN
    purposes = {p.id: p for p in charter.purposes}
    categories = []
    for category_id in sorted(scope.categories):
        fields = [f for f in charter.fields if f.accord == category_id]
        retentions = sorted({_retention(charter, f.category, language) for f in fields})
        categories.append(
            {
                "id": category_id,
                "label": _category_label(charter, category_id, language),
                "fields": [f.label_fr if fr else f.label_en for f in fields],
                "retention": retentions,
            }
        )
    grantors = GRANTOR_LABELS_FR if fr else GRANTOR_LABELS_EN
    statuses = STATUS_LABELS_FR if fr else STATUS_LABELS_EN
    withdrawal = consent.withdrawal
    return {
        "version": RECEIPT_VERSION,
        "reference": reference,
        "language": language,
        "jurisdiction": "FR",
        "issued_at": issued_at.isoformat(),
        "subject": {"case_reference": case_reference},
        "grantor": {"id": consent.grantor.value, "label": grantors[consent.grantor]},
        "controller": {
            "name": controller,
            "contact": "délégué à la protection des données" if fr else "data protection officer",
        },
        "charter": {"id": charter.id, "version": charter.version},
        "status": {
            "id": consent.status.value,
            "label": statuses[consent.status],
            "withdrawn_at": withdrawal.at.isoformat() if withdrawal else None,
        },
        "purposes": [
            {
                "id": p,
                "label": (purposes[p].label_fr if fr else purposes[p].label_en)
                if p in purposes
                else p,
            }
            for p in sorted(scope.purposes)
        ],
        "recipients": {
            "kinds": [{"id": k.value, "label": kinds[k]} for k in sorted(scope.recipient_kinds)],
            "organisations": sorted(org_names.get(o, str(o)) for o in scope.recipient_orgs),
            "excluded_kinds": [
                {"id": k.value, "label": kinds[k]} for k in sorted(scope.excluded_kinds)
            ],
            "excluded_organisations": sorted(org_names.get(o, str(o)) for o in scope.excluded_orgs),
        },
        "categories": categories,
        "validity": {
            "from": consent.valid_from.isoformat(),
            "until": consent.valid_until.isoformat(),
        },
        "evidence": None
        if evidence is None
        else {
            "kind": evidence.kind.value,
            "label": (EVIDENCE_LABELS_FR if fr else EVIDENCE_LABELS_EN)[evidence.kind],
            "sha256": evidence.sha256,
        },
        "legal_basis": _TEXTS[language]["basis"],
        "withdrawal": _TEXTS[language]["withdrawal"],
        "access": _TEXTS[language]["access"],
    }
