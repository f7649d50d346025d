"""Recording and reading consent records: prior information, consent, adhesion, receipts.

A service bound to a SQLAlchemy ``Session`` and a clock, like every domain service of Maillon.
It never commits: the hub records the act in the audit log, then commits — or rolls back on a
refusal. Every refusal is a :class:`consent.errors.ConsentError`, raised before any record is
written (at most the generation counter moved, and the caller's rollback undoes it), so a
refused operation changes nothing.

Every change bumps the case's generation counter first: on PostgreSQL the upsert locks the row
until commit (concurrent changes to one case's consent run one after the other), on SQLite it
takes the write lock; and a read that raced the change notices it (see ``consent.enforce``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Any, Protocol

from sqlalchemy import Integer, Row, and_, bindparam, cast, exists, insert, select
from sqlalchemy.orm import Session

from consent.db import dialect_insert
from consent.enforce import ConsentRules, ConsentState, local_day
from consent.errors import (
    ConsentConflictError,
    ConsentInvalidError,
    ConsentNotFoundError,
)
from consent.records import (
    Adhesion,
    Consent,
    Evidence,
    History,
    Information,
    Receipt,
    Scope,
    StatusEntry,
    utc,
)
from consent.tables import (
    adhesions_table,
    consents_table,
    evidence_table,
    generations_table,
    information_table,
    receipts_table,
    status_table,
)
from consent.vocabulary import (
    ConsentStatus,
    EvidenceKind,
    Grantor,
    InformationMethod,
)

MAX_EVIDENCE_BYTES = 5 * 1024 * 1024
MAX_JUSTIFICATION = 2000
MIN_JUSTIFICATION = 20
MAX_VALIDITY_YEARS = 3  # a consent is reviewed at least every three years
EARLIEST = date(2000, 1, 1)
_MEDIA = {
    b"%PDF-": "application/pdf",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}
# Crockford's base 32 without look-alikes, as for case references: read out on the phone.
_REF_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class Sealer(Protocol):
    """Seals bytes under the case's own key (the hub's vault, bound to one case)."""

    def seal(self, label: str, data: bytes) -> bytes:
        """The ciphertext of ``data``, bound to ``label``."""
        ...

    def open(self, label: str, blob: bytes) -> bytes:
        """The clear bytes of ``blob`` sealed under ``label``."""
        ...


@dataclass(frozen=True, slots=True)
class Actor:
    """Who records: a person (``user_id``) or an organisation's system (``user_id`` ``None``)."""

    user_id: int | None
    org_id: int


@dataclass(frozen=True, slots=True)
class Upload:
    """Evidence as received: a scan of the signed form, or a signature drawn in person."""

    kind: EvidenceKind
    data: bytes


def new_receipt_reference() -> str:
    """A random receipt reference such as ``R-7K3Q-X9M2``."""
    chars = "".join(secrets.choice(_REF_ALPHABET) for _ in range(8))
    return f"R-{chars[:4]}-{chars[4:]}"


def media_type(data: bytes) -> str | None:
    """The media type of a scan or signature, from its first bytes (PDF, PNG or JPEG)."""
    return next((m for magic, m in _MEDIA.items() if data.startswith(magic)), None)


