"""The charter linter: a loaded charter can still contradict itself.

The loader refuses what cannot be read; the linter reports what reads fine but is wrong or
suspicious: a rule that promises what the decision will refuse anyway, fields nobody can see,
overlapping rules citing different articles, a category with no retention period…
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from itertools import combinations

from charter.globs import expand, is_pattern
from charter.model import FORMAT_2, Charter, PublishRule, ViewRule
from charter.vocabulary import CATEGORY_LABELS_FR, Role, Secrecy, Tier


class Severity(StrEnum):
    """How serious a finding is. A charter with errors should not be published."""

    ERROR = "erreur"
    WARNING = "avertissement"
    INFO = "information"


_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}

# Roles that must never read form content (DESIGN §1): they administer and audit.
CONTENT_BLIND_ROLES = frozenset({Role.DPO, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Finding:
    """One lint finding, with a stable code and a French message."""

    severity: Severity
    code: str
    message_fr: str
    line: int | None

    def __str__(self) -> str:
        where = f"ligne {self.line} : " if self.line else ""
        return f"{where}{self.severity.value} [{self.code}] {self.message_fr}"


def has_errors(findings: list[Finding]) -> bool:
    """Whether any finding is an error."""
    return any(f.severity is Severity.ERROR for f in findings)


def _ids(values: frozenset[str] | set[str]) -> str:
    return ", ".join(f"« {v} »" for v in sorted(values))


class _Linter:
    def __init__(self, charter: Charter) -> None:
        self.c = charter
        ids = charter.field_ids
        self.publish_sets = [expand(r.fields, ids) for r in charter.publish]
        self.view_sets = [expand(r.fields, ids) for r in charter.view]
        self.secret = {f.id for f in charter.fields if f.secrecy is Secrecy.SECRET}
        self.offence = {f.id for f in charter.fields if f.offence}
        self.interdit = {f.id for f in charter.fields if f.secrecy is Secrecy.INTERDIT}
        self.published = set().union(*self.publish_sets) - self.interdit

    def run(self) -> list[Finding]:
        checks = (
            self.globs,
            self.interdit_named,
            self.secret_reachable,
            self.offence_reachable,
            self.content_blind_roles,
            self.view_without_publish,
            self.overlaps,
            self.unseen_or_unpublished,
            self.retention,
            self.catalogue,
            self.purposes,
            self.consent_categories,
            self.grace,
            self.articles,
        )
        found = [finding for check in checks for finding in check()]
        return sorted(found, key=lambda f: (f.line or 0, _ORDER[f.severity], f.code, f.message_fr))

    def globs(self) -> Iterator[Finding]:
        rules: list[PublishRule | ViewRule] = [*self.c.publish, *self.c.view]
        for rule in rules:
            for glob in rule.fields:
                if is_pattern(glob) and not expand([glob], self.c.field_ids):
                    yield Finding(
                        Severity.WARNING,
                        "glob_matches_nothing",
                        f"le motif « {glob} » de la règle « {rule.id} » ne correspond à aucun "
                        "champ du catalogue",
                        rule.line,
                    )

    def interdit_named(self) -> Iterator[Finding]:
        rules: list[PublishRule | ViewRule] = [*self.c.publish, *self.c.view]
        for rule in rules:
            named = {g for g in rule.fields if not is_pattern(g)} & self.interdit
            if named:
                yield Finding(
                    Severity.ERROR,
                    "interdit_named",
                    f"la règle « {rule.id} » nomme des champs dont l'échange est interdit : "
                    f"{_ids(named)} (ils seront toujours refusés)",
                    rule.line,
                )

    def _unbound(self, rule: ViewRule) -> str | None:
        """The role/kind pairs of ``rule`` not bound by professional secrecy, shown, or None.

        A pair is bound when a ``[[secret_bound]]`` entry matches the kind and the role alone:
        a recipient holding several roles may be bound where a single role is not, but a rule
        granting to a role must hold for everyone holding it.
        """
        unbound = sorted(
            f"{role.value}/{kind.value}"
            for role in rule.roles
            for kind in rule.kinds
            if not self.c.is_secret_bound(frozenset({role}), kind)
        )
        if not unbound:
            return None
        return ", ".join(unbound[:6]) + (" …" if len(unbound) > 6 else "")

    def secret_reachable(self) -> Iterator[Finding]:
        for rule, covered in zip(self.c.view, self.view_sets, strict=True):
            secret = covered & self.secret
            if not secret:
                continue
            shown = self._unbound(rule)
            if shown:
                yield Finding(
                    Severity.ERROR,
                    "secret_to_unbound",
                    f"la règle « {rule.id} » ouvre des champs couverts par le secret "
                    f"professionnel ({_ids(secret)}) à des destinataires qui n'y sont pas "
                    f"astreints ({shown}) ; la décision les refusera : restreignez la règle",
                    rule.line,
                )

    def offence_reachable(self) -> Iterator[Finding]:
        # Secret offence fields never reach unbound recipients (the decision refuses them and
        # secret_to_unbound already reports the rule): only the others can be seen.
        for rule, covered in zip(self.c.view, self.view_sets, strict=True):
            offence = (covered & self.offence) - self.secret - self.interdit
            if not offence:
                continue
            shown = self._unbound(rule)
            if shown:
                yield Finding(
                    Severity.WARNING,
                    "offence_to_unbound",
                    f"la règle « {rule.id} » donne à voir des données relatives aux infractions "
                    f"et condamnations pénales ({_ids(offence)}) à des destinataires qui ne sont "
                    f"pas astreints au secret professionnel ({shown}) : au sens de l'article 10 "
                    "du RGPD, réservez-les aux professionnels astreints, ou justifiez cette "
                    "ouverture dans la charte",
                    rule.line,
                )

    def content_blind_roles(self) -> Iterator[Finding]:
        for rule in self.c.view:
            blind = rule.roles & CONTENT_BLIND_ROLES
            if blind:
                yield Finding(
                    Severity.ERROR,
                    "content_to_dpo_or_admin",
                    f"la règle « {rule.id} » donne accès au contenu aux rôles "
                    f"{_ids({r.value for r in blind})}, qui ne doivent jamais lire les fiches",
                    rule.line,
                )

    def view_without_publish(self) -> Iterator[Finding]:
        for rule, covered in zip(self.c.view, self.view_sets, strict=True):
            if rule.senders is None:
                orphan = covered - self.published - self.interdit
            else:
                senders = rule.senders
                publishable: set[str] = set()
                for pub, pub_set in zip(self.c.publish, self.publish_sets, strict=True):
                    if pub.kinds & senders:
                        publishable |= pub_set
                orphan = covered - publishable - self.interdit
            if orphan:
                yield Finding(
                    Severity.WARNING,
                    "view_without_publish",
                    f"la règle « {rule.id} » donne à voir des champs qu'aucun émetteur "
                    f"concerné n'est autorisé à publier : {_ids(orphan)}",
                    rule.line,
                )

    def overlaps(self) -> Iterator[Finding]:
        publish = list(zip(self.c.publish, self.publish_sets, strict=True))
        for (a, a_set), (b, b_set) in combinations(publish, 2):
            common = a_set & b_set
            if a.article != b.article and a.kinds & b.kinds and common:
                yield Finding(
                    Severity.WARNING,
                    "overlapping_rules",
                    f"les règles « {a.id} » et « {b.id} » autorisent la publication des mêmes "
                    f"champs ({_ids(common)}) sous des articles différents "
                    f"(« {a.article} », « {b.article} ») : la décision citera la première",
                    b.line,
                )
        view = list(zip(self.c.view, self.view_sets, strict=True))
        for (v, v_set), (w, w_set) in combinations(view, 2):
            common = v_set & w_set
            if (
                v.article != w.article
                and common
                and v.roles & w.roles
                and v.kinds & w.kinds
                and v.purposes & w.purposes
            ):
                yield Finding(
                    Severity.WARNING,
                    "overlapping_rules",
                    f"les règles « {v.id} » et « {w.id} » donnent à voir les mêmes champs "
                    f"({_ids(common)}) aux mêmes destinataires sous des articles différents "
                    f"(« {v.article} », « {w.article} »)",
                    w.line,
                )

    def unseen_or_unpublished(self) -> Iterator[Finding]:
        # The date of birth of a format-2 charter serves the hub itself (minority at each
        # exchange): nobody needs to see it for it to be useful.
        birth = self.c.consent.birth_date_field if self.c.consent is not None else None
        for f in self.c.fields:
            if f.secrecy is Secrecy.INTERDIT:
                continue
            if f.id not in self.published:
                yield Finding(
                    Severity.WARNING,
                    "never_published",
                    f"aucune organisation ne peut publier le champ « {f.id} »",
                    f.line,
                )
            if f.id != birth and not any(
                self._visible(f.id, rule, s)
                for rule, s in zip(self.c.view, self.view_sets, strict=True)
            ):
                yield Finding(
                    Severity.WARNING,
                    "never_seen",
                    f"aucun destinataire ne peut voir le champ « {f.id} »",
                    f.line,
                )
        if self.secret and not self.c.secret_bound:
            yield Finding(
                Severity.WARNING,
                "no_secret_bound",
                "des champs sont couverts par le secret professionnel mais [[secret_bound]] "
                "ne désigne aucun destinataire astreint : ils ne circuleront jamais",
                None,
            )

    def _visible(self, field_id: str, rule: ViewRule, covered: frozenset[str]) -> bool:
        if field_id not in covered:
            return False
        if field_id not in self.secret:
            return True
        return any(
            self.c.is_secret_bound(frozenset({role}), kind)
            for role in rule.roles
            for kind in rule.kinds
        )

    def retention(self) -> Iterator[Finding]:
        in_use = {f.category for f in self.c.fields if f.id in self.published}
        kept = {r.category for r in self.c.retention}
        for category in sorted(in_use - kept):
            yield Finding(
                Severity.ERROR,
                "missing_retention",
                f"la catégorie « {category.value} » ({CATEGORY_LABELS_FR[category]}) est "
                "publiée mais n'a pas de durée de conservation [[retention]]",
                None,
            )
        for rule in self.c.retention:
            if rule.category not in in_use:
                yield Finding(
                    Severity.INFO,
                    "unused_retention",
                    f"la durée de conservation de la catégorie « {rule.category.value} » ne "
                    "s'applique à aucun champ publié",
                    rule.line,
                )

    def catalogue(self) -> Iterator[Finding]:
        for f in self.c.fields:
            prefix = f.id.split(".", 1)[0]
            if prefix != f.category.value:
                yield Finding(
                    Severity.WARNING,
                    "category_mismatch",
                    f"le champ « {f.id} » est rangé dans la catégorie « {f.category.value} » : "
                    f"son identifiant devrait commencer par « {f.category.value}. »",
                    f.line,
                )
            if f.secrecy is Secrecy.SECRET and f.tier is Tier.HUB:
                yield Finding(
                    Severity.WARNING,
                    "secret_at_hub",
                    f"le champ « {f.id} » est couvert par le secret professionnel mais traité "
                    "par le hub (tier « hub ») : préférez « e2e », que le hub ne peut pas lire",
                    f.line,
                )

    def purposes(self) -> Iterator[Finding]:
        used = {p for rule in self.c.view for p in rule.purposes}
        for purpose in self.c.purposes:
            if purpose.id not in used:
                yield Finding(
                    Severity.WARNING,
                    "unused_purpose",
                    f"la finalité « {purpose.id} » n'est utilisée par aucune règle [[view]]",
                    purpose.line,
                )

    def consent_categories(self) -> Iterator[Finding]:
        used = {f.accord for f in self.c.fields}
        for category in self.c.consent_categories:
            if category.id not in used:
                yield Finding(
                    Severity.WARNING,
                    "unused_consent_category",
                    f"la catégorie de consentement « {category.id} » n'est demandée par aucun "
                    "champ (« accord ») : elle figurerait sur les récépissés sans rien couvrir",
                    category.line,
                )

    def grace(self) -> Iterator[Finding]:
        if self.c.format == FORMAT_2 and self.c.membership.grace is None:
            yield Finding(
                Severity.WARNING,
                "no_grace",
                "[membership] ne fixe pas de délai « grace » : un partenaire qui ne signe pas "
                "une nouvelle version continuera indéfiniment d'appliquer l'ancienne "
                '(ex. grace = "P30D")',
                self.c.membership.line or None,
            )

    def articles(self) -> Iterator[Finding]:
        c = self.c
        cited = {f.article for f in c.fields} | {p.article for p in c.purposes}
        cited |= {k.article for k in c.consent_categories}
        cited |= {r.article for r in c.publish} | {r.article for r in c.view}
        cited |= {r.article for r in c.retention}
        arts = c.refusal_articles
        cited |= {arts.default, arts.secret, arts.consent, arts.declined}
        for article in c.articles:
            if article.id not in cited:
                yield Finding(
                    Severity.INFO,
                    "article_without_rule",
                    f"l'article « {article.id} » ({article.title}) n'est cité par aucune règle : "
                    "il engage les signataires sans être appliqué par le hub",
                    article.line,
                )


def lint(charter: Charter) -> list[Finding]:
    """Every finding on ``charter``, by line then severity."""
    return _Linter(charter).run()
