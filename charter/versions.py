"""Charter versions: what changed, who signed what, which version applies to a partner.

Pure logic: the hub stores versions, signatures and declinations in its database and calls
these functions. A new version applies to a partner only once that partner signed it; until
then the partner keeps the newest version it did sign (DESIGN §5) — for the charter's grace
period only, when the charter sets one (format 2, ``[membership] grace``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from charter.canonical import canonical_dict, digest
from charter.decide import Declination
from charter.model import FORMAT_1, Charter, IsoDuration

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
    "consent_categories": ("catégorie de consentement", "e"),
    "consent": ("réglages du consentement", "s"),
}
# Sections reported as one whole, without a key in the French line.
_WHOLE = {"secret_bound", "membership", "consent"}

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
    "format": "format de la charte",
    "accord": "accord du jeune requis (catégorie)",
    "offence": "donnée relative aux infractions (art. 10 RGPD)",
    "grace": "délai pour signer une nouvelle version",
    "birth_date_field": "champ de la date de naissance",
    "minor_age": "âge de la majorité",
    "parents_for_minors": "accord des titulaires de l'autorité parentale pour un mineur",
    "notice_version": "version de la notice d'information",
    "steps": "étapes du dossier",
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
        label = name if self.section in _WHOLE else f"{name} « {self.key} »"
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


def _comparable(charter: Charter) -> dict[str, Any]:
    """The canonical form, with format 1 read under the format-2 model.

    A format-1 field with basis « consentement » needs the accord of its category: comparing
    that with a format-2 ``accord`` reports what really changed, not an artefact of formats.
    """
    data = canonical_dict(charter)
    if charter.format == FORMAT_1:
        data["fields"] = [
            {**entry, "accord": f.accord, "offence": f.offence}
            for entry, f in zip(data["fields"], charter.fields, strict=True)
        ]
        data["consent_categories"] = []
        data["consent"] = None
        data["membership"] = {**data["membership"], "grace": None}
    data["charter"] = {**data["charter"], "format": data["format"]}
    return data


def diff(old: Charter, new: Charter) -> CharterDiff:
    """What changed from ``old`` to ``new`` (articles, fields, purposes, rules, retention,
    consent categories and settings…); a format-1 charter compares as read under format 2."""
    a, b = _comparable(old), _comparable(new)
    changes: list[Change] = []
    header_old = {k: v for k, v in a["charter"].items() if k != "version"}
    header_new = {k: v for k, v in b["charter"].items() if k != "version"}
    if header_old != header_new:
        changes.append(
            Change("charter", new.id, ChangeAction.CHANGED, _details(header_old, header_new))
        )
    sections = ("articles", "consent_categories", "fields", "purposes", "publish", "view")
    for section in (*sections, "retention"):
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
    for whole in ("membership", "consent"):
        if a[whole] != b[whole]:
            changes.append(
                Change(whole, whole, _whole_action(a[whole], b[whole]), _details_of(a, b, whole))
            )
    return CharterDiff(old.version, new.version, digest(old), digest(new), tuple(changes))


def _whole_action(before: Any, after: Any) -> ChangeAction:
    if before is None:
        return ChangeAction.ADDED
    return ChangeAction.REMOVED if after is None else ChangeAction.CHANGED


def _details_of(a: dict[str, Any], b: dict[str, Any], section: str) -> tuple[str, ...]:
    return _details(a[section] or {}, b[section] or {})


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
    newest_published_at: datetime | None = None,
    grace: IsoDuration | None = None,
) -> int | None:
    """The version of the charter that applies to ``org_id`` (at ``at`` when given).

    Without ``grace``: the newest published version the partner signed (by ``at``).
    With ``grace`` (the ``[membership] grace`` of the newest published version): when the
    partner has not signed the newest version, the version it signed before still applies
    only while ``at`` falls within ``grace`` of ``newest_published_at`` — calendar days, the
    last one included, each instant read in ``newest_published_at``'s time zone. Afterwards,
    or when ``at`` or ``newest_published_at`` is unknown (fail closed), the partner takes no
    part until it signs. ``None``: the partner takes no part in exchanges.
    """
    published = set(published_versions)
    signed = {
        s.version
        for s in signatures
        if s.org_id == org_id and s.version in published and (at is None or s.signed_at <= at)
    }
    if not signed:
        return None
    best = max(signed)
    if grace is None or best == max(published):
        return best
    if at is None or newest_published_at is None:
        return None
    if at.tzinfo is not None and newest_published_at.tzinfo is not None:
        at = at.astimezone(newest_published_at.tzinfo)
    last_day = grace.add_to(newest_published_at.date())
    return best if at.date() <= last_day else None


def signatories(version: int, signatures: Iterable[Signature]) -> frozenset[str]:
    """Organisations that signed ``version``."""
    return frozenset(s.org_id for s in signatures if s.version == version)
