"""Account services: login with mandatory TOTP, lockout, invitations, MFA enrolment and reset.

Every method takes what it needs explicitly (session, clock, settings); the caller commits.
Second factors are consumed with atomic conditional UPDATEs so that a code or recovery code is
accepted once, even when two requests race with it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from charter.vocabulary import OrgKind, Role, roles_conflict
from hub import totp
from hub.db import rowcount
from hub.i18n import N_, MessageError
from hub.models import Invitation, Organisation, RecoveryCode, User, new_nonce
from hub.passwords import Passwords, password_problems

RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O/1/I confusion


class AccountError(MessageError):
    """A refused account operation, with a French message for the person."""


class LoginOutcome(StrEnum):
    """Why a login attempt ended as it did (for the audit log; never shown to the person)."""

    OK = "ok"
    UNKNOWN_USER = "unknown_user"
    BAD_PASSWORD = "bad_password"  # noqa: S105 - an outcome name, not a password
    BAD_CODE = "bad_code"
    LOCKED = "locked"
    DISABLED = "disabled"
    NOT_ENROLLED = "not_enrolled"
    LOCKED_NOW = "locked_now"


@dataclass(frozen=True)
class LoginResult:
    """The outcome of :meth:`Accounts.authenticate`; ``user`` is set only on success."""

    outcome: LoginOutcome
    user: User | None
    user_public_id: str | None = None
    org_public_id: str | None = None


@dataclass(frozen=True)
class AccountSettings:
    """The knobs the account services need (taken from :class:`hub.config.Config`)."""

    lockout_threshold: int = 10
    lockout_minutes: int = 30
    invitation_hours: int = 72


def normalise_email(email: str) -> str:
    """Emails are compared case-insensitively and without surrounding spaces."""
    return email.strip().lower()


def token_digest(token: str) -> str:
    """SHA-256 of a high-entropy token; only this is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _recovery_code() -> str:
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))
    return f"{raw[0:4]}-{raw[4:8]}-{raw[8:12]}"


def _normalise_recovery(code: str) -> str:
    cleaned = code.strip().upper().replace("-", "").replace(" ", "")
    return f"{cleaned[0:4]}-{cleaned[4:8]}-{cleaned[8:12]}" if len(cleaned) == 12 else ""


