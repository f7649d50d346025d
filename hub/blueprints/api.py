"""JSON API for organisation systems. Authenticated by bearer access tokens (see api_auth)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import DataError

from audit.events import Action
from charter.vocabulary import OrgKind, Role
from consent import Consent, ConsentError, Grantor, local_day
from hub import consents
from hub.api_auth import ApiAuth, ApiAuthError
from hub.cases import (
    CaseAccessDeniedError,
    CaseContext,
    CaseRefusedError,
    Cases,
    charter_ref,
    loggable_reference,
    unknown_case,
)
from hub.charters import Charters, parse
from hub.errors import ApiError, consent_error
from hub.extensions import csrf, limiter
from hub.i18n import N_
from hub.models import ApiClient, OperationalGroup, Organisation
from hub.openapi import describe
from hub.recording import audited_case_view, audited_publish, record, record_case
from hub.refusals import record_refused
from hub.state import cases, db, state

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # no cookies here: bearer tokens only, so CSRF does not apply

# Reachable without a bearer token: the token endpoint itself, and the API's description.
PUBLIC = frozenset({"api.token", "api.openapi"})


def api_auth() -> ApiAuth:
    """API authentication bound to the request's session."""
    hub_state = state()
    return ApiAuth(
        db(),
        hub_state.server_key,
        issuer=hub_state.config.base_url,
        clock=hub_state.clock,
        token_seconds=hub_state.config.access_token_seconds,
        assertion_max_seconds=hub_state.config.assertion_max_seconds,
    )


def _may_name_a_row(identifier: str) -> bool:
    """Whether ``identifier`` could name a stored row. PostgreSQL refuses a NUL byte in text, in
    a query as in a row: an identifier holding one names nothing, and looking it up would fail
    the query itself (500) — it is answered as unknown instead."""
    return "\x00" not in identifier


def _refuse(error: ApiAuthError, action: Action = Action.ACCESS_REFUSED) -> ApiError:
    """The API error for a refused authentication, recorded before it is sent (counted per
    client and minute: nobody answers for an unauthenticated request)."""
    record_refused(action, object_type="api", object_id=request.endpoint or "", rule=error.code)
    if error.status == 401:
        return ApiError(
            error.status,
            error.code,
            _(error.message),
            WWW_Authenticate=f'Bearer error="{error.code}"',
        )
    return ApiError(error.status, error.code, _(error.message))


@bp.before_request
def _bearer() -> None:
    if request.endpoint in PUBLIC:
        return
    auth = request.headers.get("Authorization", "")
    scheme, _sep, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _refuse(ApiAuthError("missing_token", N_("Jeton d'accès manquant.")))
    try:
        g.api_client = api_auth().verify_access_token(token.strip())
    except ApiAuthError as error:
        raise _refuse(error) from error


@bp.route("/openapi.json")
def openapi() -> Any:
    """The OpenAPI 3.1 description of this API. Public and not recorded: it describes the
    routes and holds no personal data."""
    return jsonify(describe(state().config.base_url))


@bp.route("/token", methods=["POST"])
@limiter.limit("30 per minute")
def token() -> Any:
    """RFC 7523 client credentials: a signed assertion in, a short-lived access token out."""
    if request.form.get("grant_type") != "client_credentials":
        record_refused(
            Action.API_TOKEN_REFUSED,
            object_type="api",
            object_id="api.token",
            rule="unsupported_grant_type",
        )
        raise ApiError(
            400, "unsupported_grant_type", _("Seul le type client_credentials est accepté.")
        )
    service = api_auth()
    try:
        client = service.authenticate_client(
            request.form.get("client_assertion_type", ""), request.form.get("client_assertion", "")
        )
    except ApiAuthError as error:
        db().rollback()
        raise _refuse(error, Action.API_TOKEN_REFUSED) from error
    except DataError as error:
        # A claim PostgreSQL cannot even compare (a NUL byte in ``iss``): no client has that id.
        db().rollback()
        refused = ApiAuthError("invalid_client", N_("Authentification du client refusée."))
        raise _refuse(refused, Action.API_TOKEN_REFUSED) from error
    issued = service.issue_token(client)
    record(
        Action.API_TOKEN_ISSUE,
        object_type="api_client",
        object_id=client.client_id,
        actor=(f"client:{client.client_id}", client.organisation.public_id),
    )
    db().commit()  # the assertion's jti is recorded before the token leaves
    return jsonify(
        {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
        }
    )


