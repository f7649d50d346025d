"""The linter finds what loads fine but contradicts the charter's own promises."""

from __future__ import annotations

import pytest

from charter.lint import Finding, Severity, has_errors, lint
from charter.loader import load_charter
from tests.unit.charter.sample import SMALL, SMALL2
from tests.unit.charter.test_format2 import mutate2
from tests.unit.charter.test_loader import mutate


def findings(*edits: tuple[str, str]) -> list[Finding]:
    return lint(load_charter(mutate(*edits)))


def test_small_charter_is_clean() -> None:
    assert lint(load_charter(SMALL)) == []


@pytest.mark.parametrize(
    ("edits", "severity", "code", "line", "fragment"),
    [
        (
            # The group-review rule (all kinds) now opens the secret health referral.
            [
                (
                    'fields = ["identite.prenom"]\narticle',
                    'fields = ["identite.prenom", "sante.*"]\narticle',
                )
            ],
            Severity.ERROR,
            "secret_to_unbound",
            96,
            "« sante.orientation »",
        ),
        (
            [
                (
                    'fields = ["sante.orientation"]',
                    'fields = ["sante.orientation", "sante.diagnostic"]',
                )
            ],
            Severity.ERROR,
            "interdit_named",
            87,
            "« sante.diagnostic »",
        ),
        (
            [('roles = ["group_member"]', 'roles = ["group_member", "dpo"]')],
            Severity.ERROR,
            "content_to_dpo_or_admin",
            96,
            "« dpo »",
        ),
        (
            [
                (
                    'fields = ["identite.*", "justice.*", "sante.orientation"]',
                    'fields = ["identite.*", "sante.orientation"]',
                )
            ],
            Severity.WARNING,
            "view_without_publish",
            78,
            "« justice.date_sortie »",
        ),
        (
            [
                (
                    'fields = ["identite.*", "justice.*", "sante.orientation"]',
                    'fields = ["identite.*", "justice.*", "sante.orientation", "famille.*"]',
                )
            ],
            Severity.WARNING,
            "glob_matches_nothing",
            72,
            "« famille.* »",
        ),
        (
            [
                (
                    'category = "justice"\nduration = "P6M"',
                    'category = "famille"\nduration = "P6M"',
                )
            ],
            Severity.ERROR,
            "missing_retention",
            None,
            "« justice »",
        ),
        (
            [
                (
                    'fields = ["sante.orientation"]',
                    'fields = ["sante.orientation", "identite.prenom"]',
                )
            ],
            Severity.WARNING,
            "overlapping_rules",
            None,
            "",
        ),
        (
            [('kinds = ["spip", "pjj"]\n\n[[retention]]', 'kinds = ["police"]\n\n[[retention]]')],
            Severity.WARNING,
            "never_seen",
            40,
            "« sante.orientation »",
        ),
        (
            [('tier = "e2e"\nsecrecy = "secret"', 'tier = "hub"\nsecrecy = "secret"')],
            Severity.WARNING,
            "secret_at_hub",
            40,
            "",
        ),
        (
            [
                ('id = "sante.orientation"', 'id = "parcours.orientation_sante"'),
                (
                    '"sante.orientation"]\narticle = "art-1"',
                    '"parcours.orientation_sante"]\narticle = "art-1"',
                ),
                ('fields = ["sante.orientation"]', 'fields = ["parcours.orientation_sante"]'),
            ],
            Severity.WARNING,
            "category_mismatch",
            40,
            "devrait commencer par « sante. »",
        ),
    ],
)
def test_findings(
    edits: list[tuple[str, str]], severity: Severity, code: str, line: int | None, fragment: str
) -> None:
    found = findings(*edits)
    match = [f for f in found if f.code == code]
    assert match, found
    assert match[0].severity is severity
    assert line is None or match[0].line == line
    assert fragment in match[0].message_fr
    if severity is Severity.ERROR:
        assert has_errors(found)


