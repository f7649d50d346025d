"""The one recording path: every access the hub serves is appended to the audit log first.

Fail closed (DESIGN §2.4): :func:`record` returns only once the event is durable; if the audit
store cannot be written it raises :class:`AuditUnavailable`, which the error handlers turn into
HTTP 503, so nothing is served and no write is acknowledged. Callers record *before* they
commit their own changes or render data.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import fields

from flask import g, has_request_context, request
from flask_login import current_user
from sqlalchemy import delete
from sqlalchemy.orm import Session
from werkzeug.exceptions import ServiceUnavailable

from audit.errors import AuditError
from audit.events import IDENT, Action, Decision, Event, NewEvent, hash_ip
from charter import Decision as CharterDecision
from hub.cases import (
    CaseAccessDeniedError,
    CaseContext,
    CaseRefusedError,
    Cases,
    CaseView,
    PurposeNotForStepError,
    articles,
    charter_ref,
)
from hub.i18n import N_
from hub.models import AuditOutbox
from hub.state import state

Actor = tuple[str | None, str]


class AuditUnavailable(ServiceUnavailable):
    """The audit store could not record the access: the access does not happen (503)."""


def request_id() -> str:
    """A random id for the current request, shared by all its events."""
    if "request_id" not in g:
        g.request_id = secrets.token_hex(12)
    return str(g.request_id)


def current_actor() -> Actor:
    """Who acts: the API client, the logged-in user, or nobody (CLI, anonymous)."""
    if not has_request_context():
        return (None, "")
    client = g.get("api_client")
    if client is not None:
        return (f"client:{client.client_id}", client.organisation.public_id)
    if current_user and current_user.is_authenticated:
        return (current_user.public_id, current_user.organisation.public_id)
    return (None, "")


def new_event(
    action: Action,
    *,
    object_type: str = "",
    object_id: str = "",
    purpose: str = "",
    decision: Decision = Decision.ALLOW,
    rule: str = "",
    charter_version: str = "",
    actor: Actor | None = None,
) -> NewEvent:
    """The event of an access by the current actor in the current request (validated)."""
    hub_state = state()
    who = actor if actor is not None else current_actor()
    in_request = has_request_context()
    ip = request.remote_addr if in_request else None
    if object_id and IDENT.fullmatch(object_id) is None:
        # Ids often come from the URL: whatever was typed there must not stop the recording
        # of the access (fail closed would turn it into a 503 for a typo).
        object_id = "unreadable"
    return NewEvent(
        action=action,
        actor_user=who[0],
        actor_org=who[1],
        object_type=object_type,
        object_id=object_id,
        purpose=purpose,
        decision=decision,
        rule=rule,
        charter_version=charter_version,
        request_id=request_id() if in_request else "",
        ip_hash=hash_ip(hub_state.config.ip_hash_key, ip) if ip else "",
    )


def append(event: NewEvent) -> Event:
    """Append ``event`` (committed when this returns) or raise :class:`AuditUnavailable`."""
    try:
        return state().audit_log.append(event)
    except AuditError as error:
        raise AuditUnavailable() from error


def record(
    action: Action,
    *,
    object_type: str = "",
    object_id: str = "",
    purpose: str = "",
    decision: Decision = Decision.ALLOW,
    rule: str = "",
    charter_version: str = "",
    actor: Actor | None = None,
) -> Event:
    """Append one event (committed when this returns) or raise :class:`AuditUnavailable`."""
    return append(
        new_event(
            action,
            object_type=object_type,
            object_id=object_id,
            purpose=purpose,
            decision=decision,
            rule=rule,
            charter_version=charter_version,
            actor=actor,
        )
    )


# -- changes that take effect before they are logged ---------------------------------------


def stage(session: Session, event: NewEvent) -> AuditOutbox:
    """Stage ``event`` in ``session``'s transaction (see :class:`hub.models.AuditOutbox`).

    Used by changes that restrict access (a consent withdrawn, corrected, expired): they must
    be in force before their event takes a position in the log, or a read placed after that
    position could still have been decided on the old consent. Commit, then call
    :func:`append_staged`.
    """
    row = AuditOutbox(
        event=json.dumps({f.name: getattr(event, f.name) for f in fields(NewEvent)}),
        created_at=state().clock(),
    )
    session.add(row)
    return row


def append_staged(session: Session, rows: Sequence[AuditOutbox]) -> None:
    """Append committed staged events to the log and forget them, one by one.

    The row is deleted in the same transaction that appends its event, so a concurrent flush
    (the beat) cannot append it twice; if the log cannot be written the row stays for the beat
    and :class:`AuditUnavailable` is raised — the change itself stands (it only restricts).
    """
    for row_id in [r.id for r in rows]:
        event = session.execute(
            delete(AuditOutbox).where(AuditOutbox.id == row_id).returning(AuditOutbox.event)
        ).scalar()
        if event is None:  # appended meanwhile by the beat
            session.rollback()
            continue
        try:
            append(NewEvent(**json.loads(event)))
        except AuditUnavailable:
            session.rollback()
            raise
        session.commit()


def record_case(
    action: Action,
    reference: str,
    *,
    allowed: bool = True,
    purpose: str = "",
    rule: str = "",
    charter_version: str = "",
) -> Event:
    """Record an act on a case (page or API): the charter's decision, its articles and version."""
    return record(
        action,
        object_type="case",
        object_id=reference,
        purpose=purpose,
        decision=Decision.ALLOW if allowed else Decision.DENY,
        rule=rule,
        charter_version=charter_version,
    )