class ConsentRecords:
    """The consent records of cases: record, correct, withdraw, read."""

    def __init__(
        self,
        session: Session,
        *,
        clock: Callable[[], datetime],
        max_evidence_bytes: int = MAX_EVIDENCE_BYTES,
    ) -> None:
        self.session = session
        self.clock = clock
        self.max_evidence_bytes = max_evidence_bytes

    # -- reading ---------------------------------------------------------------------------

    def generation(self, case_id: int, *, hold: bool = False) -> int:
        """The case's consent generation (0 before any record).

        ``hold``: keep a shared lock on it until the transaction ends (PostgreSQL; SQLite's one
        writer serialises anyway), so a consent change waits for a write that was decided on
        the current consent to commit first.
        """
        statement = _GENERATION_HELD if hold else _GENERATION
        value = self.session.execute(statement, {"case_id": case_id}).scalar()
        return int(value or 0)

    def state(self, case_id: int) -> ConsentState:
        """What can matter to a decision on the case now: current consents with their history,
        who was informed, the exceptions — and the generation they were read at.

        The generation is read first: a change committed after it bumps it, and the reader's
        check after its audit event then sees the bump (``consent.enforce``). Two statements
        (every read of a case runs this): the generation with the current information records,
        then the current consents with their status history."""
        generation = 0
        informed: set[Grantor] = set()
        excepted: set[Grantor] = set()
        for row in self.session.execute(_STATE_INFORMATION, {"case_id": case_id}):
            generation = int(row.generation or 0)
            if row.subject is not None:
                (excepted if row.exception else informed).add(Grantor(row.subject))
        consents: list[Consent] = []
        rows = self.session.execute(_STATE_CONSENTS, {"case_id": case_id})
        for _consent_id, group in groupby(rows, key=lambda row: row.id):
            entries = list(group)  # one row per status entry, in order
            history = tuple(
                StatusEntry(
                    id=row.status_id,
                    status=ConsentStatus(row.status),
                    at=utc(row.status_at),
                    by_id=row.status_by_id,
                    by_org_id=row.status_by_org_id,
                    requested_by=Grantor(row.requested_by) if row.requested_by else None,
                )
                for row in entries
                if row.status_id is not None
            )
            consents.append(_consent(entries[0], history, None))
        return ConsentState(
            case_id=case_id,
            generation=generation,
            consents=tuple(consents),
            informed=frozenset(informed),
            exceptions=frozenset(excepted),
        )

    def history(self, case_id: int) -> History:
        """Every record of the case, corrections included, oldest first."""
        evidence = {
            row.id: _evidence(row)
            for row in self.session.execute(
                select(evidence_table).where(evidence_table.c.case_id == case_id)
            )
        }
        return History(
            information=tuple(self._information(case_id)),
            consents=tuple(self._consents(case_id)),
            adhesions=tuple(self._adhesions(case_id)),
            evidence=evidence,
            receipts=tuple(self._receipts(receipts_table.c.case_id == case_id)),
        )

    def consent(self, case_id: int, consent_id: int) -> Consent:
        """One consent of the case; :class:`ConsentNotFoundError` otherwise."""
        found = [c for c in self._consents(case_id, consent_id) if c.id == consent_id]
        if not found:
            raise ConsentNotFoundError("consent_not_found", "Ce consentement n'existe pas.")
        return found[0]

    def receipt(self, reference: str) -> Receipt | None:
        """The receipt with this reference, if any."""
        found = self._receipts(receipts_table.c.reference == reference.strip().upper())
        return found[0] if found else None

    def exceptions(self) -> list[Information]:
        """Every current exception « contraire à l'intérêt de l'enfant », newest first (DPO)."""
        rows = self.session.execute(
            select(information_table)
            .where(information_table.c.exception.is_(True))
            .order_by(information_table.c.recorded_at.desc(), information_table.c.id.desc())
        )
        superseded = self._superseded(information_table)
        return [_information(row, superseded.get(row.id)) for row in rows]

    def consents_of(self, case_ids: Sequence[int]) -> dict[int, list[Consent]]:
        """Current consents of several cases (lists and the DPO overview), by case id."""
        by_case: dict[int, list[Consent]] = {case_id: [] for case_id in case_ids}
        if not case_ids:
            return by_case
        for consent in self._consents_where(consents_table.c.case_id.in_(case_ids)):
            if consent.current:
                by_case[consent.case_id].append(consent)
        return by_case

    def ending_between(self, first: date, last: date) -> list[Consent]:
        """Current consents given and not withdrawn whose validity ends between the two days
        (reminders before expiry)."""
        return [
            c
            for c in self._consents_where(consents_table.c.valid_until.between(first, last))
            if c.current and c.status is ConsentStatus.GIVEN
        ]

    def information(self, information_id: int) -> Information | None:
        """One information record, whatever its case (the DPO's review of an exception)."""
        row = self.session.execute(
            select(information_table.c.case_id).where(information_table.c.id == information_id)
        ).first()
        if row is None:
            return None
        return next((i for i in self._information(row.case_id) if i.id == information_id), None)

    def justification(self, information: Information, sealer: Sealer) -> str:
        """The clear justification of an exception « contraire à l'intérêt de l'enfant »."""
        blob = self.session.execute(
            select(information_table.c.justification).where(
                information_table.c.id == information.id
            )
        ).scalar_one()
        if blob is None:
            return ""
        return sealer.open(_justification_label(information.subject), blob).decode("utf-8")

    def open_evidence(self, evidence: Evidence, sealer: Sealer) -> bytes:
        """The clear bytes of ``evidence``, checked against the recorded digest."""
        blob = self.session.execute(
            select(evidence_table.c.sealed).where(evidence_table.c.id == evidence.id)
        ).scalar_one()
        data = sealer.open(_EVIDENCE_LABEL, blob)
        if hashlib.sha256(data).hexdigest() != evidence.sha256:
            raise ConsentConflictError("evidence_altered", "La pièce a été altérée.")
        return data

    # -- recording -------------------------------------------------------------------------

    def inform(
        self,
        case_id: int,
        actor: Actor,
        *,
        subject: Grantor,
        rules: ConsentRules,
        birth: date | None,
        method: InformationMethod | None = None,
        informed_on: date | None = None,
        notice_version: str | None = None,
        exception: bool = False,
        justification: str = "",
        sealer: Sealer | None = None,
        supersedes: int | None = None,
    ) -> Information:
        """Record that ``subject`` received the prior information — or, for a holder of
        parental authority, the exception « contraire à l'intérêt de l'enfant » with its
        mandatory justification (sealed under the case key; the DPO is shown the exception)."""
        today = local_day(self.clock())
        if subject.is_holder and not rules.is_minor(birth, today):
            raise ConsentInvalidError(
                "parent_for_adult",
                "Le jeune est majeur : les titulaires de l'autorité parentale ne sont plus "
                "informés ni consultés.",
            )
        sealed: bytes | None = None
        if exception:
            if not subject.is_holder:
                raise ConsentInvalidError(
                    "exception_for_young_person",
                    "L'exception « contraire à l'intérêt de l'enfant » ne concerne que les "
                    "titulaires de l'autorité parentale : le jeune est toujours informé.",
                )
            text = justification.strip()
            if not MIN_JUSTIFICATION <= len(text) <= MAX_JUSTIFICATION:
                raise ConsentInvalidError(
                    "exception_without_justification",
                    "Justifiez l'exception « contraire à l'intérêt de l'enfant » "
                    "(%(min)d à %(max)d caractères).",
                    min=MIN_JUSTIFICATION,
                    max=MAX_JUSTIFICATION,
                )
            if sealer is None:
                raise ValueError("a sealer is needed to keep the justification")
            sealed = sealer.seal(_justification_label(subject), text.encode("utf-8"))
            method, informed_on, notice_version = None, None, None
        else:
            if method is None or informed_on is None:
                raise ConsentInvalidError(
                    "information_incomplete",
                    "Indiquez quand et comment la personne a été informée.",
                )
            _check_day(informed_on, today, "informed_on", "La date de l'information")
            notice_version = (notice_version or rules.notice_version).strip()[:64]
        self._bump(case_id)
        if exception and supersedes is None:
            # A holder who was informed, or who gave or refused an accord, is known and
            # reachable: the exception cannot then be used to drop their say (a withdrawal
            # stands; a correction of the information record is the only way back).
            state = self.state(case_id)
            if subject in state.informed or any(c.grantor is subject for c in state.consents):
                raise ConsentConflictError(
                    "exception_after_information",
                    "Cette personne a déjà été informée ou s'est déjà prononcée : l'exception "
                    "« contraire à l'intérêt de l'enfant » ne peut plus écarter son accord.",
                )
        if supersedes is not None:
            self._check_supersedes(information_table, case_id, supersedes, subject=subject)
        row_id = self._insert(
            information_table,
            case_id=case_id,
            subject=subject.value,
            exception=exception,
            method=method.value if method else None,
            informed_on=informed_on,
            notice_version=notice_version,
            justification=sealed,
            informed_by_id=actor.user_id,
            recorded_by_id=actor.user_id,
            recorded_by_org_id=actor.org_id,
            recorded_at=self.clock(),
            supersedes_id=supersedes,
        )
        return next(i for i in self._information(case_id) if i.id == row_id)

    def record_consent(
        self,
        case_id: int,
        actor: Actor,
        *,
        grantor: Grantor,
        given: bool,
        scope: Scope,
        valid_from: date,
        valid_until: date,
        rules: ConsentRules,
        birth: date | None,
        purposes: Iterable[str],
        categories: Iterable[str],
        charter_version: str,
        evidence: Upload | None,
        sealer: Sealer,
        supersedes: int | None = None,
    ) -> Consent:
        """Record ``grantor``'s accord (``given``) or refusal over ``scope``.

        ``purposes`` and ``categories``: those the charter in force declares (the scope may
        name nothing else). A given accord needs evidence, prior information of the grantor,
        a scope, and a validity that ends after it starts; a holder's accord is refused once
        the young person is of age.
        """
        today = local_day(self.clock())
        if grantor.is_holder and not rules.is_minor(birth, today):
            raise ConsentInvalidError(
                "parent_consent_for_adult",
                "Le jeune est majeur : l'accord d'un titulaire de l'autorité parentale n'a pas "
                "lieu d'être.",
            )
        if scope.empty:
            raise ConsentInvalidError(
                "consent_no_scope",
                "Précisez ce que couvre l'accord : au moins une finalité, une catégorie "
                "d'informations et un destinataire.",
            )
        unknown = sorted((scope.purposes - set(purposes)) | (scope.categories - set(categories)))
        if unknown:
            raise ConsentInvalidError(
                "consent_unknown_scope",
                "La charte en vigueur ne prévoit pas : %(items)s.",
                items=", ".join(unknown),
            )
        if valid_until < valid_from:
            raise ConsentInvalidError(
                "consent_invalid_validity",
                "La fin de validité précède son début.",
            )
        _check_day(valid_from, today + timedelta(days=366), "valid_from", "Le début de validité")
        if valid_until > _years_after(valid_from, MAX_VALIDITY_YEARS):
            raise ConsentInvalidError(
                "consent_validity_too_long",
                "Un accord vaut trois ans au plus : il est ensuite recueilli à nouveau.",
            )
        if given and evidence is None:
            raise ConsentInvalidError(
                "consent_no_evidence",
                "Joignez le formulaire signé numérisé ou recueillez la signature sur place.",
            )
        checked = self._check_upload(evidence) if evidence is not None else None
        self._bump(case_id)
        state = self.state(case_id)
        if grantor not in state.informed:
            raise ConsentInvalidError(
                "no_prior_information",
                "Enregistrez d'abord l'information préalable de cette personne.",
            )
        if (
            not given
            and supersedes is None
            and any(c.grantor is grantor and c.in_force(today) for c in state.consents)
        ):
            # A refusal next to an accord in force would leave the accord in force: the person
            # who changes their mind withdraws it (and the partners are told).
            raise ConsentConflictError(
                "refusal_while_consent_in_force",
                "Cette personne a un accord en vigueur : enregistrez son retrait plutôt qu'un "
                "refus.",
            )
        if supersedes is not None:
            self._check_supersedes(consents_table, case_id, supersedes, grantor=grantor)
        now = self.clock()
        evidence_id = (
            self._store_evidence(case_id, checked, sealer, now) if checked is not None else None
        )
        consent_id = self._insert(
            consents_table,
            case_id=case_id,
            grantor=grantor.value,
            **scope.columns(),
            valid_from=valid_from,
            valid_until=valid_until,
            evidence_id=evidence_id,
            charter_version=charter_version,
            recorded_by_id=actor.user_id,
            recorded_by_org_id=actor.org_id,
            recorded_at=now,
            supersedes_id=supersedes,
        )
        self._status(
            case_id,
            consent_id,
            ConsentStatus.GIVEN if given else ConsentStatus.REFUSED,
            actor,
            requested_by=grantor,
        )
        return self.consent(case_id, consent_id)

    def withdraw(
        self, case_id: int, actor: Actor, consent_id: int, *, requested_by: Grantor
    ) -> Consent:
        """Withdraw a consent at its grantor's request; effective at once.

        Refused when the consent does not exist on this case, was already withdrawn, was a
        refusal, was corrected since, or when someone else than its grantor asks.
        """
        self._bump(case_id)  # first: a concurrent withdrawal waits here, then sees ours
        consent = self.consent(case_id, consent_id)
        if consent.withdrawal is not None:
            raise ConsentConflictError(
                "already_withdrawn",
                "Ce consentement a déjà été retiré le %(day)s.",
                day=local_day(consent.withdrawal.at).strftime("%d/%m/%Y"),
            )
        if consent.status is not ConsentStatus.GIVEN:
            raise ConsentConflictError(
                "not_given", "Ce consentement n'a pas été donné : il n'y a rien à retirer."
            )
        if not consent.current:
            raise ConsentConflictError(
                "superseded", "Ce consentement a été corrigé : retirez la version en vigueur."
            )
        if requested_by is not consent.grantor:
            raise ConsentInvalidError(
                "withdrawal_not_by_grantor",
                "Seule la personne qui a donné son accord peut le retirer.",
            )
        self._status(case_id, consent_id, ConsentStatus.WITHDRAWN, actor, requested_by=requested_by)
        return self.consent(case_id, consent_id)

    def record_adhesion(
        self,
        case_id: int,
        actor: Actor,
        *,
        signed_on: date,
        counsellor_id: int,
        referent_id: int,
        evidence: Upload | None,
        sealer: Sealer,
        supersedes: int | None = None,
    ) -> Adhesion:
        """Record the tripartite contract (young person, counsellor, référent) with its proof."""
        today = local_day(self.clock())
        _check_day(signed_on, today, "signed_on", "La date de signature")
        if counsellor_id == referent_id:
            raise ConsentInvalidError(
                "adhesion_same_person",
                "Le contrat est tripartite : le conseiller et le référent sont deux personnes.",
            )
        if evidence is None:
            raise ConsentInvalidError(
                "adhesion_no_evidence", "Joignez le contrat signé numérisé ou la signature."
            )
        checked = self._check_upload(evidence)
        self._bump(case_id)
        if supersedes is not None:
            self._check_supersedes(adhesions_table, case_id, supersedes)
        now = self.clock()
        adhesion_id = self._insert(
            adhesions_table,
            case_id=case_id,
            signed_on=signed_on,
            counsellor_id=counsellor_id,
            referent_id=referent_id,
            evidence_id=self._store_evidence(case_id, checked, sealer, now),
            recorded_by_id=actor.user_id,
            recorded_by_org_id=actor.org_id,
            recorded_at=now,
            supersedes_id=supersedes,
        )
        return next(a for a in self._adhesions(case_id) if a.id == adhesion_id)

    def expired_unnoted(self) -> list[Consent]:
        """Given consents whose validity ended and whose expiry is not noted yet (daily sweep).

        Enforcement reads the dates and needs no note; the note tells the history and lets the
        partners be told. The sweep notes them one transaction at a time
        (:meth:`note_expiry`), each with its event and notifications, so none is lost.
        """
        today = local_day(self.clock())
        return [
            c
            for c in self._consents_where(consents_table.c.valid_until < today)
            if c.current
            and c.status is ConsentStatus.GIVEN
            and not any(e.status is ConsentStatus.EXPIRED for e in c.history)
        ]

    def note_expiry(self, consent: Consent) -> bool:
        """Note that ``consent`` expired; ``False`` when it was noted meanwhile (idempotent)."""
        self._bump(consent.case_id)  # first: a concurrent sweep waits here, then sees ours
        fresh = self.consent(consent.case_id, consent.id)
        if any(e.status is ConsentStatus.EXPIRED for e in fresh.history):
            return False
        self._status(consent.case_id, consent.id, ConsentStatus.EXPIRED, None)
        return True

    def touch(self, case_id: int) -> None:
        """Bump the case's generation for a change outside the consent records that narrows
        who may read it (a professional taken off the team, a date of birth changed): reads in
        flight then decide again (see ``consent.enforce``)."""
        self._bump(case_id)

    def issue_receipt(
        self,
        case_id: int,
        actor: Actor,
        consent: Consent,
        *,
        language: str,
        body: Mapping[str, Any],
        reference: str,
    ) -> Receipt:
        """Keep a receipt handed to the grantor (its body says what it says, no name)."""
        text = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        self._insert(
            receipts_table,
            reference=reference,
            case_id=case_id,
            consent_id=consent.id,
            grantor=consent.grantor.value,
            language=language,
            body=text,
            sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            issued_at=self.clock(),
            issued_by_id=actor.user_id,
            issued_by_org_id=actor.org_id,
        )
        receipt = self.receipt(reference)
        assert receipt is not None
        return receipt

    # -- internals -------------------------------------------------------------------------

    def _bump(self, case_id: int) -> None:
        upsert = dialect_insert(self.session, generations_table).values(
            case_id=case_id, generation=1
        )
        self.session.execute(
            upsert.on_conflict_do_update(
                index_elements=[generations_table.c.case_id],
                set_={"generation": generations_table.c.generation + 1},
            )
        )

    def _insert(self, table: Any, **values: Any) -> int:
        result = self.session.execute(insert(table).values(**values).returning(table.c.id))
        return int(result.scalar_one())

    def _status(
        self,
        case_id: int,
        consent_id: int,
        status: ConsentStatus,
        actor: Actor | None,
        *,
        requested_by: Grantor | None = None,
    ) -> None:
        self._insert(
            status_table,
            consent_id=consent_id,
            case_id=case_id,
            status=status.value,
            at=self.clock(),
            by_id=actor.user_id if actor else None,
            by_org_id=actor.org_id if actor else None,
            requested_by=requested_by.value if requested_by else None,
        )

    def _check_upload(self, upload: Upload) -> tuple[EvidenceKind, str, bytes]:
        if not upload.data:
            raise ConsentInvalidError("evidence_empty", "La pièce jointe est vide.")
        if len(upload.data) > self.max_evidence_bytes:
            raise ConsentInvalidError(
                "evidence_too_large",
                "La pièce dépasse %(max)d Mio : numérisez-la en qualité document.",
                max=self.max_evidence_bytes // (1024 * 1024),
            )
        kind = media_type(upload.data)
        allowed = {"image/png"} if upload.kind is EvidenceKind.SIGNATURE else set(_MEDIA.values())
        if kind not in allowed:
            raise ConsentInvalidError(
                "evidence_invalid",
                "La pièce doit être un PDF, une image JPEG ou PNG (la signature : PNG).",
            )
        return upload.kind, kind, upload.data

    def _store_evidence(
        self,
        case_id: int,
        checked: tuple[EvidenceKind, str, bytes],
        sealer: Sealer,
        now: datetime,
    ) -> int:
        kind, media, data = checked
        return self._insert(
            evidence_table,
            case_id=case_id,
            kind=kind.value,
            media_type=media,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            sealed=sealer.seal(_EVIDENCE_LABEL, data),
            recorded_at=now,
        )

    def _check_supersedes(
        self,
        table: Any,
        case_id: int,
        record_id: int,
        *,
        subject: Grantor | None = None,
        grantor: Grantor | None = None,
    ) -> None:
        row = self.session.execute(
            select(table).where(table.c.id == record_id, table.c.case_id == case_id)
        ).first()
        if row is None:
            raise ConsentNotFoundError(
                "record_not_found", "L'enregistrement à corriger n'existe pas dans ce dossier."
            )
        same = (subject is None or row.subject == subject.value) and (
            grantor is None or row.grantor == grantor.value
        )
        if not same:
            raise ConsentInvalidError(
                "correction_other_person",
                "Une correction concerne la même personne que l'enregistrement corrigé.",
            )
        if record_id in self._superseded(table, case_id):
            raise ConsentConflictError(
                "already_corrected", "Cet enregistrement a déjà été corrigé."
            )
        if table is consents_table:
            corrected = self.consent(case_id, record_id)
            if corrected.status is not ConsentStatus.GIVEN:
                # A correction would hide a withdrawal or a refusal from the current state.
                raise ConsentConflictError(
                    "cannot_correct_withdrawn",
                    "Un accord retiré ou refusé ne se corrige pas : recueillez un nouvel accord.",
                )

    def _superseded(self, table: Any, case_id: int | None = None) -> dict[int, int]:
        statement = select(table.c.supersedes_id, table.c.id).where(
            table.c.supersedes_id.is_not(None)
        )
        if case_id is not None:
            statement = statement.where(table.c.case_id == case_id)
        return {int(row[0]): int(row[1]) for row in self.session.execute(statement)}

    def _information(self, case_id: int) -> list[Information]:
        superseded = self._superseded(information_table, case_id)
        rows = self.session.execute(
            select(information_table)
            .where(information_table.c.case_id == case_id)
            .order_by(information_table.c.id)
        )
        return [_information(row, superseded.get(row.id)) for row in rows]

    def _consents(self, case_id: int, consent_id: int | None = None) -> list[Consent]:
        where = consents_table.c.case_id == case_id
        if consent_id is not None:
            where = where & (consents_table.c.id == consent_id)
        return self._consents_where(where)

    def _consents_where(self, where: Any) -> list[Consent]:
        rows = list(
            self.session.execute(select(consents_table).where(where).order_by(consents_table.c.id))
        )
        if not rows:
            return []
        ids = [row.id for row in rows]
        history: dict[int, list[StatusEntry]] = {i: [] for i in ids}
        for entry in self.session.execute(
            select(status_table)
            .where(status_table.c.consent_id.in_(ids))
            .order_by(status_table.c.id)
        ):
            history[entry.consent_id].append(_entry(entry))
        successors = {
            int(row[0]): int(row[1])
            for row in self.session.execute(
                select(consents_table.c.supersedes_id, consents_table.c.id).where(
                    consents_table.c.supersedes_id.in_(ids)
                )
            )
        }
        return [_consent(row, tuple(history[row.id]), successors.get(row.id)) for row in rows]

    def _adhesions(self, case_id: int) -> list[Adhesion]:
        superseded = self._superseded(adhesions_table, case_id)
        rows = self.session.execute(
            select(adhesions_table)
            .where(adhesions_table.c.case_id == case_id)
            .order_by(adhesions_table.c.id)
        )
        return [_adhesion(row, superseded.get(row.id)) for row in rows]

    def _receipts(self, where: Any) -> list[Receipt]:
        rows = self.session.execute(
            select(receipts_table).where(where).order_by(receipts_table.c.id)
        )
        return [_receipt(row) for row in rows]


