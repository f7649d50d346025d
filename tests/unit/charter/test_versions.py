"""Versions: canonical digest, TOML round trip, diff, signatures and declinations."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings

from charter.canonical import canonical_bytes, digest, to_toml
from charter.decide import Declination, compile_charter
from charter.loader import load_charter
from charter.model import Charter, IsoDuration
from charter.versions import ChangeAction, Signature, applicable_version, diff, signatories
from charter.vocabulary import OrgKind
from tests.unit.charter.sample import SMALL, SMALL2
from tests.unit.charter.strategies import charters
from tests.unit.charter.test_loader import mutate


def test_digest_ignores_comments_whitespace_and_key_order() -> None:
    reformatted = (
        mutate(
            ("# Charte d'exemple pour les tests", "# un autre commentaire\n\n"),
            (
                'version = 1\ntitle = "Charte de test"',
                'title   =   "Charte de test"   # titre\nversion=1',
            ),
            ('kinds = ["spip", "pjj"]\nfields', 'kinds = [ "pjj" ,"spip" ]\nfields'),
        )
        .replace('text = """Seules', "text = '''Seules")
        .replace('échangées."""', "échangées.'''")
    )
    assert digest(load_charter(reformatted)) == digest(load_charter(SMALL))


def test_digest_changes_with_meaning() -> None:
    base = digest(load_charter(SMALL))
    assert digest(load_charter(mutate(("Secret partagé", "Secret partagé ")))) != base
    assert digest(load_charter(mutate(('duration = "P3M"', 'duration = "P4M"')))) != base
    # Rule order names reasons, so it is part of the meaning.
    swapped = mutate(
        ('id = "view-referent"', 'id = "view-tmp"'),
        ('id = "view-secret"', 'id = "view-referent"'),
    ).replace('id = "view-tmp"', 'id = "view-secret"')
    assert digest(load_charter(swapped)) != base
    assert digest(load_charter(SMALL)).startswith("sha256:")


@settings(max_examples=100, deadline=None)
@given(charters())
def test_toml_round_trip_keeps_the_charter_and_its_digest(charter: Charter) -> None:
    text = to_toml(charter)
    loaded = load_charter(text)
    assert loaded == charter
    assert canonical_bytes(loaded) == canonical_bytes(charter)


def test_diff_lists_added_removed_and_changed_in_french() -> None:
    old = load_charter(SMALL)
    new = load_charter(
        mutate(
            ("version = 1", "version = 2"),
            ('tier = "hub"', 'tier = "e2e"'),
            ("days_before = 7", "days_before = 3"),
            (
                '[[view]]\nid = "view-secret"\nroles = ["referent"]\nkinds = ["spip"]\n'
                'group_member = false\npurposes = ["suivi_parcours"]\n'
                'fields = ["sante.orientation"]\narticle = "art-2"\n\n',
                "",
            ),
            (
                '[[purposes]]\nid = "revue_mensuelle"',
                '[[purposes]]\nid = "orientation"\nlabel_fr = "Orientation"\n'
                'label_en = "Referral"\narticle = "art-1"\n\n[[purposes]]\nid = "revue_mensuelle"',
            ),
        )
    )
    changes = diff(old, new)
    assert (changes.old_version, changes.new_version) == (1, 2)
    assert [c.key for c in changes.of("fields", ChangeAction.CHANGED)] == ["justice.date_sortie"]
    assert [c.key for c in changes.of("view", ChangeAction.REMOVED)] == ["view-secret"]
    assert [c.key for c in changes.of("purposes", ChangeAction.ADDED)] == ["orientation"]
    text = changes.render_fr()
    assert "champ « justice.date_sortie » modifié : stockage : hub → e2e" in text
    assert "règle de consultation « view-secret » supprimée" in text
    assert "finalité « orientation » ajoutée" in text
    assert "days_before = 7, days_after = 1 → days_before = 3" in text


def test_same_content_has_an_empty_diff() -> None:
    charter = load_charter(SMALL)
    assert diff(charter, load_charter(to_toml(charter))).empty
    assert "aucune" in diff(charter, charter).render_fr()


def when(day: int) -> datetime:
    return datetime(2025, 1, day, 9, 0, tzinfo=UTC)


def test_applicable_version_is_the_newest_signed() -> None:
    signatures = [
        Signature("org-spip", 1, "Mme Directrice", when(2)),
        Signature("org-spip", 2, "Mme Directrice", when(20)),
        Signature("org-ml", 1, "M. Directeur", when(3)),
        Signature("org-ml", 3, "M. Directeur", when(4)),  # a version never published
    ]
    assert applicable_version("org-spip", [1, 2], signatures) == 2
    assert applicable_version("org-spip", [1, 2], signatures, at=when(10)) == 1
    # A new version applies to a partner only once it signed it.
    assert applicable_version("org-ml", [1, 2], signatures) == 1
    assert applicable_version("org-commune", [1, 2], signatures) is None
    assert applicable_version("org-spip", [], signatures) is None
    assert signatories(1, signatures) == {"org-spip", "org-ml"}


