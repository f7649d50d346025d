"""Charter decisions: who may publish and who may view which fields, each with its article.

``compile_charter`` turns a ``Charter`` into a ``CompiledCharter`` whose ``publish``/``view``
answer with a few dictionary lookups per field; ``interpret`` evaluates the same rules directly
and slowly, and exists so tests can check that both always agree.

Every requested field gets exactly one ``Reason``. For a field, the first matching line decides:

publish: unknown_field → interdit → no_rule → declined → no_consent → granted
view:    unknown_field → unknown_purpose → interdit → secret_not_bound →
         (granted by a permanent rule | granted by an active windowed rule | outside_window |
         no_rule) → sender_not_allowed → declined → no_consent → granted

Default deny: a field no rule grants is refused. When several rules grant a field, the first
permanent rule in file order names it, else the first active windowed rule.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TypeVar

from charter.globs import expand, matches
from charter.model import Charter, FieldDef, ViewRule
from charter.vocabulary import OrgKind, Role, Secrecy


class ReasonCode(StrEnum):
    """Why a field was allowed or refused. Stable identifiers, stored in the audit log."""

    GRANTED = "granted"
    UNKNOWN_FIELD = "unknown_field"
    UNKNOWN_PURPOSE = "unknown_purpose"
    INTERDIT = "interdit"
    SECRET_NOT_BOUND = "secret_not_bound"  # noqa: S105 - a reason code, not a password
    NO_RULE = "no_rule"
    OUTSIDE_WINDOW = "outside_window"
    SENDER_NOT_ALLOWED = "sender_not_allowed"
    DECLINED = "declined"
    NO_CONSENT = "no_consent"


_CODE_MESSAGES_FR: dict[ReasonCode, str] = {
    ReasonCode.GRANTED: "autorisé",
    ReasonCode.UNKNOWN_FIELD: "refusé : champ absent du catalogue de la charte",
    ReasonCode.UNKNOWN_PURPOSE: "refusé : finalité non prévue par la charte",
    ReasonCode.INTERDIT: "refusé : information dont l'échange est interdit",
    ReasonCode.SECRET_NOT_BOUND: (
        "refusé : information couverte par le secret professionnel, destinataire non astreint"
    ),
    ReasonCode.NO_RULE: "refusé : aucune règle de la charte ne l'autorise",
    ReasonCode.OUTSIDE_WINDOW: "refusé : consultation permise seulement autour d'une réunion",
    ReasonCode.SENDER_NOT_ALLOWED: "refusé : l'émetteur n'est pas autorisé à publier ce champ",
    ReasonCode.DECLINED: "refusé : le partenaire a choisi de ne pas partager ce champ",
    ReasonCode.NO_CONSENT: "refusé : aucun accord de la personne en vigueur ne couvre ce champ",
}


@dataclass(frozen=True, slots=True)
class Reason:
    """Why one field was allowed or refused, naming the charter version and article."""

    field: str
    allowed: bool
    rule: str | None
    article: str
    charter_id: str
    charter_version: int
    code: ReasonCode

    def short_fr(self) -> str:
        """The outcome in a few French words (« autorisé », « refusé : … »), for tables that
        show the field and the article beside it."""
        return _CODE_MESSAGES_FR[self.code]

    def message_fr(self) -> str:
        """One French sentence naming field, charter, article and rule (error pages)."""
        rule = f", règle « {self.rule} »" if self.rule else ""
        return (
            f"« {self.field} » : {_CODE_MESSAGES_FR[self.code]} "
            f"(charte « {self.charter_id} » v{self.charter_version}, "
            f"article « {self.article} »{rule})"
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for a set of fields; ``reasons`` follows the request order, one per field."""

    allowed_fields: frozenset[str]
    refused_fields: frozenset[str]
    reasons: tuple[Reason, ...]
    charter_id: str
    charter_version: int

    @property
    def all_allowed(self) -> bool:
        """Whether no field was refused."""
        return not self.refused_fields

    @property
    def refusals(self) -> tuple[Reason, ...]:
        """The reasons of refused fields, in request order."""
        return tuple(r for r in self.reasons if not r.allowed)

    def reason(self, field_id: str) -> Reason:
        """The reason for ``field_id``; ``KeyError`` if it was not requested."""
        for r in self.reasons:
            if r.field == field_id:
                return r
        raise KeyError(field_id)

    def explain_fr(self) -> list[str]:
        """One French line per field."""
        return [r.message_fr() for r in self.reasons]


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who would receive fields: their roles, their organisation's kind, group membership.

    Whether they are bound by professional secrecy is not said here: the charter decides it.
    """

    roles: frozenset[Role]
    org_kind: OrgKind
    group_member: bool

    @classmethod
    def of(cls, *roles: Role, org_kind: OrgKind, group_member: bool) -> Recipient:
        """Convenience constructor: ``Recipient.of(Role.REFERENT, org_kind=…, group_member=…)``."""
        return cls(frozenset(roles), org_kind, group_member)


@dataclass(frozen=True, slots=True)
class Declination:
    """A partner declines to share a field (or fields matching a glob), with a recorded reason.

    The charter lets partners decline; a declined field is refused in that partner's publish
    decisions (and in view decisions of what it sent), naming the charter's « declined » article.
    """

    org_id: str
    field: str
    reason: str
    recorded_at: datetime
    recorded_by: str | None = None

    def covers(self, field_id: str) -> bool:
        """Whether this declination applies to ``field_id``."""
        return matches(self.field, field_id)


def _consented(
    field_id: str,
    accord: str | None,
    categories: Collection[str] | None,
    fields: Collection[str] | None,
) -> bool:
    """Whether the young person's accord lets ``field_id`` (needing ``accord``) pass."""
    if categories is None and fields is None:
        return True  # no consent restriction requested: the consent package did not apply one
    if accord is None:
        return True  # the lawful basis alone suffices (the group's own decisions)
    return (categories is not None and accord in categories) or (
        fields is not None and field_id in fields
    )


