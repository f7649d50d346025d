"""Crash test: kill -9 the web and worker processes during concurrent case writes; nothing that
was acknowledged may be lost (DESIGN §2.7), and the audit log must still verify (§2.4).

``python -m tests.load.crash [--writes 1000] [--kills 20] [--threads 16]`` (``make crash``, and
the second half of ``make load``; not in CI):

1. the production-like stack of :mod:`tests.load.stack` (gunicorn with deploy/gunicorn.conf.py,
   PostgreSQL main + audit databases, Redis, a Celery worker and beat), seeded with enough
   consented cases for every write to have a slot of its own: one (case, field) pair and one
   distinct date per write;
2. ``--threads`` SPIP systems (one API client and one address each) write concurrently through
   ``POST /api/v1/dossiers/<ref>/informations``, each write retried until the hub acknowledges
   it (2xx) — as a partner's software would after a connection error or a 5xx;
3. meanwhile a killer sends SIGKILL to the whole gunicorn process group (master and workers) and
   to the whole Celery worker group ``--kills`` times, each time after a random number of new
   acknowledgements and a random delay (so requests are in flight), and restarts both;
4. then, with every process stopped: the audit log is exported and checked offline
   (``flask --app hub audit export`` + ``python -m audit.verify --key``); every acknowledged write
   must have its ``case.update`` event (allowed, same case, and the ``X-Request-Id`` the hub
   answered with), and its value must be in the database (read back and decrypted under the
   case key).

The summary names every lost write, missing event or wrong value; exit status 1 on any, or if
fewer kills than asked landed during the writes. Records stay in ``var/load/<run>/``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from tests.load.clients import BASE_URL, TOKEN_RENEW_SECONDS, forwarded_headers, load_key
from tests.load.clients import token_form as make_token_form
from tests.load.machine import MachineLoad, describe_machine
from tests.load.stack import Stack, StackError, dump_json, run_dir
from tests.load.territory import LoadApiClient, load_territory

FIRST_DAY = date(2027, 1, 1)
WRITE_DEADLINE_SECONDS = 300
MIN_ACKS_BETWEEN_KILLS = 3


@dataclass(frozen=True)
class Slot:
    """One write: a value of its own on a (case, field) pair of its own."""

    index: int
    reference: str
    field: str
    value: str


@dataclass
class Ack:
    """A write the hub acknowledged: what the client saw."""

    slot: Slot
    status: int
    request_id: str
    at: float
    attempts: int


@dataclass
class Kill:
    """One round of the killer."""

    at: float
    in_flight: int
    web_processes: int
    worker_processes: int
    restart_seconds: float


@dataclass
class Tally:
    """What the writers saw, shared between threads (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acks: list[Ack] = field(default_factory=list)
    given_up: list[Slot] = field(default_factory=list)
    in_flight: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    odd_answers: list[str] = field(default_factory=list)
    acked: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.acked = threading.Condition(self.lock)


class Writer(threading.Thread):
    """An SPIP's system writing slots from the shared queue until it is empty."""

    def __init__(
        self, number: int, client: LoadApiClient, port: int, queue: list[Slot], tally: Tally
    ) -> None:
        super().__init__(name=f"writer-{number}", daemon=True)
        self.client = client
        self.key = load_key(client.private_key_pem)
        self.port = port
        self.queue = queue
        self.tally = tally
        self.headers = forwarded_headers(number)
        self.token = ""
        self.token_at = 0.0

    def run(self) -> None:
        """Take slots until none is left."""
        while True:
            with self.tally.lock:
                if not self.queue:
                    return
                slot = self.queue.pop()
            try:
                self.write(slot)
            except Exception as error:  # a bug of this tool: the slot is reported, not lost
                with self.tally.lock:
                    self.tally.given_up.append(slot)
                    self.tally.odd_answers.append(f"{self.name} crashed: {error!r}")
                raise

    def _request(
        self, method: str, path: str, body: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers={**self.headers, **headers})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def _note(self, outcome: str, detail: str = "") -> None:
        with self.tally.lock:
            self.tally.outcomes[outcome] += 1
            if detail and len(self.tally.odd_answers) < 200:
                self.tally.odd_answers.append(detail)

    def _ensure_token(self) -> bool:
        if self.token and time.monotonic() - self.token_at < TOKEN_RENEW_SECONDS:
            return True
        try:
            status, _headers, body = self._request(
                "POST",
                "/api/v1/token",
                make_token_form(self.key, self.client.client_id, BASE_URL),
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
        except (OSError, http.client.HTTPException) as error:
            self._note(f"token: {type(error).__name__}")
            return False
        if status != 200:
            self._note(f"token: HTTP {status}", f"token {status}: {body[:300]!r}")
            return False
        self.token = json.loads(body)["access_token"]
        self.token_at = time.monotonic()
        return True

    def write(self, slot: Slot) -> None:
        """Send ``slot`` until a 2xx answer, or give up after the deadline."""
        deadline = time.monotonic() + WRITE_DEADLINE_SECONDS
        body = json.dumps({"fields": {slot.field: slot.value}})
        attempts = 0
        while time.monotonic() < deadline:
            if not self._ensure_token():
                time.sleep(0.2)
                continue
            attempts += 1
            with self.tally.lock:
                self.tally.in_flight += 1
            try:
                status, headers, answer = self._request(
                    "POST",
                    f"/api/v1/dossiers/{slot.reference}/informations",
                    body,
                    {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
                )
            except (OSError, http.client.HTTPException) as error:
                # No complete answer (refused, reset, or cut after the status line when the
                # worker died mid-body): not acknowledged, so sent again, as any client would.
                self._note(f"write: {type(error).__name__}")
                time.sleep(0.1)
                continue
            finally:
                with self.tally.lock:
                    self.tally.in_flight -= 1
            if 200 <= status < 300:
                ack = Ack(slot, status, headers.get("X-Request-Id", ""), time.time(), attempts)
                with self.tally.lock:
                    self.tally.outcomes[f"write: HTTP {status}"] += 1
                    self.tally.acks.append(ack)
                    self.tally.acked.notify_all()
                return
            request_id = headers.get("X-Request-Id", "")
            self._note(
                f"write: HTTP {status}",
                f"{slot.reference} {slot.field}: {status} request_id={request_id} {answer[:300]!r}",
            )
            if status == 401:
                self.token = ""
            time.sleep(0.2)
        with self.tally.lock:
            self.tally.given_up.append(slot)


class Killer(threading.Thread):
    """Kills the web and worker process groups ``kills`` times during the writes, restarting
    them each time."""

    def __init__(
        self, stack: Stack, tally: Tally, kills: int, writes: int, rng: random.Random
    ) -> None:
        super().__init__(name="killer", daemon=True)
        self.stack = stack
        self.tally = tally
        self.kills = kills
        self.rng = rng
        # Kill number k once the writes acknowledged reach its target, spread with jitter over
        # the first 80 % of the writes; and never before a few writes went through the
        # restarted processes, so that every kill hits a hub that is serving.
        spacing = writes * 0.8 / kills
        self.targets = [
            int((k + 1) * spacing + rng.uniform(-0.4, 0.4) * spacing) for k in range(kills)
        ]
        self.done: list[Kill] = []
        self.writers_done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        """Kill, restart, repeat."""
        try:
            for target in self.targets:
                if not self._wait_for_acks(target, at_least=MIN_ACKS_BETWEEN_KILLS):
                    return
                time.sleep(self.rng.uniform(0.0, 0.2))
                self.done.append(self._kill_and_restart())
        except BaseException as error:  # reported by the main thread
            self.error = error

    def _wait_for_acks(self, target: int, *, at_least: int) -> bool:
        """Wait until ``target`` writes in all, and ``at_least`` more than now, are
        acknowledged; False if the writers finished first."""
        with self.tally.lock:
            target = max(target, len(self.tally.acks) + at_least)
            while len(self.tally.acks) < target:
                if self.writers_done.is_set():
                    return False
                self.tally.acked.wait(timeout=1.0)
        return True

    def _kill_and_restart(self) -> Kill:
        with self.tally.lock:
            in_flight = self.tally.in_flight
        at = time.time()
        web = self.stack.web.kill_group()
        worker = self.stack.worker.kill_group()
        began = time.monotonic()
        self.stack.worker.start(self.stack.env)
        self.stack.start_web()
        return Kill(at, in_flight, web, worker, time.monotonic() - began)


def make_slots(references: list[str], fields: list[str], writes: int) -> list[Slot]:
    """``writes`` slots over (case, field) pairs, each with its own date."""
    pairs = [(reference, name) for reference in references for name in fields]
    if len(pairs) < writes:
        raise StackError(f"{len(pairs)} (case, field) pairs for {writes} writes")
    return [
        Slot(i, reference, name, (FIRST_DAY + timedelta(days=i)).isoformat())
        for i, (reference, name) in enumerate(pairs[:writes])
    ]


@dataclass
class Verdict:
    """What the checks found after the run."""

    acknowledged: int
    values_present: int
    wrong_values: list[str]
    missing_values: list[str]
    missing_events: list[str]
    audit_verified: bool
    audit_output: str

    @property
    def ok(self) -> bool:
        """No loss of any kind and a log that verifies."""
        return (
            self.audit_verified
            and not self.wrong_values
            and not self.missing_values
            and not self.missing_events
        )


def check_events(export: Path, acks: list[Ack]) -> list[str]:
    """Acknowledged writes without their ``case.update`` event (allowed, same case, same
    request id) in the exported log."""
    recorded: set[tuple[str, str]] = set()
    with (export / "events.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            event = json.loads(line)
            if (
                event["action"] == "case.update"
                and event["decision"] == "allow"
                and event["object_type"] == "case"
            ):
                recorded.add((event["request_id"], event["object_id"]))
    return [
        f"{a.slot.reference} {a.slot.field}={a.slot.value} request_id={a.request_id}"
        for a in acks
        if (a.request_id, a.slot.reference) not in recorded
    ]


def check_values(env: dict[str, str], acks: list[Ack]) -> tuple[int, list[str], list[str]]:
    """Read every acknowledged slot back from the database and decrypt it: how many hold their
    value, which hold another, which hold none."""
    from hub import create_app
    from hub.config import load_config

    app = create_app(load_config(env))
    hub_state = app.extensions["maillon"]
    present, wrong, missing = 0, [], []
    try:
        with app.app_context(), hub_state.session_factory() as session:
            cases = hub_state.cases(session)
            for ack in acks:
                slot = ack.slot
                case = cases.by_reference(slot.reference)
                stored = cases.stored(case) if case is not None else {}
                if case is None or slot.field not in stored:
                    missing.append(f"{slot.reference} {slot.field}={slot.value}")
                    continue
                value = hub_state.vault.open(
                    case.wrapped_key, case.reference, slot.field, stored[slot.field].ciphertext
                )
                if value == slot.value:
                    present += 1
                else:
                    wrong.append(f"{slot.reference} {slot.field}: {value!r}, acked {slot.value!r}")
    finally:
        hub_state.engine.dispose()
        hub_state.audit_engine.dispose()
    return present, wrong, missing


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``make crash`` (and the second half of ``make load``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--threads", type=int, default=16, help="concurrent writing systems")
    parser.add_argument("--web-workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)

    workdir = run_dir("crash")
    print(f"crash: run directory {workdir} (random seed {seed})", flush=True)
    started = datetime.now(UTC)
    stack = Stack(workdir, web_workers=args.web_workers)
    tally = Tally()
    try:
        stack.create()
        seed_file = workdir / "seed.json"
        fields_per_case = 3  # justice.date_sortie, justice.date_fin_mesure, parcours.date_entree
        stack.seed(
            seed_file,
            partners=0,
            dpos=0,
            cases=math.ceil(args.writes / fields_per_case),
            api_clients=args.threads,
        )
        land = load_territory(seed_file)
        slots = make_slots(land.cases, land.api_clients[0].writable, args.writes)
        queue = list(slots)
        rng.shuffle(queue)
        stack.start_web()
        stack.start_workers()
        writers = [
            Writer(i, client, stack.port, queue, tally) for i, client in enumerate(land.api_clients)
        ]
        killer = Killer(stack, tally, args.kills, args.writes, rng)
        print(
            f"crash: {args.writes} writes by {args.threads} systems, "
            f"{args.kills} kill -9 of web + worker",
            flush=True,
        )
        began = time.monotonic()
        with MachineLoad() as machine:
            killer.start()
            for writer in writers:
                writer.start()
            for writer in writers:
                writer.join()
            killer.writers_done.set()
            with tally.lock:
                tally.acked.notify_all()
            killer.join()
        elapsed = time.monotonic() - began
        if killer.error is not None:
            raise StackError(f"the killer failed: {killer.error!r}")
    finally:
        stack.stop()
    try:
        audit_ok, audit_output = stack.verify_audit(workdir / "audit-export")
        missing_events = check_events(workdir / "audit-export", tally.acks)
        present, wrong, missing = check_values(stack.env, tally.acks)
    finally:
        problems = stack.log_problems()
        stack.destroy()
    verdict = Verdict(
        acknowledged=len(tally.acks),
        values_present=present,
        wrong_values=wrong,
        missing_values=missing,
        missing_events=missing_events,
        audit_verified=audit_ok,
        audit_output=audit_output,
    )
    kills = killer.done
    dump_json(
        workdir / "results.json",
        {
            "started": started.isoformat(),
            "machine": describe_machine(),
            "machine_load": machine.summary(),
            "settings": {**vars(args), "seed": seed},
            "elapsed_seconds": elapsed,
            "kills": [asdict(k) for k in kills],
            "outcomes": dict(tally.outcomes),
            "odd_answers": tally.odd_answers,
            "given_up": [asdict(s) for s in tally.given_up],
            "verdict": {**asdict(verdict), "ok": verdict.ok},
            "log_problems": {k: v[:50] for k, v in problems.items()},
        },
    )

    retried = sum(1 for a in tally.acks if a.attempts > 1)
    print(f"\n== Crash test ({started:%Y-%m-%d %H:%M} UTC, seed {seed}, {elapsed:.0f} s)")
    print(f"  writes: {args.writes} by {args.threads} systems; acknowledged {len(tally.acks)}")
    print(f"  acknowledged after a retry: {retried}; given up (never acknowledged): ", end="")
    print(len(tally.given_up))
    print(
        f"  kills during the writes: {len(kills)} of {args.kills} (web group + worker group, "
        f"SIGKILL); requests in flight at the kills: {sum(k.in_flight for k in kills)} "
        f"(max {max((k.in_flight for k in kills), default=0)}); restart to /healthz "
        f"{min((k.restart_seconds for k in kills), default=0):.1f}–"
        f"{max((k.restart_seconds for k in kills), default=0):.1f} s"
    )
    print("  client outcomes: " + ", ".join(f"{k} ×{v}" for k, v in sorted(tally.outcomes.items())))
    print(f"  values present: {present}/{len(tally.acks)}; wrong: {len(wrong)}; ", end="")
    print(f"missing: {len(missing)}")
    print(f"  case.update events for acknowledged writes missing: {len(missing_events)}")
    print(f"  audit log: {'verified' if audit_ok else 'DOES NOT VERIFY'}")
    print("   " + (audit_output.splitlines()[-1] if audit_output else ""))
    print("   " + machine.line())
    for label, items in (
        ("WRONG VALUE", wrong),
        ("MISSING VALUE", missing),
        ("MISSING EVENT", missing_events),
    ):
        for item in items[:50]:
            print(f"  {label}: {item}")
    for answer in tally.odd_answers[:20]:
        print(f"  answer: {answer}")
    for name, lines in problems.items():
        print(f"  {name} log: {len(lines)} error lines, first: {lines[:3]}")
    ok = verdict.ok and len(kills) == args.kills and not tally.given_up
    if len(kills) < args.kills:
        print(f"  only {len(kills)} kills landed during the writes: inconclusive")
    print(f"  results: {workdir / 'results.json'}")
    print("crash: OK" if ok else "crash: FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
