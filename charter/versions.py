"""Charter versions: what changed, who signed what, which version applies to a partner.

Pure logic: the hub stores versions, signatures and declinations in its database and calls
these functions. A new version applies to a partner only once that partner signed it; until
then the partner keeps the newest version it did sign (DESIGN §5).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from charter.canonical import canonical_dict, digest
from charter.decide import Declination
from charter.model import Charter

__all__ = [
    "Change",
    "ChangeAction",
    "CharterDiff",
    "Declination",
    "Signature",
    "applicable_version",
    "diff",
    "digest",
    "signatories",
]


class ChangeAction(StrEnum):
    """What happened to an element between two versions."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


_ACTION_FR = {
    ChangeAction.ADDED: "ajouté",
    ChangeAction.REMOVED: "supprimé",
    ChangeAction.CHANGED: "modifié",
}

# French name of each section, and the agreement suffix of its participle ("e", "s", "").
_SECTION_FR = {
    "charter": ("en-tête", ""),
    "articles": ("article", ""),
    "fields": ("champ", ""),
    "purposes": ("finalité", "e"),
    "publish": ("règle de publication", "e"),
    "view": ("règle de consultation", "e"),
    "secret_bound": ("liste des destinataires astreints au secret", "e"),
    "retention": ("durée de conservation de la catégorie", "e"),
    "membership": ("liste des membres", "e"),
}

_ATTRIBUTE_FR = {
    "title": "titre",
    "text": "texte",
    "version": "version",
    "effective": "date d'effet",
    "default_article": "article par défaut",
    "secret_article": "article du secret",
    "consent_article": "article du consentement",
    "declined_article": "article des refus de partager",
    "label_fr": "libellé (fr)",
    "label_en": "libellé (en)",
    "category": "catégorie",
    "tier": "stockage",
    "secrecy": "niveau de secret",
    "basis": "base légale",
    "article": "article",
    "kinds": "types d'organisation",
    "roles": "rôles",
    "fields": "champs",
    "group_member": "membre du groupe exigé",
    "purposes": "finalités",
    "window": "fenêtre autour des réunions",
    "senders": "émetteurs",
    "duration": "durée",
    "from": "à compter de",
    "coordinator_kind": "type du coordinateur",
    "coordinator": "coordinateur",
    "members": "membres",
    "entries": "entrées",
    "id": "identifiant",
}

# Long texts are reported as changed, not quoted: the diff page shows them side by side.
_LONG = {"text"}


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "oui" if value else "non"
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{k} = {_show(v)}" for k, v in value.items())
    return str(value)


@dataclass(frozen=True, slots=True)
class Change:
    """One element added, removed or changed; ``details`` are French ``attribut : a → b`` lines."""

    section: str
    key: str
    action: ChangeAction
    details: tuple[str, ...] = ()

    def render_fr(self) -> str:
        """One French line."""
        name, agreement = _SECTION_FR[self.section]
        label = name if self.section in {"secret_bound", "membership"} else f"{name} « {self.key} »"
        head = f"{label} {_ACTION_FR[self.action]}{agreement}"
        return head + (" : " + " ; ".join(self.details) if self.details else "")


@dataclass(frozen=True, slots=True)
class CharterDiff:
    """Differences between two versions of a charter."""

    old_version: int
    new_version: int
    old_digest: str
    new_digest: str
    changes: tuple[Change, ...]

    @property
    def empty(self) -> bool:
        """Whether nothing but (perhaps) the version number changed."""
        return not self.changes

    def of(self, section: str, action: ChangeAction | None = None) -> tuple[Change, ...]:
        """The changes of one section, optionally of one action."""
        return tuple(
            c
            for c in self.changes
            if c.section == section and (action is None or c.action == action)
        )

    def render_fr(self) -> str:
        """A French summary, one change per line."""
        title = f"Modifications de la version {self.old_version} à la version {self.new_version}"
        if self.empty:
            return title + " : aucune."
        return title + " :\n" + "\n".join(f"- {c.render_fr()}" for c in self.changes)


def _details(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        name = _ATTRIBUTE_FR.get(key, key)
        if key in _LONG:
            out.append(f"{name} modifié")
        else:
            out.append(f"{name} : {_show(before)} → {_show(after)}")
    return tuple(out)


def _keyed(section: str, entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    key = "category" if section == "retention" else "id"
    return {str(e[key]): e for e in entries}


def diff(old: Charter, new: Charter) -> CharterDiff:
    """What changed from ``old`` to ``new`` (articles, fields, purposes, rules, retention…)."""
    a, b = canonical_dict(old), canonical_dict(new)
    changes: list[Change] = []
    header_old = {k: v for k, v in a["charter"].items() if k != "version"}
    header_new = {k: v for k, v in b["charter"].items() if k != "version"}
    if header_old != header_new:
        changes.append(
            Change("charter", new.id, ChangeAction.CHANGED, _details(header_old, header_new))
        )
    for section in ("articles", "fields", "purposes", "publish", "view", "retention"):
        before, after = _keyed(section, a[section]), _keyed(section, b[section])
        for key, entry in after.items():
            if key not in before:
                changes.append(Change(section, key, ChangeAction.ADDED))
            elif entry != before[key]:
                changes.append(
                    Change(section, key, ChangeAction.CHANGED, _details(before[key], entry))
                )
        for key in before.keys() - after.keys():
            changes.append(Change(section, key, ChangeAction.REMOVED))
    if a["secret_bound"] != b["secret_bound"]:
        changes.append(
            Change(
                "secret_bound",
                "secret_bound",
                ChangeAction.CHANGED,
                _details({"entries": a["secret_bound"]}, {"entries": b["secret_bound"]}),
            )
        )
    if a["membership"] != b["membership"]:
        changes.append(
            Change(
                "membership",
                "membership",
                ChangeAction.CHANGED,
                _details(a["membership"], b["membership"]),
            )
        )
    return CharterDiff(old.version, new.version, digest(old), digest(new), tuple(changes))


@dataclass(frozen=True, slots=True)
class Signature:
    """A partner organisation signed a version of the charter.

    ``digest``, when recorded, is the digest of the text signed; the hub should refuse a
    signature whose digest differs from the published version's.
    """

    org_id: str
    version: int
    signatory: str
    signed_at: datetime
    digest: str | None = None


def applicable_version(
    org_id: str,
    published_versions: Iterable[int],
    signatures: Iterable[Signature],
    *,
    at: datetime | None = None,
) -> int | None:
    """The newest published version ``org_id`` signed (by ``at`` when given).

    ``None``: the partner signed no published version and takes no part in exchanges.
    """
    published = set(published_versions)
    signed = {
        s.version
        for s in signatures
        if s.org_id == org_id and s.version in published and (at is None or s.signed_at <= at)
    }
    return max(signed) if signed else None


def signatories(version: int, signatures: Iterable[Signature]) -> frozenset[str]:
    """Organisations that signed ``version``."""
    return frozenset(s.org_id for s in signatures if s.version == version)
