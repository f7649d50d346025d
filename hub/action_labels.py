"""The audit log's actions in plain French, for the DPO's pages (the log keeps the codes).

Every :class:`audit.events.Action` the hub records has a label; :data:`NEVER_RECORDED` lists
the members kept in the vocabulary (values are never reused) that no code path records, so
the journal's filter does not offer them. A test holds both lists to the vocabulary.
"""

from __future__ import annotations

from flask_babel import gettext

from audit.events import Action
from hub.i18n import N_

ACTION_LABELS: dict[Action, str] = {
    Action.AUTH_LOGIN: N_("Connexion"),
    Action.AUTH_LOGIN_REFUSED: N_("Connexion refusée"),
    Action.AUTH_LOCKOUT: N_("Compte bloqué après des échecs"),
    Action.AUTH_LOGOUT: N_("Déconnexion"),
    Action.AUTH_MFA_ENROL: N_("Activation de la double authentification"),
    Action.AUTH_PASSWORD_CHANGE: N_("Changement de mot de passe"),
    Action.AUTH_REAUTH: N_("Confirmation d'identité"),
    Action.AUTH_REAUTH_REFUSED: N_("Confirmation d'identité refusée"),
    Action.CASE_CREATE: N_("Ouverture d'un dossier"),
    Action.CASE_VIEW: N_("Consultation d'un dossier"),
    Action.CASE_UPDATE: N_("Modification d'un dossier"),
    Action.CASE_LIST: N_("Consultation d'une liste de dossiers"),
    Action.CASE_REFERENT: N_("Désignation du référent"),
    Action.CASE_PARTNER: N_("Ajout d'un partenaire au dossier"),
    Action.CASE_TEAM_ADD: N_("Ajout d'un professionnel à l'équipe du dossier"),
    Action.CASE_TEAM_REMOVE: N_("Retrait d'un professionnel de l'équipe du dossier"),
    Action.GROUP_MEETING: N_("Réunion du groupe programmée"),
    Action.GROUP_MEETING_MOVE: N_("Réunion du groupe déplacée"),
    Action.GROUP_MEETING_CANCEL: N_("Réunion du groupe annulée"),
    Action.GROUP_MEMBERS: N_("Changement des membres du groupe"),
    Action.GROUP_COORDINATOR: N_("Désignation du coordonnateur"),
    Action.FORM_SEND: N_("Envoi d'une fiche de liaison"),
    Action.FORM_SEND_REFUSED: N_("Envoi d'une fiche de liaison refusé"),
    Action.FORM_DELIVER: N_("Remise d'une fiche de liaison"),
    Action.FORM_OPEN: N_("Ouverture d'une fiche de liaison"),
    Action.FORM_VIOLATION: N_("Fiche de liaison contraire à la charte"),
    Action.CONSENT_INFORMATION: N_("Information préalable enregistrée"),
    Action.CONSENT_RECORD: N_("Consentement enregistré"),
    Action.CONSENT_WITHDRAW: N_("Retrait du consentement"),
    Action.CONSENT_EXPIRE: N_("Consentement arrivé à échéance"),
    Action.CONSENT_ADHESION: N_("Contrat d'adhésion enregistré"),
    Action.CONSENT_REFUSE: N_("Action sur le consentement refusée"),
    Action.CONSENT_READ: N_("Consultation du consentement"),
    Action.CONSENT_RECEIPT: N_("Reçu de consentement remis"),
    Action.NOTIFICATION_SEND: N_("Alerte envoyée"),
    Action.CHARTER_PUBLISH: N_("Publication d'une version de la charte"),
    Action.CHARTER_SIGN: N_("Signature de la charte"),
    Action.CHARTER_DECLINE: N_("Refus de partager une information"),
    Action.KEY_REGISTER: N_("Enregistrement d'un appareil"),
    Action.KEY_REVOKE: N_("Révocation d'un appareil"),
    Action.KEY_BACKUP: N_("Sauvegarde de récupération déposée"),
    Action.KEY_COSIGN: N_("Contre-signature de l'annuaire des clés"),
    Action.ADMIN_ORG_CREATE: N_("Création d'une organisation"),
    Action.ADMIN_ORG_SUSPEND: N_("Suspension d'une organisation"),
    Action.ADMIN_ORG_ACTIVATE: N_("Réactivation d'une organisation"),
    Action.ADMIN_READ: N_("Consultation d'une page d'administration"),
    Action.ADMIN_GROUP_CREATE: N_("Création d'un groupe opérationnel"),
    Action.ADMIN_GROUP_UPDATE: N_("Modification d'un groupe opérationnel"),
    Action.ADMIN_API_CLIENT_REGISTER: N_("Enregistrement d'un système partenaire"),
    Action.ADMIN_API_CLIENT_DISABLE: N_("Désactivation d'un système partenaire"),
    Action.ADMIN_USER_INVITE: N_("Invitation d'une personne"),
    Action.ADMIN_USER_DISABLE: N_("Désactivation d'un compte"),
    Action.ADMIN_USER_ENABLE: N_("Réactivation d'un compte"),
    Action.ADMIN_USER_UNLOCK: N_("Déverrouillage d'un compte"),
    Action.ADMIN_USER_RESET_MFA: N_("Réinitialisation de la double authentification"),
    Action.API_TOKEN_ISSUE: N_("Jeton d'accès délivré à un système"),
    Action.API_TOKEN_REFUSED: N_("Jeton d'accès refusé à un système"),
    Action.API_READ: N_("Lecture par l'interface de programmation"),
    Action.AUDIT_READ: N_("Consultation du journal d'audit"),
    Action.AUDIT_EXPORT: N_("Export du journal d'audit"),
    Action.AUDIT_PRUNE: N_("Purge du journal (durée de conservation)"),
    Action.AUDIT_COSIGN: N_("Contre-signature du journal par un témoin"),
    Action.ADMIN_WITNESS_ADD: N_("Ajout d'un témoin"),
    Action.ADMIN_WITNESS_REMOVE: N_("Retrait d'un témoin"),
    Action.RETENTION_DESTROY: N_("Destruction à l'échéance de conservation"),
    Action.ACCESS_REFUSED: N_("Accès refusé"),
    Action.ACCESS_REFUSED_BURST: N_("Accès refusés en rafale"),
}

# In the vocabulary for good (values are never reused) but recorded by no code path.
NEVER_RECORDED = frozenset({Action.CASE_CLOSE, Action.ADMIN_KEY_ROTATE})


def action_label(action: Action | str) -> str:
    """The action's French label, translated for the page (its code when it has none)."""
    try:
        label = ACTION_LABELS.get(Action(action))
    except ValueError:
        label = None
    return gettext(label) if label else str(action)


def recorded_actions() -> list[Action]:
    """The actions the journal's filter offers, by label."""
    return sorted(
        (a for a in Action if a not in NEVER_RECORDED), key=lambda a: action_label(a).lower()
    )
