"""The one exception family of the exchange package.

Two kinds of failure are kept apart, as a client that must not trust the server needs:

- :class:`MalformedError` — the input cannot even be read (not JSON, bad base64, a missing
  member, a size over a limit, an algorithm other than the pinned one);
- :class:`VerificationError` — it reads, but a check failed (a signature, a digest, a proof, a
  recipient not entitled, a key not in the directory).

Every error carries a stable ``code`` (returned by the API, stored in audit events, named in the
test vectors) and a French message with its parameters (the hub translates it when it shows it).
``ValueError`` and ``TypeError`` are left for caller bugs. Verification never returns a partly
checked value: it returns a fully verified one or raises.
"""

from __future__ import annotations

from typing import Any


class ExchangeError(Exception):
    """An exchange operation refused; ``message`` is French, formatted with ``params``."""

    def __init__(self, code: str, message: str, **params: Any) -> None:
        super().__init__(f"{code}: {message % params if params else message}")
        self.code = code
        self.message = message
        self.params = params


class MalformedError(ExchangeError):
    """The input cannot be read as what it claims to be; nothing was done with it."""


class VerificationError(ExchangeError):
    """The input reads, but a check failed; nothing was done with it."""


class KeystoreError(ExchangeError):
    """A keystore or recovery backup cannot be opened (wrong passphrase, damaged, unknown
    version); the file is left as it was."""


class ConflictError(ExchangeError):
    """The hub's state forbids the request (a key already published, a form already sent with
    other content…); nothing was stored."""


class ForbiddenError(ExchangeError):
    """The caller may not do this (not the key's owner, a recipient not entitled…); nothing was
    stored."""


class NotFoundError(ExchangeError):
    """No such key or form for this caller."""
