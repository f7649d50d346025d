"""Device keys on the hub: registration, revocation, lookups, recovery backups.

A person registers a device after a fresh MFA login; an organisation's system through its API
client (DESIGN §6.1). Every registration and revocation is an entry of the directory log
(:class:`~exchange.server.directory.DirectoryLog`), committed with the index row here, so what
the hub answers from its index and what clients verify from the log never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from exchange.directory import key_added, key_revoked
from exchange.encoding import members, parse_json_object
from exchange.errors import ConflictError, ForbiddenError, MalformedError, NotFoundError
from exchange.keys import DeviceKey
from exchange.keystore import Kind
from exchange.server.directory import DirectoryLog
from exchange.server.tables import devices, recovery_backups

MAX_DEVICES = 10
MAX_LABEL = 80
MAX_BACKUP_BYTES = 64 * 1024


def _too_many() -> ConflictError:
    return ConflictError(
        "too_many_devices",
        "Au plus %(n)s appareils en service : révoquez-en un d'abord.",
        n=MAX_DEVICES,
    )


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a device belongs to: a person or an organisation's API client."""

    kind: str  # "user" or "client"
    row_id: int
    public_id: str
    org_id: int
    org_public_id: str

    @property
    def name(self) -> str:
        """The owner as the directory names it (``user:<id>`` / ``client:<id>``)."""
        return f"{self.kind}:{self.public_id}"

    def _column(self) -> Any:
        return devices.c.user_id if self.kind == "user" else devices.c.api_client_id


@dataclass(frozen=True, slots=True)
class Device:
    """A row of the hub's index of the directory."""

    key: DeviceKey
    label: str
    owner: str
    organisation_id: int
    added_idx: int
    added_at: datetime
    revoked_at: datetime | None

    @property
    def current(self) -> bool:
        """Whether the key is still in force."""
        return self.revoked_at is None


def _device(row: Row[Any], owner: str) -> Device:
    return Device(
        key=DeviceKey.from_record(json.loads(row.record)),
        label=row.label,
        owner=owner,
        organisation_id=row.organisation_id,
        added_idx=row.added_idx,
        added_at=row.added_at,
        revoked_at=row.revoked_at,
    )


