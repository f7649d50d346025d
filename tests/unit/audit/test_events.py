"""Event validation, canonical encoding and IP hashing."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit.errors import AuditError, InvalidEvent
from audit.events import Action, Decision, Event, NewEvent, from_micros, hash_ip, to_micros

T0 = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def make(**overrides: object) -> Event:
    fields: dict[str, object] = {
        "seq": 7,
        "time": T0,
        "action": Action.CASE_VIEW,
        "actor_user": "u-0001",
        "actor_org": "org-spip-75",
        "object_type": "case",
        "object_id": "C-2025-0042",
        "purpose": "suivi.parcours",
        "decision": Decision.ALLOW,
        "rule": "art.5",
        "charter_version": "3",
        "request_id": "req-9f2c",
        "ip_hash": "a" * 64,
    }
    fields.update(overrides)
    return Event(**fields)  # type: ignore[arg-type]


def test_canonical_encoding_is_sorted_compact_json_with_fixed_time_format() -> None:
    data = make().canonical()
    assert data == (
        b'{"action":"case.view","actor_org":"org-spip-75","actor_user":"u-0001",'
        b'"charter_version":"3","decision":"allow","ip_hash":"' + b"a" * 64 + b'",'
        b'"object_id":"C-2025-0042","object_type":"case","purpose":"suivi.parcours",'
        b'"request_id":"req-9f2c","rule":"art.5","seq":7,'
        b'"time":"2025-03-14T09:26:53.589793Z","v":1}'
    )
    assert make().leaf_hash() == hashlib.sha256(b"\x00" + data).digest()


def test_time_is_normalised_to_utc_and_keeps_microseconds() -> None:
    paris = timezone(timedelta(hours=1))
    event = make(time=T0.astimezone(paris))
    assert event.time == T0 and event.time.tzinfo == UTC
    assert b'"time":"2025-03-14T09:26:53.589793Z"' in event.canonical()
    whole_second = make(time=T0.replace(microsecond=0))
    assert b'"time":"2025-03-14T09:26:53.000000Z"' in whole_second.canonical()


def test_round_trip_through_canonical_bytes() -> None:
    event = make(actor_user=None, decision=Decision.NONE, ip_hash="")
    assert Event.from_canonical(event.canonical()) == event


def test_non_canonical_bytes_are_refused() -> None:
    obj = json.loads(make().canonical())
    spaced = json.dumps(obj, sort_keys=True).encode()
    with pytest.raises(InvalidEvent):
        Event.from_canonical(spaced)
    obj["extra"] = 1
    with pytest.raises(InvalidEvent):
        Event.from_canonical(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


@pytest.mark.parametrize(
    "overrides",
    [
        {"actor_user": "Jean Dupont"},
        {"actor_user": "jean.dupont@example.fr"},
        {"actor_user": ""},
        {"actor_org": "x" * 129},
        {"object_id": "C 42"},
        {"purpose": "because I wanted to"},
        {"rule": "art.5\nforged"},
        {"object_type": "Case"},
        {"object_id": "C-1", "object_type": ""},
        {"ip_hash": "192.168.1.1"},
        {"decision": "maybe"},
        {"action": "case.delete"},
        {"seq": -1},
        {"time": datetime(2025, 1, 1)},  # a naive time is the point
        {"request_id": "é"},
    ],
)
def test_invalid_fields_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidEvent) as info:
        make(**overrides)
    assert isinstance(info.value, AuditError)


def test_new_event_accepts_plain_strings_for_enums() -> None:
    new = NewEvent(action="form.open", decision="deny")  # type: ignore[arg-type]
    assert new.action is Action.FORM_OPEN and new.decision is Decision.DENY


def test_action_vocabulary_is_stable() -> None:
    # These strings are signed into the log: renaming one breaks old exports.
    required = {
        "auth.login", "auth.login.refused", "auth.lockout", "auth.logout", "auth.mfa.enrol",
        "auth.password.change", "case.view", "form.send", "form.send.refused", "form.open",
        "consent.record", "consent.withdraw", "charter.publish", "charter.sign",
        "admin.org.create", "admin.org.suspend", "admin.user.invite", "admin.user.disable",
        "admin.user.enable", "admin.user.unlock", "admin.user.reset_mfa", "api.token.issue",
        "api.token.refused", "audit.read", "audit.export", "audit.prune", "access.refused",
    }  # fmt: skip
    assert required <= {a.value for a in Action}


def test_hash_ip_is_keyed_and_normalised() -> None:
    key = b"k" * 32
    h = hash_ip(key, "192.0.2.1")
    assert len(h) == 64 and h == hash_ip(key, " 192.0.2.1 ")
    assert h == hash_ip(key, "::ffff:192.0.2.1")
    assert hash_ip(key, "2001:db8::1") == hash_ip(key, "2001:0db8:0:0:0:0:0:1")
    assert h != hash_ip(b"j" * 32, "192.0.2.1")
    assert h != hashlib.sha256(b"192.0.2.1").hexdigest()
    with pytest.raises(InvalidEvent):
        hash_ip(b"short", "192.0.2.1")
    with pytest.raises(InvalidEvent):
        hash_ip(key, "not-an-ip")


@given(st.datetimes(timezones=st.just(UTC)))
def test_micros_round_trip(when: datetime) -> None:
    assert from_micros(to_micros(when)) == when


_ident = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,40}", fullmatch=True)
_maybe = st.one_of(st.just(""), _ident)


@given(
    seq=st.integers(min_value=0, max_value=2**62),
    time=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
    ),
    action=st.sampled_from(list(Action)),
    decision=st.sampled_from(list(Decision)),
    actor_user=st.one_of(st.none(), _ident),
    object_type=st.from_regex(r"[a-z][a-z0-9_.]{0,20}", fullmatch=True),
    texts=st.tuples(_maybe, _maybe, _maybe, _maybe, _maybe, _maybe),
    ip_hash=st.one_of(st.just(""), st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
)
def test_the_fast_canonical_encoding_is_exactly_the_json_specification(
    seq: int,
    time: datetime,
    action: Action,
    decision: Decision,
    actor_user: str | None,
    object_type: str,
    texts: tuple[str, str, str, str, str, str],
    ip_hash: str,
) -> None:
    actor_org, object_id, purpose, rule, charter_version, request_id = texts
    event = Event(
        seq=seq,
        time=time,
        action=action,
        actor_user=actor_user,
        actor_org=actor_org,
        object_type=object_type,
        object_id=object_id,
        purpose=purpose,
        decision=decision,
        rule=rule,
        charter_version=charter_version,
        request_id=request_id,
        ip_hash=ip_hash,
    )
    assert event.canonical() == event.canonical_reference()
    assert Event.from_canonical(event.canonical()) == event
