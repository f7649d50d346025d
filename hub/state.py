"""Per-application state: configuration, engines, session factory, keys, clock.

Stored in ``app.extensions["maillon"]``; request code reaches it through :func:`state` and
:func:`db`. No module-level globals, so several apps (tests) can live in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from audit.checkpoint import NoteSigner
from audit.store import AuditLog, StoreSpace
from hub.accounts import Accounts, AccountSettings
from hub.cases import Cases
from hub.config import Config
from hub.db import utcnow
from hub.passwords import Passwords
from hub.vault import FieldVault


@dataclass
class HubState:
    """What the running hub holds for its lifetime."""

    config: Config
    engine: Engine
    session_factory: sessionmaker[Session]
    audit_engine: Engine
    passwords: Passwords
    server_key: Ed25519PrivateKey
    audit_log: AuditLog
    audit_signer: NoteSigner
    vault: FieldVault
    clock: Callable[[], datetime] = field(default=utcnow)

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        """Replace the clock everywhere (tests); the audit log reads the same one."""
        self.clock = clock
        self.audit_log = AuditLog(
            self.audit_engine, clock=clock, write_timeout=self.config.audit_write_timeout_seconds
        )

    def audit_space(self) -> tuple[str, StoreSpace | None]:
        """How much room the audit store has left: ``("ok" | "low", space)``, or
        ``("unknown", None)`` when the hub cannot see it (a PostgreSQL server's disk is watched
        by its operators). ``low`` is below ``MAILLON_AUDIT_FREE_SPACE_WARN_MB`` (or a fifth of
        the volume, when that is less): the log is fail-closed, so once its volume is full
        every audited request answers 503."""
        try:
            space = self.audit_log.space()
        except OSError:
            return ("unknown", None)
        if space is None:
            return ("unknown", None)
        # On a volume smaller than five times the threshold, a fifth of it: the warning must
        # not stay on for good where the threshold is most of the disk.
        threshold = min(self.config.audit_free_space_warn_mb * 1024 * 1024, space.total // 5)
        return ("low" if space.free < threshold else "ok", space)

    def accounts(self, session: Session) -> Accounts:
        """Account services bound to ``session``."""
        return Accounts(
            session,
            self.passwords,
            clock=self.clock,
            settings=AccountSettings(
                lockout_threshold=self.config.lockout_threshold,
                lockout_minutes=self.config.lockout_minutes,
                invitation_hours=self.config.invitation_hours,
            ),
        )

    def cases(self, session: Session) -> Cases:
        """Case services bound to ``session``."""
        return Cases(
            session,
            clock=self.clock,
            vault=self.vault,
            max_evidence_bytes=self.config.consent_evidence_max_bytes,
        )


def state() -> HubState:
    """The current application's state."""
    hub_state: HubState = current_app.extensions["maillon"]
    return hub_state


def db() -> Session:
    """The request's database session (closed at the end of the request)."""
    if "db" not in g:
        g.db = state().session_factory()
    session: Session = g.db
    return session


def accounts() -> Accounts:
    """Account services for the current request."""
    return state().accounts(db())


def cases() -> Cases:
    """Case services for the current request."""
    return state().cases(db())


def now() -> datetime:
    """The hub's clock (injectable in tests)."""
    return state().clock()
