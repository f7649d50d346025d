"""The charter in force in each operational group: versions, signatures, declinations, what-if.

The policy itself lives in :mod:`charter` (no Flask); this module stores what the partners
published and signed, and answers "which version applies to this partner" (DESIGN §5): a new
version applies to a partner only once that partner signed it; until then it keeps the last
version it signed, or takes no part.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session, aliased, defer

from charter import (
    Charter,
    CharterDiff,
    CharterError,
    CompiledCharter,
    Decision,
    Declination,
    Finding,
    Problem,
    Recipient,
    Signature,
    applicable_version,
    compile_charter,
    diff,
    digest,
    has_errors,
    lint,
    load_charter,
)
from charter.globs import matches
from charter.vocabulary import OrgKind, Role
from hub.i18n import N_, MessageError
from hub.models import (
    CharterDeclination,
    CharterSignature,
    CharterVersion,
    GroupMembership,
    OperationalGroup,
    Organisation,
    User,
)

MAX_CHARTER_BYTES = 512 * 1024


class CharterRefusedError(MessageError):
    """A charter operation refused, with a French message for the person."""


@functools.lru_cache(maxsize=64)
def parse(text: str) -> Charter:
    """The charter of a stored text (stored texts were validated when published)."""
    return load_charter(text)


@functools.lru_cache(maxsize=64)
def _compiled(text: str) -> CompiledCharter:
    return compile_charter(parse(text))


# A published version never changes, and its digest (SHA-256 over what the charter means, what
# partners sign) names it: the charter and its compiled decisions are kept per process by
# digest, so a read neither loads the text (tens of KB) nor hashes it (keying by the text re-hashed
# it on every call, each ORM load making a new string). Only texts that really have their
# stored digest are kept; a row whose text and digest disagree is parsed as it stands, every
# time, exactly as before.
_MAX_VERSIONS = 64
_by_digest: dict[str, tuple[Charter, CompiledCharter]] = {}
_by_digest_lock = threading.Lock()


def _version_entry(version: CharterVersion) -> tuple[Charter, CompiledCharter]:
    entry = _by_digest.get(version.digest)
    if entry is not None:
        return entry
    text = version.text
    charter = parse(text)
    if digest(charter) != version.digest:
        return charter, _compiled(text)
    entry = (charter, compile_charter(charter))
    with _by_digest_lock:
        while len(_by_digest) >= _MAX_VERSIONS:
            del _by_digest[next(iter(_by_digest))]
        _by_digest[version.digest] = entry
    return entry


def charter_of(version: CharterVersion) -> Charter:
    """The charter of a stored version (parsed once per process)."""
    return _version_entry(version)[0]


def compiled(version: CharterVersion) -> CompiledCharter:
    """The compiled decisions of a stored version (compiled once per process)."""
    return _version_entry(version)[1]


# Every read of a case asks which version applies: one statement, built once, loads the
# versions the organisation signed and the newest one, without their text.
_newest = aliased(CharterVersion)
_APPLICABLE = (
    select(
        CharterVersion,
        CharterSignature.signatory,
        CharterSignature.signed_at,
        CharterSignature.digest.label("signed_digest"),
    )
    .outerjoin(
        CharterSignature,
        and_(
            CharterSignature.version_id == CharterVersion.id,
            CharterSignature.organisation_id == bindparam("org_id"),
        ),
    )
    .where(
        CharterVersion.group_id == bindparam("group_id"),
        or_(
            CharterSignature.id.is_not(None),
            CharterVersion.version
            == select(func.max(_newest.version))
            .where(_newest.group_id == bindparam("group_id"))
            .scalar_subquery(),
        ),
    )
    .options(defer(CharterVersion.text))
    .order_by(CharterVersion.version.desc())
)


@dataclass(frozen=True)
class Preview:
    """What publishing a text would do: problems, lint findings, diff with the version in force."""

    charter: Charter | None
    problems: tuple[Problem, ...]
    findings: tuple[Finding, ...]
    diff: CharterDiff | None
    previous: CharterVersion | None

    @property
    def publishable(self) -> bool:
        """No loader problem and no lint error (warnings are shown, not blocking)."""
        return (
            self.charter is not None and not self.problems and not has_errors(list(self.findings))
        )


@dataclass(frozen=True)
class WhatIfRow:
    """One field of a what-if simulation: the sender side, the recipient side, the outcome."""

    field: str
    label: str
    publish_allowed: bool
    publish_reason: str
    publish_article: str
    view_allowed: bool
    view_reason: str
    view_article: str

    @property
    def passes(self) -> bool:
        """Whether the field would reach the recipient."""
        return self.publish_allowed and self.view_allowed

    @property
    def article(self) -> str:
        """The article that decided: the sender's side when it refuses, else the recipient's."""
        return self.publish_article if not self.publish_allowed else self.view_article

    @property
    def reason(self) -> str:
        """The deciding side's short reason."""
        return self.publish_reason if not self.publish_allowed else self.view_reason


