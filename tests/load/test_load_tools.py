"""The load and crash tools stay importable and their bookkeeping right (no server started:
``make load`` runs the real thing, never the test suite)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.load.clients import forwarded_for
from tests.load.crash import Ack, Slot, check_events, make_slots
from tests.load.run_load import parse_seconds, read_stats

ROOT = Path(__file__).resolve().parents[2]

LOCUST_HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


@pytest.mark.parametrize(
    ("text", "seconds"), [("600", 600), ("10m", 600), ("90s", 90), ("1h30m", 5400)]
)
def test_durations_are_read_like_locust_reads_them(text: str, seconds: int) -> None:
    assert parse_seconds(text) == seconds


def test_a_malformed_duration_is_refused() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        parse_seconds("10 minutes")


def test_every_write_has_its_own_case_field_and_value() -> None:
    slots = make_slots([f"C-{i}" for i in range(4)], ["a.date_x", "b.date_y", "c.date_z"], 10)

    assert len(slots) == 10
    assert len({(s.reference, s.field) for s in slots}) == 10
    assert len({s.value for s in slots}) == 10


def test_an_event_is_required_per_acknowledged_write_with_its_request_id(tmp_path: Path) -> None:
    # Given an exported log holding the event of one write (and a refusal of another)
    events = [
        {"action": "case.update", "decision": "allow", "object_type": "case",
         "object_id": "C-1", "request_id": "r1"},
        {"action": "case.update", "decision": "deny", "object_type": "case",
         "object_id": "C-2", "request_id": "r2"},
    ]  # fmt: skip
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    first = Slot(0, "C-1", "justice.date_sortie", "2027-01-01")
    second = Slot(1, "C-2", "justice.date_sortie", "2027-01-02")

    # When both writes were acknowledged
    missing = check_events(tmp_path, [Ack(first, 200, "r1", 0, 1), Ack(second, 200, "r2", 0, 1)])

    # Then only the second lacks its event
    assert missing == ["C-2 justice.date_sortie=2027-01-02 request_id=r2"]


def test_locust_statistics_are_read_with_the_aggregate_last(tmp_path: Path) -> None:
    (tmp_path / "run_stats.csv").write_text(
        LOCUST_HEADER
        + "\nGET,/,10,0,12,13.5,2,40,100,1.5,0,12,13,14,15,20,25,30,38,40,40,40"
        + "\n,Aggregated,10,1,12,13.5,2,40,100,1.5,0.1,12,13,14,15,20,25,30,38,40,40,40\n"
    )

    rows = read_stats(tmp_path / "run")

    assert [r.name for r in rows] == ["GET /", "Aggregated"]
    assert (rows[-1].requests, rows[-1].failures, rows[-1].p50, rows[-1].p99) == (10, 1, 12, 38)


def test_each_simulated_client_has_its_own_address() -> None:
    addresses = {forwarded_for(i) for i in range(2000)}

    assert len(addresses) == 2000
    assert all(a.startswith("198.1") for a in addresses)


def test_the_locustfile_imports_and_defines_the_users() -> None:
    # In a subprocess: importing locust patches the standard library with gevent.
    probe = (
        "import tests.load.locustfile as m\n"
        "print(','.join(sorted(n for n in ('Partner', 'Dpo', 'SpipSystem', 'Hello') "
        "if hasattr(m, n))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "Dpo,Hello,Partner,SpipSystem"
