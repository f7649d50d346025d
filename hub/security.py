"""Request-level security: default deny, session checks, idle timeout, headers with CSP nonces."""

from __future__ import annotations

import hmac
import secrets
import unicodedata
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from flask import (
    Flask,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload
from werkzeug.exceptions import Forbidden

from charter.vocabulary import (
    ORG_KIND_LABELS_EN,
    ORG_KIND_LABELS_FR,
    ROLE_LABELS_EN,
    ROLE_LABELS_FR,
    OrgKind,
    Role,
)
from hub.action_labels import action_label
from hub.assets import import_map, static_integrity
from hub.extensions import login_manager
from hub.forms import form_refused
from hub.i18n import page_is_english
from hub.models import User
from hub.state import db, now, state

F = TypeVar("F", bound=Callable[..., Any])

# Endpoints reachable without a session. Everything else needs a logged-in user (default deny);
# the API blueprint authenticates with bearer tokens in its own hook.
PUBLIC_ENDPOINTS = frozenset(
    {
        "auth.login",
        "auth.activate",
        "main.healthz",
        "main.set_language",
        "static",
    }
)


# Pages a link from another site may open directly: they show no personal data.
CROSS_SITE_LANDINGS = frozenset({"static", "main.index", "main.healthz", "auth.login"})


def load_user(identity: str) -> User | None:
    """Flask-Login loader: the session identity must carry the user's current nonce."""
    public_id, _sep, nonce = identity.partition(":")
    if not public_id or not nonce:
        return None
    # One statement: every page loads the person, their organisation and roles.
    user = (
        db()
        .scalars(
            select(User)
            .options(joinedload(User.organisation), joinedload(User.role_rows))
            .where(User.public_id == public_id)
        )
        .unique()
        .one_or_none()
    )
    if user is None or not hmac.compare_digest(user.session_nonce, nonce):
        return None
    if not user.is_active or not user.mfa_enrolled:
        return None
    return user


MAX_NEXT = 2048


def safe_next(target: str | None) -> str | None:
    """A local path built from ``target`` (no open redirect, no header injection), or ``None``.

    Only what was validated is returned: the path and query rebuilt from the parsed URL, never
    the raw string. Any control character (CR, LF, NUL, DEL, C1…) refuses the whole target —
    browsers and proxies disagree on how to read them.
    """
    if not target or len(target) > MAX_NEXT:
        return None
    if any(unicodedata.category(c)[0] == "C" for c in target):
        return None
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    rebuilt = urlunsplit(("", "", parts.path, parts.query, ""))
    if not rebuilt.startswith("/") or rebuilt.startswith("//"):
        return None
    return rebuilt


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, (int, float)):
        return None
    return datetime.fromtimestamp(value, tz=now().tzinfo)


def start_session(user: User) -> None:
    """Begin a fresh session for ``user``: nothing from the anonymous session carries over."""
    lang = session.get("lang")
    session.clear()

    login_user(user, remember=False)
    session["sid"] = secrets.token_urlsafe(24)  # a new session identity at every login
    stamp = now().timestamp()
    session["auth_at"] = stamp
    session["last_seen"] = stamp
    if lang:
        session["lang"] = lang


def end_session() -> None:
    """Log out of this browser and forget everything in the session."""
    lang = session.get("lang")
    logout_user()
    session.clear()
    if lang:
        session["lang"] = lang


def mark_fresh() -> None:
    """Record a successful re-authentication for sensitive actions."""
    session["auth_at"] = now().timestamp()


def is_fresh() -> bool:
    """Whether the last password+TOTP check is recent enough for a sensitive action."""
    auth_at = _timestamp(session.get("auth_at"))
    if auth_at is None:
        return False
    return now() - auth_at <= timedelta(minutes=state().config.fresh_login_minutes)