def test_declination_is_applied_to_publish_and_named() -> None:
    charter = load_charter(SMALL)
    declined = Declination("org-spip", "justice.date_sortie", "aménagement en cours", when(5))
    decision = compile_charter(charter).publish(
        OrgKind.SPIP, ["justice.date_sortie", "identite.prenom"], declinations=[declined]
    )
    assert decision.allowed_fields == {"identite.prenom"}
    assert decision.reason("justice.date_sortie").article == charter.refusal_articles.declined


PARIS = ZoneInfo("Europe/Paris")
PUBLISHED = datetime(2026, 1, 10, 15, 0, tzinfo=PARIS)  # version 2 published
SIGNED_V1 = [Signature("org-ml", 1, "M. Directeur", datetime(2025, 1, 3, tzinfo=UTC))]
THIRTY_DAYS = IsoDuration(days=30)


def paris(month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (paris(1, 10, 16), 1),  # just published
        (paris(2, 9, 23, 59), 1),  # 10 January + 30 days: the last day is included
        (paris(2, 10, 0, 0), None),  # the day after: no part until it signs
        (datetime(2026, 2, 9, 23, 30, tzinfo=UTC), None),  # already 10 February in Paris
        (datetime(2026, 2, 9, 22, 30, tzinfo=UTC), 1),  # still 9 February in Paris
        (paris(6, 1), None),
        (None, None),  # time unknown: no grace left (fail closed)
    ],
)
def test_grace_keeps_the_previous_signed_version_for_a_while(
    at: datetime | None, expected: int | None
) -> None:
    version = applicable_version(
        "org-ml",
        [1, 2],
        SIGNED_V1,
        at=at,
        newest_published_at=PUBLISHED,
        grace=THIRTY_DAYS,
    )
    assert version == expected


def test_grace_needs_the_publication_time_and_counts_calendar_months() -> None:
    # Publication time unknown: fail closed.
    unknown = applicable_version("org-ml", [1, 2], SIGNED_V1, at=paris(1, 11), grace=THIRTY_DAYS)
    assert unknown is None
    # A month from 31 January ends on 28 February (calendar arithmetic, clamped).
    end_of_month = datetime(2026, 1, 31, 9, 0, tzinfo=PARIS)
    for at, expected in ((paris(2, 28, 23), 1), (paris(3, 1, 0), None)):
        version = applicable_version(
            "org-ml",
            [1, 2],
            SIGNED_V1,
            at=at,
            newest_published_at=end_of_month,
            grace=IsoDuration(months=1),
        )
        assert version == expected, at


def test_grace_does_not_matter_once_the_newest_version_is_signed() -> None:
    signatures = [*SIGNED_V1, Signature("org-ml", 2, "M. Directeur", paris(3, 2))]

    def version(org_id: str, at: datetime | None) -> int | None:
        return applicable_version(
            org_id, [1, 2], signatures, at=at, newest_published_at=PUBLISHED, grace=THIRTY_DAYS
        )

    assert version("org-ml", paris(3, 3)) == 2
    # Between the end of the grace period and the signature, the partner took no part.
    assert version("org-ml", paris(3, 1)) is None
    assert version("org-ml", None) == 2
    assert version("org-x", paris(1, 11)) is None


def test_without_grace_the_previous_version_applies_indefinitely() -> None:
    version = applicable_version(
        "org-ml", [1, 2], SIGNED_V1, at=paris(12, 1), newest_published_at=PUBLISHED
    )
    assert version == 1


def test_diff_reads_format_1_under_format_2_and_names_the_new_attributes() -> None:
    old, new = load_charter(SMALL), load_charter(SMALL2)
    changes = diff(old, new)
    text = changes.render_fr()
    assert "en-tête « charte-test » modifié" in text
    assert "format de la charte : 1 → 2" in text
    assert "catégorie de consentement « identite » ajoutée" in text
    assert "réglages du consentement ajoutés" in text
    assert "version de la notice d'information : — → notice-test-1" in text
    assert "délai pour signer une nouvelle version : — → P30D" in text
    # The first name needed the accord « identite » in format 1 already: only the basis moved.
    (prenom,) = [c for c in changes.of("fields") if c.key == "identite.prenom"]
    assert prenom.details == ("base légale : consentement → CSI L.132-5",)
    (sortie,) = [c for c in changes.of("fields") if c.key == "justice.date_sortie"]
    assert "donnée relative aux infractions (art. 10 RGPD) : non → oui" in sortie.details
    (orientation,) = [c for c in changes.of("fields") if c.key == "sante.orientation"]
    assert "accord du jeune requis (catégorie) : — → sante" in orientation.details
