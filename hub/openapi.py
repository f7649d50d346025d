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

from audit.witness import JOURNAL_CHECKPOINT, JOURNAL_CONSISTENCY, JOURNAL_COSIGNATURES
from charter import ReasonCode
from charter.vocabulary import OrgKind, Role
from consent import ConsentStatus, EvidenceKind, Grantor
from consent.receipt import LANGUAGES, RECEIPT_VERSION
from exchange.envelope import FORMAT, MAX_ENVELOPE_BYTES, MAX_FIELDS, SENDER_FAULTS
from exchange.server.devices import MAX_DEVICES, MAX_LABEL
from exchange.server.directory import MAX_ENTRIES_PER_PAGE
from hub.api_auth import ALGORITHM, ASSERTION_TYPE, CLIENT_ALGORITHMS, MAX_TOKEN_BYTES
from hub.blueprints.liaison import MAX_INT_ARG
from hub.blueprints.witness import MAX_LINE_CHARS, MAX_NOTE_CHARS, MAX_SIZE
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
        "SignedCheckpoint": _object(
            {
                "note": {
                    "type": "string",
                    "description": "The checkpoint as a C2SP signed note (c2sp.org/"
                    "tlog-checkpoint): origin, size, base64 root, timestamp line, a blank line, "
                    "the log's signature line, then the witnesses' cosignature lines "
                    "(c2sp.org/tlog-cosignature). Verify it with the log's key: nothing in it "
                    "is to be trusted as sent.",
                }
            }
        ),
        "ConsistencyProof": _object(
            {
                "old": {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
                "new": {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
                "proof": {
                    "type": "array",
                    "description": "RFC 6962 consistency proof, base64 SHA-256 hashes (empty "
                    "when old is 0 or equals new).",
                    "items": {"type": "string", "contentEncoding": "base64"},
                },
            }
        ),
        "CosignatureRequest": _object(
            {
                "checkpoint": {
                    "type": "string",
                    "maxLength": MAX_NOTE_CHARS,
                    "description": "The signed checkpoint note, as the hub served it.",
                },
                "cosignature": {
                    "type": "string",
                    "maxLength": MAX_LINE_CHARS,
                    "description": "The witness's signature line over that checkpoint: "
                    "``— <witness key name> base64(key ID || timestamp || Ed25519 "
                    "signature)`` (c2sp.org/tlog-cosignature v1).",
                },
            }
        ),
        "CosignatureStored": _object(
            {
                "size": {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
                "witness": {"type": "string", "description": "The witness key's name."},
                "stored": {
                    "type": "boolean",
                    "description": "False when this witness's cosignature of the checkpoint "
                    "was already kept (a retry): the first one stays.",
                },
            }
        ),
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
        **_liaison_schemas(),
    }


def _liaison_schemas() -> dict[str, Any]:
    """Key directory, devices and sealed forms (docs/envelope.md)."""
    b64url = {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"}
    key_record = {
        "type": "object",
        "description": "A device's public keys (docs/envelope.md, Device keys).",
        "properties": {
            "v": {"const": 1},
            "sign": {**b64url, "description": "Ed25519 public key."},
            "kem": {
                "type": "object",
                "properties": {"suite": {"enum": ["x25519", "mlkem768-x25519"]}, "pk": b64url},
                "required": ["suite", "pk"],
            },
        },
        "required": ["v", "sign", "kem"],
    }
    device = {
        "key_id": {"type": "string", "pattern": "^dk_[A-Za-z0-9_-]+$"},
        "key": key_record,
        "label": {"type": "string", "maxLength": MAX_LABEL},
        "fingerprint": {"type": "string", "description": "The numéro de sécurité."},
        "index": {"type": "integer", "minimum": 0, "description": "Its key.add entry."},
        "revoked": {"type": "boolean"},
    }
    refusal = {
        "type": "object",
        "properties": {
            "code": _STRING,
            "field": _STRING,
            "device": _STRING,
            "article": _STRING,
            "message": _STRING,
        },
        "required": ["code", "message"],
        "additionalProperties": False,
    }
    candidate = _object(
        {
            "owner": {"type": "string", "description": "A person's or a system's public id."},
            "label": {
                "type": "string",
                "description": "Their name and their organisation's, for the sender to check.",
            },
            "organisation": _STRING,
            "fields": _STRINGS,
            "devices": _STRINGS,
            "refused": {
                "type": "array",
                "description": "Each field asked they may not receive, with the article.",
                "items": refusal,
            },
        }
    )
    return {
        "DirectoryHead": _object(
            {
                "checkpoint": {
                    "type": "string",
                    "description": "The key directory's latest signed checkpoint (C2SP signed "
                    "note, origin ``<hub host>/cles``).",
                },
                "size": {"type": "integer", "minimum": 0},
                "vkey": {
                    "type": "string",
                    "description": "The directory's verifier key: pin the one your hub's "
                    "operator gave you, never trust this copy alone.",
                },
            }
        ),
        "DirectoryEntries": _object(
            {
                "start": {"type": "integer", "minimum": 0},
                "entries": {
                    "type": "array",
                    "maxItems": MAX_ENTRIES_PER_PAGE,
                    "description": "Canonical JSON entries (key.add, key.revoke), base64url.",
                    "items": b64url,
                },
            }
        ),
        "DeviceRequest": {
            "type": "object",
            "properties": {"key": key_record, "label": {"type": "string", "maxLength": MAX_LABEL}},
            "required": ["key"],
        },
        "Device": _object(device),
        "DeviceRegistered": _object({**device, "checkpoint": _STRING}),
        "Devices": _object({"devices": {"type": "array", "items": _object(device)}}),
        "Recipients": _object(
            {
                "case": {"type": "string", "pattern": _REFERENCE},
                "charter": _object(
                    {"id": _STRING, "version": {"type": "integer"}, "digest": _STRING}
                ),
                "recipients": {
                    "type": "array",
                    "description": "Who may receive at least one of the fields asked.",
                    "items": candidate,
                },
                "not_entitled": {
                    "type": "array",
                    "description": "Who takes part in the case but may receive none of them.",
                    "items": candidate,
                },
            }
        ),
        "Envelope": {
            "type": "object",
            "description": f"A sealed liaison form, envelope v1 (docs/envelope.md), at most "
            f"{MAX_ENVELOPE_BYTES} bytes.",
            "properties": {
                "format": {"const": FORMAT},
                "manifest": {"type": "string", "description": "Compact JWS, alg Ed25519."},
                "views": {"type": "object", "additionalProperties": b64url},
            },
            "required": ["format", "manifest", "views"],
        },
        "FormAccepted": _object(
            {
                "form": _STRING,
                "stored": {
                    "type": "boolean",
                    "description": "False for a retried send of a form already stored.",
                },
                "recipients": {"type": "integer", "minimum": 0},
            }
        ),
        "FormRefusal": {
            "allOf": [_ref("Error")],
            "properties": {"refusals": {"type": "array", "items": refusal}},
        },
        "Inbox": _object(
            {
                "forms": {
                    "type": "array",
                    "items": _object(
                        {
                            "form": _STRING,
                            "device": _STRING,
                            "view": _STRING,
                            "purpose": _STRING,
                            "received_at": _INSTANT,
                            "delivered": {"type": "boolean"},
                            "opened": {"type": "boolean"},
                            "cursor": {"type": "integer"},
                        }
                    ),
                }
            }
        ),
        "FormAck": _object(
            {"form": _STRING, "recorded": {"enum": ["form.open", "form.violation"]}}
        ),
        "FormAckRequest": {
            "type": "object",
            "properties": {
                "appareil": {"type": "string", "description": "The recipient device's key id."},
                "code": {
                    "type": "string",
                    "description": "For a violation: the check that failed (e.g. "
                    "``fields_mismatch``).",
                },
            },
            "required": ["appareil"],
        },
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


# Codes of exchange.errors, by the status hub.blueprints.liaison gives their family.
_MALFORMED = (
    "invalid_request",
    "invalid_json",
    "invalid_member",
    "missing_member",
    "unknown_member",
    "duplicate_member",
    "invalid_base64",
    "too_large",
    "unknown_version",
    "unknown_suite",
    "invalid_key",
    "invalid_jws",
    "alg_not_allowed",
    "duplicate_recipient",
    "views_mismatch",
)
_UNVERIFIED = (
    "signature_invalid",
    "digest_mismatch",
    "sender_key_mismatch",
    "view_invalid",
    "fields_mismatch",
    "key_unknown",
    "key_revoked",
)


def _int_query(name: str, description: str, *, required: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_INT_ARG},
    }


def _form_parameter() -> dict[str, Any]:
    return {
        "name": "form_id",
        "in": "path",
        "required": True,
        "description": "The form's id (``f-`` and 26 base32 characters).",
        "schema": {"type": "string"},
    }


def _witness_paths(prefix: str, log: str) -> dict[str, Any]:
    """The three witness routes of one of the hub's logs (hub.blueprints.witness): the audit
    log under /api/v1/journal, the key directory under /api/v1/annuaire (same shapes and
    codes; its events are ``api.read`` of ``annuaire`` and ``key.cosign``)."""
    return {
        f"{prefix}/{JOURNAL_CHECKPOINT}": {
            "get": {
                "operationId": f"{log}_checkpoint",
                "summary": "The log's largest signed checkpoint, with its cosignatures.",
                "description": "For witnesses (partners' systems, the DPO): verify the log's "
                "signature, fetch a consistency proof from the checkpoint last cosigned, then "
                "post a cosignature. Recorded as ``api.read``.",
                "responses": _bearer(
                    {
                        "200": _json("The signed note.", _ref("SignedCheckpoint")),
                        "404": _error("The log has signed no checkpoint yet.", "no_checkpoint"),
                    }
                ),
            }
        },
        f"{prefix}/{JOURNAL_CONSISTENCY}": {
            "get": {
                "operationId": f"{log}_consistency",
                "summary": "A consistency proof between two sizes of the log.",
                "description": "Proves that the tree of ``ancien`` events is a prefix of the "
                "tree of ``nouveau`` events (RFC 6962 §2.1.2). Recorded as ``api.read``.",
                "parameters": [
                    {
                        "name": name,
                        "in": "query",
                        "required": True,
                        "description": description,
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
                    }
                    for name, description in (
                        ("ancien", "The smaller tree size (the one last cosigned)."),
                        ("nouveau", "The larger tree size (the checkpoint to cosign)."),
                    )
                ],
                "responses": _bearer(
                    {
                        "200": _json("The proof.", _ref("ConsistencyProof")),
                        "400": _error(
                            "Sizes missing, not decimal integers, or ``ancien`` larger than "
                            "``nouveau`` (``invalid_request``); or ``nouveau`` beyond the log's "
                            "size (``size_out_of_range``).",
                            "invalid_request",
                            "size_out_of_range",
                        ),
                    }
                ),
            }
        },
        f"{prefix}/{JOURNAL_COSIGNATURES}": {
            "post": {
                "operationId": f"{log}_cosign",
                "summary": "A witness's cosignature of a checkpoint the hub signed.",
                "description": "Kept only from a witness key the hub accepts "
                "(``flask --app hub audit witness add``), over a checkpoint the log signed, "
                "when it verifies; otherwise nothing is kept. The audit log's are exported for "
                "the offline verifier (``--witness-key``). Recorded as ``audit.cosign`` "
                "(``key.cosign`` for the directory).",
                "requestBody": _body(_ref("CosignatureRequest")),
                "responses": _bearer(
                    {
                        "200": _json(
                            "This witness's cosignature of the checkpoint was already kept.",
                            _ref("CosignatureStored"),
                        ),
                        "201": _json("The cosignature is kept.", _ref("CosignatureStored")),
                        "400": _error(
                            "The body is not the expected object, the checkpoint is not a "
                            "signed note, or the cosignature not a signature line.",
                            "invalid_request",
                            "malformed_checkpoint",
                            "malformed_cosignature",
                        ),
                        "403": _error(
                            "The witness key is not one the hub accepts.", "unknown_witness"
                        ),
                        "404": _error("The log signed no such checkpoint.", "unknown_checkpoint"),
                        "409": _error(
                            "The checkpoint carries the most cosignatures a note may have.",
                            "too_many_cosignatures",
                        ),
                        "413": _TOO_LARGE,
                        "422": _error(
                            "The cosignature does not verify with the witness's key.",
                            "bad_cosignature",
                        ),
                    }
                ),
            }
        },
    }


def _liaison_paths() -> dict[str, Any]:
    """The key directory, devices and the relay of sealed forms (hub.blueprints.liaison)."""
    form_refused = _error(
        "Refused by the charter, the consent, the case team or the directory: ``refusals`` "
        "names each field, recipient device and article; nothing is stored.",
        "form_refused",
        "not_involved",
        "sender_device",
        "sender_mismatch",
        schema="FormRefusal",
    )
    gone = {
        "403": _error(
            "The device may no longer see its view (consent withdrawn, case team).",
            "form_refused",
            schema="FormRefusal",
        ),
        "404": _error(
            "No such form for this device, or past retention.", "form_unknown", "form_expired"
        ),
    }
    ack: dict[str, Any] = {
        "parameters": [_form_parameter()],
        "requestBody": _body(_ref("FormAckRequest")),
        "responses": _bearer(
            {
                "200": _json("Recorded.", _ref("FormAck")),
                **gone,
                "413": _TOO_LARGE,
            }
        ),
    }
    return {
        "/api/v1/annuaire": {
            "get": {
                "operationId": "directory_head",
                "summary": "The key directory's latest signed checkpoint.",
                "description": "Every device key registration and revocation is an entry of a "
                "Merkle log (docs/envelope.md). Recorded as ``api.read`` of ``annuaire``.",
                "responses": _bearer({"200": _json("The head.", _ref("DirectoryHead"))}),
            }
        },
        "/api/v1/annuaire/entrees": {
            "get": {
                "operationId": "directory_entries",
                "summary": f"Entries [debut, fin) of the key directory ({MAX_ENTRIES_PER_PAGE} "
                "at most a page).",
                "parameters": [
                    _int_query("debut", "First entry (default 0).", required=False),
                    _int_query("fin", "End, exclusive (default: a page).", required=False),
                ],
                "responses": _bearer(
                    {
                        "200": _json("The entries.", _ref("DirectoryEntries")),
                        "400": _error("Not an interval of the directory.", "invalid_request"),
                    }
                ),
            }
        },
        "/api/v1/appareils": {
            "get": {
                "operationId": "devices",
                "summary": "The calling system's device keys, revoked ones included.",
                "responses": _bearer({"200": _json("The devices.", _ref("Devices"))}),
            },
            "post": {
                "operationId": "device_register",
                "summary": "Register a device key of the calling system in the key directory.",
                "description": f"At most {MAX_DEVICES} keys in force per owner. Recorded as "
                "``key.register``; answers the directory checkpoint that includes it.",
                "requestBody": _body(_ref("DeviceRequest")),
                "responses": _bearer(
                    {
                        "201": _json("Registered.", _ref("DeviceRegistered")),
                        "400": _error("Not a device key record.", *_MALFORMED),
                        "409": _error(
                            "Key already published (in force or revoked: never twice), or too "
                            "many devices.",
                            "key_exists",
                            "too_many_devices",
                        ),
                        "413": _TOO_LARGE,
                    }
                ),
            },
        },
        "/api/v1/appareils/{key_id}/revocation": {
            "parameters": [
                {
                    "name": "key_id",
                    "in": "path",
                    "required": True,
                    "description": "The device's key id (``dk_…``).",
                    "schema": {"type": "string"},
                }
            ],
            "post": {
                "operationId": "device_revoke",
                "summary": "Revoke one of the calling system's device keys (key.revoke).",
                "responses": _bearer(
                    {
                        "200": _json("Revoked.", _ref("Device")),
                        "403": _error("The key is not the caller's.", "not_owner"),
                        "404": _error("Unknown key.", "key_unknown"),
                        "409": _error("Already revoked.", "key_revoked"),
                    }
                ),
            },
        },
        "/api/v1/dossiers/{reference}/destinataires": {
            "parameters": [_reference_parameter()],
            "get": {
                "operationId": "form_recipients",
                "summary": "Who may receive which fields of a form on the case, and their keys.",
                "description": "Decided as the relay decides (charter × consent × case team). "
                "The sender checks every device key against its own verified copy of the "
                "directory before sealing. Recorded as ``api.read`` of the case.",
                "parameters": [
                    {
                        "name": "finalite",
                        "in": "query",
                        "required": True,
                        "description": "The purpose of the form.",
                        "schema": _STRING,
                    },
                    {
                        "name": "champs",
                        "in": "query",
                        "required": True,
                        "description": f"Field ids, comma-separated (1 to {MAX_FIELDS}).",
                        "schema": _STRING,
                    },
                ],
                "responses": _bearer(
                    {
                        "200": _json("The recipients.", _ref("Recipients")),
                        "400": _error("Purpose or fields missing.", "invalid_request"),
                        "403": _CASE_REFUSED,
                    }
                ),
            },
        },
        "/api/v1/fiches": {
            "get": {
                "operationId": "form_inbox",
                "summary": "Forms received by the calling system's devices, newest first.",
                "parameters": [
                    _int_query("avant", "Cursor: forms before this one.", required=False)
                ],
                "responses": _bearer(
                    {
                        "200": _json("The inbox (no content).", _ref("Inbox")),
                        "400": _error("Invalid cursor.", "invalid_request"),
                    }
                ),
            },
            "post": {
                "operationId": "form_send",
                "summary": "Send a sealed liaison form (envelope v1 as the body).",
                "description": "Stored only if the signature verifies, the sender device is in "
                "force, the sender may publish every field and each recipient may see its view "
                "now, and the recipients are exactly the devices in force of the people and "
                "systems entitled. Idempotent on the form id. Recorded as ``form.send`` (or "
                "``form.send.refused``); recipients are told without content.",
                "requestBody": _body(_ref("Envelope")),
                "responses": _bearer(
                    {
                        "200": _json("This form was already stored.", _ref("FormAccepted")),
                        "201": _json("Stored and relayed.", _ref("FormAccepted")),
                        "400": _error("Not a well-formed envelope v1.", *_MALFORMED),
                        "403": form_refused,
                        "409": _error("Another form has this id.", "form_exists"),
                        "413": _TOO_LARGE,
                        "422": _error("A check of the envelope failed.", *_UNVERIFIED),
                    }
                ),
            },
        },
        "/api/v1/fiches/{form_id}": {
            "parameters": [_form_parameter()],
            "get": {
                "operationId": "form_deliver",
                "summary": "The envelope, for one of the caller's recipient devices.",
                "description": "Only while the device's owner may see its view now (consent, "
                "case team) and within retention. Recorded as ``form.deliver``.",
                "parameters": [
                    {
                        "name": "appareil",
                        "in": "query",
                        "required": True,
                        "description": "The recipient device's key id.",
                        "schema": _STRING,
                    }
                ],
                "responses": _bearer(
                    {
                        "200": _json("The envelope as sent.", _ref("Envelope")),
                        **gone,
                    }
                ),
            },
        },
        "/api/v1/fiches/{form_id}/ouverture": {
            "post": {
                **ack,
                "operationId": "form_opened",
                "summary": "The recipient opened and checked the form (form.open).",
            }
        },
        "/api/v1/fiches/{form_id}/violation": {
            "post": {
                **ack,
                "responses": {
                    **ack["responses"],
                    "400": _error(
                        "``code`` is not one of "
                        + ", ".join(f"``{c}``" for c in sorted(SENDER_FAULTS))
                        + " (what a recipient can prove against the sender).",
                        "invalid_request",
                    ),
                },
                "operationId": "form_violation",
                "summary": "The recipient found the form not as signed or as the charter allows.",
                "description": "Recorded as ``form.violation``, a charter violation the DPO sees.",
            }
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
        "paths": {
            **_paths(),
            **_witness_paths("/api/v1/journal", "journal"),
            **_liaison_paths(),
            **_witness_paths("/api/v1/annuaire", "directory"),
        },
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