def fresh_login_required(view: F) -> F:
    """Sensitive actions ask for password and code again when the last check is old."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not is_fresh():
            flash(_("Pour cette action, confirmez votre identité."), "info")
            return redirect(url_for("auth.reauthenticate", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def role_required(*roles: Role) -> Callable[[F], F]:
    """Only users holding one of ``roles`` may use the view (403 otherwise)."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated or not any(
                current_user.has_role(r) for r in roles
            ):
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


class CrossSiteRefused(Forbidden):
    """A form posted from another site (``Sec-Fetch-Site``): refused, and counted like an
    anonymous refusal even when a session cookie came with it — the person did not send it."""


def _before_request() -> Any:
    g.csp_nonce = secrets.token_urlsafe(18)
    endpoint = request.endpoint or ""
    if endpoint.startswith("api."):
        return None
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.headers.get(
        "Sec-Fetch-Site", "same-origin"
    ) not in ("same-origin", "none"):
        # Browsers say where a request comes from even when no Referer is sent: a form posted
        # from another site is refused before any CSRF token is even considered.
        raise CrossSiteRefused()
    if current_user.is_authenticated:
        last_seen = _timestamp(session.get("last_seen"))
        idle = timedelta(minutes=state().config.session_idle_minutes)
        if last_seen is None or now() - last_seen > idle:
            end_session()
            if endpoint.startswith("echange."):
                abort(401)  # the page's script says so and offers to log in again
            flash(_("Votre session a expiré après une période d'inactivité."), "info")
            return redirect(url_for("auth.login"))
        session["last_seen"] = now().timestamp()
        if (
            request.method in ("GET", "HEAD")
            and request.headers.get("Sec-Fetch-Site", "none") not in ("same-origin", "none")
            and endpoint not in CROSS_SITE_LANDINGS
        ):
            # A link on another site must not make this person's browser read (and record, in
            # their name, for a purpose the other site chose) a page of personal data: the
            # session cookie is Lax, so it would be sent. They land on a plain page instead and
            # go on with a click from Maillon itself.
            return render_template(
                "cross_site.html", target=safe_next(request.full_path.rstrip("?"))
            )
        return None
    if endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return None
    if endpoint.startswith("echange."):
        abort(401)  # JSON for the page's script, not a redirect it would follow
    return redirect(url_for("auth.login", next=safe_next(request.full_path.rstrip("?"))))


def _csp(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'nonce-{nonce}' 'strict-dynamic'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
            "manifest-src 'self'",
        ]
    )


def _after_request(response: Response) -> Response:
    headers = response.headers
    headers["Content-Security-Policy"] = _csp(g.get("csp_nonce", "none"))
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
    if request.endpoint != "static":
        # Pages may hold personal data: never cached by the browser or a proxy.
        headers["Cache-Control"] = "no-store"
    if state().config.production:
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    if "request_id" in g:
        # The id the request's audit events carry: support and the DPO can match the two.
        headers["X-Request-Id"] = g.request_id
    return response


def role_label(role: str) -> str:
    """The label of a role in the page's language."""
    return (ROLE_LABELS_EN if page_is_english() else ROLE_LABELS_FR)[Role(role)]


def org_kind_label(kind: str) -> str:
    """The label of an organisation kind in the page's language."""
    return (ORG_KIND_LABELS_EN if page_is_english() else ORG_KIND_LABELS_FR)[OrgKind(kind)]


def init_security(app: Flask) -> None:
    """Wire the loader and the request hooks into ``app``."""
    login_manager.user_loader(load_user)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = None  # our nonce + idle timeout replace it
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.jinja_env.globals["csp_nonce"] = lambda: g.get("csp_nonce", "")
    app.jinja_env.globals["get_locale"] = get_locale
    app.jinja_env.globals["static_integrity"] = static_integrity
    app.jinja_env.globals["import_map"] = import_map
    app.jinja_env.globals["role_label"] = role_label
    app.jinja_env.globals["org_kind_label"] = org_kind_label
    app.jinja_env.globals["action_label"] = action_label
    app.jinja_env.globals["form_refused"] = form_refused
