"""Sealed liaison forms: key directory, devices, relay — for organisation systems and people.

Thin views over :mod:`exchange.server` and :mod:`hub.liaison`: authenticate, record the act in
the audit log before it takes effect, commit. The hub never sees a form's content
(docs/envelope.md). The same views are registered twice:

- under the API (``/api/v1/…``, endpoints ``api.liaison.*``): bearer tokens, no cookies, no CSRF;
- for the browser (``/echange/…``, endpoints ``echange.*``): the person's session, CSRF token in
  the ``X-CSRFToken`` header, and a fresh MFA login to register a device (docs/browser.md).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, g, jsonify, request
from flask_babel import gettext as _
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from audit.events import Action, Decision
from exchange.envelope import SENDER_FAULTS, is_form_id, parse
from exchange.errors import ExchangeError, MalformedError
from exchange.server.directory import MAX_ENTRIES_PER_PAGE
from exchange.server.relay import FormRefusedError
from hub import liaison
from hub.cases import CaseAccessDeniedError, charter_ref, loggable_reference
from hub.consents import tell
from hub.errors import ApiError
from hub.extensions import csrf, limiter
from hub.models import ApiClient, Case, User
from hub.recording import record, record_case
from hub.security import is_fresh
from hub.state import cases, db, state

# Registered under the API (endpoints api.liaison.*): its bearer check runs first.
bp = Blueprint("liaison", __name__, url_prefix="/api/v1")
csrf.exempt(bp)  # bearer tokens only
# The same views for people in the browser: session and CSRF apply (not exempt).
web_bp = Blueprint("echange", __name__, url_prefix="/echange")

MAX_INT_ARG = 2**31 - 1

Caller = User | ApiClient


def _caller() -> Caller:
    """Who calls: the API client of the bearer token, or the logged-in person."""
    client: ApiClient | None = g.get("api_client")
    if client is not None:
        return client
    user: User = current_user._get_current_object()
    return user


View = TypeVar("View", bound=Callable[..., Any])


def _route(rule: str, **options: Any) -> Callable[[View], View]:
    """Register the view under both blueprints (see the module's docstring)."""

    def decorator(view: View) -> View:
        bp.add_url_rule(rule, view_func=view, **options)
        web_bp.add_url_rule(rule, view_func=view, **options)
        return view

    return decorator


def _int_arg(name: str, default: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None and default is not None:
        return default
    # ASCII digits only, within the 32-bit columns they are compared with (PostgreSQL refuses
    # a larger literal instead of finding nothing).
    if raw is None or not raw.isascii() or not raw.isdigit() or int(raw) > MAX_INT_ARG:
        raise ApiError(400, "invalid_request", _("Paramètre %(name)s invalide.", name=name))
    return int(raw)


def _refused(error: ExchangeError) -> ApiError:
    """The API error of an exchange refusal (one mapping: docs/api.md)."""
    status = {
        "MalformedError": 400,
        "VerificationError": 422,
        "ConflictError": 409,
        "ForbiddenError": 403,
        "FormRefusedError": 403,
        "NotFoundError": 404,
    }.get(type(error).__name__, 400)
    details: dict[str, Any] = {}
    if isinstance(error, FormRefusedError):
        details["refusals"] = [r.to_json() for r in error.refusals]
    return ApiError(status, error.code, _(error.message, **error.params), details=details)


# -- key directory ---------------------------------------------------------------------------


@_route("/annuaire")
def directory() -> Any:
    """The directory's latest signed checkpoint, its size and its verifier key."""
    log = liaison.directory_log(db(), state())
    record(Action.API_READ, object_type="annuaire", object_id="checkpoint")
    return jsonify(
        {
            "checkpoint": log.checkpoint(),
            "size": log.size(),
            "vkey": log.signer.verifier().vkey(),
        }
    )


@_route("/annuaire/entrees")
def directory_entries() -> Any:
    """Entries ``[debut, fin)`` of the directory, as base64url of their canonical bytes."""
    log = liaison.directory_log(db(), state())
    start = _int_arg("debut", 0)
    end = min(_int_arg("fin", start + MAX_ENTRIES_PER_PAGE), start + MAX_ENTRIES_PER_PAGE)
    end = min(end, log.size())
    if start > end:
        raise ApiError(400, "invalid_request", _("Intervalle d'entrées invalide."))
    record(Action.API_READ, object_type="annuaire", object_id="entries")
    entries = log.entries(start, end)
    return jsonify(
        {
            "start": start,
            "entries": [base64.urlsafe_b64encode(e).rstrip(b"=").decode() for e in entries],
        }
    )


# -- devices -------------------------------------------------------------------------------


def _device_json(device: Any) -> dict[str, Any]:
    return {
        "key_id": device.key.key_id,
        "key": device.key.record(),
        "label": device.label,
        "fingerprint": device.key.fingerprint,
        "index": device.added_idx,
        "revoked": device.revoked_at is not None,
    }


@_route("/appareils", methods=["GET", "POST"])
def devices() -> Any:
    """The caller's device keys; POST registers one (``{"key": record, "label"}``)."""
    caller = _caller()
    service = liaison.devices(db(), state())
    owner = liaison.owner_of(caller)
    if request.method == "GET":
        record(Action.API_READ, object_type=_owner_type(caller), object_id=owner.public_id)
        return jsonify({"devices": [_device_json(d) for d in service.of(owner)]})
    if isinstance(caller, User) and not is_fresh():
        # A person registers a device only just after proving both factors (DESIGN §6.1).
        raise ApiError(
            401,
            "reauth_required",
            _("Confirmez votre identité (mot de passe et code) avant d'activer un appareil."),
        )
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "key" not in body:
        raise ApiError(400, "invalid_request", _('Corps attendu : {"key": …, "label": …}.'))
    try:
        device = service.register(body["key"], owner=owner, label=str(body.get("label", ""))[:80])
    except ExchangeError as error:
        db().rollback()
        raise _refused(error) from error
    record(Action.KEY_REGISTER, object_type="device", object_id=device.key.key_id)
    checkpoint = service.log.checkpoint()
    db().commit()
    response = jsonify(_device_json(device) | {"checkpoint": checkpoint})
    response.status_code = 201
    return response


@_route("/appareils/<key_id>/revocation", methods=["POST"])
def revoke_device(key_id: str) -> Any:
    """Revoke one of the caller's device keys."""
    service = liaison.devices(db(), state())
    try:
        device = service.revoke(key_id, by=liaison.owner_of(_caller()), reason="owner")
    except ExchangeError as error:
        db().rollback()
        raise _refused(error) from error
    record(Action.KEY_REVOKE, object_type="device", object_id=key_id)
    caller = _caller()
    if isinstance(caller, User):
        liaison.forget_backups_if_no_device(db(), state(), caller)
    db().commit()
    return jsonify(_device_json(device))


@web_bp.route("/sauvegarde", methods=["GET", "PUT"])
# Each download allows guessing the passphrase offline: few, and only just after a login.
@limiter.limit("10 per hour", key_func=lambda: liaison.owner_of(_caller()).name)
def recovery_backup() -> Any:
    """The person's recovery backup: PUT keeps a new one (after a fresh login), GET gives the
    latest to restore the device's keys in another browser. The hub cannot open it."""
    user = _caller()
    assert isinstance(user, User)  # web_bp: a session, never a bearer token
    service = liaison.devices(db(), state())
    if not is_fresh():
        raise ApiError(
            401,
            "reauth_required",
            _("Confirmez votre identité (mot de passe et code) avant de restaurer ou de "
              "sauvegarder des clés."),
        )  # fmt: skip
    if request.method == "GET":
        data = service.backup(user.id)
        record(Action.API_READ, object_type="recovery_backup", object_id=user.public_id)
        db().commit()
        if data is None:
            raise ApiError(
                404, "no_backup", _("Aucune sauvegarde de récupération n'a été déposée.")
            )
        return Response(data, mimetype="application/json")
    try:
        service.keep_backup(user.id, request.get_data(cache=False))
    except ExchangeError as error:
        db().rollback()
        raise _refused(error) from error
    record(Action.KEY_BACKUP, object_type="recovery_backup", object_id=user.public_id)
    db().commit()
    return jsonify({"kept": True}), 201


# -- forms -----------------------------------------------------------------------------------


@_route("/dossiers/<reference>/destinataires")
def recipients(reference: str) -> Any:
    """Who a form on the case could go to for ``finalite``, with the fields of ``champs``
    (comma-separated) each may see and their device keys: what the sender seals to after
    checking every key against its own verified directory."""
    caller = _caller()
    purpose = request.args.get("finalite", "")
    fields = sorted({f for f in request.args.get("champs", "").split(",") if f})
    if not purpose or not fields or len(fields) > 64:
        raise ApiError(400, "invalid_request", _("Indiquez la finalité et 1 à 64 champs."))
    service = cases()
    case = service.by_reference(reference)
    try:
        if case is None:
            raise CaseAccessDeniedError("", rule="unknown_case", code="not_involved")
        ctx = liaison.context_of(service, case, caller)
    except CaseAccessDeniedError as error:
        record_case(Action.API_READ, loggable_reference(reference), allowed=False, rule=error.rule)
        db().commit()
        raise ApiError(
            403, "not_involved", _("Vous ne prenez pas part à ce dossier (besoin d'en connaître).")
        ) from error
    found = liaison.candidates(service, state(), case, caller, purpose=purpose, fields=fields)
    record_case(
        Action.API_READ, case.reference, purpose=purpose, charter_version=charter_ref(ctx.version)
    )
    db().commit()
    version = ctx.version
    return jsonify(
        {
            "case": case.reference,
            "charter": {
                "id": version.charter_id,
                "version": version.version,
                "digest": version.digest,
            },
            "recipients": [_candidate_json(c) for c in found if c.fields],
            # Who takes part in the case but may receive none of these fields, and why.
            "not_entitled": [_candidate_json(c) for c in found if not c.fields],
        }
    )


def _candidate_json(candidate: liaison.Candidate) -> dict[str, Any]:
    return {
        "owner": candidate.owner,
        "label": candidate.label,
        "organisation": candidate.organisation,
        "fields": list(candidate.fields),
        "devices": list(candidate.devices),
        "refused": [r.to_json() for r in candidate.refused],
    }


def _caller_key() -> str:
    """Rate-limit key of a sender (its client id or person id; authentication ran first)."""
    return str(liaison.owner_of(_caller()).name)


@_route("/fiches", methods=["POST"])
@limiter.limit("120 per minute")
# Per sender too, whatever address it sends from: 1,000 forms a day, at most about 8 GiB of
# envelopes (most are a few kilobytes: only attachments make them large).
@limiter.limit("60 per minute;1000 per day", key_func=_caller_key)
def send_form() -> Any:
    """Relay a sealed form (the envelope as the body): checked, stored, recipients told."""
    caller = _caller()
    service = liaison.relay(db(), state(), caller)
    try:
        data = request.get_data(cache=False)
    except RequestEntityTooLarge:
        # Over the hub's request limit: recorded like an envelope over the relay's own limit
        # (too_large), not only answered 413 (docs/api.md: every refused send is recorded).
        record(
            Action.FORM_SEND_REFUSED,
            object_type="api",
            object_id="api.send_form",
            decision=Decision.DENY,
            rule="too_large",
        )
        db().commit()
        raise
    try:
        accepted = service.accept(data, caller=liaison.owner_of(caller))
    except ExchangeError as error:
        db().rollback()
        case_ref = _case_reference(data)
        record(
            Action.FORM_SEND_REFUSED,
            object_type="case" if case_ref else "api",
            object_id=case_ref or "api.send_form",
            decision=Decision.DENY,
            rule=error.code,
        )
        db().commit()
        raise _refused(error) from error
    manifest = accepted.manifest
    # A retry is an access too: recorded, its rule saying it stored nothing new.
    record(
        Action.FORM_SEND,
        object_type="case",
        object_id=manifest.case,
        purpose=manifest.purpose,
        decision=Decision.ALLOW,
        rule=manifest.form if accepted.stored else f"retry:{manifest.form}",
    )
    if accepted.stored:
        case = db().get(Case, accepted.case_id)
        people = [
            user
            for row in accepted.recipients
            if row.user_id is not None and (user := db().get(User, row.user_id)) is not None
        ]
        if case is not None and people:
            tell(cases(), case, "form_received", f"form:{manifest.form}", people)
    db().commit()
    response = jsonify(
        {
            "form": manifest.form,
            "stored": accepted.stored,
            "recipients": len(accepted.recipients),
        }
    )
    response.status_code = 201 if accepted.stored else 200
    return response


def _case_reference(data: bytes) -> str:
    """The case a refused form named, when it can be read (for the DPO's journal)."""
    try:
        return parse(data).manifest.case
    except MalformedError:
        return ""


@_route("/fiches")
def inbox() -> Any:
    """Forms received by the caller's devices, newest first (no content)."""
    caller = _caller()
    service = liaison.relay(db(), state(), caller)
    owner = liaison.owner_of(caller)
    rows = service.inbox(owner, before=_int_arg("avant", 0) or None)
    record(Action.API_READ, object_type=_owner_type(caller), object_id=owner.public_id)
    return jsonify(
        {
            "forms": [
                {
                    "form": row.form_id,
                    "device": row.key_id,
                    "view": row.view_id,
                    "purpose": row.purpose,
                    "received_at": row.created_at.isoformat(),
                    "delivered": row.delivered_at is not None,
                    "opened": row.opened_at is not None,
                    "cursor": row.id,
                }
                for row in rows
            ]
        }
    )


@_route("/fiches/<form_id>")
def deliver(form_id: str) -> Any:
    """The envelope for one of the caller's recipient devices, while it may still see its view
    (consent, case team) and within retention."""
    caller = _caller()
    key_id = request.args.get("appareil", "")
    service = liaison.relay(db(), state(), caller)
    try:
        envelope, row = service.deliver(form_id, key_id, caller=liaison.owner_of(caller))
    except ExchangeError as error:
        db().rollback()
        record(
            Action.FORM_DELIVER,
            object_type="form",
            # Only a well-formed id goes into the append-only log, never any text of the URL.
            object_id=form_id if is_form_id(form_id) else "unreadable",
            decision=Decision.DENY,
            rule=error.code,
        )
        db().commit()
        raise _refused(error) from error
    case = db().get(Case, row.case_id)
    record(
        Action.FORM_DELIVER,
        object_type="case",
        object_id=case.reference if case is not None else "",
        purpose=row.purpose,
        rule=form_id,
    )
    db().commit()
    return Response(envelope, mimetype="application/json")


def _owner_type(caller: Caller) -> str:
    return "user" if isinstance(caller, User) else "api_client"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _ack(form_id: str, action: Action) -> Any:
    caller = _caller()
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    key_id = _text(body.get("appareil"))
    code = ""
    if action is Action.FORM_VIOLATION:
        # Only what a recipient can prove against the sender is a violation, named by a code
        # of the list: free text would go into the append-only log as written.
        code = _text(body.get("code"))
        if code not in SENDER_FAULTS:
            raise ApiError(
                400,
                "invalid_request",
                _("Motif attendu : %(codes)s.", codes=", ".join(sorted(SENDER_FAULTS))),
            )
    service = liaison.relay(db(), state(), caller)
    owner = liaison.owner_of(caller)
    try:
        if action is Action.FORM_OPEN:
            row = service.mark_opened(form_id, key_id, caller=owner)
        else:  # a report is no opening: the form stays unread in the inbox
            _envelope, row = service.deliver(form_id, key_id, caller=owner)
    except ExchangeError as error:
        db().rollback()
        raise _refused(error) from error
    case = db().get(Case, row.case_id)
    record(
        action,
        object_type="case",
        object_id=case.reference if case is not None else "",
        purpose=row.purpose,
        decision=Decision.DENY if action is Action.FORM_VIOLATION else Decision.ALLOW,
        rule=f"{code}:{form_id}" if code else form_id,
    )
    db().commit()
    return jsonify({"form": form_id, "recorded": action.value})


@_route("/fiches/<form_id>/ouverture", methods=["POST"])
def opened(form_id: str) -> Any:
    """The recipient's client opened and checked the form (``{"appareil": key id}``)."""
    return _ack(form_id, Action.FORM_OPEN)


@_route("/fiches/<form_id>/violation", methods=["POST"])
# Each report is an append-only event the DPO reviews: bounded per system, whatever its address.
@limiter.limit("30 per minute;300 per day", key_func=_caller_key)
def violation(form_id: str) -> Any:
    """The recipient's client found the form not as signed or not as the charter allows
    (``{"appareil", "code"}``): recorded as a charter violation the DPO sees."""
    return _ack(form_id, Action.FORM_VIOLATION)
