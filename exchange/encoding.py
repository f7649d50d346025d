"""Byte encodings shared by the exchange formats: strict base64url and canonical JSON.

Strict means one spelling per value: base64url without padding, no whitespace, no other
alphabet, and the decoded bytes must re-encode to the very same text (RFC 4648 §3.5: no
non-zero pad bits). A lenient decoder would let two different strings name the same bytes, and a
signature or a digest over one of them would silently cover the other.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Set as AbstractSet
from typing import Any

from exchange.errors import MalformedError

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64e(data: bytes) -> str:
    """``data`` as base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: object, *, what: str, max_bytes: int | None = None) -> bytes:
    """Decode strict base64url (no padding, canonical); :class:`MalformedError` otherwise.

    ``what`` names the member in the error; ``max_bytes`` refuses a value too long before
    decoding it.
    """
    if not isinstance(text, str) or _B64URL.fullmatch(text) is None or len(text) % 4 == 1:
        raise MalformedError("invalid_base64", "%(what)s n'est pas en base64url.", what=what)
    if max_bytes is not None and len(text) > (max_bytes * 4 + 2) // 3:
        raise MalformedError("too_large", "%(what)s est trop long.", what=what)
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise MalformedError(
            "invalid_base64", "%(what)s n'est pas en base64url.", what=what
        ) from None
    if b64e(data) != text:
        raise MalformedError("invalid_base64", "%(what)s n'est pas en base64url.", what=what)
    return data


def canonical_json(value: Any) -> bytes:
    """The one byte string of a JSON value used where bytes are hashed: sorted keys, no
    whitespace, UTF-8 (the values Maillon hashes hold only strings, integers, lists, objects)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_json_object(data: bytes, *, what: str, max_bytes: int) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes, refusing duplicate members, non-finite numbers, other
    top-level types and anything longer than ``max_bytes``."""
    if len(data) > max_bytes:
        raise MalformedError("too_large", "%(what)s est trop volumineux.", what=what)

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                # Two readers could take either value: one signed meaning only.
                raise MalformedError("duplicate_member", "%(what)s répète un membre.", what=what)
            result[key] = value
        return result

    def no_constant(name: str) -> Any:
        raise MalformedError("invalid_json", "%(what)s n'est pas du JSON valide.", what=what)

    try:
        value = json.loads(
            data.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers beyond Python's digit limit (4300),
        # which would otherwise escape as an unexpected error (a 500, a crashed client).
        raise MalformedError(
            "invalid_json", "%(what)s n'est pas du JSON valide.", what=what
        ) from None
    if not isinstance(value, dict):
        raise MalformedError("invalid_json", "%(what)s doit être un objet JSON.", what=what)
    return value


def members(
    obj: object, *, what: str, required: AbstractSet[str], optional: AbstractSet[str] = frozenset()
) -> dict[str, Any]:
    """``obj`` as an object holding exactly ``required`` and possibly ``optional`` members:
    an unknown member is refused (a reader that ignored it could be told something the signer
    never checked)."""
    if not isinstance(obj, dict):
        raise MalformedError("invalid_member", "%(what)s doit être un objet.", what=what)
    keys = set(obj)
    missing = required - keys
    if missing:
        raise MalformedError(
            "missing_member",
            "%(what)s : membre manquant « %(name)s ».",
            what=what,
            name=sorted(missing)[0],
        )
    unknown = keys - required - optional
    if unknown:
        raise MalformedError(
            "unknown_member",
            "%(what)s : membre inconnu « %(name)s ».",
            what=what,
            name=sorted(unknown)[0],
        )
    return obj
