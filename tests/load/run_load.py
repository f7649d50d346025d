"""Load the hub like a working day and report its latencies next to hello-world's.

``python -m tests.load.run_load [--users 50] [--duration 10m] …`` (``make load``; not in CI):

1. creates a main and an audit database on the PostgreSQL server of MAILLON_TEST_POSTGRES_URL,
   empties two Redis databases of MAILLON_TEST_REDIS_URL (broker, rate-limit counters), makes a
   server key, migrates, and seeds the demo territory plus one account per simulated person,
   consented cases and SPIP API clients (:mod:`tests.load.seed`);
2. starts gunicorn with ``deploy/gunicorn.conf.py`` and ``MAILLON_ENV=production``, a Celery
   worker and beat (:mod:`tests.load.stack`);
3. runs locust headless, loopback only, with the same number of users and the same pacing,
   first against the hello-world app under the same gunicorn settings, then against the hub
   (partners, DPOs and SPIP systems: :mod:`tests.load.locustfile`);
4. prints requests, failures, p50/p99 and req/s of both, the per-request table of the hub, the
   machine's load during each phase, and checks the audit log offline (export + verifier);
5. exits non-zero on any failed request, an audit log that does not verify, or errors in the
   servers' logs. Logs, locust CSV files and a ``results.json`` stay in ``var/load/<run>/``.

No rate limit is lifted: each simulated person comes from their own address (as nginx forwards
it), so the per-address login limit applies to each as it would in production.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.load.machine import MachineLoad, describe_machine
from tests.load.stack import ROOT, Stack, StackError, dump_json, hello_server, run_dir

HUB_USERS = ("Partner", "Dpo", "SpipSystem")


@dataclass(frozen=True)
class Row:
    """One line of locust's ``*_stats.csv``: a request name or the aggregate."""

    name: str
    requests: int
    failures: int
    p50: float
    p99: float
    rps: float
    average: float
    maximum: float


def parse_seconds(text: str) -> int:
    """``10m``, ``90s``, ``1h30m`` or a number of seconds."""
    if text.isdigit():
        return int(text)
    parts = re.findall(r"(\d+)\s*([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10m, 90s, 1h)")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def read_stats(prefix: Path) -> list[Row]:
    """The rows of ``<prefix>_stats.csv`` (the aggregate last)."""
    rows: list[Row] = []
    with Path(f"{prefix}_stats.csv").open(newline="") as handle:
        for raw in csv.DictReader(handle):

            def number(key: str, row: dict[str, str] = raw) -> float:
                value = row.get(key, "") or "0"
                return float(value) if value != "N/A" else 0.0

            rows.append(
                Row(
                    name=(raw["Type"] + " " + raw["Name"]).strip(),
                    requests=int(number("Request Count")),
                    failures=int(number("Failure Count")),
                    p50=number("50%"),
                    p99=number("99%"),
                    rps=number("Requests/s"),
                    average=number("Average Response Time"),
                    maximum=number("Max Response Time"),
                )
            )
    return rows


def read_failures(path: Path) -> list[dict[str, object]]:
    """The failed requests of ``LOAD_FAILURE_LOG`` grouped by request, status and what the
    answer said: how many, when first and last, and a few request ids to look up in the
    server's log and the audit log."""
    groups: dict[tuple[str, int, str], dict[str, object]] = {}
    if not path.exists():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        failure = json.loads(line)
        key = (failure["request"], failure["status"], failure["detail"][:160])
        group = groups.setdefault(
            key,
            {
                "request": key[0],
                "status": key[1],
                "detail": key[2],
                "count": 0,
                "first": failure["time"],
                "request_ids": [],
            },
        )
        group["count"] = int(str(group["count"])) + 1
        group["last"] = failure["time"]
        ids = group["request_ids"]
        assert isinstance(ids, list)
        if len(ids) < 5:
            ids.append(failure["request_id"])
    return sorted(groups.values(), key=lambda g: -int(str(g["count"])))


def run_locust(
    *,
    port: int,
    classes: tuple[str, ...],
    users: int,
    spawn_rate: float,
    seconds: int,
    prefix: Path,
    env: dict[str, str],
) -> None:
    """Run locust headless against loopback ``port`` until ``seconds`` have passed."""
    argv = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "tests/load/locustfile.py"),
        "--headless", "--only-summary", "--host", f"http://127.0.0.1:{port}",
        "--users", str(users), "--spawn-rate", str(spawn_rate), "--run-time", f"{seconds}s",
        "--stop-timeout", "15", "--csv", str(prefix), "--exit-code-on-error", "0",
        "--loglevel", "WARNING", "--logfile", f"{prefix}.log", *classes,
    ]  # fmt: skip
    with Path(f"{prefix}.out").open("wb") as out:
        done = subprocess.run(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=seconds + 300
        )
    if done.returncode != 0:
        raise StackError(f"locust exited with {done.returncode}: see {prefix}.out, {prefix}.log")


def _cpu_warnings(prefix: Path) -> list[str]:
    """Locust's own warnings that the load generator ran out of CPU (figures then skew)."""
    found: list[str] = []
    for suffix in (".log", ".out"):
        path = Path(f"{prefix}{suffix}")
        if path.exists():
            found += [line for line in path.read_text().splitlines() if "CPU usage" in line]
    return found


