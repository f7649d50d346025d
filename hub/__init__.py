"""Maillon hub: the Flask application (pages, API, CLI, Celery tasks).

``flask --app hub …`` finds :func:`create_app`.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from hub.config import Config, load_config


def audit_origin(base_url: str) -> str:
    """The name checkpoints are signed under: the hub's host and ``/audit``."""
    return base_url.split("://", 1)[-1].rstrip("/") + "/audit"


def create_app(config: Config | None = None) -> Flask:
    """Build the application for ``config`` (read from the environment when omitted)."""
    from audit.checkpoint import NoteSigner  # noqa: PLC0415
    from audit.store import AuditLog, make_audit_engine  # noqa: PLC0415
    from hub import blueprints, cli, consents, errors, liaison, security  # noqa: PLC0415
    from hub.celery_app import celery_init_app  # noqa: PLC0415
    from hub.db import make_engine, make_session_factory, utcnow  # noqa: PLC0415
    from hub.extensions import babel, csrf, limiter, login_manager  # noqa: PLC0415
    from hub.i18n import select_locale  # noqa: PLC0415
    from hub.keys import load_server_key  # noqa: PLC0415
    from hub.passwords import Passwords  # noqa: PLC0415
    from hub.state import HubState  # noqa: PLC0415
    from hub.vault import FieldVault  # noqa: PLC0415

    config = config or load_config()
    app = Flask(__name__)
    production = config.production
    app.config.update(
        SECRET_KEY=config.secret_key,
        TESTING=config.env == "testing",
        MAX_CONTENT_LENGTH=config.max_content_length,
        SESSION_COOKIE_NAME="__Host-maillon" if production else "maillon",
        SESSION_COOKIE_SECURE=production,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
        SESSION_REFRESH_EACH_REQUEST=True,
        REMEMBER_COOKIE_DURATION=0,
        WTF_CSRF_TIME_LIMIT=3600,
        # Strict mode demands a Referer on HTTPS posts, which `Referrer-Policy: no-referrer`
        # suppresses; the token plus the Sec-Fetch-Site check in hub.security protect instead.
        WTF_CSRF_SSL_STRICT=False,
        RATELIMIT_STORAGE_URI=config.ratelimit_storage_url,
        RATELIMIT_ENABLED=config.ratelimit_enabled,
        RATELIMIT_HEADERS_ENABLED=True,
        BABEL_DEFAULT_LOCALE="fr",
        BABEL_DEFAULT_TIMEZONE="Europe/Paris",
        PREFERRED_URL_SCHEME="https" if production else "http",
        JSON_SORT_KEYS=False,
    )
    if config.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=config.trusted_proxies,
            x_proto=config.trusted_proxies,
            x_host=config.trusted_proxies,
        )

    engine = make_engine(config.database_url)
    audit_engine = make_audit_engine(
        config.audit_database_url, timeout=config.audit_write_timeout_seconds
    )
    server_key = load_server_key(config.server_key_file, create=not production)
    hub_state = HubState(
        config=config,
        engine=engine,
        session_factory=make_session_factory(engine),
        audit_engine=audit_engine,
        passwords=Passwords(config.argon2),
        server_key=server_key,
        audit_log=AuditLog(
            audit_engine, clock=utcnow, write_timeout=config.audit_write_timeout_seconds
        ),
        audit_signer=NoteSigner(audit_origin(config.base_url), server_key),
        vault=FieldVault(config.data_key),
    )
    app.extensions["maillon"] = hub_state

    # Registered first: it must run before CSRF reads the body.
    app.before_request(consents.allow_evidence_uploads)
    app.before_request(liaison.allow_envelope_uploads)
    login_manager.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    babel.init_app(app, locale_selector=select_locale)
    security.init_security(app)
    errors.init_errors(app)
    blueprints.register(app)
    cli.register(app)
    celery_init_app(app)

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        from flask import g  # noqa: PLC0415

        session = g.pop("db", None)
        if session is not None:
            session.close()

    return app