def _as_date(at: date | datetime) -> date:
    return at.date() if isinstance(at, datetime) else at


def _window_open(rule: ViewRule, at: date | datetime | None, meetings: Iterable[date]) -> bool:
    # Fail closed: a windowed rule never applies when the time or the meetings are unknown.
    if rule.window is None:
        return True
    if at is None:
        return False
    # On day numbers, not dates: a meeting stored near date.min or date.max (bad data) must
    # not make every decision of its group fail with an overflow.
    day = _as_date(at).toordinal()
    before, after = rule.window.days_before, rule.window.days_after
    return any(m.toordinal() - before <= day <= m.toordinal() + after for m in meetings)


def _sender_matches(rule: ViewRule, sender: OrgKind | None) -> bool:
    # A rule restricted to some senders never applies when the sender is unknown (fail closed).
    return rule.senders is None or (sender is not None and sender in rule.senders)


def _dedupe(field_ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(field_ids))


def _decision(charter: Charter, reasons: tuple[Reason, ...]) -> Decision:
    allowed = [r.field for r in reasons if r.allowed]
    return Decision(
        allowed_fields=frozenset(allowed),
        refused_fields=frozenset(r.field for r in reasons if not r.allowed)
        if len(allowed) != len(reasons)
        else frozenset(),
        reasons=reasons,
        charter_id=charter.id,
        charter_version=charter.version,
    )


# --- compiled --------------------------------------------------------------------------------


# Decisions kept per context (see _ViewTable.memo): a territory's forms use a few field lists.
_MEMO_SIZE = 64
K = TypeVar("K")
V = TypeVar("V")


def _keep(memo: dict[K, V], key: K, value: V) -> None:
    """Keep ``value`` in ``memo``, forgetting the oldest entry when it holds _MEMO_SIZE: one at
    a time, so that no call pays for freeing many."""
    if len(memo) >= _MEMO_SIZE:
        # Another thread may change it meanwhile: it stays bounded all the same.
        with suppress(KeyError, RuntimeError, StopIteration):
            del memo[next(iter(memo))]
    memo[key] = value


@dataclass(frozen=True, slots=True)
class _ViewTable:
    """Precomputed reasons for one recipient context, before time, declinations and consent."""

    reasons: dict[str, Reason]
    # Fields not granted by a permanent rule but by windowed ones: field -> ((rule idx, grant),)
    windowed: dict[str, tuple[tuple[int, Reason], ...]]
    windows: frozenset[int]  # the windowed rules that grant any field here
    # Decisions already made in this context, before declinations and consent, by (fields as
    # requested, windows open): recipients sharing a context share the work (the relay
    # decides for every device of every recipient of each form, mostly on the same fields).
    # A Decision is immutable, so one object serves every caller; bounded by _MEMO_SIZE.
    memo: dict[tuple[tuple[str, ...], frozenset[int]], Decision] = field(default_factory=dict)


