"""What the DPO console shows: journal searches, access reports, integrity status, exports.

The audit log holds opaque ids only (DESIGN §8); the names of the professionals (users,
organisations, API clients) are joined from the hub's main database at display time, never
written into the log. No Flask here: :mod:`hub.blueprints.dpo` records each read first, then
calls one function of this module and renders what it returns.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from audit.checkpoint import Checkpoint, NoteVerifier
from audit.errors import CheckpointError, LogUnavailable
from audit.events import Event, format_time
from audit.queries import MAX_PAGE, AccessRow, EventFilter, actor_access_report
from audit.queries import object_access_report as _object_access_rows
from audit.queries import search as _search
from audit.store import AuditLog, events_view
from hub.models import ApiClient, Organisation, User

PARIS = ZoneInfo("Europe/Paris")
JOURNAL_PAGE_SIZE = 50
# A report lists its events one by one up to this many; beyond, the summary and the CSV
# export (filtered the same way) carry the rest. WeasyPrint lays out about 80 table rows a
# second, so the PDF lists fewer to stay well within a request's time limit (30 s).
REPORT_EVENT_LIMIT = 2_000
PDF_EVENT_LIMIT = 500
EXPORT_LIMIT = 100_000
API_CLIENT_PREFIX = "client:"


# -- periods -------------------------------------------------------------------------------


def period_bounds(start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    """The instants ``[start 00:00, day after end 00:00)`` in Europe/Paris (end inclusive)."""
    since = datetime.combine(start, time(0), tzinfo=PARIS) if start else None
    until = datetime.combine(end + timedelta(days=1), time(0), tzinfo=PARIS) if end else None
    return since, until


def subject(criteria: EventFilter) -> tuple[str, str]:
    """What a console read is about, as ``(object_type, object_id)`` for its audit event.

    The most specific thing the DPO asked for: an object (so the object's own access report
    shows that the DPO looked at it), else a person, else an organisation, else the whole log.
    """
    if criteria.object_type and criteria.object_id:
        return criteria.object_type, criteria.object_id
    if criteria.actor_user:
        return actor_subject(criteria.actor_user)
    if criteria.actor_org:
        return "organisation", criteria.actor_org
    return "audit_log", ""


def actor_subject(actor_user: str) -> tuple[str, str]:
    """The audit object of a log actor: an API client or a user."""
    if actor_user.startswith(API_CLIENT_PREFIX):
        return "api_client", actor_user
    return "user", actor_user


# -- names ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Directory:
    """Display names for the ids found in some events (unknown ids have no name)."""

    users: dict[str, str] = field(default_factory=dict)
    orgs: dict[str, str] = field(default_factory=dict)

    def user_name(self, actor_user: str | None) -> str | None:
        """The name of a log actor (a user or an API client), if known."""
        return self.users.get(actor_user) if actor_user else None

    def org_name(self, actor_org: str) -> str | None:
        """The name of an organisation, if known."""
        return self.orgs.get(actor_org) if actor_org else None


def directory(session: Session, actors: Iterable[str | None], orgs: Iterable[str]) -> Directory:
    """Names for the given log actors and organisation ids, in three queries."""
    actor_ids = {a for a in actors if a}
    client_ids = {a[len(API_CLIENT_PREFIX) :] for a in actor_ids if a.startswith(API_CLIENT_PREFIX)}
    user_ids = actor_ids - {API_CLIENT_PREFIX + c for c in client_ids}
    org_ids = {o for o in orgs if o}
    users: dict[str, str] = {}
    if user_ids:
        query = select(User.public_id, User.name).where(User.public_id.in_(user_ids))
        users.update({pid: name for pid, name in session.execute(query)})
    if client_ids:
        query = select(ApiClient.client_id, ApiClient.name).where(
            ApiClient.client_id.in_(client_ids)
        )
        users.update({API_CLIENT_PREFIX + cid: name for cid, name in session.execute(query)})
    names: dict[str, str] = {}
    if org_ids:
        query = select(Organisation.public_id, Organisation.name).where(
            Organisation.public_id.in_(org_ids)
        )
        names.update({pid: name for pid, name in session.execute(query)})
    return Directory(users, names)


def directory_for(
    session: Session, events: Iterable[Event], rows: Iterable[AccessRow] = ()
) -> Directory:
    """Names for every actor of ``events`` and ``rows``."""
    events, rows = list(events), list(rows)
    return directory(
        session,
        [e.actor_user for e in events] + [r.actor_user for r in rows],
        [e.actor_org for e in events] + [r.actor_org for r in rows],
    )


def people_choices(session: Session) -> list[tuple[str, str]]:
    """``(public id, "Name — Organisation")`` of every user, for the search form's hints."""
    rows = session.execute(
        select(User.public_id, User.name, Organisation.name)
        .join(Organisation, User.organisation_id == Organisation.id)
        .order_by(User.name)
    )
    return [(pid, f"{name} — {org}") for pid, name, org in rows]


