"""The shared vocabulary of partners: organisation kinds and user roles.

It lives in ``charter`` because the charter is what speaks of them (publish rules by organisation
kind, view rules by role × kind); the hub's models import it, never the other way round.
Values are stable identifiers stored in databases and charter files: never rename one.
"""

from __future__ import annotations

from enum import StrEnum


class OrgKind(StrEnum):
    """Kinds of partner organisations in an operational group (CLSPD/CISPD)."""

    SPIP = "spip"
    PJJ = "pjj"
    MISSION_LOCALE = "mission_locale"
    COMMUNE = "commune"  # commune and its CLSPD coordination
    CONSEIL_DEPARTEMENTAL = "conseil_departemental"
    PREVENTION_SPECIALISEE = "prevention_specialisee"
    MEDIATION = "mediation"
    BAILLEUR = "bailleur"
    POLICE = "police"
    GENDARMERIE = "gendarmerie"
    EDUCATION_NATIONALE = "education_nationale"
    SANTE = "sante"
    ASSOCIATION = "association"
    OTHER = "autre"


ORG_KIND_LABELS_FR: dict[OrgKind, str] = {
    OrgKind.SPIP: "SPIP (service pénitentiaire d'insertion et de probation)",
    OrgKind.PJJ: "PJJ (protection judiciaire de la jeunesse)",
    OrgKind.MISSION_LOCALE: "Mission Locale",
    OrgKind.COMMUNE: "Commune / CLSPD",
    OrgKind.CONSEIL_DEPARTEMENTAL: "Conseil départemental",
    OrgKind.PREVENTION_SPECIALISEE: "Prévention spécialisée",
    OrgKind.MEDIATION: "Médiation",
    OrgKind.BAILLEUR: "Bailleur social",
    OrgKind.POLICE: "Police nationale ou municipale",
    OrgKind.GENDARMERIE: "Gendarmerie",
    OrgKind.EDUCATION_NATIONALE: "Éducation nationale",
    OrgKind.SANTE: "Santé",
    OrgKind.ASSOCIATION: "Association",
    OrgKind.OTHER: "Autre",
}


class Role(StrEnum):
    """What a user does in Maillon. A user may hold several roles."""

    AGENT = "agent"  # partner agent: writes and receives liaison forms
    REFERENT = "referent"  # référent de parcours of one or more young people
    GROUP_MEMBER = "group_member"  # member of an operational group
    COORDINATOR = "coordinator"  # coordinator of an operational group (CLSPD)
    DPO = "dpo"  # délégué à la protection des données: audits, never reads content
    ADMIN = "admin"  # onboards partners and users: never reads content


# Separation of duties: who oversees (administrators, the DPO) never sees case content, so never
# holds a role that does; and the two oversight roles check each other, so are never combined.
OVERSIGHT_ROLES = frozenset({Role.ADMIN, Role.DPO})
CASE_ROLES = frozenset({Role.AGENT, Role.REFERENT, Role.GROUP_MEMBER, Role.COORDINATOR})


def roles_conflict(roles: frozenset[Role] | set[Role]) -> bool:
    """Whether ``roles`` break the separation of duties."""
    oversight = set(roles) & OVERSIGHT_ROLES
    return len(oversight) > 1 or bool(oversight and set(roles) & CASE_ROLES)


ROLE_LABELS_FR: dict[Role, str] = {
    Role.AGENT: "Agent partenaire",
    Role.REFERENT: "Référent de parcours",
    Role.GROUP_MEMBER: "Membre du groupe opérationnel",
    Role.COORDINATOR: "Coordinateur",
    Role.DPO: "Délégué à la protection des données",
    Role.ADMIN: "Administrateur",
}


class Category(StrEnum):
    """Categories of the field catalogue.

    Consent scopes and retention periods are stated per category, so the list is closed: a
    charter naming another category is refused by the loader rather than silently unretained.
    """

    IDENTITE = "identite"
    CONTACT = "contact"
    JUSTICE = "justice"
    FORMATION_EMPLOI = "formation_emploi"
    LOGEMENT = "logement"
    SANTE = "sante"
    FAMILLE = "famille"
    RESSOURCES = "ressources"
    MOBILITE = "mobilite"
    PARCOURS = "parcours"
    SORTIE = "sortie"


