"""Every benchmark still runs (quick mode). Nothing here asserts on time."""

from __future__ import annotations

import importlib

import pytest

from tests.benchmarks.common import Result
from tests.benchmarks.run import modules


@pytest.mark.parametrize("name", modules([]))
def test_benchmark_runs_and_reports_ratios(name: str) -> None:
    module = importlib.import_module(f"tests.benchmarks.{name}")
    results = module.run(quick=True)
    assert results, "a benchmark must report at least one figure"
    for result in results:
        assert isinstance(result, Result)
        assert result.value > 0 and result.baseline_value > 0
