"""Anomaly findings for the DPO: stored by the periodic scan, reviewed in the console.

The rules themselves are pure functions in :mod:`audit.anomalies`; this module runs them over
the part of the log not scanned yet, stores what they find in the hub's main database and lets
the DPO mark a finding reviewed (DESIGN §8: anomaly alerts).

Scanning
--------
Each scan covers the events from a watermark (the end of the previous scan) to the current
size, and is stored as an :class:`AnomalyScan` row whose ``scanned_from`` is unique: two scans
racing from the same watermark cannot both commit, so a redelivered or concurrent task stores
nothing twice. Rules look at windows of time (an hour of reads, a local day of off-hours reads),
so a burst may straddle two scans: each scan also re-reads the :data:`LOOKBACK` before its
watermark, and a finding that overlaps one already stored (same rule and actor, intersecting
sequence range) extends it instead of creating a second one. A finding the DPO already reviewed
is never changed; events that continue it become a new finding.

Nothing stored here names a person: actors are the log's opaque public ids, and ``detail`` is
the rule's own text (counts and limits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    Select,
    String,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from audit.anomalies import Finding, WorkingHours, detect, unexpected_access
from audit.errors import AuditError
from audit.events import Action, Event
from audit.queries import EventFilter, search
from audit.store import AuditLog
from charter.vocabulary import Role
from hub.db import Base, rowcount
from hub.models import Case, CasePartner, GroupMembership, Organisation, User, UserRole

# Longer than the widest rule window (a local day for off-hours reads) plus the beat interval,
# so a burst or a day is always seen whole by at least one scan.
LOOKBACK = timedelta(hours=25)
# Events read per scan; a task loops over scans until it has caught up.
SCAN_BATCH = 50_000


class AnomalyFinding(Base):
    """One anomaly found in the audit log, and its review by the DPO."""

    __tablename__ = "anomaly_findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    rule: Mapped[str] = mapped_column(String(32))
    # Opaque ids from the log; "" when the actor is the system or anonymous.
    actor_user: Mapped[str] = mapped_column(String(128), default="")
    actor_org: Mapped[str] = mapped_column(String(128), default="")
    window_start: Mapped[datetime] = mapped_column()
    window_end: Mapped[datetime] = mapped_column()
    event_count: Mapped[int] = mapped_column(Integer)
    first_seq: Mapped[int] = mapped_column(BigInteger, index=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column()
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    reviewed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    review_note: Mapped[str] = mapped_column(Text, default="")

    reviewed_by: Mapped[User | None] = relationship()

    @property
    def reviewed(self) -> bool:
        """Whether the DPO has reviewed this finding."""
        return self.reviewed_at is not None


class AnomalyScan(Base):
    """One scan of the log: events ``[scanned_from, scanned_until)`` were examined."""

    __tablename__ = "anomaly_scans"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique: only one scan may start from a given watermark (idempotent, race-free).
    scanned_from: Mapped[int] = mapped_column(BigInteger, unique=True)
    scanned_until: Mapped[int] = mapped_column(BigInteger)
    ran_at: Mapped[datetime] = mapped_column()
    findings: Mapped[int] = mapped_column(Integer, default=0)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What one scan examined and stored."""

    scanned_from: int
    scanned_until: int
    created: int
    extended: int


def watermark(session: Session) -> int:
    """The sequence number the next scan starts from (0 before the first scan)."""
    return int(session.scalar(select(func.max(AnomalyScan.scanned_until))) or 0)


def last_scan(session: Session) -> AnomalyScan | None:
    """The most recent scan, if any."""
    return session.scalar(select(AnomalyScan).order_by(AnomalyScan.scanned_until.desc()).limit(1))


def unreviewed_count(session: Session) -> int:
    """How many findings wait for the DPO."""
    query = select(func.count()).select_from(AnomalyFinding)
    return int(session.scalar(query.where(AnomalyFinding.reviewed_at.is_(None))) or 0)


def _lookback_start(log: AuditLog, mark: int) -> int:
    if mark == 0:
        return 0
    try:
        last = log.event(mark - 1)
    except AuditError:
        return mark  # pruned by retention: nothing older to look back at
    page = search(log, EventFilter(since=last.time - LOOKBACK), limit=1, newest_first=False)
    return min(page.events[0].seq, mark) if page.events else mark


def scan(
    session: Session,
    log: AuditLog,
    *,
    now: datetime,
    hours: WorkingHours | None = None,
    batch: int = SCAN_BATCH,
) -> ScanResult | None:
    """Run the rules over the events not scanned yet (at most ``batch`` of them).

    Adds the scan and its findings to ``session`` and flushes; the caller commits. ``None``
    when there is nothing new. A concurrent scan from the same watermark makes the flush (or
    the commit) raise :class:`sqlalchemy.exc.IntegrityError`: roll back, the other one won.
    """
    mark = watermark(session)
    size = log.size()
    if size <= mark:
        return None
    stop = min(size, mark + batch)
    events = list(log.events(_lookback_start(log, mark), stop))
    times = {e.seq: e.time for e in events}
    # Findings entirely before the watermark were already handled by an earlier scan.
    found = detect(events, hours=hours) + unexpected_access(events, expected_readers(session))
    findings = sorted((f for f in found if max(f.seqs) >= mark), key=lambda f: (f.seqs[0], f.rule))
    created = extended = 0
    for finding in findings:
        outcome = _store(session, finding, times, now)
        created += outcome == "created"
        extended += outcome == "extended"
    session.add(
        AnomalyScan(scanned_from=mark, scanned_until=stop, ran_at=now, findings=created + extended)
    )
    session.flush()
    return ScanResult(mark, stop, created, extended)


