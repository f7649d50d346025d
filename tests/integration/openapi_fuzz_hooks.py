"""Schemathesis hooks for the live run of ``test_openapi.py`` (loaded by ``st run`` through
``SCHEMATHESIS_HOOKS``).

Random references, consent ids, groups and purposes only ever meet refusals (403, 404, 400):
besides them, the fuzzer also draws the demo territory's own — read from the JSON file named by
``MAILLON_FUZZ_DEMO`` — so the answers of cases followed, consents in force and charters signed
are checked against the description too. Hypothesis picks between the two, so a derandomised
run stays reproducible.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import schemathesis

DEMO: dict[str, list[Any]] = json.loads(
    Path(os.environ["MAILLON_FUZZ_DEMO"]).read_text(encoding="utf-8")
)
CASE = "/api/v1/dossiers/{reference}"


def _or_demo(generated: dict[str, Any], demo: dict[str, st.SearchStrategy[Any]]) -> Any:
    """The generated values with ``demo``'s keys drawn from the demo's values, or as generated.

    The demo's come first: Hypothesis shrinks a failure towards them, an existing case.
    """
    known = st.fixed_dictionaries(demo).map(lambda values: {**generated, **values})
    return st.one_of(known, st.just(generated))


@schemathesis.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, Any]
) -> Any:
    """A case the SPIP follows (or another demo case), and one of the demo's consents."""
    if not path_parameters or "reference" not in path_parameters:
        return st.just(path_parameters)
    demo = {"reference": st.sampled_from(DEMO["references"])}
    if "consent_id" in path_parameters:
        demo["consent_id"] = st.sampled_from(DEMO["consent_ids"])
    return _or_demo(path_parameters, demo)


@schemathesis.hook
def flatmap_query(context: schemathesis.HookContext, query: dict[str, Any] | None) -> Any:
    """A purpose of the demo charter for reading a case."""
    if context.operation is None or context.operation.path != CASE:
        return st.just(query)
    return _or_demo(query or {}, {"finalite": st.sampled_from(DEMO["purposes"])})


@schemathesis.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> Any:
    """The demo's group and purposes for the what-if; catalogue fields for recording values."""
    path = context.operation.path if context.operation else ""
    if not isinstance(body, dict):
        return st.just(body)
    if path == "/api/v1/charte/simulation":
        return _or_demo(
            body,
            {
                "group": st.sampled_from(DEMO["groups"]),
                "purpose": st.sampled_from(DEMO["purposes"]),
            },
        )
    if path == f"{CASE}/informations":
        values = st.one_of(st.dates().map(date.isoformat), st.text(max_size=30))
        fields = st.dictionaries(st.sampled_from(DEMO["fields"]), values, min_size=1, max_size=3)
        return _or_demo(body, {"fields": fields})
    return st.just(body)