class Charters:
    """Charter versions, signatures and declinations of operational groups."""

    def __init__(self, session: Session, *, clock: Callable[[], datetime]) -> None:
        self.session = session
        self.clock = clock

    # -- reading ---------------------------------------------------------------------------

    def versions(self, group: OperationalGroup) -> list[CharterVersion]:
        """Published versions, newest first."""
        return list(
            self.session.scalars(
                select(CharterVersion)
                .where(CharterVersion.group_id == group.id)
                .order_by(CharterVersion.version.desc())
            )
        )

    def version(self, group: OperationalGroup, number: int) -> CharterVersion | None:
        """One published version of the group's charter."""
        return self.session.scalar(
            select(CharterVersion).where(
                CharterVersion.group_id == group.id, CharterVersion.version == number
            )
        )

    def latest(self, group: OperationalGroup) -> CharterVersion | None:
        """The newest published version."""
        return self.session.scalar(
            select(CharterVersion)
            .where(CharterVersion.group_id == group.id)
            .order_by(CharterVersion.version.desc())
            .limit(1)
        )

    def partners(self, group: OperationalGroup) -> list[Organisation]:
        """The organisations sitting in the group (through their members), by name."""
        orgs = self.session.scalars(
            select(Organisation)
            .join(User, User.organisation_id == Organisation.id)
            .join(GroupMembership, GroupMembership.user_id == User.id)
            .where(GroupMembership.group_id == group.id)
            .distinct()
        )
        return sorted(orgs, key=lambda o: o.name)

    def applicable(self, group: OperationalGroup, org: Organisation) -> CharterVersion | None:
        """The version that applies to ``org`` now, or ``None`` (no part).

        The newest version it signed — while the version in force states a grace period
        (``[membership] grace``), a partner that has not signed it keeps its previous version
        only until the grace period after publication ends, then takes no part until it signs.
        Every read of a case asks this: one query loads the versions the organisation signed
        and the newest one (their text is loaded only if someone reads it; decisions take the
        charter by digest from :func:`charter_of`).
        """
        rows = self.session.execute(_APPLICABLE, {"group_id": group.id, "org_id": org.id}).all()
        signatures = [
            Signature(str(org.id), version.version, signatory, signed_at, signed_digest)
            for version, signatory, signed_at, signed_digest in rows
            if signatory is not None
        ]
        if not signatures:
            return None
        newest = rows[0][0]  # newest first; a signature exists only for a published version
        number = applicable_version(
            str(org.id),
            [s.version for s in signatures] + [newest.version],
            signatures,
            at=self.clock(),
            newest_published_at=newest.published_at,
            grace=charter_of(newest).membership.grace,
        )
        if number is None:
            return None
        return next(version for version, *_rest in rows if version.version == number)

    def signature_of(self, version: CharterVersion, org: Organisation) -> CharterSignature | None:
        """The organisation's signature of ``version``, if any."""
        return next((s for s in version.signatures if s.organisation_id == org.id), None)

    def declinations(
        self, group: OperationalGroup, org: Organisation | None = None
    ) -> list[CharterDeclination]:
        """Declinations in force in the group (of one partner when ``org`` is given)."""
        statement = select(CharterDeclination).where(
            CharterDeclination.group_id == group.id, CharterDeclination.withdrawn_at.is_(None)
        )
        if org is not None:
            statement = statement.where(CharterDeclination.organisation_id == org.id)
        return list(self.session.scalars(statement.order_by(CharterDeclination.recorded_at)))

    # -- publishing ------------------------------------------------------------------------

    def preview(self, group: OperationalGroup, text: str) -> Preview:
        """Validate ``text`` as the group's next version without storing anything."""
        previous = self.latest(group)
        if len(text.encode("utf-8")) > MAX_CHARTER_BYTES:
            problem = Problem(None, "La charte dépasse 512 Kio : elle n'est pas chargée.")
            return Preview(None, (problem,), (), None, previous)
        try:
            charter = load_charter(text, source="charte proposée")
        except CharterError as error:
            return Preview(None, tuple(error.problems), (), None, previous)
        problems: list[Problem] = []
        if previous is not None:
            if charter.id != previous.charter_id:
                problems.append(
                    Problem(
                        None, f"L'identifiant de la charte doit rester « {previous.charter_id} »."
                    )
                )
            if charter.version <= previous.version:
                problems.append(
                    Problem(
                        None,
                        "La version doit être supérieure à la version publiée "
                        f"({previous.version}).",
                    )
                )
        changes = diff(charter_of(previous), charter) if previous is not None else None
        return Preview(charter, tuple(problems), tuple(lint(charter)), changes, previous)

    def publish(self, group: OperationalGroup, text: str, *, by: User | None) -> CharterVersion:
        """Store a new version (nobody has signed it yet, so it applies to nobody yet)."""
        preview = self.preview(group, text)
        if not preview.publishable or preview.charter is None:
            raise CharterRefusedError(
                N_("La charte n'est pas publiée : corrigez les erreurs signalées.")
            )
        charter = preview.charter
        version = CharterVersion(
            group_id=group.id,
            charter_id=charter.id,
            version=charter.version,
            title=charter.title,
            text=text,
            digest=digest(charter),
            published_at=self.clock(),
            published_by_id=by.id if by else None,
        )
        self.session.add(version)
        self.session.flush()
        return version

    def sign(
        self, version: CharterVersion, org: Organisation, *, signatory: str, by: User | None
    ) -> CharterSignature:
        """Record that ``org`` signs ``version`` through the named signatory."""
        signatory = signatory.strip()
        if not signatory or len(signatory) > 200:
            raise CharterRefusedError(N_("Indiquez le nom et la qualité du signataire."))
        if org.id not in {o.id for o in self.partners(version.group)}:
            raise CharterRefusedError(N_("Votre organisation ne siège pas dans ce groupe."))
        if self.signature_of(version, org) is not None:
            raise CharterRefusedError(N_("Votre organisation a déjà signé cette version."))
        signature = CharterSignature(
            version_id=version.id,
            organisation_id=org.id,
            signatory=signatory,
            signed_by_id=by.id if by else None,
            signed_at=self.clock(),
            digest=version.digest,
        )
        version.signatures.append(signature)
        self.session.flush()
        return signature

    def decline(
        self,
        group: OperationalGroup,
        org: Organisation,
        *,
        field_glob: str,
        reason: str,
        by: User | None,
    ) -> CharterDeclination:
        """A partner declines to share fields (a catalogue id or glob), with its reason."""
        latest = self.latest(group)
        field_glob = field_glob.strip()
        reason = reason.strip()
        if latest is None:
            raise CharterRefusedError(N_("Aucune charte n'est publiée dans ce groupe."))
        if not any(matches(field_glob, f) for f in charter_of(latest).field_ids):
            raise CharterRefusedError(N_("Ce champ n'existe pas dans le catalogue de la charte."))
        if len(reason) < 10:
            raise CharterRefusedError(N_("Expliquez la raison du refus (10 caractères au moins)."))
        declination = CharterDeclination(
            group_id=group.id,
            organisation_id=org.id,
            field_glob=field_glob,
            reason=reason,
            recorded_at=self.clock(),
            recorded_by_id=by.id if by else None,
        )
        self.session.add(declination)
        self.session.flush()
        return declination

    # -- what-if ---------------------------------------------------------------------------

    def what_if(
        self,
        version: CharterVersion,
        *,
        sender: Organisation,
        recipient_roles: Sequence[Role],
        recipient_kind: OrgKind,
        recipient_member: bool,
        purpose: str,
        meeting_day: bool = True,
    ) -> tuple[Decision, Decision, list[WhatIfRow]]:
        """Field by field, what the sender may publish and the recipient may see, and why."""
        charter = charter_of(version)
        decider = compiled(version)
        declined = [
            Declination(str(d.organisation_id), d.field_glob, d.reason, d.recorded_at)
            for d in self.declinations(version.group, sender)
        ]
        fields = charter.field_ids
        published = decider.publish(sender.kind, fields, declinations=declined)
        now = self.clock()
        viewed = decider.view(
            Recipient(frozenset(recipient_roles), recipient_kind, recipient_member),
            purpose,
            fields,
            sender_org_kind=sender.kind,
            at=now,
            meeting_dates=(now.date(),) if meeting_day else (),
            declinations=declined,
        )
        rows = []
        for field_id in fields:
            out, seen = published.reason(field_id), viewed.reason(field_id)
            definition = charter.field(field_id)
            rows.append(
                WhatIfRow(
                    field=field_id,
                    label=definition.label_fr if definition else field_id,
                    publish_allowed=out.allowed,
                    publish_reason=out.short_fr(),
                    publish_article=out.article,
                    view_allowed=seen.allowed,
                    view_reason=seen.short_fr(),
                    view_article=seen.article,
                )
            )
        return published, viewed, rows
