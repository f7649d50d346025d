"""Argon2id password hashing with parameters from configuration."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hub.config import Argon2Params
from hub.i18n import N_, MessageError

MIN_LENGTH = 12
MAX_LENGTH = 256


class Passwords:
    """Hash and verify passwords; also equalises timing for unknown accounts."""

    def __init__(self, params: Argon2Params) -> None:
        self._hasher = PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            type=Type.ID,
        )
        # Verified against when the account does not exist, so that an unknown email costs
        # the same time as a wrong password (no enumeration by timing).
        self._dummy = self._hasher.hash("maillon-dummy-password")

    def hash(self, password: str) -> str:
        """An Argon2id hash of ``password``."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; ``None`` hashes still cost one verification."""
        try:
            return self._hasher.verify(password_hash or self._dummy, password) and (
                password_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with weaker parameters than the configured ones."""
        return self._hasher.check_needs_rehash(password_hash)


class PasswordRejectedError(MessageError):
    """A password that does not meet the policy."""


def password_problems(
    password: str, *, email: str = "", name: str = ""
) -> list[PasswordRejectedError]:
    """Why ``password`` is not acceptable (empty list: acceptable)."""
    problems: list[PasswordRejectedError] = []
    if len(password) < MIN_LENGTH:
        problems.append(
            PasswordRejectedError(
                N_("Le mot de passe doit comporter au moins %(n)d caractères."), n=MIN_LENGTH
            )
        )
    if len(password) > MAX_LENGTH:
        problems.append(
            PasswordRejectedError(
                N_("Le mot de passe doit comporter au plus %(n)d caractères."), n=MAX_LENGTH
            )
        )
    lowered = password.lower()
    local = email.split("@", 1)[0].lower()
    if (local and len(local) >= 4 and local in lowered) or (
        name and len(name) >= 4 and name.lower() in lowered
    ):
        problems.append(
            PasswordRejectedError(
                N_("Le mot de passe ne doit pas contenir votre nom ni votre adresse.")
            )
        )
    if len(set(password)) < 5:
        problems.append(PasswordRejectedError(N_("Le mot de passe est trop répétitif.")))
    return problems