class Devices:
    """Registration, revocation and lookups of device keys."""

    def __init__(
        self, session: Session, *, clock: Callable[[], datetime], log: DirectoryLog
    ) -> None:
        self.session = session
        self.clock = clock
        self.log = log

    def register(self, record: object, *, owner: Owner, label: str) -> Device:
        """Publish a device key for ``owner``: checked, appended to the directory, indexed.

        :class:`MalformedError` for a record that does not read; :class:`ConflictError` when
        the key is already published (by anyone) or the owner has :data:`MAX_DEVICES` current
        keys. In the caller's transaction (commit after recording the act)."""
        key = DeviceKey.from_record(record)
        label = " ".join(str(label).split())[:MAX_LABEL] or "Appareil"
        if self.session.execute(
            select(devices.c.key_id).where(devices.c.key_id == key.key_id)
        ).first():
            raise ConflictError("key_exists", "Cette clé d'appareil est déjà publiée.")
        if self._current_count(owner) >= MAX_DEVICES:  # the common case, before any write
            raise _too_many()
        now = self.clock()
        index = self.log.append(key_added(key, owner=owner.name, org=owner.org_public_id, now=now))
        self.session.execute(
            insert(devices).values(
                key_id=key.key_id,
                record=json.dumps(key.record()),
                suite=key.suite.value,
                user_id=owner.row_id if owner.kind == "user" else None,
                api_client_id=owner.row_id if owner.kind == "client" else None,
                organisation_id=owner.org_id,
                label=label,
                added_idx=index,
                added_at=now,
            )
        )
        # Counted again once the directory's head row is held (the append took its lock, or
        # SQLite's write lock): concurrent registrations each see the others' keys here, so
        # the limit holds under a race. The caller rolls the whole registration back.
        if self._current_count(owner) > MAX_DEVICES:
            raise _too_many()
        return Device(key, label, owner.name, owner.org_id, index, now, None)

    def _current_count(self, owner: Owner) -> int:
        return int(
            self.session.execute(
                select(func.count())
                .select_from(devices)
                .where(owner._column() == owner.row_id, devices.c.revoked_at.is_(None))
            ).scalar_one()
        )

    def revoke(self, key_id: str, *, by: Owner | None, reason: str) -> Device:
        """Revoke a current key: by its owner (``by``), or by an administrator (``by`` None,
        ``reason`` ``admin``). :class:`NotFoundError` for an unknown key,
        :class:`ForbiddenError` for someone else's, :class:`ConflictError` if already revoked."""
        row = self.session.execute(
            select(devices).where(devices.c.key_id == key_id).with_for_update()
        ).first()
        if row is None:
            raise NotFoundError("key_unknown", "Clé d'appareil inconnue.")
        if by is not None and getattr(row, by._column().name) != by.row_id:
            raise ForbiddenError("not_owner", "Cette clé d'appareil n'est pas la vôtre.")
        if row.revoked_at is not None:
            raise ConflictError("key_revoked", "Cette clé d'appareil est déjà révoquée.")
        now = self.clock()
        index = self.log.append(key_revoked(key_id, reason=reason, now=now))
        self.session.execute(
            update(devices)
            .where(devices.c.key_id == key_id)
            .values(revoked_idx=index, revoked_at=now)
        )
        owner = by.name if by is not None else ""
        return Device(
            DeviceKey.from_record(json.loads(row.record)),
            row.label,
            owner,
            row.organisation_id,
            row.added_idx,
            row.added_at,
            now,
        )

    def revoke_all(
        self, *, user_ids: Sequence[int] = (), client_ids: Sequence[int] = (), reason: str
    ) -> list[str]:
        """Revoke every current key of these people and API clients (an administrator's act:
        an account or client disabled, an organisation suspended); the key ids revoked."""
        if not user_ids and not client_ids:
            return []
        rows = self.session.execute(
            select(devices.c.key_id)
            .where(
                or_(devices.c.user_id.in_(user_ids), devices.c.api_client_id.in_(client_ids)),
                devices.c.revoked_at.is_(None),
            )
            .order_by(devices.c.added_idx)
        ).scalars()
        revoked = list(rows)
        for key_id in revoked:
            self.revoke(key_id, by=None, reason=reason)
        return revoked

    def of(self, owner: Owner) -> list[Device]:
        """``owner``'s devices in force, newest first."""
        query = select(devices).where(
            owner._column() == owner.row_id, devices.c.revoked_at.is_(None)
        )
        rows = self.session.execute(query.order_by(devices.c.added_idx.desc()))
        return [_device(row, owner.name) for row in rows]

    # -- recovery backups ------------------------------------------------------------------

    def keep_backup(self, user_id: int, data: bytes) -> None:
        """Keep a person's recovery backup (a new one supersedes the old; the hub cannot open
        it: only its form is checked). :class:`MalformedError` if it is not one."""
        document = parse_json_object(data, what="la sauvegarde", max_bytes=MAX_BACKUP_BYTES)
        members(document, what="la sauvegarde", required={"format", "kdf", "nonce", "ciphertext"})
        if document["format"] != Kind.RECOVERY.value:
            raise MalformedError("unknown_version", "Ce fichier n'est pas une sauvegarde de clés.")
        # Only the latest is kept: an older one may be under a weaker passphrase, or restore
        # keys since revoked.
        self.forget_backups(user_id)
        self.session.execute(
            insert(recovery_backups).values(user_id=user_id, data=data, created_at=self.clock())
        )

    def forget_backups(self, user_id: int) -> None:
        """Delete the person's recovery backups."""
        self.session.execute(delete(recovery_backups).where(recovery_backups.c.user_id == user_id))

    def backup(self, user_id: int) -> bytes | None:
        """The person's latest recovery backup."""
        data = self.session.execute(
            select(recovery_backups.c.data)
            .where(recovery_backups.c.user_id == user_id)
            .order_by(recovery_backups.c.id.desc())
            .limit(1)
        ).scalar()
        return None if data is None else bytes(data)
