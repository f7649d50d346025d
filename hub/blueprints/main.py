"""Home, account page, language switch and health check."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user
from kombu import Connection
from sqlalchemy import text

from hub.i18n import LANGUAGES
from hub.security import safe_next
from hub.state import accounts, db, state

bp = Blueprint("main", __name__)


@bp.route("/")
def index() -> Any:
    """The person's start page."""
    return render_template("index.html")


@bp.route("/compte")
def account() -> Any:
    """The person's own account: organisation, roles, recovery codes left."""
    remaining = accounts().remaining_recovery_codes(current_user)
    return render_template("account.html", remaining_codes=remaining)


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
    """Database, audit store and broker reachability; 503 when any is down. No personal data."""
    checks = {"database": _check_database(), "audit": _check_audit(), "broker": _check_broker()}
    healthy = all(checks.values())
    body = {
        "status": "ok" if healthy else "degraded",
        "checks": {k: "ok" if v else "down" for k, v in checks.items()},
    }
    response = jsonify(body)
    response.status_code = 200 if healthy else 503
    return response