class CompiledCharter:
    """A charter prepared for fast decisions. Build it once per charter version."""

    def __init__(self, charter: Charter) -> None:
        self.charter = charter
        self._fields = {f.id: f for f in charter.fields}
        # Per field: the consent category its sharing needs (None: no accord needed) and the
        # refusals the per-request restrictions may give, built once rather than per request.
        arts = charter.refusal_articles
        self._accord: dict[str, str | None] = {f.id: f.accord for f in charter.fields}
        self._declined = {
            f.id: self._reason(f.id, False, None, arts.declined, ReasonCode.DECLINED)
            for f in charter.fields
        }
        self._no_consent = {
            f.id: self._reason(f.id, False, None, arts.consent, ReasonCode.NO_CONSENT)
            for f in charter.fields
        }
        self._purposes = charter.purpose_ids
        field_ids = charter.field_ids
        self._publish_sets = [expand(r.fields, field_ids) for r in charter.publish]
        self._view_sets = [expand(r.fields, field_ids) for r in charter.view]
        self._publish: dict[OrgKind, dict[str, Reason]] = {
            kind: self._publish_table(kind) for kind in OrgKind
        }
        # Applicable view rules per (role, kind, group member, purpose), in file order.
        self._view_index: dict[tuple[Role, OrgKind, bool, str], tuple[int, ...]] = {
            (role, kind, member, purpose): tuple(
                i
                for i, rule in enumerate(charter.view)
                if role in rule.roles
                and kind in rule.kinds
                and (member or not rule.group_member)
                and purpose in rule.purposes
            )
            for role in Role
            for kind in OrgKind
            for member in (False, True)
            for purpose in charter.purpose_ids
        }
        # Tables for full request contexts (role sets, sender) are built on first use; building
        # one is cheap and the set of contexts a territory uses is small.
        self._tables: dict[
            tuple[frozenset[Role], OrgKind, bool, str, OrgKind | None], _ViewTable
        ] = {}
        # Windowed rules open on a day with given meetings, shared by every context: the
        # recipients of one form are all decided for the same day and meetings.
        self._windowed_rules = tuple(i for i, r in enumerate(charter.view) if r.window)
        self._open: dict[tuple[date, tuple[date, ...]], frozenset[int]] = {}

    def _reason(
        self, field: str, allowed: bool, rule: str | None, article: str, code: ReasonCode
    ) -> Reason:
        c = self.charter
        return Reason(field, allowed, rule, article, c.id, c.version, code)

    def _publish_table(self, kind: OrgKind) -> dict[str, Reason]:
        table: dict[str, Reason] = {}
        for f in self.charter.fields:
            if f.secrecy is Secrecy.INTERDIT:
                table[f.id] = self._reason(f.id, False, None, f.article, ReasonCode.INTERDIT)
                continue
            for rule, covered in zip(self.charter.publish, self._publish_sets, strict=True):
                if kind in rule.kinds and f.id in covered:
                    table[f.id] = self._reason(
                        f.id, True, rule.id, rule.article, ReasonCode.GRANTED
                    )
                    break
            else:
                table[f.id] = self._reason(
                    f.id, False, None, self.charter.refusal_articles.default, ReasonCode.NO_RULE
                )
        return table

    def _view_table(
        self,
        roles: frozenset[Role],
        kind: OrgKind,
        member: bool,
        purpose: str,
        sender: OrgKind | None,
    ) -> _ViewTable:
        key = (roles, kind, member, purpose, sender)
        table = self._tables.get(key)
        if table is not None:
            return table
        charter = self.charter
        indices = sorted(
            {i for role in roles for i in self._view_index[(role, kind, member, purpose)]}
        )
        rules = [i for i in indices if _sender_matches(charter.view[i], sender)]
        permanent = [i for i in rules if charter.view[i].window is None]
        windowed = [i for i in rules if charter.view[i].window is not None]
        bound = charter.is_secret_bound(roles, kind)
        publishable = self._publish[sender] if sender is not None else None
        arts = charter.refusal_articles
        reasons: dict[str, Reason] = {}
        window_grants: dict[str, tuple[tuple[int, Reason], ...]] = {}

        def finish(f: FieldDef, grant: Reason) -> Reason:
            # What the sender may not publish never reaches a recipient through its form.
            if publishable is not None and not publishable[f.id].allowed:
                return self._reason(f.id, False, None, arts.default, ReasonCode.SENDER_NOT_ALLOWED)
            return grant

        for f in charter.fields:
            if f.secrecy is Secrecy.INTERDIT:
                reasons[f.id] = self._reason(f.id, False, None, f.article, ReasonCode.INTERDIT)
                continue
            if f.secrecy is Secrecy.SECRET and not bound:
                reasons[f.id] = self._reason(
                    f.id, False, None, arts.secret, ReasonCode.SECRET_NOT_BOUND
                )
                continue
            granting = next((i for i in permanent if f.id in self._view_sets[i]), None)
            if granting is not None:
                rule = charter.view[granting]
                reasons[f.id] = finish(
                    f, self._reason(f.id, True, rule.id, rule.article, ReasonCode.GRANTED)
                )
                continue
            candidates = [i for i in windowed if f.id in self._view_sets[i]]
            if candidates:
                first = charter.view[candidates[0]]
                reasons[f.id] = self._reason(
                    f.id, False, first.id, first.article, ReasonCode.OUTSIDE_WINDOW
                )
                window_grants[f.id] = tuple(
                    (
                        i,
                        finish(
                            f,
                            self._reason(
                                f.id,
                                True,
                                charter.view[i].id,
                                charter.view[i].article,
                                ReasonCode.GRANTED,
                            ),
                        ),
                    )
                    for i in candidates
                )
                continue
            reasons[f.id] = self._reason(f.id, False, None, arts.default, ReasonCode.NO_RULE)
        table = _ViewTable(reasons, window_grants, frozenset(windowed))
        self._tables[key] = table
        return table

    def _unknown(self, field_id: str) -> Reason:
        return self._reason(
            field_id, False, None, self.charter.refusal_articles.default, ReasonCode.UNKNOWN_FIELD
        )

    def _restrict(
        self,
        reasons: list[Reason],
        declinations: Collection[Declination],
        consented_categories: Collection[str] | None,
        consented_fields: Collection[str] | None,
    ) -> list[Reason]:
        """Apply the per-request restrictions (partner's declinations, person's consent).

        Same rule as ``_consented``, over the whole request in one pass: this runs on every
        exchange once consent is enforced, so it stays free of per-field calls.
        """
        consent = consented_categories is not None or consented_fields is not None
        # frozenset() of a frozenset is the same object: free for callers passing sets.
        categories = frozenset(consented_categories or ())
        ids = frozenset(consented_fields or ())
        accords = self._accord
        out: list[Reason] = []
        for given in reasons:
            reason, field_id = given, given.field
            if reason.allowed:
                if declinations and any(d.covers(field_id) for d in declinations):
                    reason = self._declined[field_id]
                elif consent:
                    accord = accords[field_id]
                    if accord is not None and accord not in categories and field_id not in ids:
                        reason = self._no_consent[field_id]
            out.append(reason)
        return out

    def publish(
        self,
        org_kind: OrgKind,
        field_ids: Iterable[str],
        *,
        declinations: Collection[Declination] = (),
        consented_categories: Collection[str] | None = None,
        consented_fields: Collection[str] | None = None,
    ) -> Decision:
        """May an organisation of ``org_kind`` publish these fields?

        ``declinations``: the publishing partner's declinations. ``consented_categories`` /
        ``consented_fields`` (computed by the consent package from the accords in force): when
        either is given, a field that needs an accord (``FieldDef.accord``) passes only if its
        consent category or its id is named; a field needing none passes on its lawful basis.
        ``None`` for both: no consent restriction is applied.
        """
        table = self._publish[org_kind]
        out: list[Reason] = []
        for field_id in dict.fromkeys(field_ids):
            reason = table.get(field_id)
            out.append(self._unknown(field_id) if reason is None else reason)
        if declinations or consented_categories is not None or consented_fields is not None:
            out = self._restrict(out, declinations, consented_categories, consented_fields)
        return self._decision(out)

    def view(
        self,
        recipient: Recipient,
        purpose: str,
        field_ids: Iterable[str],
        *,
        sender_org_kind: OrgKind | None = None,
        at: date | datetime | None = None,
        meeting_dates: Iterable[date] = (),
        declinations: Collection[Declination] = (),
        consented_categories: Collection[str] | None = None,
        consented_fields: Collection[str] | None = None,
    ) -> Decision:
        """May ``recipient`` view these fields for ``purpose``?

        ``sender_org_kind``: the kind of organisation that published the fields; when given, a
        field it may not publish is refused, and rules restricted to other senders do not apply.
        ``at`` and ``meeting_dates``: rules with a meeting window apply only when ``at`` (compared
        as a calendar date, in its own time zone) falls in a window around one of the meetings.
        ``declinations``: the sender's declinations. Consent arguments as for ``publish``.
        """
        # Kept decisions are found by the fields as asked (duplicates and all): a call that
        # finds one skips even the de-duplication.
        asked = tuple(field_ids)
        if purpose not in self._purposes:
            return self._unknown_purpose(tuple(dict.fromkeys(asked)))
        table = self._view_table(
            recipient.roles, recipient.org_kind, recipient.group_member, purpose, sender_org_kind
        )
        active: frozenset[int] = frozenset()
        if table.windows and at is not None:
            active = self._open_windows(_as_date(at), tuple(meeting_dates)) & table.windows
        key = (asked, active)
        decision = table.memo.get(key)
        if decision is None:
            decision = self._decide_view(table, tuple(dict.fromkeys(asked)), active)
            _keep(table.memo, key, decision)
        if declinations or consented_categories is not None or consented_fields is not None:
            restricted = self._restrict(
                list(decision.reasons), declinations, consented_categories, consented_fields
            )
            return self._decision(restricted)
        return decision

    def _open_windows(self, day: date, meetings: tuple[date, ...]) -> frozenset[int]:
        """The windowed rules open on ``day`` around ``meetings`` (kept for the next call)."""
        key = (day, meetings)
        found = self._open.get(key)
        if found is None:
            view_rules = self.charter.view
            found = frozenset(
                i for i in self._windowed_rules if _window_open(view_rules[i], day, meetings)
            )
            _keep(self._open, key, found)
        return found

    def _decide_view(
        self, table: _ViewTable, requested: tuple[str, ...], active: frozenset[int]
    ) -> Decision:
        """The decision of one context on ``requested`` with the ``active`` windows open."""
        reasons = table.reasons
        windowed = table.windowed if active else None
        unknown = self._unknown
        # One pass builds the reasons and the allowed/refused split together.
        out: list[Reason] = []
        allowed: list[str] = []
        refused: list[str] = []
        for field_id in requested:
            reason = reasons.get(field_id)
            if reason is None:
                reason = unknown(field_id)
            elif windowed and field_id in windowed:
                for i, grant in windowed[field_id]:
                    if i in active:
                        reason = grant
                        break
            out.append(reason)
            if reason.allowed:
                allowed.append(field_id)
            else:
                refused.append(field_id)
        charter = self.charter
        return Decision(
            frozenset(allowed), frozenset(refused), tuple(out), charter.id, charter.version
        )

    def _decision(self, out: list[Reason]) -> Decision:
        allowed: list[str] = []
        refused: list[str] = []
        for reason in out:
            (allowed if reason.allowed else refused).append(reason.field)
        return Decision(
            frozenset(allowed),
            frozenset(refused),
            tuple(out),
            self.charter.id,
            self.charter.version,
        )

    def _unknown_purpose(self, requested: tuple[str, ...]) -> Decision:
        default = self.charter.refusal_articles.default
        return _decision(
            self.charter,
            tuple(
                self._reason(f, False, None, default, ReasonCode.UNKNOWN_PURPOSE)
                if f in self._fields
                else self._unknown(f)
                for f in requested
            ),
        )


