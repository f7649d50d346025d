"""The hub's relay of sealed forms: accept, store ciphertext, deliver (DESIGN §6.2, §2.5).

The relay cannot read a form. It checks everything it can see before storing anything:

1. the envelope reads (limits, strict members, pinned algorithm);
2. the signing device is a key in force of the caller, and names the caller as sender;
3. that key signed the exact manifest, and every view has its signed digest;
4. a retried send (same form id) is the same form: answered again, not stored twice;
5. the caller may publish every listed field for this case and purpose, under the charter
   version its organisation signed and the consent the manifest names (the hub's
   :class:`Entitlements`: charter × consent × case team, the function case reads use);
6. the directory checkpoint in the manifest is one the directory signed; every recipient key is
   in force, its owner may see every field of its view *now*, and every key in force of each
   recipient is a recipient (one can read on any of their devices);

and refuses with every offending field, recipient and article at once (:class:`FormRefusedError`).
Delivery asks the entitlements again: a consent withdrawn or expired stops delivery at once,
and retention ends it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Row, distinct, func, insert, select, update
from sqlalchemy.orm import Session

from audit.checkpoint import Checkpoint, SignedNote
from audit.errors import AuditError
from consent.db import dialect_insert
from exchange.envelope import Manifest, parse, verify
from exchange.errors import ConflictError, ForbiddenError, NotFoundError
from exchange.keys import DeviceKey
from exchange.server.devices import Owner
from exchange.server.tables import devices, directory_checkpoints, form_recipients, forms

DEFAULT_RETENTION = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Refusal:
    """One reason a form is refused: the field and/or recipient concerned, a stable code, the
    charter article that decided (when one did) and a French message."""

    code: str
    message: str
    field: str = ""
    device: str = ""
    article: str = ""

    def to_json(self) -> dict[str, str]:
        """The refusal as the API lists it."""
        pairs = {
            "code": self.code,
            "field": self.field,
            "device": self.device,
            "article": self.article,
            "message": self.message,
        }
        return {k: v for k, v in pairs.items() if v}


class FormRefusedError(ForbiddenError):
    """The form is refused for the :attr:`refusals` listed (nothing stored)."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        super().__init__(
            "form_refused",
            "Fiche refusée : %(count)s motif(s), rien n'est transmis.",
            count=len(refusals),
        )
        self.refusals = tuple(refusals)


@dataclass(frozen=True, slots=True)
class Sending:
    """What the hub's entitlements established about a send: the case and how to record it."""

    case_id: int
    charter_ref: str
    org_id: int


class Entitlements(Protocol):
    """The hub's decisions on a form (charter × consent × case team), injected into the relay
    so that ``exchange`` does not depend on the hub and both use the function case reads use."""

    def sender(self, manifest: Manifest, fields: frozenset[str]) -> tuple[Sending, list[Refusal]]:
        """May the caller send these fields on this case, for this purpose, under the charter
        version and consent the manifest names? Raises for a case the caller takes no part in."""
        ...

    def recipient(
        self, sending: Sending, manifest: Manifest, owner: Row[Any], fields: Sequence[str]
    ) -> list[Refusal]:
        """What ``owner`` (a ``exchange_devices`` row: a person or an API client) may not see of
        ``fields`` now (empty: everything is allowed)."""
        ...


@dataclass(frozen=True)
class Accepted:
    """A stored form: its row, whether it was stored by this call, who receives it."""

    row_id: int
    case_id: int
    manifest: Manifest
    stored: bool
    recipients: tuple[Row[Any], ...] = field(default=())