@bp.route("/moi")
def whoami() -> Any:
    """The calling client and its organisation (no personal data)."""
    client: ApiClient = g.api_client
    record(Action.API_READ, object_type="api_client", object_id=client.client_id)
    return jsonify(
        {
            "client_id": client.client_id,
            "organisation": {
                "id": client.organisation.public_id,
                "kind": client.organisation.kind.value,
            },
        }
    )


@bp.route("/charte/simulation", methods=["POST"])
def charter_what_if() -> Any:
    """What-if for tools: the calling organisation as sender, a recipient and a purpose in JSON.

    Body: ``{"group": "<group id>", "purpose": "suivi_parcours", "recipient": {"roles": [...],
    "org_kind": "mission_locale", "group_member": true}, "meeting_day": true}``.
    """
    client: ApiClient = g.api_client
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", _("Le corps de la requête doit être un objet JSON."))
    recipient = body.get("recipient")
    try:
        group_id = str(body["group"])
        purpose = str(body["purpose"])
        assert isinstance(recipient, dict)
        roles = [Role(r) for r in recipient.get("roles", [])]
        kind = OrgKind(recipient["org_kind"])
        member = bool(recipient.get("group_member", False))
    except (KeyError, ValueError, AssertionError, TypeError) as error:
        raise ApiError(
            400,
            "invalid_request",
            _("Champs attendus : group, purpose, recipient.org_kind, recipient.roles."),
        ) from error
    group = (
        db().scalar(select(OperationalGroup).where(OperationalGroup.public_id == group_id))
        if _may_name_a_row(group_id)
        else None
    )
    if group is None:
        raise ApiError(404, "not_found", _("Groupe inconnu."))
    service = Charters(db(), clock=state().clock)
    applied = service.applicable(group, client.organisation)
    if applied is None:
        raise ApiError(
            409,
            "no_charter_signed",
            _("Votre organisation n'a signé aucune version de cette charte."),
        )
    if purpose not in parse(applied.text).purpose_ids:
        raise ApiError(400, "unknown_purpose", _("Finalité inconnue de la charte."))
    _published, _viewed, rows = service.what_if(
        applied,
        sender=client.organisation,
        recipient_roles=roles,
        recipient_kind=kind,
        recipient_member=member,
        purpose=purpose,
        meeting_day=bool(body.get("meeting_day", True)),
    )
    return jsonify(
        {
            "charter": {
                "id": applied.charter_id,
                "version": applied.version,
                "digest": applied.digest,
            },
            "fields": [
                {
                    "field": row.field,
                    "passes": row.passes,
                    "publish": {
                        "allowed": row.publish_allowed,
                        "article": row.publish_article,
                        "reason": row.publish_reason,
                    },
                    "view": {
                        "allowed": row.view_allowed,
                        "article": row.view_article,
                        "reason": row.view_reason,
                    },
                }
                for row in rows
            ],
        }
    )


def _case_context(service: Cases, reference: str, action: Action) -> CaseContext:
    """The calling system's part in a case (as an agent of its organisation); a refusal is
    recorded as ``action`` denied, with the rule, and answered 403 with its stable code."""
    client: ApiClient = g.api_client
    case = service.by_reference(reference) if _may_name_a_row(reference) else None
    try:
        if case is None:
            raise unknown_case()  # answered as a refusal: which references exist is not said
        return service.context_for_organisation(case, client.organisation)
    except CaseAccessDeniedError as error:
        record_case(action, loggable_reference(reference), allowed=False, rule=error.rule)
        raise ApiError(403, error.code, _(error.message)) from error


