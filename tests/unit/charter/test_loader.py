"""The loader: a valid file loads whole; every problem is reported with its line, in French."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from datetime import date

import pytest

from charter.errors import CharterError, Problem
from charter.lines import LineIndex
from charter.loader import load_charter
from charter.model import IsoDuration
from charter.vocabulary import OrgKind, Role, Secrecy, Tier
from tests.unit.charter.sample import SMALL


def mutate(*edits: tuple[str, str]) -> str:
    """SMALL with each ``old`` replaced by ``new``; ``old`` must occur exactly once."""
    text = SMALL
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def problems(text: str) -> list[Problem]:
    with pytest.raises(CharterError) as caught:
        load_charter(text)
    return list(caught.value.problems)


def test_small_charter_loads_whole() -> None:
    charter = load_charter(SMALL, source="tests/sample.toml")
    assert (charter.id, charter.version, charter.effective) == ("charte-test", 1, date(2025, 1, 1))
    assert charter.field_ids == (
        "identite.prenom",
        "justice.date_sortie",
        "sante.orientation",
        "sante.diagnostic",
    )
    field = charter.field("justice.date_sortie")
    assert field is not None
    assert (field.tier, field.secrecy, field.basis, field.line) == (
        Tier.HUB,
        Secrecy.CONFIDENTIEL,
        "CSI L.132-5",
        30,
    )
    revue = charter.view[2]
    assert revue.kinds == frozenset(OrgKind)  # "*" stands for every kind
    assert revue.roles == {Role.GROUP_MEMBER}
    assert revue.window is not None and (revue.window.days_before, revue.window.days_after) == (
        7,
        1,
    )
    assert charter.refusal_articles.secret == "art-2"
    assert charter.refusal_articles.consent == "art-1"  # falls back to the default article
    assert charter.source == "tests/sample.toml"


def test_charter_is_immutable() -> None:
    charter = load_charter(SMALL)
    with pytest.raises(FrozenInstanceError):
        charter.version = 2  # type: ignore[misc]
    assert isinstance(charter.fields, tuple) and isinstance(charter.view[0].roles, frozenset)


@pytest.mark.parametrize(
    ("edits", "line", "message"),
    [
        (
            [('id = "justice.date_sortie"', 'id = "identite.prenom"')],
            31,
            "le champ « identite.prenom » est déclaré deux fois (première déclaration ligne 21)",
        ),
        (
            [('kinds = ["spip", "pjj"]\nfields', 'kinds = ["spip", "tribunal"]\nfields')],
            74,
            "type d'organisation inconnu « tribunal »",
        ),
        (
            [('roles = ["referent"]\nkinds = ["spip"]', 'roles = ["juge"]\nkinds = ["spip"]')],
            89,
            "rôle inconnu « juge »",
        ),
        (
            [('tier = "hub"', 'tier = "serveur"')],
            35,
            "niveau de stockage (tier) inconnu « serveur »",
        ),
        ([('secrecy = "secret"', 'secrecy = "tres_secret"')], 46, "niveau de secret inconnu"),
        (
            [('basis = "CSI L.132-5"', 'basis = "parce que"')],
            37,
            "base légale « parce que » invalide",
        ),
        ([('duration = "P3M"', 'duration = "3 mois"')], 123, "durée ISO 8601 invalide « 3 mois »"),
        ([('duration = "P3M"', 'duration = "PT3H"')], 123, "durée ISO 8601 invalide"),
        ([('duration = "P3M"', 'duration = "P0D"')], 123, "durée ISO 8601 invalide"),
        (
            [
                (
                    'fields = ["identite.prenom", "justice.date_sortie"]',
                    'fields = ["identite.prenom", "justice.date_fin"]',
                )
            ],
            84,
            "la règle nomme un champ inconnu « justice.date_fin »",
        ),
        (
            [
                (
                    'fields = ["identite.*", "justice.*", "sante.orientation"]',
                    'fields = ["identite.[a-z]*"]',
                )
            ],
            75,
            "motif de champ « identite.[a-z]* » invalide",
        ),
        (
            [
                (
                    'article = "art-1"\n\n[[view]]\nid = "view-secret"',
                    'article = "art-9"\n\n[[view]]\nid = "view-secret"',
                )
            ],
            85,
            "l'article « art-9 » n'existe pas",
        ),
        (
            [('purposes = ["revue_mensuelle"]', 'purposes = ["surveillance"]')],
            101,
            "finalité inconnue « surveillance »",
        ),
        ([("version = 1", 'version = "1"')], 4, "« version » doit être un nombre entier"),
        ([("version = 1", "version = true")], 4, "« version » doit être un nombre entier"),
        ([("version = 1", "version = 0")], 4, "« version » doit être compris entre 1"),
        (
            [("effective = 2025-01-01", 'effective = "2025-01-01"')],
            6,
            "« effective » doit être une date TOML",
        ),
        (
            [("group_member = true", 'group_member = "oui"')],
            100,
            "« group_member » doit valoir true ou false",
        ),
        (
            [('label_en = "Diagnosis"\n', "")],
            50,
            "clé « label_en » manquante dans le champ « sante.diagnostic »",
        ),
        ([('label_en = "Diagnosis"', 'label_em = "Diagnosis"')], 53, "clé inconnue « label_em »"),
        (
            [('id = "view-secret"', 'id = "pub-justice"')],
            88,
            "la règle « pub-justice » est déclarée deux fois",
        ),
        (
            [("days_before = 7", "days_before = -1")],
            104,
            "« days_before » doit être compris entre 0 et 366",
        ),
        ([('kinds = ["*"]', 'kinds = ["*", "spip"]')], 99, "« * » doit être seul"),
        (
            [('kinds = ["spip", "pjj"]\n\n[[retention]]', "kinds = []\n\n[[retention]]")],
            107,
            "« kinds » ne doit pas être une liste vide",
        ),
        (
            [('category = "justice"\nduration', 'category = "identite"\nduration')],
            116,
            "la conservation de la catégorie « identite » est déclarée deux fois",
        ),
        (
            [
                (
                    'category = "sante"\ntier = "e2e"\nsecrecy = "secret"',
                    'category = "medical"\ntier = "e2e"\nsecrecy = "secret"',
                )
            ],
            44,
            "catégorie inconnue « medical »",
        ),
        (
            [('id = "sante.orientation"', 'id = "Sante Orientation"')],
            41,
            "identifiant de champ « Sante Orientation » invalide",
        ),
        (
            [
                (
                    'coordinator_kind = "commune"',
                    'coordinator_kind = "commune"\ncoordinator = "org-ville"',
                )
            ],
            129,
            "le coordinateur « org-ville » n'est pas un membre signataire",
        ),
        ([("[membership]", "[membres]")], 127, "section inconnue « membres »"),
    ],
)
def test_each_problem_has_its_line_and_a_french_message(
    edits: list[tuple[str, str]], line: int, message: str
) -> None:
    found = problems(mutate(*edits))
    assert any(p.line == line and message in p.message for p in found), found
    assert all(str(p).startswith(f"ligne {p.line} : ") for p in found if p.line is not None)


def test_all_problems_are_reported_together_in_line_order() -> None:
    found = problems(
        mutate(
            ('tier = "hub"', 'tier = "serveur"'),
            ('duration = "P3M"', 'duration = "trois mois"'),
            ('kinds = ["spip", "pjj"]\nfields', 'kinds = ["tribunal", "pjj"]\nfields'),
        )
    )
    assert [p.line for p in found] == [35, 74, 123]
    message = str(CharterError(found))
    assert message.splitlines()[0].startswith("ligne 35 : ")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('[charter]\nid = "x"\nversion = \n', 3, "valeur invalide"),
        ('[charter]\nid = "x"\nid = "y"\n', 3, "déclarée deux fois"),
        ('[charter]\ntitle = "pas fermée\n', 2, "syntaxe TOML invalide"),
        ('[charter]\nid "x"\n', 2, "« = » attendu après une clé"),
        ('[charter]\nid = [1,\n"2"\n', 3, "tableau non fermé"),
    ],
)
def test_toml_syntax_errors_keep_their_line(text: str, line: int, fragment: str) -> None:
    (problem,) = problems(text)
    assert problem.line == line
    assert fragment in problem.message
    # French pages: the parser's English never shows, translated or not
    for english in ("Invalid", "Expected", "Unclosed", "Cannot", "Illegal", "line", "column"):
        assert english not in problem.message, problem.message


def test_a_parser_message_without_a_translation_gets_a_french_hint() -> None:
    (problem,) = problems('[charter]\nid = "\\q"\n')  # "Unescaped '\\' in a string"
    assert problem.line == 2
    assert problem.message.startswith("syntaxe TOML invalide : vérifiez")
    assert "Unescaped" not in problem.message and "string" not in problem.message


def test_missing_sections_are_reported() -> None:
    found = problems('[charter]\nid = "x"\n')
    messages = " / ".join(p.message for p in found)
    assert "section [membership] manquante" in messages
    assert "au moins un article" in messages
    assert "clé « version » manquante dans [charter]" in messages


def test_a_rule_naming_an_unknown_article_is_not_half_loaded() -> None:
    # Given one bad rule among good ones, nothing is returned at all
    with pytest.raises(CharterError):
        load_charter(mutate(('article = "art-1"\nwindow', 'article = "art-7"\nwindow')))


def test_line_index_ignores_lookalikes_inside_strings_and_arrays() -> None:
    text = (
        "[charter]\n"
        'text = """\n'
        "[[fields]]\n"
        'id = "faux"\n'
        '"""\n'
        "list = [\n"
        '  ["[[fields]]"],\n'
        "]\n"
        "[[fields]]  # vrai\n"
        "id = 'vrai' # commentaire [x]\n"
        "[[fields]]\n"
        "window = { a = 1 }\n"
    )
    index = LineIndex(text)
    assert index.table("fields", 0) == 9
    assert index.key("fields", 0, "id") == 10
    assert index.table("fields", 1) == 11
    assert index.key("fields", 1, "window") == 12
    assert index.key("charter", None, "list") == 6
    assert index.key("fields", 1, "absent") == 11  # falls back to the header
    assert index.table("fields", 2) is None


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("P6M", date(2025, 8, 31), date(2026, 2, 28)),  # clamped to the month's end
        ("P1Y", date(2024, 2, 29), date(2025, 2, 28)),
        ("P2W3D", date(2025, 1, 1), date(2025, 1, 18)),
        ("P1Y6M", date(2025, 1, 15), date(2026, 7, 15)),
    ],
)
def test_iso_durations_are_calendar_durations(text: str, start: date, end: date) -> None:
    duration = IsoDuration.parse(text)
    assert duration.add_to(start) == end
    assert str(duration) == text


@pytest.mark.parametrize("text", ["P", "6M", "P6", "PT1H", "P1M2Y", "P0D", "p6m", ""])
def test_bad_iso_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        IsoDuration.parse(text)
