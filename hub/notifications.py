"""In-app notifications and the e-mails that announce them — never any personal data.

A notification says that something awaits the person in Maillon: a kind (consent withdrawn,
consent expiring…), the case's pseudonymous reference and a link. No name, no value, no form
content, in the app as in the e-mail (DESIGN §9). Each event notifies each person once: the
``dedupe_key`` is unique per person, so a second delivery of the same event (a retried task, two
beats) adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from consent.db import dialect_insert
from hub.db import rowcount
from hub.i18n import N_
from hub.models import Notification, User

# kind -> (French title, French sentence); English in the catalogue.
KINDS: dict[str, tuple[str, str]] = {
    "consent_withdrawn": (
        N_("Consentement retiré"),
        N_(
            "Un consentement a été retiré dans le dossier %(ref)s : plus rien n'est partagé "
            "sur son fondement."
        ),
    ),
    "consent_expiring": (
        N_("Consentement bientôt expiré"),
        N_(
            "Un consentement du dossier %(ref)s arrive à échéance dans moins de trente jours : "
            "recueillez-le à nouveau si le suivi continue."
        ),
    ),
    "consent_exception": (
        N_("Exception à examiner"),
        N_(
            "Une exception « contraire à l'intérêt de l'enfant » a été enregistrée dans le "
            "dossier %(ref)s : un titulaire de l'autorité parentale n'est pas informé."
        ),
    ),
    "form_received": (
        N_("Fiche de liaison reçue"),
        N_(
            "Une fiche de liaison scellée vous a été adressée dans le dossier %(ref)s : "
            "ouvrez-la sur un appareil enregistré."
        ),
    ),
    # Release-date alerts (hub.alerts): the milestone, never the date.
    "release_4m": (
        N_("Sortie à préparer"),
        N_(
            "Une sortie de détention est prévue dans moins de quatre mois dans le dossier "
            "%(ref)s : préparez-la avec les partenaires pour éviter une sortie sèche."
        ),
    ),
    "release_1m": (
        N_("Sortie dans moins d'un mois"),
        N_(
            "Une sortie de détention est prévue dans moins d'un mois dans le dossier %(ref)s : "
            "vérifiez que l'accueil, le logement et les démarches sont prêts."
        ),
    ),
    "release_1w": (
        N_("Sortie dans moins d'une semaine"),
        N_(
            "Une sortie de détention est prévue dans moins d'une semaine dans le dossier "
            "%(ref)s : confirmez le premier rendez-vous avec le jeune."
        ),
    ),
    "release_day": (
        N_("Date de sortie arrivée"),
        N_(
            "La date de sortie de détention prévue dans le dossier %(ref)s est arrivée : "
            "assurez-vous que le jeune est accueilli."
        ),
    ),
    "follow_up_end": (
        N_("Fin du suivi"),
        N_(
            "Le suivi du dossier %(ref)s arrive à son terme (six mois après la fin de la "
            "mesure judiciaire) : faites le point et enregistrez la sortie du dispositif."
        ),
    ),
    "review_due": (
        N_("Dossier à revoir"),
        N_(
            "Le dossier %(ref)s est à revoir lors de la prochaine réunion du groupe "
            "opérationnel : préparez le point de situation."
        ),
    ),
    "consent_expired": (
        N_("Consentement expiré"),
        N_(
            "Un consentement du dossier %(ref)s est arrivé à échéance : plus rien n'est "
            "partagé sur son fondement."
        ),
    ),
}


@dataclass(frozen=True)
class Created:
    """Notifications just created (the caller mails them once its transaction commits)."""

    ids: list[int]


def notify(
    session: Session,
    users: Iterable[User],
    kind: str,
    *,
    case_reference: str | None,
    dedupe_key: str,
    now: datetime,
) -> Created:
    """Tell each of ``users`` (once per ``dedupe_key``) that ``kind`` happened on the case."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    ids: list[int] = []
    for user_id in sorted({u.id for u in users if u.is_active}):
        statement = (
            dialect_insert(session, Notification)
            .values(
                user_id=user_id,
                kind=kind,
                case_reference=case_reference,
                dedupe_key=dedupe_key,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["user_id", "dedupe_key"])
            .returning(Notification.id)
        )
        new_id = session.execute(statement).scalar()
        if new_id is not None:
            ids.append(int(new_id))
    return Created(ids)


def unread_count(session: Session, user: User, *, kind: str | None = None) -> int:
    """How many notifications the person has not read (the header's badge), of ``kind`` only
    when given."""
    statement = select(func.count(Notification.id)).where(
        Notification.user_id == user.id, Notification.read_at.is_(None)
    )
    if kind is not None:
        statement = statement.where(Notification.kind == kind)
    return int(session.scalar(statement) or 0)


def mark_read(
    session: Session, user: User, notification_ids: Iterable[int] | None, now: datetime
) -> int:
    """Mark the person's notifications read (all of them when ``notification_ids`` is None)."""
    statement = update(Notification).where(
        Notification.user_id == user.id, Notification.read_at.is_(None)
    )
    if notification_ids is not None:
        statement = statement.where(Notification.id.in_(list(notification_ids)))
    return rowcount(session.execute(statement.values(read_at=now)))