def expected_readers(session: Session) -> Callable[[Event], bool]:
    """Whether a read is one the DPO expects (DESIGN §8): a case read by its référent, by a
    member or the coordinator of its group, or by the system of an organisation following it;
    and the DPO's own reading of the log about a case (their job, not an access to the case's
    content).

    Anything else that the charter allowed — a partner's agent who does not sit in the group,
    for instance — is listed for review. Reads of what is not a case, and of cases the hub no
    longer holds, are not judged here.
    """
    known: dict[str, tuple[frozenset[str], frozenset[str]] | None] = {}

    def readers(reference: str) -> tuple[frozenset[str], frozenset[str]] | None:
        if reference not in known:
            case = session.scalar(select(Case).where(Case.reference == reference))
            if case is None:
                known[reference] = None
            else:
                people = set(
                    session.scalars(
                        select(User.public_id)
                        .join(GroupMembership, GroupMembership.user_id == User.id)
                        .where(GroupMembership.group_id == case.group_id)
                    )
                )
                for user_id in (case.referent_id, case.group.coordinator_id):
                    if user_id is not None and (user := session.get(User, user_id)) is not None:
                        people.add(user.public_id)
                orgs = set(
                    session.scalars(
                        select(Organisation.public_id)
                        .join(CasePartner, CasePartner.organisation_id == Organisation.id)
                        .where(CasePartner.case_id == case.id)
                    )
                )
                known[reference] = (frozenset(people), frozenset(orgs))
        return known[reference]

    dpos = frozenset(
        session.scalars(
            select(User.public_id)
            .join(UserRole, UserRole.user_id == User.id)
            .where(UserRole.role == Role.DPO)
        )
    )

    def is_expected(event: Event) -> bool:
        if event.object_type != "case" or not event.object_id:
            return True
        if event.action is Action.AUDIT_READ and event.actor_user in dpos:
            return True
        found = readers(event.object_id)
        if found is None:
            return True
        people, orgs = found
        if (event.actor_user or "").startswith("client:"):
            return event.actor_org in orgs
        return event.actor_user in people

    return is_expected


def _store(session: Session, finding: Finding, times: dict[int, datetime], now: datetime) -> str:
    first, last = min(finding.seqs), max(finding.seqs)
    overlapping = session.scalars(
        select(AnomalyFinding)
        .where(
            AnomalyFinding.rule == finding.rule,
            AnomalyFinding.actor_user == (finding.actor_user or ""),
            AnomalyFinding.actor_org == finding.actor_org,
            AnomalyFinding.first_seq <= last,
            AnomalyFinding.last_seq >= first,
        )
        .order_by(AnomalyFinding.first_seq)
    ).all()
    fresh = sorted(
        s for s in finding.seqs if not any(o.first_seq <= s <= o.last_seq for o in overlapping)
    )
    if not fresh:
        return "unchanged"
    open_findings = [o for o in overlapping if not o.reviewed]
    if open_findings:
        target = open_findings[0]
        target.event_count += len(fresh)
        target.first_seq = min(target.first_seq, fresh[0])
        target.last_seq = max(target.last_seq, fresh[-1])
        target.window_start = min(target.window_start, times[fresh[0]])
        target.window_end = max(target.window_end, times[fresh[-1]])
        target.detail = finding.detail[:300]
        return "extended"
    session.add(
        AnomalyFinding(
            rule=finding.rule,
            actor_user=finding.actor_user or "",
            actor_org=finding.actor_org,
            window_start=times[fresh[0]],
            window_end=times[fresh[-1]],
            event_count=len(fresh),
            first_seq=fresh[0],
            last_seq=fresh[-1],
            detail=finding.detail[:300],
            created_at=now,
        )
    )
    return "created"


def findings_query(*, unreviewed_only: bool = False) -> Select[AnomalyFinding]:
    """Findings, newest first (for pagination)."""
    query = select(AnomalyFinding).order_by(AnomalyFinding.window_end.desc(), AnomalyFinding.id)
    if unreviewed_only:
        query = query.where(AnomalyFinding.reviewed_at.is_(None))
    return query


def mark_reviewed(session: Session, finding_id: int, *, by: User, note: str, now: datetime) -> bool:
    """Mark a finding reviewed with the DPO's note; False if it was already reviewed.

    A conditional UPDATE, so two DPOs reviewing at once cannot overwrite each other's note.
    """
    result = session.execute(
        update(AnomalyFinding)
        .where(AnomalyFinding.id == finding_id, AnomalyFinding.reviewed_at.is_(None))
        .values(reviewed_at=now, reviewed_by_id=by.id, review_note=note)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def scan_all(
    session: Session, log: AuditLog, *, now: datetime, batch: int = SCAN_BATCH
) -> Sequence[ScanResult]:
    """Scan until caught up with the log, committing after each batch."""
    results = []
    while (result := scan(session, log, now=now, batch=batch)) is not None:
        session.commit()
        results.append(result)
        if result.scanned_until - result.scanned_from < batch:
            break
    return results
