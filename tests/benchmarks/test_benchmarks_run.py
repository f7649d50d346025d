"""Every benchmark still runs (quick mode). Nothing here asserts on time."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable

import pytest

from tests.benchmarks.common import Result, alternate, ratios, spread
from tests.benchmarks.run import modules

# The DESIGN §11 targets each benchmark must keep reporting (a figure silently dropped from
# `make bench` would otherwise go unnoticed). Quick mode is the tiny mode: a few forms, a
# 200-key directory, rounds of a fraction of a second.
TARGETS: dict[str, list[str]] = {
    "bench_liaison": ["≥ 60 % of baseline", "≥ 70 % of baseline"],
    "bench_liaison_http": ["≥ 40 % of baseline", "≤ 3× baseline"],
    "bench_directory": ["reported"],
}


def test_the_liaison_benchmarks_are_run_by_make_bench() -> None:
    assert set(TARGETS) <= set(modules([]))
    assert modules(["liaison"]) == ["bench_liaison", "bench_liaison_http"]


@pytest.mark.parametrize("name", modules([]))
def test_benchmark_runs_and_reports_ratios(name: str) -> None:
    module = importlib.import_module(f"tests.benchmarks.{name}")
    results = module.run(quick=True)
    assert results, "a benchmark must report at least one figure"
    for result in results:
        assert isinstance(result, Result)
        assert result.value > 0 and result.baseline_value > 0
        assert math.isfinite(result.ratio)
    for target in TARGETS.get(name, []):
        assert any(r.target == target for r in results), f"{name} lost its “{target}” figure"


def test_alternating_rounds_and_their_spread() -> None:
    calls: list[str] = []

    def measure(name: str, value: float) -> Callable[[int], float]:
        def one(number: int) -> float:
            calls.append(f"{name}{number}")
            return value * (number + 1)

        return one

    rounds = alternate({"a": measure("a", 2.0), "b": measure("b", 1.0)}, rounds=3)
    assert calls == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert rounds == {"a": [2.0, 4.0, 6.0], "b": [1.0, 2.0, 3.0]}
    assert ratios(rounds["b"], rounds["a"]) == [0.5, 0.5, 0.5]
    assert spread([3.0, 1.0, 2.0], ".1f") == "2.0 (1.0–3.0)"
