"""The linter finds what loads fine but contradicts the charter's own promises."""

from __future__ import annotations

import pytest

from charter.lint import Finding, Severity, has_errors, lint
from charter.loader import load_charter
from tests.unit.charter.sample import SMALL
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