def organisation_choices(session: Session) -> list[tuple[str, str]]:
    """``(public id, name)`` of every organisation."""
    rows = session.execute(
        select(Organisation.public_id, Organisation.name).order_by(Organisation.name)
    )
    return [(pid, name) for pid, name in rows]


# -- the log's state -----------------------------------------------------------------------


def b64(data: bytes) -> str:
    """Base64, as roots are written in checkpoint notes (so the two can be compared by eye)."""
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class LogState:
    """The log's size and Merkle root when a document was generated."""

    size: int
    root: str
    at: datetime


def log_state(log: AuditLog, now: datetime) -> LogState:
    """Size and root now. Read after the data it vouches for, so that every event shown is
    inside the tree of that size."""
    size = log.size()
    return LogState(size, b64(log.root(size)), now)


class IntegrityStatus(StrEnum):
    """Outcome of the integrity check of the overview page."""

    VERIFIED = "verified"
    MISMATCH = "mismatch"
    BAD_SIGNATURE = "bad_signature"
    TRUNCATED = "truncated"
    NO_CHECKPOINT = "no_checkpoint"


@dataclass(frozen=True)
class Integrity:
    """The latest signed checkpoint compared with the tree the store holds today."""

    status: IntegrityStatus
    size: int
    checkpoint: Checkpoint | None = None
    stored_root: str | None = None

    @property
    def signed_root(self) -> str | None:
        """The root in the checkpoint, base64."""
        return b64(self.checkpoint.root) if self.checkpoint else None

    @property
    def ok(self) -> bool:
        """Whether the store still holds the tree the server signed."""
        return self.status is IntegrityStatus.VERIFIED


def check_integrity(log: AuditLog, verifier: NoteVerifier) -> Integrity:
    """Verify the latest checkpoint's signature and compare its root with the root the store
    computes today at the same size.

    A mismatch means the stored tree changed after it was signed (or the checkpoint was
    forged); a log shorter than a signed size means truncation. This checks the stored tree
    (nodes), not every event's bytes: that is the offline verifier's job on an export.
    """
    size = log.size()
    note = log.latest_checkpoint()
    if note is None:
        return Integrity(IntegrityStatus.NO_CHECKPOINT, size)
    try:
        checkpoint = verifier.verify_checkpoint(note)
    except CheckpointError:
        return Integrity(IntegrityStatus.BAD_SIGNATURE, size)
    if checkpoint.size > size:
        return Integrity(IntegrityStatus.TRUNCATED, size, checkpoint)
    stored = log.root(checkpoint.size)
    status = IntegrityStatus.VERIFIED if stored == checkpoint.root else IntegrityStatus.MISMATCH
    return Integrity(status, size, checkpoint, b64(stored))


# -- journal -------------------------------------------------------------------------------


def count(log: AuditLog, criteria: EventFilter) -> int:
    """How many events match ``criteria``."""
    query = select(func.count()).select_from(events_view).where(*criteria.clauses())
    try:
        with log.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    except SQLAlchemyError as exc:
        raise LogUnavailable(f"audit count failed: {exc}") from exc


@dataclass(frozen=True)
class JournalPage:
    """One page of the journal, newest first."""

    events: list[Event]
    next_cursor: int | None
    total: int
    names: Directory


def journal(
    log: AuditLog,
    session: Session,
    criteria: EventFilter,
    *,
    cursor: int | None = None,
    limit: int = JOURNAL_PAGE_SIZE,
) -> JournalPage:
    """Events matching ``criteria`` below ``cursor`` (keyset: stable while the log grows)."""
    page = _search(log, criteria, cursor=cursor, limit=limit)
    return JournalPage(
        page.events, page.next_cursor, count(log, criteria), directory_for(session, page.events)
    )


