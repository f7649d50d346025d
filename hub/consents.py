"""The hub's side of consent: who may do what on a case's consent, and each act recorded.

The records and the enforcement are :mod:`consent`'s (no Flask). Here: the need-to-know on
consent pages (anyone with a part in the case sees the status and the history; the référent and
the professionals named on the case team record and withdraw), the case key that seals the
evidence, the receipt kept and printed, the partners told of a withdrawal, and the audit trail.

Consent changes take effect *before* their event takes its place in the log (they restrict
access, see :func:`hub.recording.stage`): commit, then append.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from flask import current_app, request
from sqlalchemy import select

from audit.events import Action, Decision
from charter.vocabulary import Role
from consent import (
    Actor,
    Consent,
    ConsentForbiddenError,
    ConsentRecords,
    ConsentState,
    Evidence,
    Grantor,
    Receipt,
    Summary,
    new_receipt_reference,
    receipt_body,
    summarise,
)
from hub.cases import CaseContext, Cases, charter_ref
from hub.celery_app import enqueue
from hub.models import Case, Organisation, User, UserRole
from hub.notifications import notify
from hub.recording import append, append_staged, new_event, record, stage
from hub.vault import CaseSealer

T = TypeVar("T")


# The pages that take a scanned form or a drawn signature: the only ones allowed past the
# hub's usual request size.
EVIDENCE_ENDPOINTS = frozenset({"consent.record_consent", "consent.adhesion"})
SIGNATURE_FORM_BYTES = 1024 * 1024


def allow_evidence_uploads() -> None:
    """Before any other hook reads the body (CSRF does): raise the request's size limits on
    the evidence pages only, to the configured scan size (plus the form around it)."""
    if request.endpoint in EVIDENCE_ENDPOINTS:
        limit = current_app.extensions["maillon"].config.consent_evidence_max_bytes
        request.max_content_length = limit + SIGNATURE_FORM_BYTES
        request.max_form_memory_size = SIGNATURE_FORM_BYTES


def may_manage(ctx: CaseContext) -> bool:
    """The référent and the professionals named on the case team record and withdraw consent
    (they meet the young person); the group's members and coordinator only see it."""
    return bool(ctx.roles & {Role.REFERENT, Role.AGENT})


def actor_of(ctx: CaseContext) -> Actor:
    """Who records, as the consent records name them."""
    return Actor(ctx.user.id if ctx.user else None, ctx.organisation.id)


def sealer(service: Cases, case: Case) -> CaseSealer:
    """The case's own key, for evidence and justifications."""
    return service.vault.for_case(case.wrapped_key, case.reference)


@dataclass(frozen=True)
class ConsentOverview:
    """What the consent page and the API show of a case's consent situation."""

    state: ConsentState
    summary: Summary
    birth_known: bool


def overview(service: Cases, ctx: CaseContext) -> ConsentOverview:
    """The case's consent situation today (the age is computed, never shown with the date)."""
    rules = ctx.consent_rules
    birth = service.birth_date(ctx.case, rules)
    state = service.consent_state(ctx.case)
    return ConsentOverview(
        state, summarise(state, rules, birth=birth, at=service.clock()), birth is not None
    )


def sees_birth_date(service: Cases, ctx: CaseContext, state: ConsentState | None = None) -> bool:
    """Whether the charter and the consent let this person see the date of birth for some
    purpose: only then may a page show the age or the day of majority (both give it away)."""
    field = ctx.consent_rules.birth_date_field
    if field is None:
        return False
    state = state if state is not None else service.consent_state(ctx.case)
    inputs = service.inputs(ctx)
    for purpose in ctx.charter.purposes:
        reason = service.decide_view(ctx, purpose.id, state, inputs).reasons.get(field)
        if reason is not None and reason.allowed:
            return True
    return False


def require_manager(ctx: CaseContext) -> None:
    """Refuse (recorded by the caller) anyone who may not record consent on this case."""
    if not may_manage(ctx):
        raise ConsentForbiddenError(
            "not_case_team",
            "Seuls le référent et les professionnels de l'équipe du dossier recueillent et "
            "retirent le consentement.",
        )


