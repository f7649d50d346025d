"""The OpenAPI 3.1 description of ``/api/v1``, served at ``/api/v1/openapi.json``.

Built in Python rather than shipped as a JSON file: the enumerations it publishes (grantors,
organisation kinds, roles, reason codes, the token endpoint's assertion type and size limit)
are read from the constants the code itself checks against, so the description cannot drift
from them. ``tests/integration/test_openapi.py`` keeps the paths and methods in step with the
routes, and fuzzes a live hub against the description (schemathesis).

Every error answers the one shape of :func:`hub.errors.api_error_response`: ``{"error": code,
"message": French text}`` plus the details of the refusal (``refused``…); each response lists
the stable codes it can carry.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from importlib import metadata
from typing import Any

from charter import ReasonCode
from charter.vocabulary import OrgKind, Role
from consent import ConsentStatus, EvidenceKind, Grantor
from consent.receipt import LANGUAGES, RECEIPT_VERSION
from hub.api_auth import ALGORITHM, ASSERTION_TYPE, CLIENT_ALGORITHMS, MAX_TOKEN_BYTES
from hub.models import CASE_STATUSES

OPENAPI_VERSION = "3.1.0"
PATH = "/api/v1/openapi.json"

# The case-reference alphabet of hub.cases (Crockford's base 32: no I, L, O, U).
_REFERENCE = "^C-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$"
_RECEIPT_REFERENCE = "^R-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$"
# consent.enforce.summarise: the consent situation of a case on one day.
_CONSENT_SITUATIONS = ["absent", "incomplet", "en_vigueur", "retire", "expire"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    """A closed JSON object: every property required, nothing else.

    Closed on purpose: an answer that grows a field (a date of birth, a name…) fails the fuzz
    test until the description, and so the partners, are told.
    """
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_STRING = {"type": "string"}
_DAY = {"type": "string", "format": "date"}
_INSTANT = {"type": "string", "format": "date-time"}
_STRINGS = {"type": "array", "items": _STRING}


def _error(description: str, *codes: str, schema: str = "Error") -> dict[str, Any]:
    """An error response whose ``error`` is one of ``codes`` (stable identifiers)."""
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "allOf": [
                        _ref(schema),
                        {"properties": {"error": {"enum": list(codes)}}},
                    ]
                }
            }
        },
    }


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
    return {"required": True, "content": {media_type: {"schema": schema}}}


# -- responses shared by the operations ---------------------------------------------------------

_UNAUTHORIZED = {
    **_error(
        "No bearer token, or one that is invalid, expired, or whose client or organisation is "
        "disabled.",
        "missing_token",
        "invalid_token",
    ),
    "headers": {
        "WWW-Authenticate": {
            "description": 'Bearer error="<code>" (RFC 6750).',
            "schema": _STRING,
        }
    },
}
_UNAVAILABLE = _error(
    "The audit log cannot record the access, or the case's consent kept changing during the "
    "read: nothing is served, nothing is stored (fail closed). Try again later.",
    "unavailable",
)
_TOO_LARGE = _error("The body exceeds the hub's size limit (2 MiB).", "too_large")
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait.",
        "schema": {"type": "integer"},
    }
}
# Refusals of requests without a valid token are throttled per address (they would otherwise
# be free to send and each one recorded): past the budget, 429 instead of 401.
_THROTTLED = {
    **_error(
        "Too many requests without a valid token were refused from this address this minute.",
        "rate_limited",
    ),
    "headers": _RETRY_AFTER,
}
# An unknown reference, a case not followed and a group whose charter the organisation did not
# sign answer alike: the answer does not tell which references exist (the audit log keeps the
# precise rule).
_CASE_REFUSED = _error(
    "No such case, or the calling organisation takes no part in it (need-to-know).",
    "not_involved",
)
_CONSENT_UNKNOWN = _error(
    "No such consent on this case (``consent_not_found``), or an id that is no 32-bit number: no "
    "such route (``not_found``).",
    "consent_not_found",
    "not_found",
)


def _bearer(responses: dict[str, Any]) -> dict[str, Any]:
    """``responses`` plus what every token-protected operation may answer."""
    return {**responses, "401": _UNAUTHORIZED, "429": _THROTTLED, "503": _UNAVAILABLE}


def _reference_parameter() -> dict[str, Any]:
    return {
        "name": "reference",
        "in": "path",
        "required": True,
        "description": "The case's pseudonymous reference.",
        "schema": {"type": "string", "pattern": _REFERENCE, "examples": ["C-7K3Q-X9M2"]},
    }


def _consent_parameter() -> dict[str, Any]:
    return {
        "name": "consent_id",
        "in": "path",
        "required": True,
        "description": "A consent of the case (``id`` in the consent situation).",
        "schema": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    }


# -- schemas ---------------------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    grantors = _values(Grantor)
    charter_ref = _object({"id": _STRING, "version": {"type": "integer", "minimum": 1}})
    refused_field = _object(
        {"field": _STRING, "code": {"enum": _values(ReasonCode)}, "article": _STRING}
    )
    labelled_kind = _object({"id": {"enum": _values(OrgKind)}, "label": _STRING})
    return {
        "Error": {
            "type": "object",
            "description": "Every API error: a stable code, a French message, and the details "
            "of the refusal when there are any (e.g. ``refused``).",
            "properties": {"error": _STRING, "message": _STRING},
            "required": ["error", "message"],
        },
        "CharterRefusal": {
            "allOf": [_ref("Error")],
            "properties": {"refused": {"type": "array", "items": refused_field}},
            "required": ["refused"],
        },
        "Token": _object(
            {
                "access_token": {
                    "type": "string",
                    "description": f"A JWT (``typ`` ``at+jwt``, RFC 9068) signed {ALGORITHM}.",
                },
                "token_type": {"const": "Bearer"},
                "expires_in": {"type": "integer", "minimum": 1},
            }
        ),
        "TokenRequest": {
            **_object(
                {
                    "grant_type": {"const": "client_credentials"},
                    "client_assertion_type": {"const": ASSERTION_TYPE},
                    "client_assertion": {
                        "type": "string",
                        "maxLength": MAX_TOKEN_BYTES,
                        "description": "A compact JWS signed with the client's registered key, "
                        f"in an algorithm its type accepts ({', '.join(sorted(CLIENT_ALGORITHMS))}"
                        "): ``iss`` = ``sub`` = client_id, ``aud`` = this endpoint's URL, "
                        "``exp`` at most 5 minutes ahead, ``jti`` unique (8–128 characters).",
                    },
                }
            ),
            # A form may carry more (RFC 6749 §3.2): the hub ignores it.
            "additionalProperties": True,
        },
        "Whoami": _object(
            {
                "client_id": _STRING,
                "organisation": _object({"id": _STRING, "kind": {"enum": _values(OrgKind)}}),
            }
        ),
        "WhatIfRequest": {
            "type": "object",
            "properties": {
                "group": {"type": "string", "description": "The operational group's id."},
                "purpose": {"type": "string", "description": "A purpose of the charter."},
                "recipient": {
                    "type": "object",
                    "properties": {
                        "roles": {"type": "array", "items": {"enum": _values(Role)}},
                        "org_kind": {"enum": _values(OrgKind)},
                        "group_member": {"type": "boolean", "default": False},
                    },
                    "required": ["org_kind"],
                },
                "meeting_day": {"type": "boolean", "default": True},
            },
            "required": ["group", "purpose", "recipient"],
        },
        "WhatIf": _object(
            {
                "charter": _object(
                    {"id": _STRING, "version": {"type": "integer"}, "digest": _STRING}
                ),
                "fields": {
                    "type": "array",
                    "items": _object(
                        {
                            "field": _STRING,
                            "passes": {"type": "boolean"},
                            "publish": _object(
                                {
                                    "allowed": {"type": "boolean"},
                                    "article": _STRING,
                                    "reason": _STRING,
                                }
                            ),
                            "view": _object(
                                {
                                    "allowed": {"type": "boolean"},
                                    "article": _STRING,
                                    "reason": _STRING,
                                }
                            ),
                        }
                    ),
                },
            }
        ),
        "Case": _object(
            {
                "reference": {"type": "string", "pattern": _REFERENCE},
                "status": {"enum": list(CASE_STATUSES)},
                "purpose": _STRING,
                "charter": charter_ref,
                "fields": {
                    "type": "array",
                    "items": _object(
                        {
                            "field": _STRING,
                            "value": {"type": ["string", "null"]},
                            "article": _STRING,
                        }
                    ),
                },
                "refused": {"type": "array", "items": refused_field},
            }
        ),
        "CaseFields": {
            "type": "object",
            "properties": {
                "fields": {
                    "type": "object",
                    "description": "Catalogue field id → value (dates ``AAAA-MM-JJ``, one "
                    "line of at most 200 characters).",
                    "additionalProperties": {"type": "string"},
                }
            },
            "required": ["fields"],
        },
        "Stored": _object(
            {
                "reference": {"type": "string", "pattern": _REFERENCE},
                "stored": _STRINGS,
                "charter": charter_ref,
            }
        ),
        "Consent": _object(
            {
                "id": {"type": "integer"},
                "grantor": {"enum": grantors},
                "status": {"enum": _values(ConsentStatus)},
                "current": {"type": "boolean"},
                "purposes": _STRINGS,
                "categories": _STRINGS,
                "recipients": _object(
                    {
                        "kinds": {"type": "array", "items": {"enum": _values(OrgKind)}},
                        "organisations": _STRINGS,
                        "excluded_kinds": {"type": "array", "items": {"enum": _values(OrgKind)}},
                        "excluded_organisations": _STRINGS,
                    }
                ),
                "valid_from": _DAY,
                "valid_until": _DAY,
                "withdrawn_at": {"type": ["string", "null"], "format": "date-time"},
            }
        ),
        "ConsentSituation": _object(
            {
                "reference": {"type": "string", "pattern": _REFERENCE},
                "status": {"enum": _CONSENT_SITUATIONS},
                "minor": {"type": "boolean"},
                "age": {
                    "type": ["integer", "null"],
                    "description": "Only where the charter shows the date of birth to the "
                    "calling organisation; the date itself is never sent.",
                },
                "parents_required": {"type": "boolean"},
                "missing": {"type": "array", "items": {"enum": grantors}},
                "exceptions": {"type": "array", "items": {"enum": grantors}},
                "expires_on": {"type": ["string", "null"], "format": "date"},
                "consents": {"type": "array", "items": _ref("Consent")},
                "charter": charter_ref,
            }
        ),
        "WithdrawalRequest": {
            "type": "object",
            "properties": {"requested_by": {"enum": grantors}},
            "required": ["requested_by"],
        },
        "Withdrawn": _object(
            {"reference": {"type": "string", "pattern": _REFERENCE}, "consent": _ref("Consent")}
        ),
        "Receipt": _receipt_schema(grantors, labelled_kind),
    }


def _receipt_schema(grantors: list[str], labelled_kind: dict[str, Any]) -> dict[str, Any]:
    """consent.receipt.receipt_body, plus the SHA-256 of the stored receipt."""
    kinds = {"type": "array", "items": labelled_kind}
    return _object(
        {
            "version": {"const": RECEIPT_VERSION},
            "reference": {"type": "string", "pattern": _RECEIPT_REFERENCE},
            "language": {"enum": list(LANGUAGES)},
            "jurisdiction": {"const": "FR"},
            "issued_at": _INSTANT,
            "subject": _object({"case_reference": {"type": "string", "pattern": _REFERENCE}}),
            "grantor": _object({"id": {"enum": grantors}, "label": _STRING}),
            "controller": _object({"name": _STRING, "contact": _STRING}),
            "charter": _object({"id": _STRING, "version": {"type": "integer"}}),
            "status": _object(
                {
                    "id": {"enum": _values(ConsentStatus)},
                    "label": _STRING,
                    "withdrawn_at": {"type": ["string", "null"], "format": "date-time"},
                }
            ),
            "purposes": {"type": "array", "items": _object({"id": _STRING, "label": _STRING})},
            "recipients": _object(
                {
                    "kinds": kinds,
                    "organisations": _STRINGS,
                    "excluded_kinds": kinds,
                    "excluded_organisations": _STRINGS,
                }
            ),
            "categories": {
                "type": "array",
                "items": _object(
                    {"id": _STRING, "label": _STRING, "fields": _STRINGS, "retention": _STRINGS}
                ),
            },
            "validity": _object({"from": _DAY, "until": _DAY}),
            "evidence": {
                "oneOf": [
                    {"type": "null"},
                    _object(
                        {
                            "kind": {"enum": _values(EvidenceKind)},
                            "label": _STRING,
                            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        }
                    ),
                ]
            },
            "legal_basis": _STRING,
            "withdrawal": _STRING,
            "access": _STRING,
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        }
    )


# -- operations ------------------------------------------------------------------------------


def _paths() -> dict[str, Any]:
    case = "/api/v1/dossiers/{reference}"
    consent = f"{case}/consentement/{{consent_id}}"
    return {
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "describe",
                "summary": "This description (no token needed, nothing recorded).",
                "security": [],
                "responses": {
                    "200": _json(
                        "The OpenAPI 3.1 description of /api/v1.",
                        {
                            "type": "object",
                            "properties": {"openapi": {"const": OPENAPI_VERSION}},
                            "required": ["openapi", "info", "paths"],
                        },
                    )
                },
            }
        },
        "/api/v1/token": {
            "post": {
                "operationId": "token",
                "summary": "An access token for a client assertion (RFC 7523 private_key_jwt).",
                "description": "Client credentials grant authenticated by a JWT assertion "
                "signed with the client's registered key. Recorded as "
                "``api.token.issue`` (or refused). Limited to 30 calls a minute per address.",
                "security": [],
                "requestBody": _body(_ref("TokenRequest"), "application/x-www-form-urlencoded"),
                "responses": {
                    "200": _json("A short-lived bearer access token.", _ref("Token")),
                    "400": _error(
                        "Assertion missing or of another type, or a grant type other than "
                        "client_credentials.",
                        "invalid_request",
                        "unsupported_grant_type",
                    ),
                    "401": _error(
                        "The assertion was refused (no detail, on purpose), or replayed.",
                        "invalid_client",
                    ),
                    "413": _TOO_LARGE,
                    "429": {
                        **_error(
                            "Too many token requests, or refused ones, from this address.",
                            "rate_limited",
                        ),
                        "headers": _RETRY_AFTER,
                    },
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/v1/moi": {
            "get": {
                "operationId": "whoami",
                "summary": "The calling client and its organisation (recorded as api.read).",
                "responses": _bearer({"200": _json("The client.", _ref("Whoami"))}),
            }
        },
        "/api/v1/charte/simulation": {
            "post": {
                "operationId": "charter_what_if",
                "summary": "What-if of the charter with the calling organisation as sender.",
                "description": "For each catalogue field: could the calling organisation "
                "publish it, and would the recipient described see it, for the purpose. The "
                "charter is the public rulebook: nothing is recorded.",
                "requestBody": _body(_ref("WhatIfRequest")),
                "responses": _bearer(
                    {
                        "200": _json("The decision for each field.", _ref("WhatIf")),
                        "400": _error(
                            "The body is not a JSON object, misses a field or holds an unknown "
                            "role or organisation kind, or the purpose is not the charter's.",
                            "invalid_json",
                            "invalid_request",
                            "unknown_purpose",
                        ),
                        "404": _error("Unknown group.", "not_found"),
                        "409": _error(
                            "The calling organisation signed no version of the group's charter.",
                            "no_charter_signed",
                        ),
                        "413": _TOO_LARGE,
                    }
                ),
            }
        },
        case: {
            "parameters": [_reference_parameter()],
            "get": {
                "operationId": "case_view",
                "summary": "A case as the charter lets the calling organisation see it.",
                "description": "Only while the organisation follows the case, for one purpose "
                "that applies at the case's step, and only the fields the charter and the young "
                "person's consent grant; the others are listed in ``refused`` with the "
                "article, never with a value. Recorded as ``case.view``.",
                "parameters": [
                    {
                        "name": "finalite",
                        "in": "query",
                        "required": False,
                        "description": "A purpose of the charter that applies at the case's "
                        "step (default: the one that shows the organisation the most).",
                        "schema": {"type": "string", "examples": ["suivi_parcours"]},
                    }
                ],
                "responses": _bearer(
                    {
                        "200": _json("The case.", _ref("Case")),
                        "400": _error("Not a purpose of the charter.", "unknown_purpose"),
                        "403": _error(
                            "No such case, or the calling organisation takes no part in it "
                            "(need-to-know); or the purpose does not apply at the step the case "
                            "has reached.",
                            "not_involved",
                            "purpose_not_for_step",
                        ),
                    }
                ),
            },
        },
        f"{case}/informations": {
            "parameters": [_reference_parameter()],
            "post": {
                "operationId": "case_publish",
                "summary": "Record hub-tier values on a case the organisation follows.",
                "description": "All or nothing: each field goes through the charter's publish "
                "decision and the consent; one refusal and nothing is stored. Recorded as "
                "``case.update``.",
                "requestBody": _body(_ref("CaseFields")),
                "responses": _bearer(
                    {
                        "200": _json("What was stored.", _ref("Stored")),
                        "400": _error(
                            'The body is not {"fields": {"<field id>": "<value>"}}.',
                            "invalid_request",
                        ),
                        "403": _CASE_REFUSED,
                        "413": _TOO_LARGE,
                        "422": _error(
                            "Refused by the charter, the consent or the value's format: nothing "
                            "is stored; ``refused`` lists each field refused by the charter "
                            "with its code and article.",
                            "charter_refused",
                            schema="CharterRefusal",
                        ),
                    }
                ),
            },
        },
        f"{case}/consentement": {
            "parameters": [_reference_parameter()],
            "get": {
                "operationId": "consent_status",
                "summary": "The case's consent situation and each accord's scope.",
                "description": "Recorded as ``consent.read``. The date of birth is never sent.",
                "responses": _bearer(
                    {
                        "200": _json("The consent situation.", _ref("ConsentSituation")),
                        "403": _CASE_REFUSED,
                    }
                ),
            },
        },
        f"{consent}/retrait": {
            "parameters": [_reference_parameter(), _consent_parameter()],
            "post": {
                "operationId": "consent_withdraw",
                "summary": "Record a withdrawal the grantor asked for at the partner's desk.",
                "description": "Effective at once; the partners concerned are told. Recorded as "
                "``consent.withdraw``.",
                "requestBody": _body(_ref("WithdrawalRequest")),
                "responses": _bearer(
                    {
                        "200": _json("The consent, withdrawn.", _ref("Withdrawn")),
                        "400": _error(
                            "``requested_by`` is missing or not a grantor.", "invalid_request"
                        ),
                        "403": _CASE_REFUSED,
                        "404": _CONSENT_UNKNOWN,
                        "409": _error(
                            "Withdrawn before, a refusal (nothing to withdraw), or corrected "
                            "since (withdraw the version in force).",
                            "already_withdrawn",
                            "not_given",
                            "superseded",
                        ),
                        "413": _TOO_LARGE,
                        "422": _error(
                            "Only the person who gave the accord withdraws it.",
                            "withdrawal_not_by_grantor",
                        ),
                    }
                ),
            },
        },
        f"{consent}/recu": {
            "parameters": [_reference_parameter(), _consent_parameter()],
            "post": {
                "operationId": "consent_receipt",
                "summary": "A receipt of an accord in force, as JSON.",
                "description": "Kept so the DPO finds it by its reference; recorded as "
                "``consent.receipt``.",
                "parameters": [
                    {
                        "name": "langue",
                        "in": "query",
                        "required": False,
                        "description": "``en`` for English; anything else gives French.",
                        "schema": {"enum": list(LANGUAGES), "default": "fr"},
                    }
                ],
                "responses": _bearer(
                    {
                        "201": _json("The receipt.", _ref("Receipt")),
                        "403": _CASE_REFUSED,
                        "404": _CONSENT_UNKNOWN,
                        "409": _error("The accord is not in force: no receipt.", "not_in_force"),
                    }
                ),
            },
        },
    }


def _version() -> str:
    try:
        return metadata.version("maillon")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


@functools.lru_cache(maxsize=4)
def describe(server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of ``/api/v1`` for the hub at ``server_url``.

    Cached per URL (it is a pure function of the code); callers must not mutate the result.
    """
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Maillon API",
            "version": _version(),
            "summary": "Organisation systems' access to the Maillon hub (cases, consent, charter).",
            "description": "Calls act as an agent of the client's organisation: the charter "
            "and the young person's consent decide every field, and every access is recorded "
            "in the audit log. Errors are JSON with a stable ``error`` code and a French "
            "``message``. See docs/api.md.",
            "license": {"name": "EUPL-1.2", "identifier": "EUPL-1.2"},
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from POST /api/v1/token (client "
                    "credentials, private_key_jwt assertion), valid a few minutes.",
                }
            },
            "schemas": _schemas(),
        },
    }