def matching_events(
    log: AuditLog, criteria: EventFilter, *, stop: int | None = None, limit: int | None = None
) -> Iterator[Event]:
    """Events matching ``criteria`` in log order, below ``stop``, at most ``limit`` of them."""
    cursor: int | None = None
    sent = 0
    while True:
        page = _search(log, criteria, cursor=cursor, limit=MAX_PAGE, newest_first=False)
        for event in page.events:
            if (stop is not None and event.seq >= stop) or (limit is not None and sent >= limit):
                return
            sent += 1
            yield event
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


# -- access reports ------------------------------------------------------------------------


class ReportKind(StrEnum):
    """Who accessed an object, or what a person did."""

    OBJECT = "object"
    PERSON = "person"


@dataclass(frozen=True)
class AccessReport:
    """An access report: grouped summary, the events themselves, and the log it came from."""

    kind: ReportKind
    object_type: str
    object_id: str
    since: datetime | None
    until: datetime | None
    summary: list[AccessRow]
    events: list[Event]
    truncated: bool
    names: Directory
    state: LogState

    @property
    def last_day(self) -> datetime | None:
        """The last day of the period, for display (``until`` is exclusive)."""
        return self.until - timedelta(days=1) if self.until else None


def access_report(
    log: AuditLog,
    session: Session,
    kind: ReportKind,
    object_type: str,
    object_id: str,
    *,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    event_limit: int = REPORT_EVENT_LIMIT,
) -> AccessReport:
    """Who accessed ``object_type``/``object_id`` (kind OBJECT), or everything the user
    ``object_id`` did (kind PERSON), over ``[since, until)``; the summary covers every event,
    the detailed list the first ``event_limit``."""
    if kind is ReportKind.OBJECT:
        summary = _object_access_rows(log, object_type, object_id, since=since, until=until)
        criteria = EventFilter(
            object_type=object_type, object_id=object_id, since=since, until=until
        )
    else:
        summary = actor_access_report(log, object_id, since=since, until=until)
        criteria = EventFilter(actor_user=object_id, since=since, until=until)
    events = list(matching_events(log, criteria, limit=event_limit + 1))
    truncated = len(events) > event_limit
    events = events[:event_limit]
    return AccessReport(
        kind=kind,
        object_type=object_type,
        object_id=object_id,
        since=since,
        until=until,
        summary=summary,
        events=events,
        truncated=truncated,
        names=directory_for(session, events, summary),
        state=log_state(log, now),
    )


# -- exports -------------------------------------------------------------------------------

# The canonical event fields (docs/audit.md), plus the local time for people reading the CSV.
# Every field is an identifier starting with a letter or digit, so no cell can start a
# spreadsheet formula.
CSV_COLUMNS = (
    "seq",
    "time",
    "time_paris",
    "action",
    "actor_user",
    "actor_org",
    "object_type",
    "object_id",
    "purpose",
    "decision",
    "rule",
    "charter_version",
    "request_id",
    "ip_hash",
)


def _paris(value: datetime) -> str:
    return value.astimezone(PARIS).isoformat(timespec="seconds")


def csv_lines(events: Iterable[Event]) -> Iterator[str]:
    """The events as CSV text, header first, one chunk per line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(values: Iterable[Any]) -> str:
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(CSV_COLUMNS)
    for event in events:
        row = event.to_dict()
        row["time_paris"] = _paris(event.time)
        row["actor_user"] = row["actor_user"] or ""
        yield line(row[c] for c in CSV_COLUMNS)


def json_chunks(events: Iterable[Event], header: dict[str, Any]) -> Iterator[str]:
    """One JSON document ``{**header, "events": [...]}``, streamed one event at a time.

    Events are in their canonical form (docs/audit.md), so each can be re-hashed and checked
    against the log's leaf hashes.
    """
    opening = json.dumps(header, ensure_ascii=False)[:-1]
    yield opening + (', "events": [' if header else '"events": [')
    for index, event in enumerate(events):
        yield ("," if index else "") + "\n" + event.canonical().decode("ascii")
    yield "\n]}\n"


def filter_description(criteria: EventFilter) -> dict[str, str]:
    """The filter as plain JSON values, for the header of an export."""
    values: dict[str, str] = {}
    for name in ("object_type", "object_id", "actor_user", "actor_org"):
        value = getattr(criteria, name)
        if value:
            values[name] = value
    if criteria.actions:
        values["action"] = ",".join(a.value for a in criteria.actions)
    if criteria.decision is not None:
        values["decision"] = criteria.decision.value
    if criteria.since:
        values["since"] = format_time(criteria.since)
    if criteria.until:
        values["until"] = format_time(criteria.until)
    return values
