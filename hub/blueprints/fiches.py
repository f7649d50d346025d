"""Pages of sealed liaison forms for people: my devices, compose and send, inbox, reading.

The sealing and the opening happen in the person's browser (``static/js/fiches.js`` on the
module ``static/js/echange.js``); these views only render what is not secret — the case's
reference, the purposes, the charter's catalogue and decisions, the list of received forms —
and hand the page what its script needs (the directory's key, who the person is). The script
talks to the same relay as organisation systems, under ``/echange/…`` (docs/browser.md).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user

from audit.events import Action
from charter.vocabulary import Secrecy
from exchange.envelope import (
    MAX_ENVELOPE_BYTES,
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_VALUE_CHARS,
    is_form_id,
)
from exchange.errors import ExchangeError
from hub import liaison
from hub.cases import CaseAccessDeniedError, charter_ref, is_date_field, loggable_reference
from hub.models import ApiClient, Case, Organisation, User
from hub.recording import record, record_case
from hub.security import is_fresh
from hub.state import cases, db, state

bp = Blueprint("fiches", __name__)

INBOX_PAGE = 50


def _label(field: Any) -> str:
    return str(field.label_en if get_locale().language == "en" else field.label_fr)


def _script_context() -> dict[str, str]:
    """What every page's script needs: the directory key it pins, who the person is."""
    log = liaison.directory_log(db(), state())
    owner = liaison.user_owner(current_user)
    return {
        "vkey": log.signer.verifier().vkey(),
        "owner": owner.name,
        "user": owner.public_id,
        "org": owner.org_public_id,
        "fresh": "1" if is_fresh() else "0",
        "reauth": url_for("auth.reauthenticate", next=request.full_path.rstrip("?")),
    }


@bp.route("/appareils")
def devices_page() -> Any:
    """My devices: this browser's keys (set up, restored), those in force, revocation."""
    owner = liaison.user_owner(current_user)
    mine = liaison.devices(db(), state()).of(owner)
    return render_template("fiches/devices.html", devices=mine, script=_script_context())


@bp.route("/appareils/<key_id>/revocation", methods=["POST"])
def revoke_page(key_id: str) -> Any:
    """Revoke one of my devices: replaced (forms it signed just before still open for a
    while), or lost or stolen (never again: the directory says ``admin``, no grace)."""
    lost = request.form.get("motif") == "perte"
    service = liaison.devices(db(), state())
    try:
        service.revoke(
            key_id, by=liaison.user_owner(current_user), reason="admin" if lost else "owner"
        )
    except ExchangeError as error:
        db().rollback()
        flash(_(error.message, **error.params), "error")
        return redirect(url_for("fiches.devices_page"))
    record(
        Action.KEY_REVOKE,
        object_type="device",
        object_id=key_id,
        rule="lost" if lost else "owner",
    )
    liaison.forget_backups_if_no_device(db(), state(), current_user)
    db().commit()
    flash(_("Appareil révoqué : il ne reçoit plus de fiches et ne peut plus en signer."), "success")
    return redirect(url_for("fiches.devices_page"))


def _forbidden(message: str) -> Any:
    return (
        render_template("errors/error.html", status=403, title=_("Accès refusé"), message=message),
        403,
    )


@bp.route("/dossiers/<reference>/fiche")
def compose(reference: str) -> Any:
    """Write a liaison form on the case: the purposes of the step, the catalogue's fields the
    charter lets this person's organisation send (the others with their article)."""
    service = cases()
    case = service.by_reference(reference)
    try:
        if case is None:
            raise CaseAccessDeniedError("", rule="unknown_case", code="not_involved")
        ctx = service.context(case, current_user)
    except CaseAccessDeniedError as error:
        record_case(Action.CASE_VIEW, loggable_reference(reference), allowed=False, rule=error.rule)
        db().commit()
        return _forbidden(_("Vous ne prenez pas part à ce dossier (besoin d'en connaître)."))
    catalogue = [f for f in ctx.charter.fields if f.secrecy is not Secrecy.INTERDIT]
    decision = service.send_decision(ctx, [f.id for f in catalogue])
    allowed = [f for f in catalogue if f.id in decision.allowed_fields]
    refused = list(decision.refusals)
    purposes = service.purposes_for(ctx) or list(ctx.charter.purposes)
    # The page shows no value of the case: only its reference and the charter's catalogue. The
    # values the person types are sealed in the page and never reach the hub in clear.
    record_case(
        Action.API_READ,
        case.reference,
        purpose="redaction_fiche",
        charter_version=charter_ref(ctx.version),
    )
    db().commit()
    return render_template(
        "fiches/compose.html",
        case=case,
        ctx=ctx,
        purposes=purposes,
        fields=allowed,
        refused=refused,
        is_date=is_date_field,
        max_chars=MAX_VALUE_CHARS,
        max_files=MAX_FILES,
        max_file_mib=MAX_FILE_BYTES // 2**20,
        max_envelope_mib=MAX_ENVELOPE_BYTES // 2**20,
        # Files travel base64-encoded in the JSON envelope: three quarters of it at most.
        max_files_mib=MAX_ENVELOPE_BYTES * 3 // 4 // 2**20,
        script=_script_context()
        | {
            "case": case.reference,
            "back": url_for("cases.show", reference=case.reference),
        },
    )


