"""Load and validate a charter written in TOML.

Every problem is collected (not just the first) and reported with its line and a French
message; a charter with any problem is refused whole, so nothing half-loaded ever exists.
The format is described in ``docs/charter.md``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeVar

from charter.errors import CharterError, Problem
from charter.globs import is_pattern, is_valid_field_id, is_valid_glob
from charter.lines import LineIndex
from charter.model import (
    CHARTER_FORMATS,
    CONSENT_BASIS,
    FORMAT_1,
    FORMAT_2,
    Article,
    Charter,
    ConsentCategory,
    ConsentSettings,
    FieldDef,
    IsoDuration,
    MeetingWindow,
    Member,
    Membership,
    PublishRule,
    Purpose,
    RefusalArticles,
    RetentionRule,
    SecretBound,
    ViewRule,
    format1_accord,
)
from charter.vocabulary import CaseStep, Category, OrgKind, RetentionEvent, Role, Secrecy, Tier

E = TypeVar("E", bound=StrEnum)

ANY = "*"  # in ``kinds``/``roles`` lists: every organisation kind / every role
MAX_WINDOW_DAYS = 366

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_CONSENT_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
DEFAULT_MINOR_AGE = 18
MIN_MINOR_AGE, MAX_MINOR_AGE = 10, 21
_ARTICLE_ID_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
# A legal basis is "<code> <article>": e.g. "CSI L.132-5", "CASF L.121-6-2", "RGPD art. 6-1-e".
_LEGAL_CODES = ("CSI", "CASF", "CPP", "CJPM", "CSP", "CGCT", "CCH", "CSS", "CT", "CP", "RGPD")
_BASIS_RE = re.compile(
    r"^(?:" + "|".join(_LEGAL_CODES) + r") (?:art\. )?[LRD]?\.?\s?\d+[0-9a-z.\-]*$"
)
_TOML_POS_RE = re.compile(r"\s*\(at (?:line (\d+), column \d+|end of document)\)$")
_TOML_MESSAGES_FR = (
    ("Invalid value", "valeur invalide"),
    ("Cannot overwrite a value", "cette clé a déjà une valeur (clé déclarée deux fois ?)"),
    ("Cannot declare", "cette table est déclarée deux fois"),
    ("Cannot mutate", "cette table ne peut pas être complétée ici"),
    ("Illegal character", "caractère interdit (chaîne non fermée ?)"),
    ("Unclosed array", "tableau non fermé"),
    ("Unclosed inline table", "table en ligne non fermée"),
    ("Unterminated string", "chaîne non terminée"),
    ("Expected '=' after a key", "« = » attendu après une clé"),
    ("Expected newline or end of document", "fin de ligne attendue après la valeur"),
    ("Invalid date or datetime", "date invalide"),
    ("Invalid initial character for a key part", "nom de clé invalide"),
)

_TOP_KEYS = {
    "charter",
    "articles",
    "fields",
    "purposes",
    "publish",
    "view",
    "secret_bound",
    "retention",
    "membership",
}
_FORMAT2_SECTIONS = {"consent_categories", "consent"}
# Keys format 2 added: in a format-1 file they are unknown, and the message says why.
_FORMAT2_KEYS = _FORMAT2_SECTIONS | {"accord", "offence", "grace", "steps"}
_FORMAT2_HINT = " (réservée au format 2 : ajoutez « format = 2 » dans [charter])"

_ENUM_NAMES_FR: dict[type[StrEnum], str] = {
    OrgKind: "type d'organisation inconnu",
    Role: "rôle inconnu",
    Category: "catégorie inconnue",
    Tier: "niveau de stockage (tier) inconnu",
    Secrecy: "niveau de secret inconnu",
    RetentionEvent: "événement de départ inconnu",
    CaseStep: "étape du parcours inconnue",
}


def load_charter(text: str, *, source: str = "<charte>") -> Charter:
    """Parse and validate a charter; raise ``CharterError`` listing every problem.

    ``source`` names the file in messages and is kept on the charter (it is not part of its
    identity or digest).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CharterError([_syntax_problem(exc, text)]) from None
    return _Loader(data, LineIndex(text)).build(source)


def _syntax_problem(exc: tomllib.TOMLDecodeError, text: str) -> Problem:
    detail = str(exc)
    match = _TOML_POS_RE.search(detail)
    if match is None:
        line = None
    elif match.group(1) is not None:
        line = int(match.group(1))
    else:  # "at end of document": the last line
        line = max(1, len(text.splitlines()))
    english = detail[: match.start()] if match else detail
    french = next((fr for en, fr in _TOML_MESSAGES_FR if english.startswith(en)), None)
    # French only (the pages are French): a parser message without a translation gets a
    # French hint instead of the parser's English.
    hint = french or "vérifiez les guillemets, les crochets et les signes « = » de cette ligne"
    return Problem(line, f"syntaxe TOML invalide : {hint}")