@bp.route("/dossiers/<reference>")
def case_view(reference: str) -> Any:
    """A case as the charter lets the calling organisation's system see it.

    The system acts as an agent of its organisation: it sees a case only while its organisation
    follows it, only for the stated purpose (``?finalite=``), and only the fields the charter
    grants; the others are listed with the article that refuses them, never with a value.
    """
    service = cases()
    ctx = _case_context(service, reference, Action.CASE_VIEW)
    case = ctx.case
    try:
        view = audited_case_view(service, ctx, request.args.get("finalite"))
    except CaseAccessDeniedError as error:  # part lost meanwhile, or purpose not for the step
        raise ApiError(403, error.code, _(error.message)) from error
    if view is None:
        raise ApiError(400, "unknown_purpose", _("Finalité inconnue de la charte."))
    ctx = view.context
    return jsonify(
        {
            "reference": case.reference,
            "status": case.status,
            "purpose": view.purpose,
            "charter": {"id": ctx.version.charter_id, "version": ctx.version.version},
            "fields": [
                {"field": v.field.id, "value": v.value, "article": v.reason.article}
                for v in view.shown
            ],
            "refused": [
                {"field": r.field, "code": r.code.value, "article": r.article} for r in view.refused
            ],
        }
    )


@bp.route("/dossiers/<reference>/informations", methods=["POST"])
def case_publish(reference: str) -> Any:
    """An organisation's system records what the hub may hold on a case it follows.

    Body: ``{"fields": {"justice.date_sortie": "2027-03-04", ...}}``. Every field goes through
    the charter's publish decision for the organisation; if one is refused nothing is stored and
    the answer (422 ``charter_refused``) lists each refused field with its code and article.
    """
    body = request.get_json(silent=True)
    values = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise ApiError(
            400,
            "invalid_request",
            _('Le corps attendu est {"fields": {"identifiant du champ": "valeur"}}.'),
        )
    service = cases()
    ctx = _case_context(service, reference, Action.CASE_UPDATE)
    try:
        decision = audited_publish(service, ctx, values)
    except CaseRefusedError as error:
        raise ApiError(
            422,
            "charter_refused",
            _(error.message, **error.params),
            details={
                "refused": [
                    {"field": r.field, "code": r.code.value, "article": r.article}
                    for r in error.reasons
                ]
            },
        ) from error
    return jsonify(
        {
            "reference": ctx.case.reference,
            "stored": sorted(decision.allowed_fields),
            "charter": {"id": ctx.version.charter_id, "version": ctx.version.version},
        }
    )


def _consent_json(consent: Consent) -> dict[str, Any]:
    """A consent as organisation systems see it (organisations by their public id)."""
    withdrawal = consent.withdrawal
    ids = consent.scope.recipient_orgs | consent.scope.excluded_orgs
    rows = db().execute(
        select(Organisation.id, Organisation.public_id).where(Organisation.id.in_(ids))
    )
    public = {row.id: row.public_id for row in rows} if ids else {}
    return {
        "id": consent.id,
        "grantor": consent.grantor.value,
        "status": consent.status.value,
        "current": consent.current,
        "purposes": sorted(consent.scope.purposes),
        "categories": sorted(consent.scope.categories),
        "recipients": {
            "kinds": sorted(k.value for k in consent.scope.recipient_kinds),
            "organisations": sorted(public[o] for o in consent.scope.recipient_orgs if o in public),
            "excluded_kinds": sorted(k.value for k in consent.scope.excluded_kinds),
            "excluded_organisations": sorted(
                public[o] for o in consent.scope.excluded_orgs if o in public
            ),
        },
        "valid_from": consent.valid_from.isoformat(),
        "valid_until": consent.valid_until.isoformat(),
        "withdrawn_at": withdrawal.at.isoformat() if withdrawal else None,
    }