_EVIDENCE_LABEL = "consent/evidence"

# Every read of a case reads the generation (and again after its audit event): built once.
_GENERATION = select(generations_table.c.generation).where(
    generations_table.c.case_id == bindparam("case_id")
)
_GENERATION_HELD = _GENERATION.with_for_update(read=True)

# ``ConsentRecords.state`` runs on every read of a case: its two statements are built once.
# The first reads the generation and, in the same statement (the same snapshot), the current
# information records: one row per record, or a single row of NULLs beside the generation.
_case_key = select(cast(bindparam("case_id"), Integer).label("case_id")).subquery("k")
_information_successor = information_table.alias("information_successor")
_STATE_INFORMATION = (
    select(
        generations_table.c.generation,
        information_table.c.subject,
        information_table.c.exception,
    )
    .select_from(_case_key)
    .outerjoin(generations_table, generations_table.c.case_id == _case_key.c.case_id)
    .outerjoin(
        information_table,
        and_(
            information_table.c.case_id == _case_key.c.case_id,
            ~exists().where(
                _information_successor.c.supersedes_id == information_table.c.id,
                _information_successor.c.case_id == _case_key.c.case_id,
            ),
        ),
    )
    .order_by(information_table.c.id)
)
# The second: the current consents (no later record supersedes them), each with its status
# history in order, one row per status entry.
_consent_successor = consents_table.alias("consent_successor")
_STATE_CONSENTS = (
    select(
        consents_table,
        status_table.c.id.label("status_id"),
        status_table.c.status,
        status_table.c.at.label("status_at"),
        status_table.c.by_id.label("status_by_id"),
        status_table.c.by_org_id.label("status_by_org_id"),
        status_table.c.requested_by,
    )
    .outerjoin(status_table, status_table.c.consent_id == consents_table.c.id)
    .where(
        consents_table.c.case_id == bindparam("case_id"),
        ~exists().where(_consent_successor.c.supersedes_id == consents_table.c.id),
    )
    .order_by(consents_table.c.id, status_table.c.id)
)


