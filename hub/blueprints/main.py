"""Home, account page, language switch and health check."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user
from kombu import Connection
from sqlalchemy import select, text

from audit.events import Action
from charter.vocabulary import Role
from consent import local_day
from hub import anomaly_review, dpo_reports, liaison
from hub.blueprints.cases import STATUS_LABELS
from hub.forms import ConfirmForm
from hub.home import SECTION_LIMIT, case_refs, home_of
from hub.i18n import LANGUAGES
from hub.models import Notification
from hub.notifications import KINDS, mark_read, unread_count
from hub.pagination import page_number, paginate
from hub.recording import record
from hub.security import safe_next
from hub.state import accounts, cases, db, now, state

# The roles that take part in cases (and so may receive liaison forms).
CASE_ROLES = frozenset({Role.AGENT, Role.REFERENT, Role.GROUP_MEMBER, Role.COORDINATOR})

bp = Blueprint("main", __name__)


@bp.route("/")
def index() -> Any:
    """The person's home: what needs their attention, per role, each item linking to where
    it is done. What it reads is recorded as the pages it summarises record it."""
    hub_state = state()
    service = cases()
    home = home_of(service, current_user, page_number(request.args.get("page")))
    if home.cases is not None or home.groups:
        record(Action.CASE_LIST, object_type="page", object_id="main.index")
    forms_unread = None
    if current_user.roles & CASE_ROLES:
        forms_unread = liaison.relay(db(), hub_state, current_user).unread(
            liaison.user_owner(current_user)
        )
    dpo: dict[str, Any] = {}
    if current_user.has_role(Role.DPO):
        record(Action.AUDIT_READ, object_type="audit_log", purpose="integrity")
        # The exceptions listed are a consent read, recorded as the consent page records it.
        record(Action.AUDIT_READ, object_type="page", object_id="main.index", purpose="consent")
        exceptions = [e for e in service.consents.exceptions() if e.current]
        dpo = {
            "integrity": dpo_reports.check_integrity(
                hub_state.audit_log, hub_state.audit_signer.verifier()
            ),
            "unreviewed": anomaly_review.unreviewed_count(db()),
            "exceptions": exceptions[:SECTION_LIMIT],
            "exceptions_total": len(exceptions),
            "exceptions_new": unread_count(db(), current_user, kind="consent_exception"),
            "exception_refs": case_refs(db(), {e.case_id for e in exceptions}),
        }
    if current_user.has_role(Role.ADMIN):
        record(Action.ADMIN_READ, object_type="page", object_id="main.index")
    return render_template(
        "index.html",
        home=home,
        forms_unread=forms_unread,
        dpo=dpo,
        status_labels=STATUS_LABELS,
        kinds=KINDS,
        today=local_day(now()),
    )


@bp.route("/compte")
def account() -> Any:
    """The person's own account: organisation, roles, recovery codes left."""
    remaining = accounts().remaining_recovery_codes(current_user)
    return render_template("account.html", remaining_codes=remaining)


@bp.route("/notifications", methods=["GET", "POST"])
def notifications() -> Any:
    """The person's notifications, newest first; marking them read. They hold no personal
    data (a kind and a pseudonymous case reference), so reading them is not recorded."""
    form = ConfirmForm()
    if request.method == "POST":
        if form.validate_on_submit():
            mark_read(db(), current_user, None, now())
            db().commit()
        return redirect(url_for("main.notifications"))
    page = paginate(
        db(),
        select(Notification)
        .where(Notification.user_id == current_user.id)
        .order_by(Notification.created_at.desc(), Notification.id.desc()),
        page_number(request.args.get("page")),
    )
    return render_template("notifications.html", page=page, kinds=KINDS, form=form)


@bp.app_context_processor
def _unread() -> dict[str, Any]:
    """The header's unread badge (one small count query per page of a logged-in person)."""
    if not current_user or not current_user.is_authenticated:
        return {"unread_notifications": 0}
    return {"unread_notifications": unread_count(db(), current_user)}


@bp.route("/langue", methods=["POST"])
def set_language() -> Any:
    """Switch between French and English (kept in the session)."""
    lang = request.form.get("lang", "fr")
    if lang in LANGUAGES:
        session["lang"] = lang
    return redirect(safe_next(request.form.get("next")) or url_for("main.index"))


def _check_database() -> bool:
    try:
        db().execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def _check_audit() -> bool:
    try:
        state().audit_log.size()  # reads the log's own tables, not just the connection
    except Exception:
        return False
    return True


def _check_broker() -> bool:
    try:
        with Connection(state().config.broker_url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        return False
    return True


@bp.route("/healthz")
def healthz() -> Any:
    """Database, audit store and broker reachability; 503 when any is down. No personal data.

    ``audit_space`` warns (``low``, status ``warning``, still 200: the hub works) when the audit
    store's volume runs short: the log is fail-closed, so once it is full every audited request
    answers 503. ``unknown`` when the hub cannot see it (a PostgreSQL server).
    """
    hub_state = state()
    checks = {"database": _check_database(), "audit": _check_audit(), "broker": _check_broker()}
    healthy = all(checks.values())
    space, _room = hub_state.audit_space()
    status = "degraded" if not healthy else "warning" if space == "low" else "ok"
    body = {
        "status": status,
        "checks": {k: "ok" if v else "down" for k, v in checks.items()} | {"audit_space": space},
    }
    response = jsonify(body)
    response.status_code = 200 if healthy else 503
    return response