def compile_charter(charter: Charter) -> CompiledCharter:
    """Prepare ``charter`` for fast decisions."""
    return CompiledCharter(charter)


# --- interpreted (reference) -----------------------------------------------------------------


class Interpreter:
    """Evaluates the charter's rules directly for every field: slow, obviously right.

    Used by tests (compiled == interpreted) and by the benchmark as the baseline.
    """

    def __init__(self, charter: Charter) -> None:
        self.charter = charter

    def _r(
        self, field: str, allowed: bool, rule: str | None, article: str, code: ReasonCode
    ) -> Reason:
        return Reason(field, allowed, rule, article, self.charter.id, self.charter.version, code)

    def _may_publish(self, kind: OrgKind, f: FieldDef) -> Reason:
        c = self.charter
        if f.secrecy is Secrecy.INTERDIT:
            return self._r(f.id, False, None, f.article, ReasonCode.INTERDIT)
        for rule in c.publish:
            if kind in rule.kinds and rule.covers(f.id):
                return self._r(f.id, True, rule.id, rule.article, ReasonCode.GRANTED)
        return self._r(f.id, False, None, c.refusal_articles.default, ReasonCode.NO_RULE)

    def _personal(
        self,
        reason: Reason,
        f: FieldDef,
        declinations: Collection[Declination],
        consented_categories: Collection[str] | None,
        consented_fields: Collection[str] | None,
    ) -> Reason:
        arts = self.charter.refusal_articles
        if any(d.covers(f.id) for d in declinations):
            return self._r(f.id, False, None, arts.declined, ReasonCode.DECLINED)
        if not _consented(f.id, f.accord, consented_categories, consented_fields):
            return self._r(f.id, False, None, arts.consent, ReasonCode.NO_CONSENT)
        return reason

    def publish(
        self,
        org_kind: OrgKind,
        field_ids: Iterable[str],
        *,
        declinations: Collection[Declination] = (),
        consented_categories: Collection[str] | None = None,
        consented_fields: Collection[str] | None = None,
    ) -> Decision:
        """Same contract as ``CompiledCharter.publish``."""
        c = self.charter
        out: list[Reason] = []
        for field_id in _dedupe(field_ids):
            f = c.field(field_id)
            if f is None:
                out.append(
                    self._r(
                        field_id, False, None, c.refusal_articles.default, ReasonCode.UNKNOWN_FIELD
                    )
                )
                continue
            reason = self._may_publish(org_kind, f)
            if reason.allowed:
                reason = self._personal(
                    reason, f, declinations, consented_categories, consented_fields
                )
            out.append(reason)
        return _decision(c, tuple(out))

    def view(
        self,
        recipient: Recipient,
        purpose: str,
        field_ids: Iterable[str],
        *,
        sender_org_kind: OrgKind | None = None,
        at: date | datetime | None = None,
        meeting_dates: Iterable[date] = (),
        declinations: Collection[Declination] = (),
        consented_categories: Collection[str] | None = None,
        consented_fields: Collection[str] | None = None,
    ) -> Decision:
        """Same contract as ``CompiledCharter.view``."""
        c = self.charter
        meetings = tuple(meeting_dates)
        out: list[Reason] = []
        for field_id in _dedupe(field_ids):
            f = c.field(field_id)
            out.append(
                self._view_one(
                    f=f,
                    field_id=field_id,
                    recipient=recipient,
                    purpose=purpose,
                    sender=sender_org_kind,
                    at=at,
                    meetings=meetings,
                )
            )
            last = out[-1]
            if f is not None and last.allowed:
                out[-1] = self._personal(
                    last, f, declinations, consented_categories, consented_fields
                )
        return _decision(c, tuple(out))

    def _view_one(
        self,
        *,
        f: FieldDef | None,
        field_id: str,
        recipient: Recipient,
        purpose: str,
        sender: OrgKind | None,
        at: date | datetime | None,
        meetings: tuple[date, ...],
    ) -> Reason:
        c = self.charter
        arts = c.refusal_articles
        if f is None:
            return self._r(field_id, False, None, arts.default, ReasonCode.UNKNOWN_FIELD)
        if purpose not in c.purpose_ids:
            return self._r(f.id, False, None, arts.default, ReasonCode.UNKNOWN_PURPOSE)
        if f.secrecy is Secrecy.INTERDIT:
            return self._r(f.id, False, None, f.article, ReasonCode.INTERDIT)
        if f.secrecy is Secrecy.SECRET and not c.is_secret_bound(
            recipient.roles, recipient.org_kind
        ):
            return self._r(f.id, False, None, arts.secret, ReasonCode.SECRET_NOT_BOUND)
        applicable = [
            rule
            for rule in c.view
            if not rule.roles.isdisjoint(recipient.roles)
            and recipient.org_kind in rule.kinds
            and (recipient.group_member or not rule.group_member)
            and purpose in rule.purposes
            and _sender_matches(rule, sender)
            and rule.covers(f.id)
        ]
        chosen = next((r for r in applicable if r.window is None), None)
        if chosen is None:
            chosen = next((r for r in applicable if _window_open(r, at, meetings)), None)
        if chosen is None:
            if applicable:
                return self._r(
                    f.id, False, applicable[0].id, applicable[0].article, ReasonCode.OUTSIDE_WINDOW
                )
            return self._r(f.id, False, None, arts.default, ReasonCode.NO_RULE)
        if sender is not None and not self._may_publish(sender, f).allowed:
            return self._r(f.id, False, None, arts.default, ReasonCode.SENDER_NOT_ALLOWED)
        return self._r(f.id, True, chosen.id, chosen.article, ReasonCode.GRANTED)


def interpret(charter: Charter) -> Interpreter:
    """The slow reference evaluator of ``charter`` (same ``publish``/``view`` as compiled)."""
    return Interpreter(charter)
