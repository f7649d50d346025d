"""HTTP errors mapped in one place: French pages for people, JSON with a stable code for the API."""

from __future__ import annotations

import traceback
from typing import Any

from flask import Flask, Response, current_app, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from audit.events import Action
from consent import ConsentError, ErrorKind
from hub.i18n import N_
from hub.recording import AuditUnavailable, request_id
from hub.refusals import Throttled, record_refused
from hub.security import CrossSiteRefused

# Stable API codes and French messages per HTTP status.
STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", N_("La demande est mal formée.")),
    401: ("unauthorized", N_("Authentification requise.")),
    403: ("forbidden", N_("Vous n'avez pas accès à cette page ou à cette donnée.")),
    404: ("not_found", N_("Cette page n'existe pas ou plus.")),
    405: ("method_not_allowed", N_("Cette action n'est pas permise ici.")),
    413: ("too_large", N_("L'envoi est trop volumineux.")),
    429: ("rate_limited", N_("Trop de tentatives. Patientez quelques minutes avant de réessayer.")),
    500: (
        "internal_error",
        N_("Une erreur interne est survenue. L'équipe technique est prévenue."),
    ),
    503: ("unavailable", N_("Le service est momentanément indisponible. Réessayez plus tard.")),
}

TITLES: dict[int, str] = {
    400: N_("Demande incorrecte"),
    401: N_("Authentification requise"),
    403: N_("Accès refusé"),
    404: N_("Page introuvable"),
    405: N_("Action non permise"),
    413: N_("Envoi trop volumineux"),
    429: N_("Trop de tentatives"),
    500: N_("Erreur interne"),
    503: N_("Service indisponible"),
}


class ApiError(Exception):
    """An API refusal with a stable code and a French message.

    ``details``: more JSON for the caller to act on (e.g. each refused field with its article).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        **headers: str,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers


def wants_json() -> bool:
    """API paths answer JSON; pages answer HTML."""
    return request.path.startswith(("/api/", "/echange/")) or request.path == "/healthz"


def api_error_response(
    status: int, code: str, message: str, *, details: dict[str, Any] | None = None, **headers: str
) -> Response:
    """The one JSON error shape of the API: ``{"error": code, "message": French text}``, plus
    the ``details`` of the refusal when there are any."""
    response = jsonify({"error": code, "message": message, **(details or {})})
    response.status_code = status
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _page(status: int, message: str | None = None) -> tuple[str, int]:
    code_msg = STATUS_CODES.get(status, STATUS_CODES[500])
    title = TITLES.get(status, TITLES[500])
    return (
        render_template(
            "errors/error.html", status=status, title=_(title), message=message or _(code_msg[1])
        ),
        status,
    )


# Refusals the DPO must see: forbidden pages, rate limiting, forged or stale forms.
_RECORDED_REFUSALS = {403: "forbidden", 429: "rate_limited"}


def _record_refusal(purpose: str, *, counted: bool = False) -> int | None:
    """Record a refusal; the status to answer instead, if any: 503 when it cannot be recorded
    (nor counted), 429 when a client is past its budget of refusals. ``counted``: a request
    the person cannot have sent (forged or cross-site form), counted like an anonymous one."""
    try:
        record_refused(
            Action.ACCESS_REFUSED,
            object_type="page" if request.endpoint else "",
            object_id=request.endpoint or "",
            purpose=purpose,
            counted=counted,
        )
    except AuditUnavailable:
        return 503
    except Throttled:
        return 429
    return None


def _handle_http(error: HTTPException) -> Any:
    status = error.code or 500
    if isinstance(error, CrossSiteRefused):
        status = _record_refusal("cross_site", counted=True) or status
    elif status in _RECORDED_REFUSALS and not isinstance(error, Throttled):
        # A throttled refusal was counted where it was raised.
        status = _record_refusal(_RECORDED_REFUSALS[status]) or status
    code, message = STATUS_CODES.get(status, (f"http_{status}", N_("Erreur.")))
    # Rate limits count per minute: say when to try again.
    retry = {"Retry-After": "60"} if status == 429 else {}
    if wants_json():
        response = api_error_response(status, code, _(message))
        response.headers.update(retry)
        return response
    body, status = _page(status)
    return body, status, retry


def _handle_csrf(error: CSRFError) -> Any:
    override = _record_refusal("csrf", counted=True)
    if override is not None:
        return _handle_http(ServiceUnavailable() if override == 503 else Throttled())
    message = _("Le formulaire a expiré ou n'a pas été envoyé depuis Maillon. Rechargez la page.")
    if wants_json():
        return api_error_response(400, "csrf_failed", message)
    return _page(400, message)


def _handle_api(error: ApiError) -> Response:
    return api_error_response(
        error.status, error.code, error.message, details=error.details, **error.headers
    )


# Consent refusals by family: bad input, a state that forbids it, nothing there, no right.
CONSENT_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 422,
    ErrorKind.CONFLICT: 409,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.FORBIDDEN: 403,
}


def consent_error(error: ConsentError) -> ApiError:
    """The API error of a consent refusal: its family's status, its stable code, French text."""
    return ApiError(CONSENT_STATUS[error.kind], error.code, _(error.message, **error.params))


def _handle_consent(error: ConsentError) -> Any:
    status = CONSENT_STATUS[error.kind]
    message = _(error.message, **error.params)
    if wants_json():
        return api_error_response(status, error.code, message)
    return _page(status if status != 422 else 400, message)


def log_unexpected(error: BaseException) -> None:
    """Log an unexpected exception for the operators: request id, method, route, exception
    class and where it was raised (file, line, function) — never its message nor any value,
    which may carry personal data (SQL parameters, form fields)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in frames[::-1])
    current_app.logger.error(
        "unexpected error request_id=%s method=%s endpoint=%s exception=%s at %s",
        request_id(),
        request.method,
        request.endpoint or "-",
        type(error).__qualname__,
        where or "-",
    )


def _handle_unexpected(error: Exception) -> Any:
    # The person sees a plain French page; the operators get a log line without personal data
    # (Flask logs nothing itself once a handler takes the exception).
    log_unexpected(error)
    if wants_json():
        return api_error_response(500, "internal_error", _(STATUS_CODES[500][1]))
    return _page(500)


def init_errors(app: Flask) -> None:
    """Register the handlers on ``app``."""
    app.register_error_handler(CSRFError, _handle_csrf)
    app.register_error_handler(ApiError, _handle_api)
    app.register_error_handler(ConsentError, _handle_consent)
    app.register_error_handler(HTTPException, _handle_http)
    if not app.testing:
        app.register_error_handler(Exception, _handle_unexpected)
