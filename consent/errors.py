"""The one exception family of the consent package.

Every refusal carries a stable ``code`` (stored in audit events, returned by the API), a French
message id with its parameters (the hub translates it when it shows it), and a ``kind`` the hub
maps to an HTTP status in one place. Nothing is stored when one is raised.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """The family of a refusal, for the hub's one mapping to HTTP statuses."""

    INVALID = "invalid"  # bad input: 422 on the API, the form again on a page
    CONFLICT = "conflict"  # the state forbids it (already withdrawn…): 409
    NOT_FOUND = "not_found"  # no such record on this case: 404
    FORBIDDEN = "forbidden"  # the person may not do this on this case: 403


class ConsentError(Exception):
    """A consent operation refused; ``message`` is French, formatted with ``params``."""

    kind: ErrorKind = ErrorKind.INVALID

    def __init__(self, code: str, message: str, **params: Any) -> None:
        super().__init__(message % params if params else message)
        self.code = code
        self.message = message
        self.params = params


class ConsentInvalidError(ConsentError):
    """Bad input: nothing was stored."""

    kind = ErrorKind.INVALID


class ConsentConflictError(ConsentError):
    """The records' state forbids the operation (e.g. a consent already withdrawn)."""

    kind = ErrorKind.CONFLICT


class ConsentNotFoundError(ConsentError):
    """No such record on this case."""

    kind = ErrorKind.NOT_FOUND


class ConsentForbiddenError(ConsentError):
    """The person may not perform this operation on this case."""

    kind = ErrorKind.FORBIDDEN
