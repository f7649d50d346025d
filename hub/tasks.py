"""Celery tasks. Each takes ids, not objects, and is idempotent (``acks_late`` may redeliver)."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from sqlalchemy import delete, select, update

from audit.checkpoint import Checkpoint, SignedNote
from audit.events import Action, Decision
from audit.retention import prune
from consent import local_day
from consent.enforce import EXPIRY_NOTICE_DAYS
from exchange.server.retention import destroy_forms, expired_forms
from hub import mail
from hub.alerts import DATED_KINDS, Alerts
from hub.cases import Cases
from hub.consents import tell
from hub.db import rowcount
from hub.models import AuditOutbox, Case, Invitation, Notification, UsedAssertion, User
from hub.notifications import KINDS
from hub.recording import AuditUnavailable, append_staged, new_event, record, stage
from hub.refusals import record_bursts
from hub.state import state

ACTIVATION_PATH = "/activation/"  # must match the route of auth.activate
NOTIFICATIONS_PATH = "/notifications"  # must match the route of main.notifications

_SUBJECTS = {
    "invite": "Votre accès à Maillon",
    "mfa_reset": "Maillon : réactivez votre double authentification",
}

_BODY = """Bonjour,

{intro}

Ouvrez ce lien personnel pour {action} (il expire le {expires} et ne sert qu'une fois) :
{link}

Si vous n'attendiez pas ce message, ignorez-le et prévenez l'administrateur de Maillon
de votre organisation.

--
Maillon, plateforme d'échange du groupe opérationnel. Ce message ne contient aucune
information sur les situations suivies.
"""


@shared_task(name="hub.tasks.send_activation_mail", ignore_result=True, acks_late=True)
def send_activation_mail(invitation_id: int) -> str:
    """Mint the link token and mail it. A redelivery after a crash mints a new token, so at
    most one link works and the person always receives a working one."""
    hub_state = state()
    with hub_state.session_factory() as session:
        invitation = session.get(Invitation, invitation_id)
        if invitation is None or invitation.used_at is not None or invitation.mail_sent_at:
            return "skipped"
        if invitation.expires_at <= hub_state.clock():
            return "expired"
        token = hub_state.accounts(session).mint_token(invitation)
        session.commit()
        link = f"{hub_state.config.base_url}{ACTIVATION_PATH}{token}"
        intro = (
            "Un compte a été créé pour vous sur Maillon."
            if invitation.purpose == "invite"
            else "Votre double authentification a été réinitialisée par un administrateur."
        )
        action = (
            "choisir votre mot de passe et activer la double authentification"
            if invitation.purpose == "invite"
            else "enregistrer à nouveau votre application d'authentification"
        )
        message = mail.build_message(
            hub_state.config,
            to=invitation.user.email,
            subject=_SUBJECTS[invitation.purpose],
            body=_BODY.format(
                intro=intro,
                action=action,
                link=link,
                expires=invitation.expires_at.strftime("%d/%m/%Y à %H:%M UTC"),
            ),
        )
        mail.deliver(hub_state.config, message)
        invitation.mail_sent_at = hub_state.clock()
        session.commit()
        return "sent"


@shared_task(name="hub.tasks.purge_expired", ignore_result=True, acks_late=True)
def purge_expired() -> int:
    """Forget replay-protection records and old links that can no longer be used."""
    hub_state = state()
    now = hub_state.clock()
    with hub_state.session_factory() as session:
        removed = session.execute(delete(UsedAssertion).where(UsedAssertion.expires_at < now))
        stale = session.scalars(
            select(Invitation.id).where(Invitation.expires_at < now - timedelta(days=30))
        ).all()
        if stale:
            session.execute(delete(Invitation).where(Invitation.id.in_(stale)))
        session.commit()
        return rowcount(removed) + len(stale)


@shared_task(name="hub.tasks.destroy_expired_forms", ignore_result=True, acks_late=True)
def destroy_expired_forms() -> int:
    """Beat, hourly: destroy relayed forms past their retention, a batch at a time, each batch
    recorded first (``retention.destroy`` of ``form``, rule ``count:<n>``): fail closed, an
    unrecorded destruction does not happen. How many were destroyed."""
    hub_state = state()
    destroyed = 0
    with hub_state.session_factory() as session:
        while row_ids := expired_forms(session, hub_state.clock()):
            record(
                Action.RETENTION_DESTROY,
                object_type="form",
                # Which rows (ascending ids, one batch): the DPO tells destructions apart.
                object_id=f"{row_ids[0]}-{row_ids[-1]}",
                decision=Decision.NONE,
                rule=f"count:{len(row_ids)}",
                actor=(None, ""),
            )
            destroyed += destroy_forms(session, row_ids)
            session.commit()
    return destroyed


def sign_checkpoint_if_grown() -> str | None:
    """Sign a checkpoint when the log grew since the last one; returns the note, if any."""
    hub_state = state()
    log = hub_state.audit_log
    size = log.size()
    latest = log.latest_checkpoint()
    if size == 0 or (
        latest is not None and Checkpoint.parse_body(SignedNote.parse(latest).text).size >= size
    ):
        return None
    return str(log.checkpoint(hub_state.audit_signer))


@shared_task(name="hub.tasks.sign_checkpoint", ignore_result=True, acks_late=True)
def sign_checkpoint() -> bool:
    """Beat, every minute: a signed checkpoint whenever events arrived (DESIGN §8)."""
    return sign_checkpoint_if_grown() is not None


@shared_task(name="hub.tasks.prune_audit_log", ignore_result=True, acks_late=True)
def prune_audit_log() -> int:
    """Beat, daily: drop events older than the configured retention, keeping the log verifiable
    (the cut is a signed segment root, and the prune is itself an audit event)."""
    hub_state = state()
    result = prune(
        hub_state.audit_log,
        hub_state.audit_signer,
        retention=timedelta(days=hub_state.config.audit_retention_days),
    )
    return 0 if result is None else result.cut


_NOTIFICATION_BODY = """Bonjour,

{sentence}

Ouvrez Maillon pour en savoir plus : {link}

--
Maillon, plateforme d'échange du groupe opérationnel. Ce message ne contient aucune
information sur les situations suivies : seulement la référence pseudonyme du dossier.
"""


DATED_MAIL = (
    "Échéance dans un dossier",
    "Une échéance approche dans le dossier %(ref)s : le détail vous attend dans Maillon.",
)


@shared_task(name="hub.tasks.send_notification_mail", ignore_result=True, acks_late=True)
def send_notification_mail(notification_id: int) -> str:
    """Mail a notification (kind, pseudonymous reference, link: nothing personal). Idempotent:
    a notification already mailed is skipped."""
    hub_state = state()
    with hub_state.session_factory() as session:
        # Claim it first (one conditional UPDATE): a concurrent redelivery finds it claimed.
        claimed = session.execute(
            update(Notification)
            .where(Notification.id == notification_id, Notification.mailed_at.is_(None))
            .values(mailed_at=hub_state.clock())
        )
        session.commit()
        if rowcount(claimed) == 0:
            return "skipped"
        notification = session.get(Notification, notification_id)
        assert notification is not None
        user = session.get(User, notification.user_id)
        if user is None or not user.is_active:
            return "skipped"
        title, sentence = KINDS[notification.kind]
        if notification.kind in DATED_KINDS:
            # The release and follow-up alerts say, in the app, how near a release from
            # detention is: justice data that has no business in a mail system. The mail only
            # says that something is due.
            title, sentence = DATED_MAIL
        reference = notification.case_reference or ""
        message = mail.build_message(
            hub_state.config,
            to=user.email,
            subject=f"Maillon : {title.lower()}",
            body=_NOTIFICATION_BODY.format(
                sentence=sentence % {"ref": reference},
                link=f"{hub_state.config.base_url}{NOTIFICATIONS_PATH}",
            ),
        )
        try:
            mail.deliver(hub_state.config, message)
        except Exception:
            # Release the claim so the redelivery (acks_late) tries again.
            notification.mailed_at = None
            session.commit()
            raise
        return "sent"


OUTBOX_DELAY = timedelta(seconds=30)


@shared_task(name="hub.tasks.flush_audit_outbox", ignore_result=True, acks_late=True)
def flush_audit_outbox() -> int:
    """Beat, every minute: append staged audit events the request path could not (the log was
    down when the change committed). Rows younger than 30 s are left to their request."""
    hub_state = state()
    with hub_state.session_factory() as session:
        rows = list(
            session.scalars(
                select(AuditOutbox)
                .where(AuditOutbox.created_at < hub_state.clock() - OUTBOX_DELAY)
                .order_by(AuditOutbox.id)
            )
        )
        append_staged(session, rows)
        return len(rows)


@shared_task(name="hub.tasks.record_refusal_bursts", ignore_result=True, acks_late=True)
def record_refusal_bursts() -> int:
    """Beat, every minute: one counted event per client for the anonymous refusals of each
    minute that is over (see :mod:`hub.refusals`)."""
    hub_state = state()
    with hub_state.session_factory() as session:
        return record_bursts(session, hub_state.clock())


@shared_task(name="hub.tasks.alert_sweep", ignore_result=True, acks_late=True)
def alert_sweep() -> int:
    """Beat, hourly: release-date, end-of-follow-up and review alerts due today (see
    :mod:`hub.alerts`). Hourly rather than daily so that a worker back from downtime catches
    up within the hour; each alert is sent once per person whatever the number of runs.
    How many people were told."""
    hub_state = state()
    with hub_state.session_factory() as session:
        return Alerts(hub_state.cases(session)).sweep().told


@shared_task(name="hub.tasks.consent_sweep", ignore_result=True, acks_late=True)
def consent_sweep() -> tuple[int, int]:
    """Beat, daily: note the consents whose validity ended (recorded, partners told) and remind
    the people concerned of consents ending within thirty days. Idempotent: each consent is
    noted once and each reminder sent once per person."""
    hub_state = state()
    with hub_state.session_factory() as session:
        return run_consent_sweep(hub_state.cases(session))


def run_consent_sweep(service: Cases) -> tuple[int, int]:
    """The sweep's work on ``service``'s session (also used by tests and the CLI).

    Each expiry is noted in its own transaction with its event staged and its notifications,
    so a crash or an audit outage loses none: what was committed is appended (or left to
    :func:`flush_audit_outbox`), what was not is found again by the next sweep.
    """
    session = service.session
    records = service.consents
    noted = 0
    for consent in records.expired_unnoted():
        if not records.note_expiry(consent):
            session.rollback()
            continue
        case = session.get(Case, consent.case_id)
        assert case is not None
        tell(service, case, "consent_expired", f"consent-expired:{consent.id}")
        staged = stage(
            session,
            new_event(
                Action.CONSENT_EXPIRE,
                object_type="case",
                object_id=case.reference,
                purpose=consent.grantor.value,
                decision=Decision.NONE,
                actor=(None, ""),
            ),
        )
        session.commit()
        noted += 1
        try:
            append_staged(session, [staged])
        except AuditUnavailable:
            session.rollback()  # the beat appends it once the log is back
    today = local_day(service.clock())
    reminded = 0
    for consent in records.ending_between(today, today + timedelta(days=EXPIRY_NOTICE_DAYS)):
        case = session.get(Case, consent.case_id)
        assert case is not None
        tell(service, case, "consent_expiring", f"consent-expiring:{consent.id}")
        reminded += 1
    session.commit()
    return noted, reminded