def test_overlap_needs_shared_recipients() -> None:
    # Same fields, different articles, but disjoint kinds: no overlap.
    found = findings(
        ('kinds = ["mission_locale", "spip"]', 'kinds = ["mission_locale"]'),
        (
            'fields = ["sante.orientation"]\narticle = "art-2"',
            'fields = ["identite.prenom", "sante.orientation"]\narticle = "art-2"',
        ),
    )
    assert not [f for f in found if f.code == "overlapping_rules"]


# --- format 2 --------------------------------------------------------------------------------


def findings2(*edits: tuple[str, str]) -> list[Finding]:
    return lint(load_charter(mutate2(*edits)))


def test_small_format_2_charter_is_clean() -> None:
    assert lint(load_charter(SMALL2)) == []


@pytest.mark.parametrize(
    ("edits", "code", "line", "fragment"),
    [
        (
            [('accord = "sante"\n', "")],
            "unused_consent_category",
            33,
            "la catégorie de consentement « sante » n'est demandée par aucun champ",
        ),
        (
            # The release date (an offence datum) now reaches the Mission Locale's referent.
            [
                (
                    'kinds = ["spip", "pjj"]\ngroup_member',
                    'kinds = ["spip", "mission_locale"]\ngroup_member',
                )
            ],
            "offence_to_unbound",
            104,
            "(« justice.date_sortie ») à des destinataires qui ne sont pas astreints au secret "
            "professionnel (referent/mission_locale) : au sens de l'article 10 du RGPD",
        ),
        (
            [('grace = "P30D"\n', "")],
            "no_grace",
            148,
            "continuera indéfiniment d'appliquer l'ancienne",
        ),
    ],
)
def test_format_2_findings(
    edits: list[tuple[str, str]], code: str, line: int, fragment: str
) -> None:
    found = findings2(*edits)
    assert [f.code for f in found] == [code], found
    assert found[0].severity is Severity.WARNING
    assert found[0].line == line
    assert fragment in found[0].message_fr


def test_secret_offence_data_is_reported_once_as_a_secrecy_error() -> None:
    # A secret offence field opened to the unbound is refused by every decision anyway: the
    # error says so, and no second finding repeats it.
    found = findings2(
        (
            'tier = "hub"\nsecrecy = "confidentiel"\nbasis = "CSI L.132-5"\noffence',
            'tier = "e2e"\nsecrecy = "secret"\nbasis = "CSI L.132-5"\noffence',
        ),
        (
            'kinds = ["spip", "pjj"]\ngroup_member',
            'kinds = ["spip", "mission_locale"]\ngroup_member',
        ),
    )
    assert [f.code for f in found] == ["secret_to_unbound"]


def test_offence_data_among_bound_professionals_is_fine() -> None:
    # Given the mission locale is bound by secrecy in this charter
    found = findings2(
        (
            'kinds = ["spip", "pjj"]\ngroup_member',
            'kinds = ["spip", "mission_locale"]\ngroup_member',
        ),
        (
            '[[secret_bound]]\nkinds = ["spip", "pjj"]',
            '[[secret_bound]]\nkinds = ["spip", "pjj", "mission_locale"]',
        ),
    )
    assert found == []


def test_the_date_of_birth_needs_neither_an_accord_nor_a_reader() -> None:
    # The hub computes minority from it: no view rule has to show it, no accord has to cover it.
    found = findings2(
        (
            'fields = ["identite.*", "justice.date_sortie"]',
            'fields = ["identite.prenom", "justice.date_sortie"]',
        ),
        (
            'basis = "CSI L.132-5"\naccord = "identite"\narticle = "art-3"',
            'basis = "CSI L.132-5"\narticle = "art-3"',
        ),
    )
    assert found == []
    # Any other field nobody may see is still reported.
    unseen = findings2(
        (
            'fields = ["identite.*", "justice.date_sortie"]',
            'fields = ["identite.date_naissance", "justice.date_sortie"]',
        ),
    )
    assert [(f.code, f.line) for f in unseen] == [("never_seen", 39)]


def test_format_1_charters_get_no_format_2_findings() -> None:
    found = lint(load_charter(SMALL))
    assert not {f.code for f in found} & {
        "no_grace",
        "unused_consent_category",
        "offence_to_unbound",
    }