@dataclass(frozen=True)
class _Ctx:
    """Where a table sits in the file, and how to name it in French."""

    path: str
    n: int | None
    label: str


class _Loader:
    """Walks the parsed TOML once, collecting problems and valid values."""

    def __init__(self, data: dict[str, Any], index: LineIndex) -> None:
        self.data = data
        self.index = index
        self.problems: list[Problem] = []
        self.format = FORMAT_1  # read first, in build(): the other sections depend on it

    # -- reporting ----------------------------------------------------------------------------

    def line(self, ctx: _Ctx, key: str | None = None) -> int | None:
        if key is None:
            return self.index.table(ctx.path, ctx.n)
        return self.index.key(ctx.path, ctx.n, key)

    def fail(self, ctx: _Ctx, key: str | None, message: str) -> None:
        self.problems.append(Problem(self.line(ctx, key), message))

    # -- typed getters: each returns None after recording a problem -----------------------------

    def check_keys(
        self, table: dict[str, Any], ctx: _Ctx, required: set[str], optional: set[str]
    ) -> None:
        for key in sorted(required - table.keys()):
            self.fail(ctx, None, f"clé « {key} » manquante dans {ctx.label}")
        for key in sorted(table.keys() - required - optional):
            hint = _FORMAT2_HINT if self.format == FORMAT_1 and key in _FORMAT2_KEYS else ""
            self.fail(ctx, key, f"clé inconnue « {key} » dans {ctx.label}{hint}")

    def text(self, table: dict[str, Any], ctx: _Ctx, key: str) -> str | None:
        value = table.get(key)
        if key not in table:
            return None  # reported by check_keys
        if not isinstance(value, str):
            self.fail(ctx, key, f"« {key} » doit être une chaîne de caractères ({ctx.label})")
            return None
        if not value.strip():
            self.fail(ctx, key, f"« {key} » ne doit pas être vide ({ctx.label})")
            return None
        return value

    def ident(
        self, table: dict[str, Any], ctx: _Ctx, key: str, pattern: re.Pattern[str], hint: str
    ) -> str | None:
        value = self.text(table, ctx, key)
        if value is not None and pattern.match(value) is None:
            self.fail(ctx, key, f"identifiant « {value} » invalide : {hint} ({ctx.label})")
            return None
        return value

    def integer(
        self, table: dict[str, Any], ctx: _Ctx, key: str, minimum: int, maximum: int
    ) -> int | None:
        if key not in table:
            return None
        value = table[key]
        # bool is an int subclass in Python: `true` must not pass for 1.
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(ctx, key, f"« {key} » doit être un nombre entier ({ctx.label})")
            return None
        if not minimum <= value <= maximum:
            self.fail(
                ctx, key, f"« {key} » doit être compris entre {minimum} et {maximum} ({ctx.label})"
            )
            return None
        return value

    def boolean(self, table: dict[str, Any], ctx: _Ctx, key: str) -> bool | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, bool):
            self.fail(ctx, key, f"« {key} » doit valoir true ou false ({ctx.label})")
            return None
        return value

    def enum(self, table: dict[str, Any], ctx: _Ctx, key: str, enum: type[E]) -> E | None:
        value = self.text(table, ctx, key)
        if value is None:
            return None
        return self.enum_value(value, ctx, key, enum)

    def enum_value(self, value: str, ctx: _Ctx, key: str, enum: type[E]) -> E | None:
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(e.value for e in enum)
            self.fail(
                ctx,
                key,
                f"{_ENUM_NAMES_FR[enum]} « {value} » ({ctx.label}) ; valeurs possibles : {allowed}",
            )
            return None

    def string_list(self, table: dict[str, Any], ctx: _Ctx, key: str) -> list[str] | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(ctx, key, f"« {key} » doit être une liste de chaînes ({ctx.label})")
            return None
        if not value:
            self.fail(ctx, key, f"« {key} » ne doit pas être une liste vide ({ctx.label})")
            return None
        return list(value)

    def enum_set(
        self, table: dict[str, Any], ctx: _Ctx, key: str, enum: type[E]
    ) -> frozenset[E] | None:
        values = self.string_list(table, ctx, key)
        if values is None:
            return None
        if ANY in values:
            if len(values) > 1:
                self.fail(ctx, key, f"« * » doit être seul dans « {key} » ({ctx.label})")
                return None
            return frozenset(enum)
        out = [self.enum_value(v, ctx, key, enum) for v in values]
        if any(v is None for v in out):
            return None
        return frozenset(v for v in out if v is not None)

    def tables(self, key: str, label: str) -> Iterator[tuple[dict[str, Any], _Ctx]]:
        """Entries of the array of tables ``[[key]]``."""
        value = self.data.get(key, [])
        ctx_all = _Ctx("", None, "la charte")
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(ctx_all, key, f"« {key} » doit être déclaré avec [[{key}]]")
            return
        for n, table in enumerate(value):
            yield table, _Ctx(key, n, f"{label} n° {n + 1}")

    def article_ref(
        self, table: dict[str, Any], ctx: _Ctx, key: str, articles: set[str]
    ) -> str | None:
        value = self.text(table, ctx, key)
        if value is not None and value not in articles:
            self.fail(ctx, key, f"l'article « {value} » n'existe pas ({ctx.label})")
            return None
        return value

    def unique(self, ctx: _Ctx, seen: dict[str, int | None], value: str, what: str) -> bool:
        if value in seen:
            first = seen[value]
            where = f" (première déclaration ligne {first})" if first is not None else ""
            declared = "déclarée" if what.startswith("la ") else "déclaré"
            self.fail(ctx, "id", f"{what} « {value} » est {declared} deux fois{where}")
            return False
        seen[value] = self.line(ctx, "id")
        return True

    # -- sections -------------------------------------------------------------------------------

    def build(self, source: str) -> Charter:
        root = _Ctx("", None, "la charte")
        self.format = self.charter_format()
        known = _TOP_KEYS | _FORMAT2_SECTIONS if self.format == FORMAT_2 else _TOP_KEYS
        for key in sorted(self.data.keys() - known):
            hint = _FORMAT2_HINT if key in _FORMAT2_SECTIONS else ""
            self.fail(root, key, f"section inconnue « {key} »{hint}")
        header = self.header()
        # References are checked against every *declared* id, valid or not, so that one bad
        # entry yields one problem rather than a cascade through every rule naming it.
        article_ids: set[str] = set()
        articles = self.articles(article_ids)
        refusals = self.refusals(article_ids)
        accord_ids: set[str] = set()
        consent_categories = (
            self.consent_categories(article_ids, accord_ids) if self.format == FORMAT_2 else []
        )
        field_ids: set[str] = set()
        fields = self.fields(article_ids, field_ids, accord_ids)
        consent = self.consent(field_ids, fields) if self.format == FORMAT_2 else None
        purpose_ids: set[str] = set()
        purposes = self.purposes(article_ids, purpose_ids)
        rule_ids: dict[str, int | None] = {}
        publish = self.publish_rules(article_ids, field_ids, rule_ids)
        view = self.view_rules(article_ids, field_ids, purpose_ids, rule_ids)
        secret_bound = self.secret_bound()
        retention = self.retention(article_ids)
        membership = self.membership()
        if self.problems or header is None or refusals is None or membership is None:
            raise CharterError(self.problems)
        if self.format == FORMAT_2 and consent is None:  # pragma: no cover - reported above
            raise CharterError(self.problems)
        charter_id, version, title, effective = header
        return Charter(
            id=charter_id,
            version=version,
            title=title,
            effective=effective,
            articles=tuple(articles),
            fields=tuple(fields),
            purposes=tuple(purposes),
            publish=tuple(publish),
            view=tuple(view),
            secret_bound=tuple(secret_bound),
            retention=tuple(retention),
            membership=membership,
            refusal_articles=refusals,
            format=self.format,
            consent_categories=tuple(consent_categories),
            consent=consent,
            source=source,
        )

    def charter_format(self) -> int:
        """The file's format (``[charter] format``, absent: 1)."""
        table = self.data.get("charter")
        if not isinstance(table, dict) or "format" not in table:
            return FORMAT_1
        value = table["format"]
        if not isinstance(value, bool) and isinstance(value, int) and value in CHARTER_FORMATS:
            return value
        allowed = " ou ".join(str(f) for f in CHARTER_FORMATS)
        self.fail(
            _Ctx("charter", None, "[charter]"),
            "format",
            f"format de charte inconnu « {value} » : « format » vaut {allowed} "
            "(absent : 1) ([charter])",
        )
        # Check the rest against the format the content looks like, so that one wrong value
        # yields one problem rather than a cascade of « section inconnue ».
        return FORMAT_2 if _FORMAT2_SECTIONS & self.data.keys() else FORMAT_1

    def section(self, key: str) -> tuple[dict[str, Any], _Ctx] | None:
        ctx = _Ctx(key, None, f"[{key}]")
        value = self.data.get(key)
        if value is None:
            self.problems.append(Problem(1, f"section [{key}] manquante"))
            return None
        if not isinstance(value, dict):
            self.fail(_Ctx("", None, "la charte"), key, f"« {key} » doit être une table [{key}]")
            return None
        return value, ctx

    def header(self) -> tuple[str, int, str, date] | None:
        found = self.section("charter")
        if found is None:
            return None
        table, ctx = found
        self.check_keys(
            table,
            ctx,
            {"id", "version", "title", "effective", "default_article"},
            {"format", "secret_article", "consent_article", "declined_article"},
        )
        charter_id = self.ident(
            table, ctx, "id", _ID_RE, "lettres minuscules, chiffres, « - » ou « _ »"
        )
        version = self.integer(table, ctx, "version", 1, 1_000_000)
        title = self.text(table, ctx, "title")
        effective = table.get("effective")
        if "effective" in table and (
            not isinstance(effective, date) or isinstance(effective, datetime)
        ):
            self.fail(
                ctx,
                "effective",
                "« effective » doit être une date TOML sans guillemets (2025-01-31)",
            )
            effective = None
        if charter_id is None or version is None or title is None or effective is None:
            return None
        return charter_id, version, title, effective

    def refusals(self, articles: set[str]) -> RefusalArticles | None:
        table = self.data.get("charter")
        if not isinstance(table, dict):
            return None
        ctx = _Ctx("charter", None, "[charter]")
        default = self.article_ref(table, ctx, "default_article", articles)
        if default is None:
            return None
        others = {
            key: (self.article_ref(table, ctx, key, articles) if key in table else default)
            for key in ("secret_article", "consent_article", "declined_article")
        }
        if any(v is None for v in others.values()):
            return None
        return RefusalArticles(
            default=default,
            secret=others["secret_article"] or default,
            consent=others["consent_article"] or default,
            declined=others["declined_article"] or default,
        )

    def articles(self, declared: set[str]) -> list[Article]:
        out: list[Article] = []
        seen: dict[str, int | None] = {}
        for table, ctx in self.tables("articles", "l'article [[articles]]"):
            self.check_keys(table, ctx, {"id", "title", "text"}, set())
            article_id = self.ident(
                table, ctx, "id", _ARTICLE_ID_RE, "une lettre puis lettres, chiffres, « - »"
            )
            if article_id is not None:
                declared.add(article_id)
            title = self.text(table, ctx, "title")
            text = self.text(table, ctx, "text")
            if article_id is None or not self.unique(ctx, seen, article_id, "l'article"):
                continue
            if title is not None and text is not None:
                out.append(Article(article_id, title, text, line=self.line(ctx) or 0))
        if not self.data.get("articles"):
            self.problems.append(Problem(1, "la charte doit contenir au moins un article"))
        return out

    def consent_categories(self, articles: set[str], declared: set[str]) -> list[ConsentCategory]:
        out: list[ConsentCategory] = []
        seen: dict[str, int | None] = {}
        for table, entry_ctx in self.tables(
            "consent_categories", "la catégorie de consentement [[consent_categories]]"
        ):
            ctx = entry_ctx
            self.check_keys(table, ctx, {"id", "label_fr", "label_en", "article"}, set())
            category_id = self.ident(
                table, ctx, "id", _CONSENT_ID_RE, "lettres minuscules, chiffres ou « _ »"
            )
            if category_id is not None:
                declared.add(category_id)
                ctx = _Ctx(ctx.path, ctx.n, f"la catégorie de consentement « {category_id} »")
                if not self.unique(ctx, seen, category_id, "la catégorie de consentement"):
                    category_id = None
            label_fr = self.text(table, ctx, "label_fr")
            label_en = self.text(table, ctx, "label_en")
            article = self.article_ref(table, ctx, "article", articles)
            if category_id and label_fr and label_en and article:
                out.append(
                    ConsentCategory(category_id, label_fr, label_en, article, self.line(ctx) or 0)
                )
        return out

    def fields(
        self, articles: set[str], declared: set[str], accord_ids: set[str]
    ) -> list[FieldDef]:
        out: list[FieldDef] = []
        seen: dict[str, int | None] = {}
        common = {"id", "label_fr", "label_en", "category", "tier", "secrecy", "article"}
        if self.format == FORMAT_1:
            required, optional = common | {"basis"}, set()
        else:
            # Whether « basis » is required depends on the secrecy: checked in lawful_basis.
            required, optional = common, {"basis", "accord", "offence"}
        for table, entry_ctx in self.tables("fields", "le champ [[fields]]"):
            ctx = entry_ctx
            field_id = self.text(table, ctx, "id")
            if field_id is not None:
                declared.add(field_id)
                ctx = _Ctx(ctx.path, ctx.n, f"le champ « {field_id} »")
                if not is_valid_field_id(field_id):
                    self.fail(
                        ctx,
                        "id",
                        f"identifiant de champ « {field_id} » invalide : "
                        "attendu « categorie.nom » en minuscules (ex. justice.date_sortie)",
                    )
                    field_id = None
                elif not self.unique(ctx, seen, field_id, "le champ"):
                    field_id = None
            self.check_keys(table, ctx, required, optional)
            label_fr = self.text(table, ctx, "label_fr")
            label_en = self.text(table, ctx, "label_en")
            category = self.enum(table, ctx, "category", Category)
            tier = self.enum(table, ctx, "tier", Tier)
            secrecy = self.enum(table, ctx, "secrecy", Secrecy)
            lawful: tuple[str | None, str | None, bool] | None
            if self.format == FORMAT_1:
                lawful = self.basis_v1(table, ctx, category)
            else:
                lawful = self.lawful_basis(table, ctx, secrecy, accord_ids)
            article = self.article_ref(table, ctx, "article", articles)
            if (
                field_id is not None
                and label_fr is not None
                and label_en is not None
                and category is not None
                and tier is not None
                and secrecy is not None
                and lawful is not None
                and article is not None
            ):
                basis, accord, offence = lawful
                out.append(
                    FieldDef(
                        field_id,
                        label_fr,
                        label_en,
                        category,
                        tier,
                        secrecy,
                        basis,
                        article,
                        accord=accord,
                        offence=offence,
                        line=self.line(ctx) or 0,
                    )
                )
        if not self.data.get("fields"):
            self.problems.append(Problem(1, "la charte doit déclarer au moins un champ [[fields]]"))
        return out

    def basis_v1(
        self, table: dict[str, Any], ctx: _Ctx, category: Category | None
    ) -> tuple[str, str | None, bool] | None:
        """Format 1: « consentement » or a legal basis; the accord is derived from it."""
        basis = self.text(table, ctx, "basis")
        if basis is not None and basis != CONSENT_BASIS and _BASIS_RE.match(basis) is None:
            self.fail(
                ctx,
                "basis",
                f"base légale « {basis} » invalide ({ctx.label}) : « consentement » ou "
                f"« CODE article » avec CODE parmi {', '.join(_LEGAL_CODES)} "
                "(ex. « CSI L.132-5 »)",
            )
            return None
        if basis is None or category is None:
            return None
        return basis, format1_accord(category, basis), False

    def lawful_basis(
        self, table: dict[str, Any], ctx: _Ctx, secrecy: Secrecy | None, accord_ids: set[str]
    ) -> tuple[str | None, str | None, bool] | None:
        """Format 2: the lawful basis, the consent category of the accord, the offence flag."""
        ok = True
        offence = self.boolean(table, ctx, "offence")
        if "offence" in table and offence is None:
            ok = False
        if secrecy is Secrecy.INTERDIT:
            # Nothing is ever exchanged, so there is no processing to found and no accord to ask.
            for key, what in (("basis", "de base légale"), ("accord", "d'accord")):
                if key in table:
                    self.fail(
                        ctx,
                        key,
                        f"un champ « interdit » n'est jamais échangé : il ne porte pas {what} "
                        f"(retirez « {key} » du {ctx.label.removeprefix('le ')})",
                    )
                    ok = False
            return (None, None, bool(offence)) if ok else None
        basis: str | None = None
        if "basis" not in table:
            if secrecy is not None:
                self.fail(
                    ctx,
                    None,
                    f"clé « basis » manquante dans {ctx.label} : indiquez la base légale du "
                    "traitement (ex. « CSI L.132-5 »)",
                )
            ok = False
        else:
            basis = self.text(table, ctx, "basis")
            if basis == CONSENT_BASIS:
                self.fail(
                    ctx,
                    "basis",
                    f"« consentement » n'est pas une base légale au format 2 ({ctx.label}) : "
                    "« basis » indique la base légale du traitement (ex. « CSI L.132-5 ») ; "
                    'l\'accord du jeune se déclare à part, avec accord = "<catégorie>" '
                    "(une catégorie de [[consent_categories]])",
                )
                basis = None
            elif basis is not None and _BASIS_RE.match(basis) is None:
                self.fail(
                    ctx,
                    "basis",
                    f"base légale « {basis} » invalide ({ctx.label}) : « CODE article » avec "
                    f"CODE parmi {', '.join(_LEGAL_CODES)} (ex. « CSI L.132-5 »)",
                )
                basis = None
            ok = ok and basis is not None
        accord: str | None = None
        if "accord" in table:
            accord = self.text(table, ctx, "accord")
            if accord is not None and accord not in accord_ids:
                self.fail(
                    ctx,
                    "accord",
                    f"catégorie de consentement inconnue « {accord} » ({ctx.label}) : "
                    "déclarez-la dans [[consent_categories]]",
                )
                accord = None
            ok = ok and accord is not None
        return (basis, accord, bool(offence)) if ok else None

    def consent(self, declared: set[str], fields: list[FieldDef]) -> ConsentSettings | None:
        found = self.section("consent")
        if found is None:
            return None
        table, ctx = found
        self.check_keys(
            table,
            ctx,
            {"birth_date_field", "parents_for_minors", "notice_version"},
            {"minor_age"},
        )
        birth = self.text(table, ctx, "birth_date_field")
        if birth is not None:
            birth = self.birth_date_field(ctx, birth, declared, {f.id: f for f in fields})
        minor_age = self.integer(table, ctx, "minor_age", MIN_MINOR_AGE, MAX_MINOR_AGE)
        if "minor_age" not in table:
            minor_age = DEFAULT_MINOR_AGE
        parents = self.boolean(table, ctx, "parents_for_minors")
        notice = self.text(table, ctx, "notice_version")
        if birth is None or minor_age is None or parents is None or notice is None:
            return None
        return ConsentSettings(birth, minor_age, parents, notice, self.line(ctx) or 0)

    def birth_date_field(
        self, ctx: _Ctx, field_id: str, declared: set[str], valid: dict[str, FieldDef]
    ) -> str | None:
        """The hub computes minority from this field at each exchange: it must hold a date the
        hub processes (tier hub) and receives (not interdit)."""
        if field_id not in declared:
            self.fail(
                ctx,
                "birth_date_field",
                f"le champ de la date de naissance « {field_id} » n'est pas déclaré dans le "
                "catalogue [[fields]] ([consent])",
            )
            return None
        field = valid.get(field_id)
        if field is None:
            return None  # the field has its own problem, reported at its line
        ok = True
        if not field_id.rsplit(".", 1)[-1].startswith("date"):
            self.fail(
                ctx,
                "birth_date_field",
                f"« birth_date_field » doit désigner une date : le nom du champ « {field_id} » "
                "doit commencer par « date » (ex. identite.date_naissance) ([consent])",
            )
            ok = False
        if field.tier is not Tier.HUB:
            self.fail(
                ctx,
                "birth_date_field",
                f"le champ de la date de naissance « {field_id} » doit être traité par le hub "
                '(tier = "hub") : le hub calcule la minorité à chaque échange ([consent])',
            )
            ok = False
        if field.secrecy is Secrecy.INTERDIT:
            self.fail(
                ctx,
                "birth_date_field",
                f"le champ de la date de naissance « {field_id} » est « interdit » : le hub ne "
                "le recevrait jamais et ne pourrait pas calculer la minorité ([consent])",
            )
            ok = False
        return field_id if ok else None

    def purposes(self, articles: set[str], declared: set[str]) -> list[Purpose]:
        out: list[Purpose] = []
        seen: dict[str, int | None] = {}
        for table, ctx in self.tables("purposes", "la finalité [[purposes]]"):
            optional = {"steps"} if self.format == FORMAT_2 else set()
            self.check_keys(table, ctx, {"id", "label_fr", "label_en", "article"}, optional)
            purpose_id = self.ident(
                table, ctx, "id", _ID_RE, "lettres minuscules, chiffres, « - » ou « _ »"
            )
            if purpose_id is not None:
                declared.add(purpose_id)
            if purpose_id is not None and not self.unique(ctx, seen, purpose_id, "la finalité"):
                purpose_id = None
            label_fr = self.text(table, ctx, "label_fr")
            label_en = self.text(table, ctx, "label_en")
            article = self.article_ref(table, ctx, "article", articles)
            steps = self.enum_set(table, ctx, "steps", CaseStep) if "steps" in table else None
            if "steps" in table and steps is None:
                continue  # reported by enum_set
            if purpose_id and label_fr and label_en and article:
                out.append(
                    Purpose(
                        purpose_id, label_fr, label_en, article, self.line(ctx) or 0, steps=steps
                    )
                )
        return out

    def rule_header(
        self,
        table: dict[str, Any],
        ctx: _Ctx,
        articles: set[str],
        field_ids: set[str],
        rule_ids: dict[str, int | None],
    ) -> tuple[_Ctx, str | None, tuple[str, ...] | None, str | None]:
        """The parts publish and view rules share: id, field globs, article."""
        rule_id = self.ident(
            table, ctx, "id", _ID_RE, "lettres minuscules, chiffres, « - » ou « _ »"
        )
        if rule_id is not None:
            ctx = _Ctx(ctx.path, ctx.n, f"la règle « {rule_id} »")
            if not self.unique(ctx, rule_ids, rule_id, "la règle"):
                rule_id = None
        globs = self.string_list(table, ctx, "fields")
        if globs is not None:
            ok = True
            for glob in globs:
                if not is_valid_glob(glob):
                    self.fail(
                        ctx,
                        "fields",
                        f"motif de champ « {glob} » invalide ({ctx.label}) : identifiants en "
                        "minuscules séparés par des points, « * » pour « n'importe quoi »",
                    )
                    ok = False
                elif not is_pattern(glob) and glob not in field_ids:
                    self.fail(
                        ctx, "fields", f"la règle nomme un champ inconnu « {glob} » ({ctx.label})"
                    )
                    ok = False
            if not ok:
                globs = None
        article = self.article_ref(table, ctx, "article", articles)
        return ctx, rule_id, (tuple(dict.fromkeys(globs)) if globs else None), article

    def publish_rules(
        self,
        articles: set[str],
        field_ids: set[str],
        rule_ids: dict[str, int | None],
    ) -> list[PublishRule]:
        out: list[PublishRule] = []
        for table, entry_ctx in self.tables("publish", "la règle [[publish]]"):
            ctx = entry_ctx
            self.check_keys(table, ctx, {"id", "kinds", "fields", "article"}, set())
            ctx, rule_id, globs, article = self.rule_header(
                table, ctx, articles, field_ids, rule_ids
            )
            kinds = self.enum_set(table, ctx, "kinds", OrgKind)
            if rule_id and globs and article and kinds:
                out.append(PublishRule(rule_id, kinds, globs, article, self.line(ctx) or 0))
        return out

    def view_rules(
        self,
        articles: set[str],
        field_ids: set[str],
        purpose_ids: set[str],
        rule_ids: dict[str, int | None],
    ) -> list[ViewRule]:
        out: list[ViewRule] = []
        for table, entry_ctx in self.tables("view", "la règle [[view]]"):
            ctx = entry_ctx
            self.check_keys(
                table,
                ctx,
                {"id", "roles", "kinds", "group_member", "purposes", "fields", "article"},
                {"window", "senders"},
            )
            ctx, rule_id, globs, article = self.rule_header(
                table, ctx, articles, field_ids, rule_ids
            )
            roles = self.enum_set(table, ctx, "roles", Role)
            kinds = self.enum_set(table, ctx, "kinds", OrgKind)
            member = self.boolean(table, ctx, "group_member")
            purposes = self.string_list(table, ctx, "purposes")
            if purposes is not None:
                unknown = [p for p in purposes if p not in purpose_ids]
                for purpose in unknown:
                    self.fail(
                        ctx,
                        "purposes",
                        f"finalité inconnue « {purpose} » ({ctx.label}) : "
                        "déclarez-la dans [[purposes]]",
                    )
                if unknown:
                    purposes = None
            window_ok, window = self.window(table, ctx)
            senders: frozenset[OrgKind] | None = None
            senders_ok = True
            if "senders" in table:
                senders = self.enum_set(table, ctx, "senders", OrgKind)
                senders_ok = senders is not None
            if (
                rule_id
                and globs
                and article
                and roles
                and kinds
                and member is not None
                and purposes
                and window_ok
                and senders_ok
            ):
                out.append(
                    ViewRule(
                        rule_id,
                        roles,
                        kinds,
                        member,
                        frozenset(purposes),
                        globs,
                        article,
                        window,
                        senders,
                        self.line(ctx) or 0,
                    )
                )
        return out

    def window(self, table: dict[str, Any], ctx: _Ctx) -> tuple[bool, MeetingWindow | None]:
        if "window" not in table:
            return True, None
        raw = table["window"]
        if not isinstance(raw, dict):
            self.fail(
                ctx,
                "window",
                f"« window » doit être une table {{ days_before = …, days_after = … }} "
                f"({ctx.label})",
            )
            return False, None
        inner = _Ctx(ctx.path, ctx.n, f"« window » de {ctx.label}")
        bad = sorted(raw.keys() - {"days_before", "days_after"})
        missing = sorted({"days_before", "days_after"} - raw.keys())
        for key in bad:
            self.fail(inner, "window", f"clé inconnue « {key} » dans {inner.label}")
        for key in missing:
            self.fail(inner, "window", f"clé « {key} » manquante dans {inner.label}")
        if bad or missing:
            return False, None
        # Line lookups target "window": the keys of an inline table sit on its line.
        before = self._window_days(raw, inner, "days_before")
        after = self._window_days(raw, inner, "days_after")
        if before is None or after is None:
            return False, None
        return True, MeetingWindow(before, after)

    def _window_days(self, raw: dict[str, Any], ctx: _Ctx, key: str) -> int | None:
        value = raw[key]
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(ctx, "window", f"« {key} » doit être un nombre entier ({ctx.label})")
            return None
        if not 0 <= value <= MAX_WINDOW_DAYS:
            self.fail(
                ctx,
                "window",
                f"« {key} » doit être compris entre 0 et {MAX_WINDOW_DAYS} ({ctx.label})",
            )
            return None
        return value

    def secret_bound(self) -> list[SecretBound]:
        out: list[SecretBound] = []
        for table, ctx in self.tables("secret_bound", "l'entrée [[secret_bound]]"):
            self.check_keys(table, ctx, set(), {"kinds", "roles"})
            if not ({"kinds", "roles"} & table.keys()):
                self.fail(ctx, None, f"{ctx.label} doit préciser « kinds » ou « roles »")
                continue
            kinds = self.enum_set(table, ctx, "kinds", OrgKind) if "kinds" in table else None
            roles = self.enum_set(table, ctx, "roles", Role) if "roles" in table else None
            if ("kinds" in table and kinds is None) or ("roles" in table and roles is None):
                continue
            out.append(SecretBound(kinds, roles, self.line(ctx) or 0))
        return out

    def retention(self, articles: set[str]) -> list[RetentionRule]:
        out: list[RetentionRule] = []
        seen: dict[str, int | None] = {}
        for table, ctx in self.tables("retention", "la durée de conservation [[retention]]"):
            self.check_keys(table, ctx, {"category", "duration", "from", "article"}, set())
            category = self.enum(table, ctx, "category", Category)
            if category is not None:
                if category.value in seen:
                    self.fail(
                        ctx,
                        "category",
                        f"la conservation de la catégorie « {category.value} » est déclarée "
                        f"deux fois (première déclaration ligne {seen[category.value]})",
                    )
                    category = None
                else:
                    seen[category.value] = self.line(ctx, "category")
            duration = self.duration(table, ctx)
            event = self.enum(table, ctx, "from", RetentionEvent)
            article = self.article_ref(table, ctx, "article", articles)
            if category and duration and event and article:
                out.append(RetentionRule(category, duration, event, article, self.line(ctx) or 0))
        return out

    def duration(
        self, table: dict[str, Any], ctx: _Ctx, key: str = "duration"
    ) -> IsoDuration | None:
        text = self.text(table, ctx, key)
        if text is None:
            return None
        try:
            return IsoDuration.parse(text)
        except ValueError:
            self.fail(
                ctx,
                key,
                f"durée ISO 8601 invalide « {text} » ({ctx.label}) : attendu par exemple "
                "« P6M » (6 mois), « P1Y » (1 an), « P90D » (90 jours), sans heures",
            )
            return None

    def membership(self) -> Membership | None:
        found = self.section("membership")
        if found is None:
            return None
        table, ctx = found
        optional = {"coordinator", "members"}
        if self.format == FORMAT_2:
            optional.add("grace")
        self.check_keys(table, ctx, {"coordinator_kind"}, optional)
        coordinator_kind = self.enum(table, ctx, "coordinator_kind", OrgKind)
        coordinator = self.text(table, ctx, "coordinator") if "coordinator" in table else None
        members = self.members(table)
        grace: IsoDuration | None = None
        if self.format == FORMAT_2 and "grace" in table:
            grace = self.duration(table, ctx, "grace")
            if grace is None:
                return None
        if members is None or coordinator_kind is None:
            return None
        if coordinator is not None:
            match = [m for m in members if m.org_id == coordinator]
            if not match:
                self.fail(
                    ctx,
                    "coordinator",
                    f"le coordinateur « {coordinator} » n'est pas un membre signataire "
                    "([[membership.members]])",
                )
                return None
            if match[0].kind != coordinator_kind:
                self.fail(
                    ctx,
                    "coordinator",
                    f"le coordinateur « {coordinator} » n'est pas de type « {coordinator_kind} »",
                )
                return None
        return Membership(coordinator_kind, coordinator, tuple(members), grace, self.line(ctx) or 0)

    def members(self, membership: dict[str, Any]) -> list[Member] | None:
        raw = membership.get("members", [])
        if not isinstance(raw, list) or not all(isinstance(v, dict) for v in raw):
            self.fail(
                _Ctx("membership", None, "[membership]"),
                "members",
                "« members » doit être déclaré avec [[membership.members]]",
            )
            return None
        out: list[Member] = []
        seen: dict[str, int | None] = {}
        ok = True
        for n, table in enumerate(raw):
            ctx = _Ctx("membership.members", n, f"le membre [[membership.members]] n° {n + 1}")
            self.check_keys(table, ctx, {"org_id", "kind", "name"}, set())
            org_id = self.text(table, ctx, "org_id")
            kind = self.enum(table, ctx, "kind", OrgKind)
            name = self.text(table, ctx, "name")
            if org_id is not None:
                if org_id in seen:
                    self.fail(
                        ctx,
                        "org_id",
                        f"l'organisation « {org_id} » est déclarée deux fois "
                        f"(première déclaration ligne {seen[org_id]})",
                    )
                    org_id = None
                else:
                    seen[org_id] = self.line(ctx, "org_id")
            if org_id and kind and name:
                out.append(Member(org_id, kind, name, self.line(ctx) or 0))
            else:
                ok = False
        return out if ok else None