class Relay:
    """Accepts, stores and delivers sealed forms; never reads them."""

    def __init__(
        self,
        session: Session,
        *,
        clock: Callable[[], datetime],
        entitlements: Entitlements,
        retention: timedelta = DEFAULT_RETENTION,
    ) -> None:
        self.session = session
        self.clock = clock
        self.entitlements = entitlements
        self.retention = retention

    def accept(self, data: bytes, *, caller: Owner) -> Accepted:
        """Check and store a form sent by ``caller``; see the module's numbered steps. In the
        caller's transaction: the hub records the send, then commits."""
        # 1.
        envelope = parse(data)
        manifest = envelope.manifest
        # 2.
        sender_row = self._current_device(manifest.sender.device)
        if sender_row is None or not _owned_by(sender_row, caller):
            raise ForbiddenError(
                "sender_device", "Cet appareil n'est pas un appareil en service de l'expéditeur."
            )
        if (manifest.sender.user, manifest.sender.org) != (caller.name, caller.org_public_id):
            raise ForbiddenError("sender_mismatch", "Le manifeste ne désigne pas l'expéditeur.")
        # 3.
        verify(envelope, DeviceKey.from_record(_record(sender_row)))
        # 4.
        body = envelope.to_bytes()  # re-encodes up to 8 MiB of views and files: once
        digest = hashlib.sha256(body).hexdigest()
        already = self._already_stored(manifest, digest)
        if already is not None:
            return already
        # 5.
        fields = frozenset(f for view in manifest.views for f in view.fields)
        sending, refusals = self.entitlements.sender(manifest, fields)
        # 6.
        refusals.extend(self._unknown_checkpoint(manifest, sender_row))
        recipient_rows: list[tuple[Row[Any], str]] = []
        revoked_rows: list[Row[Any]] = []
        # One query for every listed device (up to 200), not one each.
        listed = {r.device for view in manifest.views for r in view.recipients}
        rows_by_key = {
            row.key_id: row
            for row in self.session.execute(select(devices).where(devices.c.key_id.in_(listed)))
        }
        for view in manifest.views:
            for recipient in view.recipients:
                row = rows_by_key.get(recipient.device)
                if row is None or row.revoked_at is not None:
                    refusals.append(
                        Refusal(
                            "recipient_key",
                            "Clé de destinataire inconnue ou révoquée.",
                            device=recipient.device,
                        )
                    )
                    if row is not None:
                        # Its owner's keys in force are then missing too (a sender behind a
                        # key rotation is told of the new key at once, not on its next try).
                        revoked_rows.append(row)
                    continue
                refusals.extend(self.entitlements.recipient(sending, manifest, row, view.fields))
                recipient_rows.append((row, view.id))
        refusals.extend(
            self._missing_devices(manifest, [row for row, _ in recipient_rows] + revoked_rows)
        )
        if refusals:
            raise FormRefusedError(refusals)
        now = self.clock()
        # ON CONFLICT DO NOTHING: a concurrent send of the same form id that committed first
        # (PostgreSQL waits for it) makes this insert a no-op, answered like a retry below,
        # instead of an integrity error escaping as a 500.
        inserted = self.session.execute(
            dialect_insert(self.session, forms)
            .values(
                form_id=manifest.form,
                case_id=sending.case_id,
                sender_key_id=manifest.sender.device,
                sender_user_id=caller.row_id if caller.kind == "user" else None,
                sender_client_id=caller.row_id if caller.kind == "client" else None,
                sender_org_id=caller.org_id,
                purpose=manifest.purpose,
                charter_ref=sending.charter_ref,
                envelope=body,
                digest=digest,
                created_at=now,
                expires_at=now + self.retention,
            )
            .on_conflict_do_nothing(index_elements=[forms.c.form_id])
            .returning(forms.c.id)
        ).scalar()
        if inserted is None:
            raced = self._already_stored(manifest, digest)
            if raced is None:  # committed by another send, then gone (retention): no answer
                raise ConflictError("form_exists", "Une autre fiche porte déjà cet identifiant.")
            return raced
        row_id = int(inserted)
        self.session.execute(
            insert(form_recipients),
            [
                {
                    "form_row_id": row_id,
                    "key_id": row.key_id,
                    "view_id": view_id,
                    "user_id": row.user_id,
                    "api_client_id": row.api_client_id,
                    "organisation_id": row.organisation_id,
                }
                for row, view_id in recipient_rows
            ],
        )
        return Accepted(
            row_id,
            sending.case_id,
            manifest,
            stored=True,
            recipients=tuple(r for r, _ in recipient_rows),
        )

    def _already_stored(self, manifest: Manifest, digest: str) -> Accepted | None:
        """A form with this id already stored: the same bytes are a retry (answered, not
        stored again), other bytes a conflict."""
        existing = self.session.execute(
            select(forms.c.id, forms.c.case_id, forms.c.digest).where(
                forms.c.form_id == manifest.form
            )
        ).first()
        if existing is None:
            return None
        if existing.digest != digest:
            raise ConflictError("form_exists", "Une autre fiche porte déjà cet identifiant.")
        return Accepted(
            existing.id,
            existing.case_id,
            manifest,
            stored=False,
            recipients=self._recipients(existing.id),
        )

    def _current_device(self, key_id: str) -> Row[Any] | None:
        return self.session.execute(
            select(devices).where(devices.c.key_id == key_id, devices.c.revoked_at.is_(None))
        ).first()

    def _unknown_checkpoint(self, manifest: Manifest, sender: Row[Any]) -> list[Refusal]:
        """The directory checkpoint the sender saw must be one the directory signed, as it
        signed it: every recipient checks it against its own view (split view), so a form
        carrying any other text would be stored only to be refused by all of them."""
        try:
            size = Checkpoint.parse_body(SignedNote.parse(manifest.directory).text).size
        except (AuditError, ValueError):  # any unreadable text: refused, never a 500
            size = -1
        signed = None
        if 0 < size < 2**63:  # a BigInteger column
            signed = self.session.execute(
                select(directory_checkpoints.c.note).where(directory_checkpoints.c.size == size)
            ).scalar()
        if signed is not None and str(signed) == manifest.directory:
            if sender.added_idx < size:
                return []
            # Every recipient would refuse it (sender_key_unseen): refused here, not stored.
            return [
                Refusal(
                    "sender_key_unseen",
                    "La clé de signature n'est pas dans l'annuaire cité : mettez l'annuaire à "
                    "jour puis scellez de nouveau.",
                )
            ]
        return [
            Refusal(
                "checkpoint_unknown",
                "Le point de contrôle de l'annuaire cité n'est pas un de ceux que le hub a "
                "signés : mettez l'annuaire à jour puis scellez de nouveau.",
            )
        ]

    def _missing_devices(self, manifest: Manifest, rows: list[Row[Any]]) -> list[Refusal]:
        """Keys in force of a recipient that the sender left out (they could not read there);
        ``rows``: the listed keys, revoked ones included (their owners are recipients too)."""
        listed = {row.key_id for row in rows}
        users = {row.user_id for row in rows if row.user_id is not None}
        clients = {row.api_client_id for row in rows if row.api_client_id is not None}
        owned = self.session.execute(
            select(devices.c.key_id).where(
                devices.c.revoked_at.is_(None),
                devices.c.user_id.in_(users) | devices.c.api_client_id.in_(clients),
            )
        ).scalars()
        return [
            Refusal(
                "recipient_device_missing",
                "Un appareil en service d'un destinataire manque : mettez l'annuaire à jour.",
                device=key_id,
            )
            for key_id in sorted(set(owned) - listed)
        ]

    def _recipients(self, row_id: int) -> tuple[Row[Any], ...]:
        return tuple(
            self.session.execute(
                select(form_recipients).where(form_recipients.c.form_row_id == row_id)
            ).all()
        )

    # -- delivery ----------------------------------------------------------------------------

    def inbox(self, owner: Owner, *, limit: int = 100, before: int | None = None) -> list[Any]:
        """Forms received by ``owner``'s devices, newest first (not expired)."""
        query = (
            select(
                *_RECEIVED,
                form_recipients.c.key_id,
                form_recipients.c.view_id,
                form_recipients.c.delivered_at,
                form_recipients.c.opened_at,
            )
            .join(forms, forms.c.id == form_recipients.c.form_row_id)
            .where(_recipient(owner) == owner.row_id, forms.c.expires_at > self.clock())
            .order_by(forms.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(forms.c.id < before)
        return list(self.session.execute(query).all())

    def unread(self, owner: Owner) -> int:
        """How many forms (not expired) ``owner`` received and opened on none of its devices
        (a person's home page): one count, whatever the number of devices."""
        opened = (
            select(form_recipients.c.form_row_id)
            .where(_recipient(owner) == owner.row_id, form_recipients.c.opened_at.is_not(None))
            .scalar_subquery()
        )
        query = (
            select(func.count(distinct(forms.c.id)))
            .join(form_recipients, form_recipients.c.form_row_id == forms.c.id)
            .where(
                _recipient(owner) == owner.row_id,
                forms.c.expires_at > self.clock(),
                forms.c.id.not_in(opened),
            )
        )
        return int(self.session.scalar(query) or 0)

    def received(self, form_id: str, owner: Owner) -> tuple[Any, list[str]] | None:
        """The form ``form_id`` as ``owner`` received it (no envelope): its row and the key ids
        of ``owner``'s devices it was sealed to; ``None`` when it was not sent to ``owner`` or
        has expired. Delivery still decides, per device, whether it may be read now."""
        rows = self.session.execute(
            select(*_RECEIVED, forms.c.charter_ref, form_recipients.c.key_id)
            .join(form_recipients, form_recipients.c.form_row_id == forms.c.id)
            .where(
                forms.c.form_id == form_id,
                _recipient(owner) == owner.row_id,
                forms.c.expires_at > self.clock(),
            )
        ).all()
        if not rows:
            return None
        return rows[0], [row.key_id for row in rows]

    def deliver(self, form_id: str, key_id: str, *, caller: Owner) -> tuple[bytes, Row[Any]]:
        """The envelope for the recipient device ``key_id`` of ``caller``, if it may still see
        its view now (consent, case team) and the form is within retention; marks delivery."""
        row = self.session.execute(
            select(forms, form_recipients.c.id.label("recipient_row"), form_recipients.c.view_id)
            .join(form_recipients, form_recipients.c.form_row_id == forms.c.id)
            .where(forms.c.form_id == form_id, form_recipients.c.key_id == key_id)
        ).first()
        device = self._current_device(key_id)
        if row is None or device is None or not _owned_by(device, caller):
            raise NotFoundError("form_unknown", "Aucune fiche de ce numéro pour cet appareil.")
        if row.expires_at <= self.clock():
            raise NotFoundError(
                "form_expired", "La durée de conservation de cette fiche est passée."
            )
        manifest = parse(bytes(row.envelope)).manifest
        sending = Sending(row.case_id, row.charter_ref, row.sender_org_id)
        view = manifest.view(row.view_id)
        refusals = self.entitlements.recipient(sending, manifest, device, view.fields)
        if refusals:
            raise FormRefusedError(refusals)
        self.session.execute(
            update(form_recipients)
            .where(
                form_recipients.c.id == row.recipient_row, form_recipients.c.delivered_at.is_(None)
            )
            .values(delivered_at=self.clock())
        )
        return bytes(row.envelope), row

    def mark_opened(self, form_id: str, key_id: str, *, caller: Owner) -> Row[Any]:
        """The recipient device reports it opened and checked the form."""
        _envelope, row = self.deliver(form_id, key_id, caller=caller)
        self.session.execute(
            update(form_recipients)
            .where(form_recipients.c.id == row.recipient_row, form_recipients.c.opened_at.is_(None))
            .values(opened_at=self.clock())
        )
        return row


def _record(row: Row[Any]) -> Any:
    return json.loads(row.record)


# What a recipient's listing shows of a form (never its envelope).
_RECEIVED = (
    forms.c.id,
    forms.c.form_id,
    forms.c.case_id,
    forms.c.created_at,
    forms.c.purpose,
    forms.c.sender_user_id,
    forms.c.sender_client_id,
    forms.c.sender_org_id,
)


def _recipient(owner: Owner) -> Any:
    """The recipient rows' column naming ``owner``."""
    return form_recipients.c.user_id if owner.kind == "user" else form_recipients.c.api_client_id


def _owned_by(row: Row[Any], owner: Owner) -> bool:
    if owner.kind == "user":
        return bool(row.user_id == owner.row_id)
    return bool(row.api_client_id == owner.row_id)