class ConsentInFlux(ServiceUnavailable):
    """The case's consent changed under every attempt to read it: nothing is shown (503)."""


READ_ATTEMPTS = 3


def audited_case_view(service: Cases, ctx: CaseContext, purpose: str | None) -> CaseView | None:
    """What ``ctx`` may see of its case for ``purpose`` (default: the purpose that shows the
    most), recorded with the decision's articles before it is returned; ``None`` when the
    purpose is not one of the charter's (nothing read, nothing recorded).

    A read never returns data after a consent change's position in the audit log: a change
    (withdrawal…, or a professional taken off the team) commits and bumps the case's
    generation *before* its own event is appended, and this read checks the generation again
    *after* appending its event. If it moved, the change may sit earlier in the log than this
    read, so the person's part in the case and the read are decided and recorded again; only
    the last event of a request describes what was served. The view carries the context it was
    decided in (``view.context``): callers use it, not the one they passed. A part lost meanwhile
    raises :class:`CaseAccessDeniedError`, recorded.
    """
    state = service.consent_state(ctx.case)
    inputs = service.inputs(ctx)
    chosen = purpose or service.default_purpose(ctx, state, inputs)
    if chosen not in ctx.charter.purpose_ids:
        return None
    if chosen not in {p.id for p in service.purposes_for(ctx)}:
        refusal = PurposeNotForStepError()
        record_case(
            Action.CASE_VIEW,
            ctx.case.reference,
            purpose=chosen,
            allowed=False,
            rule=refusal.rule,
            charter_version=charter_ref(ctx.version),
        )
        raise refusal
    for attempt in range(READ_ATTEMPTS):
        if attempt:
            inputs = service.inputs(ctx)  # read again: the case may have changed too
        view = service.view(ctx, chosen, state, inputs)
        record_case(
            Action.CASE_VIEW,
            ctx.case.reference,
            purpose=chosen,
            allowed=view.allowed,
            rule=view.rule,
            charter_version=charter_ref(ctx.version),
        )
        # End the read transaction (whatever the isolation level) so the check reads the
        # latest committed generation.
        service.session.commit()
        if service.consents.generation(ctx.case.id) == view.consent_generation:
            return view
        state = service.consent_state(ctx.case)
        try:
            ctx = service.refresh_context(ctx)
        except CaseAccessDeniedError as error:
            record_case(Action.CASE_VIEW, ctx.case.reference, allowed=False, rule=error.rule)
            raise
    raise ConsentInFlux()


def consent_unchanged(service: Cases, ctx: CaseContext, generation: int) -> bool:
    """Whether the case's consent generation is still ``generation`` (writes check it after
    recording their event, before committing)."""
    return service.consents.generation(ctx.case.id) == generation


def audited_publish(service: Cases, ctx: CaseContext, values: Mapping[str, str]) -> CharterDecision:
    """Record hub-tier values on ``ctx``'s case (pages and API alike): the charter's and the
    consent's decision is recorded, then the values committed; a refusal is rolled back,
    recorded and re-raised. The consent generation is held from the start (PostgreSQL: a
    consent change waits for this write to commit, so its event lands after this one), and a
    change that committed before the hold — SQLite's one writer — makes the write refused (it
    would have rested on a consent no longer in force)."""
    generation = service.consents.generation(ctx.case.id, hold=True)
    try:
        decision = service.publish(ctx, values)
        if not consent_unchanged(service, ctx, generation):
            raise CaseRefusedError(
                N_(
                    "Rien n'est enregistré : le consentement du jeune vient de changer. "
                    "Rechargez la page et vérifiez ce qui peut encore être saisi."
                )
            )
    except CaseRefusedError as error:
        service.session.rollback()
        record_case(
            Action.CASE_UPDATE,
            ctx.case.reference,
            allowed=False,
            rule=articles(error.reasons) or "consent_changed",
            charter_version=charter_ref(ctx.version),
        )
        raise
    record_case(
        Action.CASE_UPDATE,
        ctx.case.reference,
        rule=articles(decision.reasons),
        charter_version=charter_ref(ctx.version),
    )
    service.session.commit()
    return decision