@bp.route("/dossiers/<reference>/consentement")
def consent_status(reference: str) -> Any:
    """The consent situation of a case the calling organisation follows: status, minors' rule
    (age computed, the date of birth never sent), and each accord with its scope and validity.
    Recorded as ``consent.read``."""
    service = cases()
    ctx = _case_context(service, reference, Action.CONSENT_READ)
    record_case(Action.CONSENT_READ, ctx.case.reference, charter_version=charter_ref(ctx.version))
    situation = consents.overview(service, ctx)
    summary = situation.summary
    return jsonify(
        {
            "reference": ctx.case.reference,
            "status": summary.status,
            "minor": summary.minor,
            # The age gives the date of birth away: only where the charter shows that date.
            "age": summary.age if consents.sees_birth_date(service, ctx, situation.state) else None,
            "parents_required": summary.parents_required,
            "missing": [g.value for g in summary.missing],
            "exceptions": [g.value for g in summary.exceptions],
            "expires_on": summary.expires_on.isoformat() if summary.expires_on else None,
            "consents": [_consent_json(c) for c in situation.state.consents],
            "charter": {"id": ctx.version.charter_id, "version": ctx.version.version},
        }
    )


@bp.route(
    "/dossiers/<reference>/consentement/<int(max=2147483647):consent_id>/retrait",
    methods=["POST"],
)
def consent_withdraw(reference: str, consent_id: int) -> Any:
    """Record a withdrawal the grantor asked for at the partner's desk.

    Body: ``{"requested_by": "jeune"}`` (the grantor: ``jeune``, ``parent_1``, ``parent_2`` or
    ``tuteur``). Effective at once; 409 ``already_withdrawn`` when it was withdrawn before.
    """
    body = request.get_json(silent=True)
    requested_by = body.get("requested_by") if isinstance(body, dict) else None
    # A string first: a list or an object is unhashable and would fail the lookup itself (500).
    if not isinstance(requested_by, str) or requested_by not in {g.value for g in Grantor}:
        raise ApiError(
            400,
            "invalid_request",
            _(
                'Le corps attendu est {"requested_by": "jeune" | "parent_1" | "parent_2" | '
                '"tuteur"}.'
            ),
        )
    service = cases()
    ctx = _case_context(service, reference, Action.CONSENT_WITHDRAW)
    try:
        withdrawn = consents.withdraw(service, ctx, consent_id, str(requested_by))
    except ConsentError as error:
        db().rollback()
        consents.record_refusal(ctx, Action.CONSENT_WITHDRAW, error.code)
        raise consent_error(error) from error
    return jsonify({"reference": ctx.case.reference, "consent": _consent_json(withdrawn)})


@bp.route(
    "/dossiers/<reference>/consentement/<int(max=2147483647):consent_id>/recu", methods=["POST"]
)
def consent_receipt(reference: str, consent_id: int) -> Any:
    """Issue a receipt of an accord as JSON (``?langue=en`` for English): what is shared, with
    whom, why, for how long, how to withdraw, how to ask who accessed the file. The DPO finds it
    by its reference. Recorded as ``consent.receipt``."""
    service = cases()
    ctx = _case_context(service, reference, Action.CONSENT_RECEIPT)
    try:
        consent = service.consents.consent(ctx.case.id, consent_id)
    except ConsentError as error:
        raise consent_error(error) from error
    if not consent.in_force(local_day(service.clock())):
        raise ApiError(
            409,
            "not_in_force",
            _("Cet accord n'est pas en vigueur : il n'y a pas de reçu à remettre."),
        )
    language = "en" if request.args.get("langue") == "en" else "fr"
    history = service.consents.history(ctx.case.id)
    receipt = consents.issue_receipt(
        service, ctx, consent, language=language, evidence=dict(history.evidence)
    )
    return jsonify({**receipt.body, "sha256": receipt.sha256}), 201