class Accounts:
    """People, organisations and their credentials."""

    def __init__(
        self,
        session: Session,
        passwords: Passwords,
        *,
        clock: Callable[[], datetime],
        settings: AccountSettings | None = None,
    ) -> None:
        self.session = session
        self.passwords = passwords
        self.clock = clock
        self.settings = settings or AccountSettings()

    # -- lookups ---------------------------------------------------------------------------

    def by_email(self, email: str) -> User | None:
        """The user with this email, if any."""
        return self.session.scalar(select(User).where(User.email == normalise_email(email)))

    def by_public_id(self, public_id: str) -> User | None:
        """The user with this public id, if any."""
        return self.session.scalar(select(User).where(User.public_id == public_id))

    def is_locked(self, user: User) -> bool:
        """Whether the account is locked now."""
        return user.locked_until is not None and user.locked_until > self.clock()

    # -- organisations and users -----------------------------------------------------------

    def create_organisation(self, name: str, kind: OrgKind) -> Organisation:
        """A new active organisation; names are unique."""
        name = name.strip()
        if not name:
            raise AccountError(N_("Le nom de l'organisation est obligatoire."))
        if self.session.scalar(select(Organisation).where(Organisation.name == name)):
            raise AccountError(N_("Une organisation porte déjà ce nom."))
        org = Organisation(name=name, kind=kind, active=True, created_at=self.clock())
        self.session.add(org)
        self.session.flush()
        return org

    def create_user(
        self, *, name: str, email: str, organisation: Organisation, roles: set[Role]
    ) -> User:
        """A new user with no credentials yet (they come with the invitation)."""
        email = normalise_email(email)
        if not name.strip() or "@" not in email or len(email) > 254:
            raise AccountError(N_("Indiquez un nom et une adresse électronique valide."))
        if self.by_email(email) is not None:
            raise AccountError(N_("Un compte existe déjà avec cette adresse électronique."))
        if not roles:
            raise AccountError(N_("Choisissez au moins un rôle."))
        if roles_conflict(roles):
            raise AccountError(
                N_(
                    "Un administrateur ou un délégué à la protection des données ne suit aucun "
                    "dossier et n'exerce pas l'autre de ces deux rôles : créez des comptes "
                    "distincts."
                )
            )
        user = User(
            name=name.strip(), email=email, organisation=organisation, created_at=self.clock()
        )
        user.set_roles(roles)
        self.session.add(user)
        self.session.flush()
        return user

    # -- invitations and enrolment ---------------------------------------------------------

    def prepare_link(self, user: User, *, purpose: str, created_by: User | None) -> Invitation:
        """A new one-time link (invitation or MFA reset) with no token yet; earlier unused links
        of the user are voided. :meth:`mint_token` gives it its token."""
        now = self.clock()
        self.session.execute(
            update(Invitation)
            .where(Invitation.user_id == user.id, Invitation.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        invitation = Invitation(
            user_id=user.id,
            purpose=purpose,
            created_at=now,
            expires_at=now + timedelta(hours=self.settings.invitation_hours),
            created_by_id=created_by.id if created_by else None,
        )
        self.session.add(invitation)
        self.session.flush()
        return invitation

    def mint_token(self, invitation: Invitation) -> str:
        """Give ``invitation`` a fresh token (replacing any earlier one) and return it."""
        token = secrets.token_urlsafe(32)
        invitation.token_hash = token_digest(token)
        self.session.flush()
        return token

    def issue_link(self, user: User, *, purpose: str, created_by: User | None) -> str:
        """A one-time link token at once (CLI and demo; the web sends it by mail instead)."""
        return self.mint_token(self.prepare_link(user, purpose=purpose, created_by=created_by))

    def valid_link(self, token: str) -> Invitation | None:
        """The unused, unexpired link for ``token`` whose user is active, else ``None``."""
        if not token or len(token) > 128:
            return None
        invitation = self.session.scalar(
            select(Invitation).where(Invitation.token_hash == token_digest(token))
        )
        if (
            invitation is None
            or invitation.used_at is not None
            or invitation.expires_at <= self.clock()
            or not invitation.user.active
            or not invitation.user.organisation.active
        ):
            return None
        return invitation

    def pending_secret(self, invitation: Invitation) -> str:
        """The TOTP secret offered on this link's enrolment page (created on first view)."""
        if invitation.pending_totp_secret is None:
            invitation.pending_totp_secret = totp.new_secret()
            self.session.flush()
        return invitation.pending_totp_secret

    def complete_enrolment(
        self, invitation: Invitation, *, password: str | None, code: str
    ) -> list[str]:
        """Set the password (invitations) and the TOTP secret; returns new recovery codes.

        The link is consumed atomically: of two concurrent submissions only one succeeds.
        """
        user = invitation.user
        secret = invitation.pending_totp_secret
        if secret is None:
            raise AccountError(N_("Le lien d'activation n'est plus valable."))
        if invitation.purpose == "invite":
            if password is None:
                raise AccountError(N_("Choisissez un mot de passe."))
            problems = password_problems(password, email=user.email, name=user.name)
            if problems:
                raise problems[0]
        step = totp.matching_step(secret, code, self.clock())
        if step is None:
            raise AccountError(
                N_("Le code saisi ne correspond pas. Vérifiez l'heure de votre téléphone.")
            )
        consumed = self.session.execute(
            update(Invitation)
            .where(Invitation.id == invitation.id, Invitation.used_at.is_(None))
            .values(used_at=self.clock())
            .execution_options(synchronize_session=False)
        )
        if rowcount(consumed) != 1:
            raise AccountError(N_("Le lien d'activation n'est plus valable."))
        if password is not None and invitation.purpose == "invite":
            user.password_hash = self.passwords.hash(password)
            user.password_changed_at = self.clock()
        user.totp_secret = secret
        user.totp_last_step = step
        user.session_nonce = new_nonce()
        user.failed_logins = 0
        user.locked_until = None
        codes = self._new_recovery_codes(user)
        self.session.flush()
        return codes

    def _new_recovery_codes(self, user: User) -> list[str]:
        self.session.query(RecoveryCode).filter(RecoveryCode.user_id == user.id).delete()
        codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
        self.session.add_all(
            RecoveryCode(user_id=user.id, code_hash=token_digest(c)) for c in codes
        )
        return codes

    # -- login -----------------------------------------------------------------------------

    def authenticate(self, email: str, password: str, code: str) -> LoginResult:
        """Check password and second factor; count failures and lock after the threshold.

        The caller shows the same message whatever the failure; the outcome is for the audit.
        """
        user = self.by_email(email)
        password_ok = self.passwords.verify(user.password_hash if user else None, password)
        if user is None:
            return LoginResult(LoginOutcome.UNKNOWN_USER, None)
        ids = (user.public_id, user.organisation.public_id)
        if not user.active or not user.organisation.active:
            return LoginResult(LoginOutcome.DISABLED, None, *ids)
        if self.is_locked(user):
            return LoginResult(LoginOutcome.LOCKED, None, *ids)
        if user.locked_until is not None:
            # A lockout that expired starts a fresh count: otherwise one more failure would
            # lock the account again at once. Conditional on the same expiry, so two requests
            # racing here reset it once.
            self.session.execute(
                update(User)
                .where(User.id == user.id, User.locked_until == user.locked_until)
                .values(failed_logins=0, locked_until=None, locked_by_failures=False)
                .execution_options(synchronize_session=False)
            )
            self.session.refresh(user, ["failed_logins", "locked_until", "locked_by_failures"])
        if not password_ok:
            return self._failure(user, LoginOutcome.BAD_PASSWORD)
        if not user.mfa_enrolled:
            return LoginResult(LoginOutcome.NOT_ENROLLED, None, *ids)
        if not self.consume_second_factor(user, code):
            return self._failure(user, LoginOutcome.BAD_CODE)
        user.failed_logins = 0
        user.locked_until = None
        user.locked_by_failures = False
        user.last_login_at = self.clock()
        if user.password_hash and self.passwords.needs_rehash(user.password_hash):
            user.password_hash = self.passwords.hash(password)
        self.session.flush()
        return LoginResult(LoginOutcome.OK, user, *ids)

    def _failure(self, user: User, outcome: LoginOutcome) -> LoginResult:
        # Increment in SQL, not in Python, so concurrent failures are all counted.
        self.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(failed_logins=User.failed_logins + 1)
            .execution_options(synchronize_session=False)
        )
        self.session.refresh(user, ["failed_logins"])
        ids = (user.public_id, user.organisation.public_id)
        if user.failed_logins >= self.settings.lockout_threshold:
            user.locked_until = self.clock() + timedelta(minutes=self.settings.lockout_minutes)
            user.locked_by_failures = True
            self.session.flush()
            return LoginResult(LoginOutcome.LOCKED_NOW, None, *ids)
        return LoginResult(outcome, None, *ids)

    def consume_second_factor(self, user: User, code: str) -> bool:
        """Accept a TOTP code (once per time step) or an unused recovery code (once)."""
        if user.totp_secret is None:
            return False
        step = totp.matching_step(user.totp_secret, code, self.clock())
        if step is not None:
            accepted = self.session.execute(
                update(User)
                .where(
                    User.id == user.id,
                    or_(User.totp_last_step.is_(None), User.totp_last_step < step),
                )
                .values(totp_last_step=step)
                .execution_options(synchronize_session=False)
            )
            if rowcount(accepted) == 1:
                self.session.refresh(user, ["totp_last_step"])
                return True
            return False
        normalised = _normalise_recovery(code)
        if not normalised:
            return False
        used = self.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_hash == token_digest(normalised),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=self.clock())
            .execution_options(synchronize_session=False)
        )
        return rowcount(used) == 1

    def remaining_recovery_codes(self, user: User) -> int:
        """How many unused recovery codes the user has left."""
        return int(
            self.session.scalar(
                select(func.count())
                .select_from(RecoveryCode)
                .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
            )
            or 0
        )

    def reauthenticate(self, user: User, password: str, code: str) -> bool:
        """Fresh login for a sensitive action: password and second factor again."""
        if not self.passwords.verify(user.password_hash, password):
            self._failure(user, LoginOutcome.BAD_PASSWORD)
            return False
        if not self.consume_second_factor(user, code):
            self._failure(user, LoginOutcome.BAD_CODE)
            return False
        return True

    # -- changes that end every session ----------------------------------------------------

    def end_all_sessions(self, user: User) -> None:
        """Invalidate every session of ``user`` (logout, password change, reset, disabling)."""
        user.session_nonce = new_nonce()
        self.session.flush()

    def change_password(self, user: User, current: str, new: str) -> None:
        """Change the password; every other session of the user ends."""
        if not self.passwords.verify(user.password_hash, current):
            raise AccountError(N_("Le mot de passe actuel est incorrect."))
        problems = password_problems(new, email=user.email, name=user.name)
        if problems:
            raise problems[0]
        user.password_hash = self.passwords.hash(new)
        user.password_changed_at = self.clock()
        self.end_all_sessions(user)

    def reset_mfa(self, user: User, *, by: User | None) -> Invitation:
        """Remove the TOTP secret and recovery codes; returns the re-enrolment link to send."""
        user.totp_secret = None
        user.totp_last_step = None
        self.session.query(RecoveryCode).filter(RecoveryCode.user_id == user.id).delete()
        self.end_all_sessions(user)
        return self.prepare_link(user, purpose="mfa_reset", created_by=by)

    def unlock(self, user: User) -> None:
        """Lift a lockout and reset the failure counter."""
        user.locked_until = None
        user.failed_logins = 0
        user.locked_by_failures = False
        self.session.flush()

    def set_active(self, user: User, active: bool) -> None:
        """Disable (ending every session) or re-enable an account."""
        user.active = active
        self.end_all_sessions(user)
