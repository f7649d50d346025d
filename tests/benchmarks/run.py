"""Run every benchmark module and print each figure, its baseline, the ratio and the verdict.

Usage: ``python -m tests.benchmarks.run [--quick] [--repeat K] [name ...]``.

Each figure prints its target and ``PASS``/``FAIL`` against it (``reported`` when DESIGN §11
sets none), each run ends with ``N targets, M fail``. The exit status is 0 whatever the
verdicts: this is a report, not a test (machines are shared; see docs/performance.md).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys
from datetime import UTC, datetime

import tests.benchmarks as package
from tests.benchmarks.common import FAIL, Result, summary


def modules(names: list[str]) -> list[str]:
    """The benchmark module names to run, all ``bench_*`` ones by default."""
    found = sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("bench_")
    )
    return [m for m in found if not names or any(n in m for n in names)]


def machine() -> str:
    """Date, host and load, printed with every run: a verdict means little without them."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{now} | {platform.node()} | {os.cpu_count()} cores | load average {load}"


def run_once(names: list[str], *, quick: bool) -> list[Result]:
    """Run the selected modules once, printing every figure as it comes."""
    results: list[Result] = []
    for name in modules(names):
        module = importlib.import_module(f"tests.benchmarks.{name}")
        print(f"== {name}", flush=True)
        found: list[Result] = module.run(quick=quick)
        for result in found:
            print(result.line(), flush=True)
        results.extend(found)
    return results


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``make bench``; always 0 (a report, not a test)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small workloads, for a smoke run")
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="K", help="run the whole set K times"
    )
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    failing: dict[str, int] = {}
    for number in range(1, max(1, args.repeat) + 1):
        header = f"run {number} of {args.repeat}: " if args.repeat > 1 else ""
        print(f"# {header}{machine()}", flush=True)
        results = run_once(args.names, quick=args.quick)
        print(f"# load average at the end: {machine().rsplit('load average ', 1)[1]}")
        print(summary(results), flush=True)
        for result in results:
            if result.verdict == FAIL:
                failing[result.name] = failing.get(result.name, 0) + 1
    if args.repeat > 1:
        print(f"# over {args.repeat} runs:", "no figure failed" if not failing else "")
        for name, count in failing.items():
            print(f"#   {name}: failed in {count} of {args.repeat} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