def _sender(row: Any) -> tuple[User | ApiClient | None, Organisation | None]:
    """Who sent the form ``row`` and from which organisation (as the relay stored it)."""
    session = db()
    who: User | ApiClient | None = (
        session.get(User, row.sender_user_id)
        if row.sender_user_id is not None
        else session.get(ApiClient, row.sender_client_id)
    )
    return who, session.get(Organisation, row.sender_org_id)


def _sender_owner(row: Any) -> tuple[str, str]:
    """The sender as the directory names it (``user:…``/``client:…``) and its organisation's
    public id: the page refuses a form whose signed sender is not this one."""
    who, org = _sender(row)
    owner = "" if who is None else liaison.owner_of(who).name
    return owner, org.public_id if org is not None else ""


def _sender_label(row: Any) -> str:
    """The sender's name and organisation, for people."""
    who, org = _sender(row)
    name = who.name if who is not None else _("inconnu")
    return f"{name} ({org.name})" if org is not None else name


@bp.route("/fiches")
def inbox_page() -> Any:
    """Forms received on my devices: unread first, then newest; per case when asked."""
    owner = liaison.user_owner(current_user)
    relay = liaison.relay(db(), state(), current_user)
    before = request.args.get("avant", "")
    cursor = int(before) if before.isascii() and before.isdigit() and len(before) < 10 else None
    rows = relay.inbox(owner, limit=INBOX_PAGE + 1, before=cursor)
    more = len(rows) > INBOX_PAGE
    rows = rows[:INBOX_PAGE]
    wanted = request.args.get("dossier", "")
    references = {
        c.id: c.reference
        for c in db().query(Case).filter(Case.id.in_({r.case_id for r in rows})).all()
    }
    # One line per form (a person with two devices has two recipient rows of one form).
    forms: dict[str, dict[str, Any]] = {}
    for row in rows:
        reference = references.get(row.case_id, "")
        if wanted and reference != wanted:
            continue
        item = forms.setdefault(
            row.form_id,
            {
                "form": row.form_id,
                "case": reference,
                "purpose": row.purpose,
                "received": row.created_at,
                "sender": _sender_label(row),
                "opened": False,
                "cursor": row.id,
            },
        )
        item["opened"] = item["opened"] or row.opened_at is not None
    items = sorted(forms.values(), key=lambda i: (i["opened"], -i["cursor"]))
    record(Action.API_READ, object_type="user", object_id=owner.public_id, rule="inbox")
    db().commit()
    return render_template(
        "fiches/inbox.html",
        items=items,
        wanted=wanted,
        next_cursor=rows[-1].id if more and rows else None,
    )


@bp.route("/fiches/<form_id>")
def read_page(form_id: str) -> Any:
    """Open a received form: the page fetches the envelope for this browser's device, checks
    and decrypts it. The hub renders only the catalogue's labels."""
    if not is_form_id(form_id):
        abort(404)
    owner = liaison.user_owner(current_user)
    relay = liaison.relay(db(), state(), current_user)
    found = relay.received(form_id, owner)
    if found is None:
        abort(404)
    row, keys = found
    case = db().get(Case, row.case_id)
    assert case is not None  # a form's case is never deleted while the form is kept
    try:
        # Labels of the catalogue as this person's organisation signed it: display only.
        charter = cases().context(case, current_user).charter
        labels = {f.id: _label(f) for f in charter.fields}
    except CaseAccessDeniedError:
        labels = {}  # delivery will refuse and say why
    sender_owner, sender_org = _sender_owner(row)
    # The page names the case, the sender and the date: a read of the form's metadata.
    record(
        Action.API_READ,
        object_type="case",
        object_id=case.reference,
        purpose=row.purpose,
        rule=f"form:{form_id}",
    )
    db().commit()
    return render_template(
        "fiches/read.html",
        form_id=form_id,
        case=case,
        sender=_sender_label(row),
        received=row.created_at,
        purpose=row.purpose,
        script=_script_context()
        | {
            "form": form_id,
            "case": case.reference,
            "sender-owner": sender_owner,
            "sender-org": sender_org,
            "devices": ",".join(keys),
            "labels": json.dumps(labels, ensure_ascii=False),
            "dates": ",".join(sorted(f for f in labels if is_date_field(f))),
        },
    )