def _line(label: str, row: Row) -> str:
    return (
        f"  {label:<44} {row.requests:>8,} req {row.failures:>5} err  "
        f"p50 {row.p50:>7.0f} ms  p99 {row.p99:>7.0f} ms  {row.rps:>7.1f} req/s"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``make load`` (first half)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50, help="simulated users (default 50)")
    parser.add_argument(
        "--duration", type=parse_seconds, default=600, help="hub phase, e.g. 10m (default)"
    )
    parser.add_argument(
        "--hello-duration",
        type=parse_seconds,
        default=None,
        help="hello-world phase (default: the hub phase's length, at most 2m)",
    )
    parser.add_argument("--spawn-rate", type=float, default=2.0, help="users started per second")
    parser.add_argument("--think", default="1-5", help="seconds between actions, MIN-MAX")
    parser.add_argument("--dpo-users", type=int, default=3)
    parser.add_argument("--api-users", type=int, default=3)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument(
        "--web-workers", type=int, default=None, help="gunicorn workers (default: the conf's)"
    )
    args = parser.parse_args(argv)
    hello_seconds = args.hello_duration or min(args.duration, 120)
    partners = args.users - args.dpo_users - args.api_users
    if partners < 1:
        parser.error("--users must exceed --dpo-users + --api-users")

    workdir = run_dir("load")
    print(f"load: run directory {workdir}", flush=True)
    started = datetime.now(UTC)
    idle_load = os.getloadavg()
    stack = Stack(workdir, web_workers=args.web_workers)
    results: dict[str, object] = {
        "started": started.isoformat(),
        "machine": describe_machine(),
        "load_average_before": idle_load,
        "settings": {**vars(args), "hello_duration": hello_seconds},
    }
    try:
        stack.create()
        seed_file = workdir / "seed.json"
        stack.seed(
            seed_file,
            partners=partners,
            dpos=args.dpo_users,
            cases=args.cases,
            api_clients=args.api_users,
        )
        stack.start_web()
        stack.start_workers()
        env = {
            **stack.env,
            "LOAD_SEED_FILE": str(seed_file),
            "LOAD_THINK": args.think,
            "LOAD_DPO_USERS": str(args.dpo_users),
            "LOAD_API_USERS": str(args.api_users),
            "LOAD_FAILURE_LOG": str(workdir / "failures.jsonl"),
        }
        print(f"load: hello-world, {args.users} users, {hello_seconds} s", flush=True)
        with hello_server(workdir, stack.env) as hello_port, MachineLoad() as hello_machine:
            run_locust(
                port=hello_port,
                classes=("Hello",),
                users=args.users,
                spawn_rate=args.spawn_rate,
                seconds=hello_seconds,
                prefix=workdir / "hello",
                env=env,
            )
        print(f"load: hub, {args.users} users, {args.duration} s", flush=True)
        with MachineLoad() as hub_machine:
            run_locust(
                port=stack.port,
                classes=HUB_USERS,
                users=args.users,
                spawn_rate=args.spawn_rate,
                seconds=args.duration,
                prefix=workdir / "hub",
                env=env,
            )
        time.sleep(1)
        audit_ok, audit_output = stack.verify_audit(workdir / "audit-export")
    finally:
        stack.stop()
        problems = stack.log_problems()
        stack.destroy()

    hello_rows, hub_rows = read_stats(workdir / "hello"), read_stats(workdir / "hub")
    hello, hub = hello_rows[-1], hub_rows[-1]
    failures = read_failures(workdir / "failures.jsonl")
    cpu_warnings = _cpu_warnings(workdir / "hub") + _cpu_warnings(workdir / "hello")
    results.update(
        finished=datetime.now(UTC).isoformat(),
        hello={"row": asdict(hello), "machine": hello_machine.summary()},
        hub={"row": asdict(hub), "machine": hub_machine.summary()},
        requests=[asdict(r) for r in hub_rows[:-1]],
        failures=failures,
        audit={"verified": audit_ok, "output": audit_output},
        log_problems=problems,
        locust_cpu_warnings=cpu_warnings,
    )
    dump_json(workdir / "results.json", results)

    print(f"\n== Load ({started:%Y-%m-%d %H:%M} UTC, {args.users} users, think {args.think} s)")
    print(_line(f"hello-world ({hello_seconds} s)", hello))
    print("   " + hello_machine.line())
    print(_line(f"hub ({args.duration} s)", hub))
    print("   " + hub_machine.line())
    if hello.p50 and hello.p99:
        print(f"  hub / hello: p50 ×{hub.p50 / hello.p50:.1f}, p99 ×{hub.p99 / hello.p99:.1f}")
    print("  hub requests:")
    for row in hub_rows[:-1]:
        print("  " + _line(row.name, row))
    print(f"  audit log: {'verified' if audit_ok else 'DOES NOT VERIFY'}")
    print("   " + audit_output.splitlines()[-1] if audit_output else "")
    for line in cpu_warnings:
        print(f"  locust: {line}")
    ok = hub.failures == 0 and hello.failures == 0 and audit_ok and not problems
    for failure in failures:
        print(
            f"  FAILED ×{failure['count']} {failure['request']} → {failure['status']} "
            f"({failure['first']} … {failure.get('last')}): {failure['detail']}; "
            f"request ids {', '.join(map(str, failure['request_ids']))}"  # type: ignore[call-overload]
        )
    if hub.failures + hello.failures and not failures:
        print(f"  FAILED: see {workdir / 'hub_failures.csv'} (no answer: connection errors)")
    for name, lines in problems.items():
        print(f"  {name} log: {len(lines)} error lines, first: {lines[:3]}")
    print(f"  results: {workdir / 'results.json'}")
    print("load: OK" if ok else "load: FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