CATEGORY_LABELS_FR: dict[Category, str] = {
    Category.IDENTITE: "Identité",
    Category.CONTACT: "Coordonnées",
    Category.JUSTICE: "Situation judiciaire",
    Category.FORMATION_EMPLOI: "Formation et emploi",
    Category.LOGEMENT: "Logement et hébergement",
    Category.SANTE: "Santé (orientation, jamais de diagnostic)",
    Category.FAMILLE: "Famille",
    Category.RESSOURCES: "Ressources",
    Category.MOBILITE: "Mobilité",
    Category.PARCOURS: "Parcours",
    Category.SORTIE: "Sortie du dispositif",
}

CATEGORY_LABELS_EN: dict[Category, str] = {
    Category.IDENTITE: "Identity",
    Category.CONTACT: "Contact details",
    Category.JUSTICE: "Judicial situation",
    Category.FORMATION_EMPLOI: "Training and employment",
    Category.LOGEMENT: "Housing and accommodation",
    Category.SANTE: "Health (referral, never a diagnosis)",
    Category.FAMILLE: "Family",
    Category.RESSOURCES: "Income",
    Category.MOBILITE: "Mobility",
    Category.PARCOURS: "Path",
    Category.SORTIE: "Exit from the programme",
}


class Tier(StrEnum):
    """Where a field may live."""

    HUB = "hub"  # the hub processes it (alerts, indicators): stored encrypted at rest
    E2E = "e2e"  # only inside sealed liaison forms: the hub never reads it


class Secrecy(StrEnum):
    """How far a field may travel."""

    CONFIDENTIEL = "confidentiel"  # may be exchanged within the operational group
    # professional secrecy: only between bound professionals (CASF L.121-6-2)
    SECRET = "secret"  # noqa: S105 - a secrecy level, not a password
    INTERDIT = "interdit"  # never exchanged, whatever a rule says


class CaseStep(StrEnum):
    """The steps of a young person's path in the programme (a case's status in the hub)."""

    REPERAGE = "reperage"  # signalled to the group, entry not decided yet
    SUIVI = "suivi"  # followed, référent named
    SORTIE = "sortie"  # left the programme (follow-up until six months after the measure)


class RetentionEvent(StrEnum):
    """The event a retention period runs from."""

    CASE_CLOSED = "case_closed"
    MEASURE_ENDED = "measure_ended"


RETENTION_EVENT_LABELS_FR: dict[RetentionEvent, str] = {
    RetentionEvent.CASE_CLOSED: "clôture du suivi",
    RetentionEvent.MEASURE_ENDED: "fin de la mesure judiciaire",
}


ORG_KIND_LABELS_EN: dict[OrgKind, str] = {
    OrgKind.SPIP: "SPIP (prison probation and reintegration service)",
    OrgKind.PJJ: "PJJ (youth judicial protection)",
    OrgKind.MISSION_LOCALE: "Mission Locale (youth employment centre)",
    OrgKind.COMMUNE: "Municipality / CLSPD",
    OrgKind.CONSEIL_DEPARTEMENTAL: "Departmental council",
    OrgKind.PREVENTION_SPECIALISEE: "Specialised street prevention",
    OrgKind.MEDIATION: "Mediation",
    OrgKind.BAILLEUR: "Social landlord",
    OrgKind.POLICE: "National or municipal police",
    OrgKind.GENDARMERIE: "Gendarmerie",
    OrgKind.EDUCATION_NATIONALE: "National education",
    OrgKind.SANTE: "Health",
    OrgKind.ASSOCIATION: "Association",
    OrgKind.OTHER: "Other",
}

ROLE_LABELS_EN: dict[Role, str] = {
    Role.AGENT: "Partner agent",
    Role.REFERENT: "Path referent (référent de parcours)",
    Role.GROUP_MEMBER: "Operational group member",
    Role.COORDINATOR: "Coordinator",
    Role.DPO: "Data protection officer",
    Role.ADMIN: "Administrator",
}