def _justification_label(subject: Grantor) -> str:
    return f"consent/justification/{subject.value}"


def _years_after(day: date, years: int) -> date:
    """The same calendar day ``years`` later (28 February for a 29 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return date(day.year + years, 2, 28)


def _check_day(day: date, latest: date, name: str, label: str) -> None:
    if not EARLIEST <= day <= latest:
        raise ConsentInvalidError(
            "invalid_date",
            "%(label)s doit être comprise entre le %(first)s et le %(last)s.",
            label=label,
            first=EARLIEST.strftime("%d/%m/%Y"),
            last=latest.strftime("%d/%m/%Y"),
        )


def _information(row: Row[Any], superseded_by: int | None) -> Information:
    return Information(
        id=row.id,
        case_id=row.case_id,
        subject=Grantor(row.subject),
        exception=bool(row.exception),
        method=InformationMethod(row.method) if row.method else None,
        informed_on=row.informed_on,
        notice_version=row.notice_version,
        has_justification=row.justification is not None,
        informed_by_id=row.informed_by_id,
        recorded_by_id=row.recorded_by_id,
        recorded_by_org_id=row.recorded_by_org_id,
        recorded_at=utc(row.recorded_at),
        supersedes_id=row.supersedes_id,
        superseded_by=superseded_by,
    )


def _entry(row: Row[Any]) -> StatusEntry:
    return StatusEntry(
        id=row.id,
        status=ConsentStatus(row.status),
        at=utc(row.at),
        by_id=row.by_id,
        by_org_id=row.by_org_id,
        requested_by=Grantor(row.requested_by) if row.requested_by else None,
    )


def _consent(row: Row[Any], history: tuple[StatusEntry, ...], superseded_by: int | None) -> Consent:
    return Consent(
        id=row.id,
        case_id=row.case_id,
        grantor=Grantor(row.grantor),
        scope=Scope.from_columns(row._mapping),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        evidence_id=row.evidence_id,
        charter_version=row.charter_version,
        recorded_by_id=row.recorded_by_id,
        recorded_by_org_id=row.recorded_by_org_id,
        recorded_at=utc(row.recorded_at),
        supersedes_id=row.supersedes_id,
        history=history,
        superseded_by=superseded_by,
    )


def _adhesion(row: Row[Any], superseded_by: int | None) -> Adhesion:
    return Adhesion(
        id=row.id,
        case_id=row.case_id,
        signed_on=row.signed_on,
        counsellor_id=row.counsellor_id,
        referent_id=row.referent_id,
        evidence_id=row.evidence_id,
        recorded_by_id=row.recorded_by_id,
        recorded_by_org_id=row.recorded_by_org_id,
        recorded_at=utc(row.recorded_at),
        supersedes_id=row.supersedes_id,
        superseded_by=superseded_by,
    )


def _evidence(row: Row[Any]) -> Evidence:
    return Evidence(
        id=row.id,
        case_id=row.case_id,
        kind=EvidenceKind(row.kind),
        media_type=row.media_type,
        size=row.size,
        sha256=row.sha256,
        recorded_at=utc(row.recorded_at),
    )


def _receipt(row: Row[Any]) -> Receipt:
    return Receipt(
        id=row.id,
        reference=row.reference,
        case_id=row.case_id,
        consent_id=row.consent_id,
        grantor=Grantor(row.grantor),
        language=row.language,
        body=json.loads(row.body),
        sha256=row.sha256,
        issued_at=utc(row.issued_at),
        issued_by_id=row.issued_by_id,
        issued_by_org_id=row.issued_by_org_id,
    )
