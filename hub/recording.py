"""The one recording path: every access the hub serves is appended to the audit log first.

Fail closed (DESIGN §2.4): :func:`record` returns only once the event is durable; if the audit
store cannot be written it raises :class:`AuditUnavailable`, which the error handlers turn into
HTTP 503, so nothing is served and no write is acknowledged. Callers record *before* they
commit their own changes or render data.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from flask import g, has_request_context, request
from flask_login import current_user
from werkzeug.exceptions import ServiceUnavailable

from audit.errors import AuditError
from audit.events import Action, Decision, Event, NewEvent, hash_ip
from charter import Decision as CharterDecision
from hub.cases import CaseContext, CaseRefusedError, Cases, CaseView, articles, charter_ref
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
    hub_state = state()
    who = actor if actor is not None else current_actor()
    in_request = has_request_context()
    ip = request.remote_addr if in_request else None
    try:
        return hub_state.audit_log.append(
            NewEvent(
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
        )
    except AuditError as error:
        raise AuditUnavailable() from error


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


def audited_case_view(service: Cases, ctx: CaseContext, purpose: str | None) -> CaseView | None:
    """What ``ctx`` may see of its case for ``purpose`` (default: the purpose that shows the
    most), recorded with the decision's articles before it is returned; ``None`` when the
    purpose is not one of the charter's (nothing read, nothing recorded)."""
    chosen = purpose or service.default_purpose(ctx)
    if chosen not in ctx.charter.purpose_ids:
        return None
    view = service.view(ctx, chosen)
    record_case(
        Action.CASE_VIEW,
        ctx.case.reference,
        purpose=chosen,
        allowed=view.allowed,
        rule=view.rule,
        charter_version=charter_ref(ctx.version),
    )
    return view


def audited_publish(service: Cases, ctx: CaseContext, values: Mapping[str, str]) -> CharterDecision:
    """Record hub-tier values on ``ctx``'s case (pages and API alike): the charter's decision is
    recorded, then the values committed; a refusal is rolled back, recorded and re-raised."""
    try:
        decision = service.publish(ctx, values)
    except CaseRefusedError as error:
        service.session.rollback()
        record_case(
            Action.CASE_UPDATE,
            ctx.case.reference,
            allowed=False,
            rule=articles(error.reasons),
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
