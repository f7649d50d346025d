"""Flask extensions, created unbound and attached in :func:`hub.create_app`."""

from __future__ import annotations

from flask import request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect


def client_ip() -> str:
    """The client address (ProxyFix has already applied the trusted proxy count)."""
    return request.remote_addr or "0.0.0.0"  # noqa: S104 - a key, not a bind address


login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
limiter = Limiter(key_func=client_ip, default_limits=[], headers_enabled=True)
