"""The vocabulary of consent records: who grants, how people are informed, what evidence is.

Values are stable identifiers stored in the database, in audit events and in receipts: never
rename one, only add.
"""

from __future__ import annotations

from enum import StrEnum


class Grantor(StrEnum):
    """Who is informed and who gives (or refuses) their accord.

    The hub holds no names: holders of parental authority are told apart by their place, and
    their names travel only in sealed liaison forms (``famille.representants_legaux``).
    """

    YOUNG_PERSON = "jeune"
    PARENT_1 = "parent_1"  # first holder of parental authority
    PARENT_2 = "parent_2"  # second holder of parental authority
    GUARDIAN = "tuteur"  # guardian (tutelle, service de l'aide sociale à l'enfance)

    @property
    def is_holder(self) -> bool:
        """Whether this grantor holds parental authority (consent needed for a minor)."""
        return self is not Grantor.YOUNG_PERSON


HOLDERS = frozenset(g for g in Grantor if g.is_holder)

GRANTOR_LABELS_FR: dict[Grantor, str] = {
    Grantor.YOUNG_PERSON: "le jeune",
    Grantor.PARENT_1: "premier titulaire de l'autorité parentale",
    Grantor.PARENT_2: "second titulaire de l'autorité parentale",
    Grantor.GUARDIAN: "tuteur ou service gardien",
}

GRANTOR_LABELS_EN: dict[Grantor, str] = {
    Grantor.YOUNG_PERSON: "the young person",
    Grantor.PARENT_1: "first holder of parental authority",
    Grantor.PARENT_2: "second holder of parental authority",
    Grantor.GUARDIAN: "guardian or custodial service",
}


class InformationMethod(StrEnum):
    """How a person was given the prior information."""

    IN_PERSON = "en_personne"
    LETTER = "courrier"
    PHONE = "telephone"


METHOD_LABELS_FR: dict[InformationMethod, str] = {
    InformationMethod.IN_PERSON: "en personne, avec remise de la note d'information",
    InformationMethod.LETTER: "par courrier, avec la note d'information",
    InformationMethod.PHONE: "par téléphone, note d'information envoyée ensuite",
}

METHOD_LABELS_EN: dict[InformationMethod, str] = {
    InformationMethod.IN_PERSON: "in person, information notice handed over",
    InformationMethod.LETTER: "by letter, with the information notice",
    InformationMethod.PHONE: "by phone, information notice sent afterwards",
}


class ConsentStatus(StrEnum):
    """One entry of a consent's status history (append-only)."""

    GIVEN = "given"
    REFUSED = "refused"
    WITHDRAWN = "withdrawn"
    # Recorded by the daily sweep once the validity ended (enforcement reads the dates; this
    # entry tells the history and the partners that it happened).
    EXPIRED = "expired"


STATUS_LABELS_FR: dict[ConsentStatus, str] = {
    ConsentStatus.GIVEN: "donné",
    ConsentStatus.REFUSED: "refusé",
    ConsentStatus.WITHDRAWN: "retiré",
    ConsentStatus.EXPIRED: "expiré",
}

STATUS_LABELS_EN: dict[ConsentStatus, str] = {
    ConsentStatus.GIVEN: "given",
    ConsentStatus.REFUSED: "refused",
    ConsentStatus.WITHDRAWN: "withdrawn",
    ConsentStatus.EXPIRED: "expired",
}


class EvidenceKind(StrEnum):
    """What proves a consent or a contract."""

    SCAN = "scan"  # the signed paper form, scanned (PDF, JPEG or PNG)
    SIGNATURE = "signature"  # a signature drawn in person on a tablet (PNG)


EVIDENCE_LABELS_FR: dict[EvidenceKind, str] = {
    EvidenceKind.SCAN: "formulaire signé, numérisé",
    EvidenceKind.SIGNATURE: "signature recueillie en personne sur tablette",
}

EVIDENCE_LABELS_EN: dict[EvidenceKind, str] = {
    EvidenceKind.SCAN: "signed form, scanned",
    EvidenceKind.SIGNATURE: "signature captured in person on a tablet",
}
