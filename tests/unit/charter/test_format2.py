"""Format 2: lawful basis and accord stated apart, consent settings, grace, read with lines."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from charter.canonical import canonical_bytes, canonical_dict, digest, to_toml
from charter.errors import CharterError, Problem
from charter.loader import load_charter
from charter.model import FORMAT_1, FORMAT_2, ConsentSettings, IsoDuration
from tests.unit.charter.sample import SMALL, SMALL2


def mutate2(*edits: tuple[str, str]) -> str:
    """SMALL2 with each ``old`` replaced by ``new``; ``old`` must occur exactly once."""
    text = SMALL2
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def problems(text: str) -> list[Problem]:
    with pytest.raises(CharterError) as caught:
        load_charter(text)
    return list(caught.value.problems)


def test_format_2_charter_loads_whole() -> None:
    charter = load_charter(SMALL2)
    assert charter.format == FORMAT_2
    assert [c.id for c in charter.consent_categories] == ["identite", "sante"]
    assert charter.consent_categories[1].line == 33
    assert charter.consent == ConsentSettings(
        "identite.date_naissance", 18, True, "notice-test-1"
    )  # minor_age defaults to 18
    assert charter.membership.grace == IsoDuration(days=30)
    prenom, _, sortie, orientation, diagnostic = charter.fields
    assert (prenom.basis, prenom.accord, prenom.offence) == ("CSI L.132-5", "identite", False)
    assert (sortie.accord, sortie.offence) == (None, True)
    assert (orientation.basis, orientation.accord) == ("CSP L.1110-4", "sante")
    assert (diagnostic.basis, diagnostic.accord) == (None, None)
    assert charter.consent_category_ids == ("identite", "sante")
    category = charter.consent_category("sante")
    assert category is not None and category.label_en.startswith("A referral to care")
    assert charter.consent_category("justice") is None


def test_format_is_part_of_the_value() -> None:
    # The same rules written in format 1 and format 2 are two charters.
    v2 = load_charter(SMALL2)
    assert v2.format == FORMAT_2
    assert load_charter(SMALL).format == FORMAT_1
    assert canonical_dict(v2)["format"] == 2


@pytest.mark.parametrize(
    ("edits", "line", "message"),
    [
        (
            [
                (
                    'basis = "CSI L.132-5"\naccord = "identite"\narticle = "art-1"',
                    'basis = "consentement"\naccord = "identite"\narticle = "art-1"',
                )
            ],
            46,
            "« consentement » n'est pas une base légale au format 2",
        ),
        (
            [
                (
                    'secrecy = "interdit"\narticle',
                    'secrecy = "interdit"\nbasis = "CSP L.1110-4"\narticle',
                )
            ],
            90,
            "un champ « interdit » n'est jamais échangé : il ne porte pas de base légale",
        ),
        (
            [('secrecy = "interdit"\narticle', 'secrecy = "interdit"\naccord = "sante"\narticle')],
            90,
            "il ne porte pas d'accord",
        ),
        (
            [('accord = "sante"', 'accord = "soins"')],
            80,
            "catégorie de consentement inconnue « soins » (le champ « sante.orientation ») : "
            "déclarez-la dans [[consent_categories]]",
        ),
        (
            [('basis = "CSP L.1110-4"\n', "")],
            72,
            "clé « basis » manquante dans le champ « sante.orientation » : indiquez la base légale",
        ),
        (
            [('basis = "CSP L.1110-4"', 'basis = "secret médical"')],
            79,
            "base légale « secret médical » invalide (le champ « sante.orientation ») : « CODE article »",
        ),
        ([("offence = true", 'offence = "oui"')], 69, "« offence » doit valoir true ou false"),
        (
            [
                (
                    '[consent]\nbirth_date_field = "identite.date_naissance"\nparents_for_minors = true\n'
                    'notice_version = "notice-test-1"\n',
                    "",
                )
            ],
            1,
            "section [consent] manquante",
        ),
        (
            [
                (
                    'birth_date_field = "identite.date_naissance"',
                    'birth_date_field = "identite.naissance"',
                )
            ],
            144,
            "le champ de la date de naissance « identite.naissance » n'est pas déclaré",
        ),
        (
            [
                (
                    'birth_date_field = "identite.date_naissance"',
                    'birth_date_field = "identite.prenom"',
                )
            ],
            144,
            "« birth_date_field » doit désigner une date : le nom du champ « identite.prenom » doit "
            "commencer par « date »",
        ),
        (
            [
                (
                    'birth_date_field = "identite.date_naissance"',
                    'birth_date_field = "justice.date_sortie"',
                ),
                # keep the other checks quiet: only the tier is wrong here
                (
                    'tier = "hub"\nsecrecy = "confidentiel"\nbasis = "CSI L.132-5"\noffence',
                    'tier = "e2e"\nsecrecy = "confidentiel"\nbasis = "CSI L.132-5"\noffence',
                ),
            ],
            144,
            'doit être traité par le hub (tier = "hub")',
        ),
        (
            [("parents_for_minors = true\n", "")],
            143,
            "clé « parents_for_minors » manquante dans [consent]",
        ),
        (
            [("parents_for_minors = true", "parents_for_minors = 1")],
            145,
            "doit valoir true ou false",
        ),
        (
            [('notice_version = "notice-test-1"', "notice_version = 2026")],
            146,
            "« notice_version » doit être une chaîne de caractères",
        ),
        (
            [
                (
                    'notice_version = "notice-test-1"',
                    'notice_version = "notice-test-1"\nminor_age = 25',
                )
            ],
            147,
            "« minor_age » doit être compris entre 10 et 21",
        ),
        ([('grace = "P30D"', 'grace = "30 jours"')], 150, "durée ISO 8601 invalide « 30 jours »"),
        (
            [("format = 2", "format = 3")],
            4,
            "format de charte inconnu « 3 » : « format » vaut 1 ou 2",
        ),
        ([("format = 2", 'format = "2"')], 4, "format de charte inconnu « 2 »"),
        ([("format = 2", "format = true")], 4, "format de charte inconnu « True »"),
        (
            [('id = "sante"\nlabel_fr', 'id = "identite"\nlabel_fr')],
            34,
            "la catégorie de consentement « identite » est déclarée deux fois "
            "(première déclaration ligne 28)",
        ),
        (
            [('id = "sante"\nlabel_fr', 'id = "Santé"\nlabel_fr')],
            34,
            "identifiant « Santé » invalide",
        ),
        (
            [
                (
                    'label_en = "Your identity"\narticle = "art-3"',
                    'label_en = "Your identity"\narticle = "art-9"',
                )
            ],
            31,
            "l'article « art-9 » n'existe pas",
        ),
    ],
)
def test_each_format_2_problem_has_its_line_and_a_french_message(
    edits: list[tuple[str, str]], line: int, message: str
) -> None:
    found = problems(mutate2(*edits))
    assert any(p.line == line and message in p.message for p in found), found


def test_a_wrong_format_value_is_one_problem_not_a_cascade() -> None:
    # The content looks like format 2: it is checked as such, so only the value is reported.
    found = problems(mutate2(("format = 2", "format = 7")))
    assert [p.line for p in found] == [4]


def test_format_2_sections_and_keys_are_unknown_in_format_1() -> None:
    # Given SMALL2 without its format line (every later line moves up by one)
    found = problems(mutate2(("format = 2\n", "")))
    messages = {(p.line, p.message.split(" (")[0]) for p in found}
    assert (26, "section inconnue « consent_categories »") in messages
    assert (142, "section inconnue « consent »") in messages
    assert (46, "clé inconnue « accord » dans le champ « identite.prenom »") in messages
    assert (68, "clé inconnue « offence » dans le champ « justice.date_sortie »") in messages
    assert (149, "clé inconnue « grace » dans [membership]") in messages
    # Format 1 still wants a basis on every field, interdit ones included.
    assert (82, "clé « basis » manquante dans le champ « sante.diagnostic »") in messages
    assert all("format = 2" in p.message for p in found if "inconnue" in p.message)


def test_format_1_reads_its_accord_from_the_basis() -> None:
    # Given the format-1 sample: a first name on « consentement », a date on CSI L.132-5
    charter = load_charter(SMALL)
    prenom = charter.field("identite.prenom")
    sortie = charter.field("justice.date_sortie")
    diagnostic = charter.field("sante.diagnostic")
    assert prenom is not None and sortie is not None and diagnostic is not None
    assert (prenom.basis, prenom.accord, prenom.offence) == ("consentement", "identite", False)
    assert (sortie.accord, sortie.offence) == (None, False)
    assert diagnostic.accord == "sante"  # derived as stated, even if never exchanged
    assert charter.consent_categories == () and charter.consent is None
    assert charter.membership.grace is None
    # The derived view labels a category from the shared vocabulary.
    assert charter.consent_category_ids == ("identite", "sante")
    identite = charter.consent_category("identite")
    assert identite is not None
    assert (identite.label_fr, identite.label_en, identite.article) == (
        "Identité",
        "Identity",
        charter.refusal_articles.consent,
    )
    assert charter.consent_category("justice") is None  # its fields need no accord


def test_format_1_digest_leaves_out_what_format_1_cannot_say() -> None:
    data = canonical_dict(load_charter(SMALL))
    assert data["format"] == 1
    assert set(data) == {
        "format",
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
    assert set(data["fields"][0]) == {
        "id",
        "label_fr",
        "label_en",
        "category",
        "tier",
        "secrecy",
        "basis",
        "article",
    }
    assert "grace" not in data["membership"]


def test_a_format_1_value_cannot_say_more_than_its_digest() -> None:
    charter = load_charter(SMALL)
    field = charter.fields[1]
    with pytest.raises(ValueError, match="format 1"):
        replace(charter, fields=(replace(field, offence=True), *charter.fields[2:]))
    with pytest.raises(ValueError, match="format 1"):
        replace(charter, fields=(replace(field, accord="justice"),))
    with pytest.raises(ValueError, match="unknown charter format"):
        replace(charter, format=3)
    with pytest.raises(ValueError, match="consent settings"):
        replace(load_charter(SMALL2), consent=None)


def test_format_2_round_trip_and_digest_cover_the_new_sections() -> None:
    charter = load_charter(SMALL2)
    text = to_toml(charter)
    assert "format = 2" in text and "[consent]" in text and 'grace = "P30D"' in text
    again = load_charter(text)
    assert again == charter
    assert canonical_bytes(again) == canonical_bytes(charter)
    base = digest(charter)
    for edits in (
        [('notice_version = "notice-test-1"', 'notice_version = "notice-test-2"')],
        [('grace = "P30D"', 'grace = "P31D"')],
        [("offence = true", "offence = false")],
        [('accord = "sante"\n', "")],
        [('label_fr = "Votre identité"', 'label_fr = "Votre nom"')],
        [("parents_for_minors = true", "parents_for_minors = false")],
    ):
        assert digest(load_charter(mutate2(*edits))) != base, edits


@pytest.mark.parametrize(
    ("birth", "on", "minor"),
    [
        (date(2008, 6, 15), date(2026, 6, 14), True),
        (date(2008, 6, 15), date(2026, 6, 15), False),  # the 18th birthday
        (date(2008, 2, 29), date(2026, 2, 28), True),  # no 29 February in 2026
        (date(2008, 2, 29), date(2026, 3, 1), False),
    ],
)
def test_minority_is_computed_on_the_calendar(birth: date, on: date, minor: bool) -> None:
    settings = ConsentSettings("identite.date_naissance", 18, True, "notice-1")
    assert settings.is_minor(birth, on) is minor


def test_purpose_steps_are_format_2_and_checked() -> None:
    from charter import charter_type_text, load_charter
    from charter.errors import CharterError
    from charter.vocabulary import CaseStep

    text = charter_type_text(2)
    charter = load_charter(text)
    assert charter.purposes[0].applies_to("reperage") and not charter.purposes[0].applies_to(
        "suivi"
    )
    bad = text.replace('steps = ["reperage"]', 'steps = ["archive"]', 1)
    with pytest.raises(CharterError) as error:
        load_charter(bad)
    assert any("archive" in p.message for p in error.value.problems)
    v1 = charter_type_text(1).replace(
        'article = "art-2"\n', 'article = "art-2"\nsteps = ["reperage"]\n', 1
    )
    with pytest.raises(CharterError):
        load_charter(v1)  # a key format 1 does not know
    assert CaseStep("sortie") is CaseStep.SORTIE
