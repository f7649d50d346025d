"""Shared helpers for the benchmarks run by ``make bench``.

Every figure is reported as a ratio against a baseline measured in the same run on the same
machine (DESIGN §11): machines are shared and noisy, so absolute numbers mean little, and no
test ever asserts on time. Each ``bench_*.py`` module exposes ``run(quick: bool) -> list[Result]``;
``quick`` shrinks the workload so the test suite can check that every benchmark still runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


PASS, FAIL, REPORTED = "PASS", "FAIL", "reported"


@dataclass(frozen=True)
class Result:
    """One measured figure next to its same-run baseline, and its verdict against its target.

    The ratio is always figure/baseline; ``target`` states the bound in words (in the same
    direction), and the bounds below make it checkable: ``min_ratio``/``max_ratio`` bound the
    ratio, ``min_value``/``max_value`` the figure itself (in ``unit``). A figure with no bound
    is reported only. ``higher_is_better`` says how to read the figure (rates vs latencies).

    ``rounds`` and ``baseline_rounds`` hold the per-round values (alternating rounds) when the
    figure is a median of several: the ratio is then the median of the per-round ratios, and
    the report shows the range of the rounds and of their ratios, so that a reader can tell
    noise from a miss.
    """

    name: str
    value: float
    unit: str
    baseline_name: str
    baseline_value: float
    target: str
    higher_is_better: bool = True
    min_ratio: float | None = None
    max_ratio: float | None = None
    min_value: float | None = None
    max_value: float | None = None
    rounds: tuple[float, ...] = ()
    baseline_rounds: tuple[float, ...] = ()

    @property
    def ratio(self) -> float:
        """Figure divided by baseline (both in the same unit): the median of the per-round
        ratios when both were measured in alternating rounds (each round's pair saw the same
        machine), else the ratio of the two values."""
        if self.round_ratios:
            return statistics.median(self.round_ratios)
        return self.value / self.baseline_value if self.baseline_value else float("inf")

    @property
    def has_target(self) -> bool:
        """Whether the figure has a bound to meet (otherwise it is only reported)."""
        bounds = (self.min_ratio, self.max_ratio, self.min_value, self.max_value)
        return any(b is not None for b in bounds)

    @property
    def verdict(self) -> str:
        """``PASS`` or ``FAIL`` against every bound; ``reported`` when there is none."""
        if not self.has_target:
            return REPORTED
        ratio, value = self.ratio, self.value
        ok = (
            (self.min_ratio is None or ratio >= self.min_ratio)
            and (self.max_ratio is None or ratio <= self.max_ratio)
            and (self.min_value is None or value >= self.min_value)
            and (self.max_value is None or value <= self.max_value)
        )
        return PASS if ok else FAIL

    @property
    def round_ratios(self) -> list[float]:
        """Per-round ratios, when both the figure and its baseline were measured in rounds."""
        if self.rounds and len(self.rounds) == len(self.baseline_rounds):
            return ratios(self.rounds, self.baseline_rounds)
        return []

    def line(self) -> str:
        """One human-readable report line (two when the figure has per-round values)."""
        head = (
            f"{self.name:<58} {self.value:>14,.2f} {self.unit:<8} "
            f"| baseline {self.baseline_name}: {self.baseline_value:,.2f} "
            f"| ratio {self.ratio:.3f} | target {self.target} | {self.verdict}"
        )
        if not self.rounds:
            return head
        detail = f"    {len(self.rounds)} rounds: {spread(self.rounds, ',.2f')} {self.unit}"
        if self.baseline_rounds:
            detail += f"; baseline {spread(self.baseline_rounds, ',.2f')}"
        if self.round_ratios:
            detail += f"; ratio {spread(self.round_ratios)}"
        return f"{head}\n{detail}"


def summary(results: Sequence[Result]) -> str:
    """The closing line of a run: ``N targets, M fail`` (figures without a bound not counted)."""
    targets = [r for r in results if r.has_target]
    failed = [r for r in targets if r.verdict == FAIL]
    return f"{len(targets)} targets, {len(failed)} fail"


def rate(fn: Callable[[], object], *, seconds: float = 1.0, min_calls: int = 20) -> float:
    """Calls per second of ``fn`` over about ``seconds`` of wall time."""
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= min_calls:
            return calls / elapsed


def latencies(fn: Callable[[], object], *, calls: int) -> list[float]:
    """Per-call latencies of ``fn`` in seconds."""
    out: list[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (0–100) of ``values``."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def rate_over(fn: Callable[[T], object], items: Sequence[T]) -> float:
    """Calls per second of ``fn`` over every item of ``items`` (for figures that consume their
    input, such as forms that can each be accepted once)."""
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def alternate(
    measures: Mapping[str, Callable[[int], float]], *, rounds: int
) -> dict[str, list[float]]:
    """Per-round rates of several measures taken in alternating rounds (a, b, a, b, …).

    Each measure is called with the round number and returns the rate of that round. The
    machine's speed drifts on a shared host: alternating exposes every figure to the same
    drift, and the medians and ranges of the per-round values (:func:`spread`) show how much
    it moved.
    """
    out: dict[str, list[float]] = {name: [] for name in measures}
    for number in range(rounds):
        for name, measure in measures.items():
            out[name].append(measure(number))
    return out


def ratios(figures: Sequence[float], baselines: Sequence[float]) -> list[float]:
    """Per-round ratios figure/baseline."""
    return [f / b for f, b in zip(figures, baselines, strict=True)]


def spread(values: Sequence[float], fmt: str = ".3f") -> str:
    """Median and range of per-round values, e.g. ``0.150 (0.141–0.158)``."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"