def audited_change(
    service: Cases,
    ctx: CaseContext,
    action: Action,
    change: Callable[[], T],
    *,
    restricts: bool,
    rule: str = "",
    grantor: Grantor | None = None,
) -> T:
    """Run a consent ``change`` for ``ctx``'s case and record ``action``, in the order its
    effect demands.

    A change that **restricts** who may read (a withdrawal, a refusal, a holder newly informed
    whose accord is then needed, any correction) must be in force before its event takes a
    place in the log: its event is staged in the change's own transaction, committed with it,
    then appended — or by the beat if the log is down (the person is answered 503, the change
    stands: it only restricts). A change that **widens** (an accord given, an exception, a
    contract) is recorded first and committed after, like every other write: if the log cannot
    be written, nothing is stored.

    The event names the case, the charter article and, in ``purpose``, the grantor the act
    concerns (``jeune``, ``parent_1``…): never a name.
    """
    event = new_event(
        action,
        object_type="case",
        object_id=ctx.case.reference,
        purpose=grantor.value if grantor else "",
        rule=rule,
        charter_version=charter_ref(ctx.version),
    )
    result = change()
    if restricts:
        staged = stage(service.session, event)
        service.session.commit()
        append_staged(service.session, [staged])
    else:
        service.session.flush()
        append(event)  # raises AuditUnavailable (503) before anything is committed
        service.session.commit()
    return result


def record_refusal(ctx: CaseContext, action: Action, code: str) -> None:
    """Record a refused consent operation (bad input or no right), with its stable code."""
    record(
        action,
        object_type="case",
        object_id=ctx.case.reference,
        decision=Decision.DENY,
        rule=code,
        charter_version=charter_ref(ctx.version),
    )


def concerned(service: Cases, case: Case) -> list[User]:
    """The people told of a change in the case's consent: référent, team, coordinator."""
    people = [m.user for m in case.members]
    if case.referent is not None:
        people.append(case.referent)
    if case.group.coordinator is not None:
        people.append(case.group.coordinator)
    return people


def dpo_users(service: Cases) -> list[User]:
    """The data protection officers (told of every exception « contraire à l'intérêt de
    l'enfant »)."""
    return [
        u
        for u in service.session.scalars(
            select(User)
            .join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role == Role.DPO)
        )
        if u.is_active
    ]


def tell(
    service: Cases, case: Case, kind: str, dedupe_key: str, people: list[User] | None = None
) -> None:
    """Notify the people concerned (default: référent, team, coordinator) in the app, and by
    e-mail once committed."""
    from hub.tasks import send_notification_mail  # noqa: PLC0415 - tasks import this module

    created = notify(
        service.session,
        concerned(service, case) if people is None else people,
        kind,
        case_reference=case.reference,
        dedupe_key=dedupe_key,
        now=service.clock(),
    )
    for notification_id in created.ids:
        enqueue(service.session, send_notification_mail, notification_id)


def withdraw(service: Cases, ctx: CaseContext, consent_id: int, requested_by: str) -> Consent:
    """Withdraw a consent at its grantor's request: in force at once, recorded, partners told."""
    require_manager(ctx)
    grantor = Grantor(requested_by)

    def change() -> Consent:
        withdrawn = service.consents.withdraw(
            ctx.case.id, actor_of(ctx), consent_id, requested_by=grantor
        )
        tell(service, ctx.case, "consent_withdrawn", f"consent-withdrawn:{consent_id}")
        return withdrawn

    return audited_change(
        service,
        ctx,
        Action.CONSENT_WITHDRAW,
        change,
        restricts=True,
        rule=ctx.consent_rules.article,
        grantor=grantor,
    )


def issue_receipt(
    service: Cases,
    ctx: CaseContext,
    consent: Consent,
    *,
    language: str,
    evidence: dict[int, Evidence],
) -> Receipt:
    """Keep and return a receipt of ``consent`` in ``language`` (recorded before it is shown)."""
    orgs = {
        o.id: o.name
        for o in service.session.scalars(
            select(Organisation).where(
                Organisation.id.in_(consent.scope.recipient_orgs | consent.scope.excluded_orgs)
            )
        )
    }
    reference = new_receipt_reference()
    while service.consents.receipt(reference) is not None:
        reference = new_receipt_reference()
    body = receipt_body(
        reference=reference,
        case_reference=ctx.case.reference,
        consent=consent,
        evidence=evidence.get(consent.evidence_id) if consent.evidence_id else None,
        charter=ctx.charter,
        org_names=orgs,
        controller=ctx.case.group.name,
        issued_at=service.clock(),
        language=language,
    )
    receipt = service.consents.issue_receipt(
        ctx.case.id, actor_of(ctx), consent, language=language, body=body, reference=reference
    )
    # The receipt's reference goes in ``rule``: the DPO finds it from the case's report.
    record(
        Action.CONSENT_RECEIPT,
        object_type="case",
        object_id=ctx.case.reference,
        rule=reference,
        charter_version=charter_ref(ctx.version),
    )
    service.session.commit()
    return receipt


def expiring_soon(records: ConsentRecords, case_ids: list[int], today: date) -> set[int]:
    """Cases among ``case_ids`` whose consent in force ends within thirty days (case lists)."""
    by_case = records.consents_of(case_ids)
    return {
        case_id
        for case_id, consents in by_case.items()
        if any(c.in_force(today) and (c.valid_until - today).days <= 30 for c in consents)
    }
