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


ROLE_LABELS_FR: dict[Role, str] = {
    Role.AGENT: "Agent partenaire",
    Role.REFERENT: "Référent de parcours",
    Role.GROUP_MEMBER: "Membre du groupe opérationnel",
    Role.COORDINATOR: "Coordinateur",
    Role.DPO: "Délégué à la protection des données",
    Role.ADMIN: "Administrateur",
}
