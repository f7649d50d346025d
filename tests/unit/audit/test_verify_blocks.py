"""The offline verifier's bulk path: block boundaries anywhere give the same verdicts and the
same first bad index; canonical form is checked without decoding, exactly as the decoder would;
the C helpers agree with their Python references; progress is reported."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import audit.merkle as merkle_module
import audit.verify as offline
from audit.checkpoint import Checkpoint, NoteSigner
from audit.errors import InvalidEvent, TamperingDetected
from audit.events import CANONICAL_LINES, Action, Decision, Event
from audit.export_format import CHECKPOINTS
from audit.merkle import (
    Frontier,
    leaf_hashes_of_lines,
    python_leaf_hashes_of_lines,
    tree_root,
)

# Every test of these modules runs again below, with blocks of every size that matters: one
# line or less (every block goes its own way), a few lines (boundaries fall inside checkpoint
# ranges), and the default (the whole export in one block).
from tests.unit.audit.test_export_verify import *  # noqa: F403
from tests.unit.audit.test_export_verify import lines, write_lines
from tests.unit.audit.test_verify_forks import *  # noqa: F403


@pytest.fixture(autouse=True, params=[1, 700, 3_000, offline.BLOCK_BYTES])
def block_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    monkeypatch.setattr(offline, "BLOCK_BYTES", request.param)
    yield request.param


def _resign(directory: Path, signer: NoteSigner, events: list[bytes]) -> None:
    """An attacker holding the key: leaf hashes and every checkpoint made to fit ``events``."""
    (directory / "leaves.bin").write_bytes(b"".join(merkle_module.leaf_hash(e) for e in events))
    notes = [json.loads(x) for x in (directory / CHECKPOINTS).read_text().splitlines()]
    resigned = []
    for note in notes:
        cp = signer.verifier().verify_checkpoint(note)
        root = tree_root(events[: cp.size])
        resigned.append(str(signer.sign_checkpoint(Checkpoint(cp.origin, cp.size, root, cp.time))))
    (directory / CHECKPOINTS).write_text("".join(json.dumps(n) + "\n" for n in resigned))


def test_an_event_out_of_canonical_form_is_named_even_when_re_signed(
    exported: Path, signer: NoteSigner
) -> None:
    # Given an event re-encoded as valid JSON with the same content but spaces, and the
    # leaf hashes and checkpoints re-made to fit (the key holder did it)
    events = [line[:-1] for line in lines(exported)]
    events[12] = json.dumps(json.loads(events[12]), sort_keys=True).encode()
    write_lines(exported, [e + b"\n" for e in events])
    _resign(exported, signer, events)
    # Then the verifier names it: the log only ever holds canonical bytes
    with pytest.raises(TamperingDetected, match="event 12 is not in canonical form") as info:
        offline.verify_export(exported, trusted_key=signer.verifier().vkey())
    assert info.value.index == 12


def test_an_invalid_field_value_is_not_canonical_either(exported: Path, signer: NoteSigner) -> None:
    events = [line[:-1] for line in lines(exported)]
    events[30] = events[30].replace(b'"actor_user":"u-0001"', b'"actor_user":"Jean Dupont"')
    write_lines(exported, [e + b"\n" for e in events])
    _resign(exported, signer, events)
    with pytest.raises(TamperingDetected, match="event 30 is not in canonical form"):
        offline.verify_export(exported, trusted_key=signer.verifier().vkey())


def test_progress_is_reported_up_to_the_end(exported: Path, signer: NoteSigner) -> None:
    seen: list[tuple[int, int]] = []
    offline.verify_export(
        exported, trusted_key=signer.verifier().vkey(), progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (40, 40)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_cli_progress_goes_to_stderr_only_when_asked(
    exported: Path, signer: NoteSigner, capsys: pytest.CaptureFixture[str]
) -> None:
    key = signer.verifier().vkey()
    assert offline.main([str(exported), "--key", key]) == 0
    assert "verifying events" not in capsys.readouterr().err
    assert offline.main([str(exported), "--key", key, "--progress"]) == 0
    captured = capsys.readouterr()
    assert "verifying events: 40 of 40 (100%)" in captured.err
    assert "verifying" not in captured.out


# -- canonical form without decoding ---------------------------------------------------------

T = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)
SAMPLES = [
    Event(0, T, Action.AUTH_LOGIN),
    Event(7, T, Action.CASE_VIEW, "u-1", "org-1", "case", "C-1", "suivi", Decision.ALLOW,
          "art.5", "3", "req-1", "ab" * 32),
    Event(123456789, T, Action.ADMIN_API_CLIENT_REGISTER, None, "org.x:y/z-1", "api_client"),
    Event(1, datetime(1, 1, 1, tzinfo=UTC), Action.AUDIT_PRUNE, object_type="audit", object_id="0"),
    Event(2, datetime(9999, 12, 31, tzinfo=UTC), Action.ACCESS_REFUSED_BURST, rule="r" * 128),
]  # fmt: skip


def _is_canonical(data: bytes) -> bool:
    try:
        Event.from_canonical(data)
    except InvalidEvent:
        return False
    return True


def _matches(data: bytes) -> bool:
    return CANONICAL_LINES.fullmatch(data) is not None


@pytest.mark.parametrize("event", SAMPLES)
def test_every_valid_event_matches_the_canonical_pattern(event: Event) -> None:
    data = event.canonical()
    assert _matches(data)
    assert CANONICAL_LINES.findall(data + b"\n" + data + b"\n") == [b"%d" % event.seq] * 2


@pytest.mark.parametrize("action", list(Action))
def test_every_action_matches(action: Action) -> None:
    assert _matches(replace(SAMPLES[0], action=action).canonical())


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"2024-02-29", b"2023-02-29"),  # not a leap year
        (b"2024-02-29", b"2024-04-31"),
        (b"2024-02-29", b"0000-01-01"),
        (b"2024-02-29", b"2100-02-29"),  # divisible by 100, not by 400
        (b"2024-02-29", b"2000-02-29"),  # divisible by 400: valid
        (b"23:59:59", b"24:00:00"),
        (b"23:59:59", b"23:60:00"),
        (b".999999Z", b".99999Z"),
        (b'"seq":7', b'"seq":07'),
        (b'"seq":7', b'"seq":-7'),
        (b'"v":1', b'"v":2'),
        (b'"decision":"allow"', b'"decision":"maybe"'),
        (b'"action":"case.view"', b'"action":"case.eat"'),
        (b'"object_type":"case"', b'"object_type":""'),  # an object id needs a type
        (b'"actor_user":"u-1"', b'"actor_user":""'),
        (b'"actor_user":"u-1"', b'"actor_user":null'),
        (b'"ip_hash":"abab', b'"ip_hash":"ABAB'),
        (b'"purpose":"suivi"', b'"purpose": "suivi"'),
        (b'"purpose":"suivi"', b'"purpose":"su\\u0069vi"'),
    ],
)
def test_the_pattern_agrees_with_the_decoder_on_edge_cases(old: bytes, new: bytes) -> None:
    data = SAMPLES[1].canonical().replace(old, new)
    assert data != SAMPLES[1].canonical()
    assert _matches(data) == _is_canonical(data)


# The autouse block size fixture is function-scoped; these tests do not depend on it.
FIXTURES_OK = [HealthCheck.function_scoped_fixture]


@settings(max_examples=400, deadline=None, suppress_health_check=FIXTURES_OK)
@given(
    which=st.integers(0, len(SAMPLES) - 1),
    at=st.integers(0, 10_000),
    cut=st.integers(0, 3),
    insert=st.binary(max_size=3),
)
def test_the_pattern_agrees_with_the_decoder_on_mutations(
    which: int, at: int, cut: int, insert: bytes
) -> None:
    data = SAMPLES[which].canonical()
    at %= len(data) + 1
    mutated = data[:at] + insert + data[at + cut :]
    assert _matches(mutated) == _is_canonical(mutated)


# -- the C helpers against their references ----------------------------------------------------


@settings(suppress_health_check=FIXTURES_OK)
@given(st.lists(st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")), min_size=1))
def test_leaf_hashes_of_lines_match_the_python_reference(entries: list[bytes]) -> None:
    block = b"".join(e + b"\n" for e in entries)
    expected = b"".join(hashlib.sha256(b"\x00" + e).digest() for e in entries)
    assert python_leaf_hashes_of_lines(block) == expected
    assert leaf_hashes_of_lines(block) == expected


@pytest.mark.parametrize("block", [b"", b"no end of line", b"a\nb"])
def test_leaf_hashes_need_whole_lines(block: bytes) -> None:
    with pytest.raises(ValueError, match="each ending in"):
        leaf_hashes_of_lines(block)
    with pytest.raises(ValueError, match="each ending in"):
        python_leaf_hashes_of_lines(block)


@pytest.mark.parametrize("with_c", [True, False])
@settings(deadline=None, suppress_health_check=FIXTURES_OK)
@given(start=st.integers(0, 300), cuts=st.lists(st.integers(0, 600), max_size=4))
def test_frontier_extend_is_many_pushes(
    with_c: bool, start: int, cuts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    if not with_c:
        monkeypatch.setattr(merkle_module, "_c_root", None)
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(start + 600)]
    pushed, extended = Frontier(), Frontier()
    for leaf in leaves[:start]:
        pushed.push(leaf)
        extended.push(leaf)
    rest = leaves[start:]
    previous = 0
    for cut in [*sorted(cuts), len(rest)]:
        extended.extend(b"".join(rest[previous:cut]))
        previous = max(previous, cut)
    for leaf in rest:
        pushed.push(leaf)
    assert (extended.size, extended.hashes, extended.root()) == (
        pushed.size,
        pushed.hashes,
        pushed.root(),
    )
