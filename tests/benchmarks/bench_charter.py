"""Charter decisions: compiled against the interpreted reference, measured in the same run.

Figures (DESIGN §11): one decision for a 50-field form (publish and view), and the p99 of a
view decision for 10 recipients × 20 fields. The baseline is the interpreted evaluator of the
same charter on the same requests, so the ratio says what compilation buys on this machine.
Targets: ≤ 20 µs per decision, ≤ 100 µs for 10 recipients × 20 fields. No assertion on time.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from datetime import date

from charter.decide import CompiledCharter, Interpreter, Recipient, compile_charter, interpret
from charter.loader import load_charter
from charter.model import Charter
from charter.vocabulary import OrgKind, Role
from tests.benchmarks.common import Result, alternate, latencies, percentile

CATEGORIES = ("identite", "contact", "justice", "formation_emploi", "logement", "parcours")
MEETING = date(2025, 3, 10)


def _field(field_id: str, category: str, secrecy: str) -> str:
    return (
        f'[[fields]]\nid = "{field_id}"\nlabel_fr = "{field_id}"\nlabel_en = "{field_id}"\n'
        f'category = "{category}"\ntier = "e2e"\nsecrecy = "{secrecy}"\n'
        'basis = "consentement"\narticle = "art-1"\n'
    )


def bench_charter_text(n_fields: int = 60) -> str:
    """A synthetic charter with ``n_fields`` fields and rules shaped like the charter-type."""
    parts = [
        '[charter]\nid = "bench"\nversion = 1\ntitle = "Banc d\'essai"\n'
        'effective = 2025-01-01\ndefault_article = "art-1"\n',
        '[[articles]]\nid = "art-1"\ntitle = "Nécessité"\ntext = "Strictement nécessaire."\n',
    ]
    for i in range(n_fields):
        category = CATEGORIES[i % len(CATEGORIES)]
        secrecy = "secret" if i % 10 == 3 else "interdit" if i % 17 == 5 else "confidentiel"
        parts.append(_field(f"{category}.champ_{i:03d}", category, secrecy))
    for purpose in ("suivi_parcours", "revue_mensuelle", "orientation"):
        parts.append(
            f'[[purposes]]\nid = "{purpose}"\nlabel_fr = "{purpose}"\nlabel_en = "{purpose}"\n'
            'article = "art-1"\n'
        )
    parts.append(
        '[[publish]]\nid = "pub-justice"\nkinds = ["spip", "pjj"]\nfields = ["*"]\n'
        'article = "art-1"\n'
        '[[publish]]\nid = "pub-ml"\nkinds = ["mission_locale"]\n'
        'fields = ["identite.*", "contact.*", "formation_emploi.*", "parcours.*"]\n'
        'article = "art-1"\n'
    )
    view_rules = [
        (
            "view-ref",
            '["referent"]',
            '["spip", "pjj", "mission_locale"]',
            "false",
            '["suivi_parcours"]',
            '["identite.*", "contact.*", "justice.*", "parcours.*"]',
            "",
        ),
        (
            "view-agent",
            '["agent"]',
            '["mission_locale", "bailleur"]',
            "false",
            '["orientation"]',
            '["identite.*", "formation_emploi.*", "logement.*"]',
            "",
        ),
        (
            "view-revue",
            '["group_member", "coordinator"]',
            '["*"]',
            "true",
            '["revue_mensuelle"]',
            '["identite.*", "parcours.*"]',
            "window = { days_before = 7, days_after = 2 }\n",
        ),
        (
            "view-coord",
            '["coordinator"]',
            '["commune"]',
            "true",
            '["suivi_parcours"]',
            '["parcours.*"]',
            "",
        ),
    ]
    for rule_id, roles, kinds, member, purposes, fields, extra in view_rules:
        parts.append(
            f'[[view]]\nid = "{rule_id}"\nroles = {roles}\nkinds = {kinds}\n'
            f"group_member = {member}\npurposes = {purposes}\nfields = {fields}\n"
            f'article = "art-1"\n{extra}'
        )
    parts.append('[[secret_bound]]\nkinds = ["spip", "pjj"]\n')
    for category in CATEGORIES:
        parts.append(
            f'[[retention]]\ncategory = "{category}"\nduration = "P6M"\n'
            'from = "measure_ended"\narticle = "art-1"\n'
        )
    parts.append('[membership]\ncoordinator_kind = "commune"\n')
    return "\n".join(parts)


RECIPIENTS = (
    (
        Recipient.of(Role.REFERENT, org_kind=OrgKind.MISSION_LOCALE, group_member=False),
        "suivi_parcours",
    ),
    (Recipient.of(Role.REFERENT, org_kind=OrgKind.SPIP, group_member=True), "suivi_parcours"),
    (Recipient.of(Role.AGENT, org_kind=OrgKind.MISSION_LOCALE, group_member=False), "orientation"),
    (Recipient.of(Role.AGENT, org_kind=OrgKind.BAILLEUR, group_member=False), "orientation"),
    (
        Recipient.of(Role.GROUP_MEMBER, org_kind=OrgKind.POLICE, group_member=True),
        "revue_mensuelle",
    ),
    (Recipient.of(Role.GROUP_MEMBER, org_kind=OrgKind.PJJ, group_member=True), "revue_mensuelle"),
    (
        Recipient.of(
            Role.COORDINATOR, Role.GROUP_MEMBER, org_kind=OrgKind.COMMUNE, group_member=True
        ),
        "suivi_parcours",
    ),
    (
        Recipient.of(Role.COORDINATOR, org_kind=OrgKind.COMMUNE, group_member=True),
        "revue_mensuelle",
    ),
    (Recipient.of(Role.AGENT, org_kind=OrgKind.SPIP, group_member=False), "suivi_parcours"),
    (Recipient.of(Role.REFERENT, org_kind=OrgKind.PJJ, group_member=False), "suivi_parcours"),
)


def _view_all(engine: CompiledCharter | Interpreter, fields: list[str]) -> None:
    for recipient, purpose in RECIPIENTS:
        engine.view(
            recipient,
            purpose,
            fields,
            sender_org_kind=OrgKind.SPIP,
            at=MEETING,
            meeting_dates=(MEETING,),
        )


def _micros(values: list[float]) -> list[float]:
    return [v * 1e6 for v in values]


def _field_lists(field_ids: tuple[str, ...], count: int, size: int) -> list[list[str]]:
    """``count`` different lists of ``size`` fields (seeded draws from the charter's fields):
    more than a context keeps decisions for, so that each call decides afresh."""
    draw = random.Random(13)
    lists = {tuple(draw.sample(field_ids, size)) for _ in range(count)}
    return [list(x) for x in sorted(lists)]


def run(quick: bool) -> list[Result]:
    """Measure compiled and interpreted decisions on the same charter and requests, each figure
    the median of alternating rounds."""
    charter: Charter = load_charter(bench_charter_text(60))
    compiled = compile_charter(charter)
    reference = interpret(charter)
    form = [*charter.field_ids[:48], "inconnu.champ_a", "inconnu.champ_b"]  # 50 fields
    twenty = list(charter.field_ids[:20])
    calls = 200 if quick else 2_000
    slow_calls = 50 if quick else 200
    rounds = 2 if quick else 5
    recipient, purpose = RECIPIENTS[0]
    # A compiled context keeps the decisions it made (charter.decide._MEMO_SIZE): the cold
    # figure cycles through more field lists than that, so every decision is computed.
    fresh = _field_lists(charter.field_ids, 1_000, 20)
    cycle = iter(range(10**12))

    def view_compiled() -> None:
        compiled.view(recipient, purpose, form, sender_org_kind=OrgKind.SPIP)

    def view_interpreted() -> None:
        reference.view(recipient, purpose, form, sender_org_kind=OrgKind.SPIP)

    def publish_compiled() -> None:
        compiled.publish(OrgKind.MISSION_LOCALE, form)

    def publish_interpreted() -> None:
        reference.publish(OrgKind.MISSION_LOCALE, form)

    def single() -> None:
        compiled.view(
            RECIPIENTS[1][0], RECIPIENTS[1][1], twenty, at=MEETING, meeting_dates=(MEETING,)
        )

    def cold_batch() -> None:
        _view_all(compiled, fresh[next(cycle) % len(fresh)])

    # Warm the compiled tables first: a territory's few contexts are built once and reused.
    _view_all(compiled, twenty)
    view_compiled()

    def median_us(fn: Callable[[], None], n: int) -> Callable[[int], float]:
        return lambda _r: statistics.median(_micros(latencies(fn, calls=n)))

    def p99_us(fn: Callable[[], None], n: int, scale: float = 1.0) -> Callable[[int], float]:
        return lambda _r: percentile(_micros(latencies(fn, calls=n)), 99) / scale

    measured = alternate(
        {
            "view": median_us(view_compiled, calls),
            "view_ref": median_us(view_interpreted, slow_calls),
            "publish": median_us(publish_compiled, calls),
            "publish_ref": median_us(publish_interpreted, slow_calls),
            "batch": p99_us(lambda: _view_all(compiled, twenty), calls),
            "cold": p99_us(cold_batch, calls),
            "batch_ref": p99_us(lambda: _view_all(reference, twenty), slow_calls // 5),
            "single": p99_us(single, calls),
        },
        rounds=rounds,
    )

    def result(
        name: str, key: str, base: str, baseline: str, target: str, **bounds: float
    ) -> Result:
        return Result(
            name=name,
            value=statistics.median(measured[key]),
            unit="µs",
            baseline_name=baseline,
            baseline_value=statistics.median(measured[base]),
            target=target,
            higher_is_better=False,
            rounds=tuple(measured[key]),
            baseline_rounds=tuple(measured[base]),
            **bounds,
        )

    per_decision = "≤ 20 µs per decision; ratio well below 1"
    ref_per_recipient = [p / len(RECIPIENTS) for p in measured["batch_ref"]]
    measured["batch_ref_one"] = ref_per_recipient
    return [
        result("charter view, 50-field form, compiled (median)", "view", "view_ref",
               "interpreted, same request", per_decision, max_value=20.0),
        result("charter publish, 50-field form, compiled (median)", "publish", "publish_ref",
               "interpreted, same request", per_decision, max_value=20.0),
        result("charter view p99, 10 recipients × 20 fields, compiled", "batch", "batch_ref",
               "interpreted p99, same batch", "p99 ≤ 100 µs (DESIGN §11)", max_value=100.0),
        result("same, cold: a new field list on every call", "cold", "batch_ref",
               "interpreted p99, same batch", "p99 ≤ 100 µs (DESIGN §11)", max_value=100.0),
        result("charter view p99, one recipient × 20 fields, compiled", "single",
               "batch_ref_one", "interpreted p99 per recipient (batch/10)",
               "≤ 20 µs per decision", max_value=20.0),
    ]  # fmt: skip
