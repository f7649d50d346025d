"""Small pieces of the case service: references, field conventions, audit rule strings."""

from __future__ import annotations

import re

from audit.events import IDENT
from charter import default_charter
from charter.vocabulary import Secrecy, Tier
from hub.cases import articles, hub_fields, is_date_field, new_reference


def test_references_are_random_readable_and_valid_audit_ids() -> None:
    refs = {new_reference() for _ in range(500)}
    assert len(refs) == 500
    for ref in refs:
        assert re.fullmatch(r"C-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", ref)
        assert IDENT.fullmatch(ref)


def test_the_hub_holds_only_hub_tier_fields_never_forbidden_ones() -> None:
    fields = hub_fields(default_charter())
    assert fields and all(f.tier is Tier.HUB and f.secrecy is not Secrecy.INTERDIT for f in fields)
    assert {"justice.date_sortie", "parcours.referent"} <= {f.id for f in fields}
    assert "identite.nom" not in {f.id for f in fields}


def test_date_fields_follow_the_naming_convention() -> None:
    assert is_date_field("justice.date_sortie") and is_date_field("sortie.date")
    assert not is_date_field("parcours.referent") and not is_date_field("sortie.type")


def test_the_rule_of_an_event_lists_distinct_articles_as_an_audit_identifier() -> None:
    from charter import Reason, ReasonCode

    def reason(article: str) -> Reason:
        return Reason("f", True, None, article, "c", 1, ReasonCode.GRANTED)

    rule = articles([reason("art-8"), reason("art-6"), reason("art-8")])
    assert rule == "art-6/art-8" and IDENT.fullmatch(rule)
    assert articles([]) == ""
