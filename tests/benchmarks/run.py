"""Run every benchmark module and print each figure, its baseline and the ratio.

Usage: ``python -m tests.benchmarks.run [--quick] [name ...]``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import tests.benchmarks as package
from tests.benchmarks.common import Result


def modules(names: list[str]) -> list[str]:
    """The benchmark module names to run, all ``bench_*`` ones by default."""
    found = sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("bench_")
    )
    return [m for m in found if not names or any(n in m for n in names)]


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``make bench``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small workloads, for a smoke run")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args(argv)
    for name in modules(args.names):
        module = importlib.import_module(f"tests.benchmarks.{name}")
        print(f"== {name}", flush=True)
        results: list[Result] = module.run(quick=args.quick)
        for result in results:
            print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
