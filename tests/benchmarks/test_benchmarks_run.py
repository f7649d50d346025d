"""Every benchmark still runs (quick mode). Nothing here asserts on time."""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.benchmarks.common import FAIL, PASS, REPORTED, Result, alternate, ratios, spread, summary
from tests.benchmarks.run import main, modules

# The DESIGN §11 targets each benchmark must keep reporting (a figure silently dropped from
# `make bench` would otherwise go unnoticed). Quick mode is the tiny mode: a few forms, a
# 200-key directory, rounds of a fraction of a second.
TARGETS: dict[str, list[str]] = {
    "bench_liaison": ["≥ 60 % of baseline", "≥ 70 % of baseline"],
    "bench_liaison_http": ["≥ 40 % of baseline", "≤ 3× baseline"],
    "bench_directory": ["reported"],
    "bench_browser": ["≤ 50 ms", "≤ 20 ms"],
}
# Every module whose figures carry a DESIGN §11 bound must give a verdict on it.
VERDICTS: dict[str, int] = {
    "bench_audit": 4,
    "bench_browser": 2,
    "bench_charter": 5,
    "bench_http": 1,
    "bench_liaison": 2,
    "bench_liaison_http": 2,
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
    judged = [r for r in results if r.has_target]
    assert len(judged) == VERDICTS.get(name, 0), f"{name} gives verdicts on {len(judged)} figures"
    for result in results:
        assert result.verdict in (PASS, FAIL, REPORTED)
        assert result.rounds == () or len(result.rounds) >= 2
        assert result.baseline_rounds == () or result.rounds


def test_verdicts_against_ratio_and_value_bounds() -> None:
    rate = Result("rate", 60.0, "/s", "raw", 100.0, "≥ 55 %", min_ratio=0.55, min_value=50)
    assert rate.verdict == PASS
    assert Result("rate", 50.0, "/s", "raw", 100.0, "≥ 55 %", min_ratio=0.55).verdict == FAIL
    assert Result("rate", 60.0, "/s", "raw", 100.0, "≥ 1,000/s", min_value=1000).verdict == FAIL
    latency = Result("p99", 120.0, "µs", "ref", 900.0, "≤ 100 µs", max_value=100.0)
    assert latency.verdict == FAIL
    assert Result("p99", 2.5, "ms", "hello", 1.0, "≤ 3×", max_ratio=3.0).verdict == PASS
    reported = Result("x", 1.0, "s", "y", 2.0, "reported")
    assert reported.verdict == REPORTED and not reported.has_target
    assert summary([rate, latency, reported]) == "2 targets, 1 fail"


def test_a_figure_measured_in_rounds_shows_its_spread() -> None:
    result = Result(
        "rate", 2.0, "/s", "raw", 4.0, "≥ 40 %", min_ratio=0.4,
        rounds=(1.0, 2.0, 3.0), baseline_rounds=(4.0, 4.0, 4.0),
    )  # fmt: skip
    assert result.round_ratios == [0.25, 0.5, 0.75]
    assert result.ratio == 0.5  # the median of the rounds' ratios
    # The machine slowed down between rounds: the medians of the values alone (2 and 10)
    # would give 0.2, each round's pair says 0.5 (and 0.2, 0.9).
    drifting = replace(
        result, value=2.0, baseline_value=10.0, rounds=(1.0, 2.0, 9.0),
        baseline_rounds=(2.0, 10.0, 10.0),
    )  # fmt: skip
    assert drifting.ratio == 0.5 and drifting.verdict == PASS
    first, second = result.line().split("\n")
    assert first.endswith("| PASS") and "target ≥ 40 %" in first
    assert "3 rounds: 2.00 (1.00–3.00) /s" in second and "ratio 0.500 (0.250–0.750)" in second


def test_make_bench_repeats_the_set_reports_the_load_and_always_exits_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--quick", "--repeat", "2", "charter"]) == 0
    out = capsys.readouterr().out
    assert out.count("== bench_charter") == 2
    assert out.count("load average") == 4  # at the start and the end of each run
    assert out.count("5 targets, ") == 2
    assert "# over 2 runs:" in out


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
