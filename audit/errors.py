"""The audit package's single exception family.

Every failure raised by ``audit`` derives from :class:`AuditError`, so the hub can map the whole
family in one place (an unavailable log becomes HTTP 503: fail closed, DESIGN §2.4).
"""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every error raised by the audit package."""


class InvalidEvent(AuditError, ValueError):  # noqa: N818 - reads better at the call site
    """An event field is missing, too long, or outside its allowed vocabulary or charset."""


class LogUnavailable(AuditError):  # noqa: N818
    """The event could not be made durable; the audited action must not happen."""


class ProofError(AuditError):
    """A Merkle inclusion or consistency proof does not verify, or cannot be built."""


class CheckpointError(AuditError):
    """A checkpoint note is malformed or its signature does not verify."""


class TamperingDetected(AuditError):  # noqa: N818
    """An export or store does not match its signed checkpoints.

    ``index`` is the first leaf index known to be bad (or the first missing index after a
    truncation); ``None`` when the problem is not tied to an event (e.g. a forged checkpoint).
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class ForkDetected(TamperingDetected):
    """The log's key signed two histories: two checkpoints of one size with different roots,
    or a kept checkpoint that is not a prefix of the exported tree (see :mod:`audit.fork`).

    ``index`` is the first event that differs when what was kept lets the verifier locate it
    (leaf hashes of an earlier export), ``None`` when only roots were kept.
    """


class WitnessError(AuditError):
    """A witness refused to cosign (inconsistent checkpoint, unknown log key, bad state)."""


class WitnessRegistryError(AuditError):
    """A change to the log's registry of accepted witnesses was refused (bad or duplicate key,
    unknown witness)."""


class CosignatureRefused(AuditError):  # noqa: N818 - reads better at the call site
    """A cosignature the log will not store; nothing was stored.

    ``code`` is stable (the hub answers it as the API error code): ``malformed_checkpoint``,
    ``malformed_cosignature``, ``unknown_checkpoint``, ``unknown_witness``, ``bad_cosignature``,
    ``too_many_cosignatures``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RetentionError(AuditError):
    """A retention prune was refused (nothing to prune, or no signer for the segment record)."""


class UnreadableExport(AuditError):  # noqa: N818
    """An export directory is missing files or is not in a format the verifier knows."""
