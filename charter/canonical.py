"""Canonical form of a charter: a plain dict, its SHA-256 digest, and TOML text.

The digest is taken over what the charter *means*, not over the file: whitespace, comments,
key order and quoting do not change it, while any change to a text, a field or a rule does.
It is what partners sign and what envelopes carry (charter id/version/digest).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from charter.model import FORMAT_1, Charter, FieldDef

# The canonical form already carried "format": 1 before format 2 existed; it now states the
# charter's format, so a format-1 charter keeps exactly the bytes (and the digest) it had.
FORMAT_VERSION = FORMAT_1


def _sorted(values: frozenset[Any] | None) -> list[str] | None:
    return None if values is None else sorted(str(v) for v in values)


def _field(f: FieldDef, format2: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": f.id,
        "label_fr": f.label_fr,
        "label_en": f.label_en,
        "category": f.category.value,
        "tier": f.tier.value,
        "secrecy": f.secrecy.value,
        "basis": f.basis,
    }
    if format2:
        entry["accord"] = f.accord
        entry["offence"] = f.offence
    entry["article"] = f.article
    return entry


def canonical_dict(charter: Charter) -> dict[str, Any]:
    """The charter as JSON-ready values; sets are sorted, rule order is kept (it names reasons).

    Format 1: exactly the form (hence the digests) of charters signed before format 2 existed;
    what format 1 cannot say (accord, offence, consent, grace) is left out, not written empty.
    Format 2 adds ``consent_categories``, ``consent``, each field's ``accord`` and ``offence``,
    each purpose's ``steps`` and the membership's ``grace``.
    """
    data = _canonical_v1(charter)
    if charter.format == FORMAT_1:
        return data
    c = charter
    data["format"] = c.format
    data["fields"] = [_field(f, True) for f in c.fields]
    data["purposes"] = [
        {
            "id": p.id,
            "label_fr": p.label_fr,
            "label_en": p.label_en,
            "article": p.article,
            "steps": _sorted(p.steps),
        }
        for p in c.purposes
    ]
    data["consent_categories"] = [
        {"id": k.id, "label_fr": k.label_fr, "label_en": k.label_en, "article": k.article}
        for k in c.consent_categories
    ]
    data["consent"] = (
        None
        if c.consent is None
        else {
            "birth_date_field": c.consent.birth_date_field,
            "minor_age": c.consent.minor_age,
            "parents_for_minors": c.consent.parents_for_minors,
            "notice_version": c.consent.notice_version,
        }
    )
    grace = c.membership.grace
    data["membership"]["grace"] = None if grace is None else str(grace)
    return data


def _canonical_v1(charter: Charter) -> dict[str, Any]:
    # Frozen: any change here changes the digest of every signed format-1 charter.
    c = charter
    arts = c.refusal_articles
    return {
        "format": FORMAT_VERSION,
        "charter": {
            "id": c.id,
            "version": c.version,
            "title": c.title,
            "effective": c.effective.isoformat(),
            "default_article": arts.default,
            "secret_article": arts.secret,
            "consent_article": arts.consent,
            "declined_article": arts.declined,
        },
        "articles": [{"id": a.id, "title": a.title, "text": a.text} for a in c.articles],
        "fields": [_field(f, False) for f in c.fields],
        "purposes": [
            {"id": p.id, "label_fr": p.label_fr, "label_en": p.label_en, "article": p.article}
            for p in c.purposes
        ],
        "publish": [
            {"id": r.id, "kinds": _sorted(r.kinds), "fields": list(r.fields), "article": r.article}
            for r in c.publish
        ],
        "view": [
            {
                "id": r.id,
                "roles": _sorted(r.roles),
                "kinds": _sorted(r.kinds),
                "group_member": r.group_member,
                "purposes": _sorted(r.purposes),
                "fields": list(r.fields),
                "article": r.article,
                "window": None
                if r.window is None
                else {"days_before": r.window.days_before, "days_after": r.window.days_after},
                "senders": _sorted(r.senders),
            }
            for r in c.view
        ],
        "secret_bound": [
            {"kinds": _sorted(s.kinds), "roles": _sorted(s.roles)} for s in c.secret_bound
        ],
        "retention": [
            {
                "category": r.category.value,
                "duration": str(r.duration),
                "from": r.from_event.value,
                "article": r.article,
            }
            for r in c.retention
        ],
        "membership": {
            "coordinator_kind": c.membership.coordinator_kind.value,
            "coordinator": c.membership.coordinator,
            "members": [
                {"org_id": m.org_id, "kind": m.kind.value, "name": m.name}
                for m in c.membership.members
            ],
        },
    }


def canonical_bytes(charter: Charter) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8) of ``canonical_dict``."""
    return json.dumps(
        canonical_dict(charter), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def digest(charter: Charter) -> str:
    """``sha256:<hex>`` over the canonical form."""
    return "sha256:" + hashlib.sha256(canonical_bytes(charter)).hexdigest()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        # JSON string escapes are valid TOML basic-string escapes; DEL must be escaped in TOML.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))  # pragma: no cover - canonical_dict yields only the above


def _table(lines: list[str], header: str, entries: dict[str, Any]) -> None:
    lines.append(header)
    for key, value in entries.items():
        if value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    lines.append("")


def to_toml(charter: Charter) -> str:
    """TOML text that loads back to an equal charter (same digest). Comments are not kept."""
    data = canonical_dict(charter)
    lines: list[str] = []
    header = dict(data["charter"])
    effective = header.pop("effective")
    lines.append("[charter]")
    for key, value in header.items():
        lines.append(f"{key} = {_toml_value(value)}")
        if key == "id" and data["format"] != FORMAT_1:
            lines.append(f"format = {data['format']}")
        if key == "title":
            lines.append(f"effective = {effective}")  # a TOML date, unquoted
    lines.append("")
    sections = ("articles", "consent_categories", "fields", "purposes", "publish", "view")
    for section in (*sections, "secret_bound", "retention"):
        for entry in data.get(section, ()):
            _table(lines, f"[[{section}]]", entry)
    if data.get("consent") is not None:
        _table(lines, "[consent]", data["consent"])
    membership = dict(data["membership"])
    members = membership.pop("members")
    _table(lines, "[membership]", membership)
    for member in members:
        _table(lines, "[[membership.members]]", member)
    return "\n".join(lines)
