"""The witness API of the hub's two logs (DESIGN §6.3, §8): for the audit log under
``/api/v1/journal/`` and for the key directory under ``/api/v1/annuaire/``, the same three
routes: the latest signed checkpoint, a consistency proof between two sizes, and the witness's
cosignature posted back.

A witness (a partner's system or the DPO, running ``audit.witness.witness_round``) cosigns a
checkpoint only after checking it extends the one it cosigned before; the hub keeps the
cosignatures of the witnesses it accepts (``flask --app hub audit witness add``: one registry
for both logs, kept in the audit store) and serves them with the checkpoint; the audit log's
are exported with it, so the offline verifier can say who vouched for which tree.

Registered under the API (endpoints ``api.witness.*`` and ``api.directory_witness.*``):
organisation systems' bearer tokens (the API's own check runs first), no cookies hence no CSRF,
JSON errors with stable codes, and every access recorded in the audit log before it is served.
"""

from __future__ import annotations

import base64
import functools
import re
from typing import Any, Protocol

from flask import Blueprint, jsonify, request
from flask_babel import gettext as _

from audit.checkpoint import Checkpoint, CosignatureVerifier, SignedNote
from audit.errors import AuditError, CheckpointError, CosignatureRefused, ProofError
from audit.events import Action, Decision
from audit.store import AuditLog
from audit.witness import JOURNAL_CHECKPOINT, JOURNAL_CONSISTENCY, JOURNAL_COSIGNATURES
from hub import liaison
from hub.errors import ApiError
from hub.extensions import csrf
from hub.i18n import N_
from hub.recording import AuditUnavailable, record
from hub.state import db, state

bp = Blueprint("witness", __name__, url_prefix="/api/v1/journal")
directory_bp = Blueprint("directory_witness", __name__, url_prefix="/api/v1/annuaire")
for _blueprint in (bp, directory_bp):
    csrf.exempt(_blueprint)  # bearer tokens only, no cookies: CSRF does not apply

# Tree sizes: decimal digits only (no sign, no other script's digits), below 2**63.
_SIZE = re.compile(r"[0-9]{1,19}")
MAX_SIZE = 2**63 - 1
# A note with 32 signature lines is about 4 KiB; a cosignature line about 150 bytes.
MAX_NOTE_CHARS = 16 * 1024
MAX_LINE_CHARS = 1024

_INVALID_SIZES = N_(
    "Paramètres attendus : ancien et nouveau, deux tailles du journal (entiers, ancien ≤ nouveau)."
)
_INVALID_BODY = N_(
    'Le corps attendu est {"checkpoint": "point de contrôle signé", '
    '"cosignature": "ligne de cosignature"}.'
)
# How each refusal of audit.store reads for the caller: HTTP status and French message.
_REFUSALS: dict[str, tuple[int, str]] = {
    "malformed_checkpoint": (400, N_("Ce n'est pas un point de contrôle signé du journal.")),
    "malformed_cosignature": (
        400,
        N_("Ce n'est pas une ligne de cosignature (c2sp.org/tlog-cosignature)."),
    ),
    "unknown_witness": (
        403,
        N_("Cette clé de témoin n'est pas acceptée par le journal : rien n'est conservé."),
    ),
    "unknown_checkpoint": (
        404,
        N_("Le journal n'a pas signé ce point de contrôle : rien n'est conservé."),
    ),
    "too_many_cosignatures": (
        409,
        N_("Ce point de contrôle porte déjà le nombre maximal de cosignatures."),
    ),
    "bad_cosignature": (
        422,
        N_("La cosignature ne se vérifie pas avec la clé du témoin : rien n'est conservé."),
    ),
}


class _Witnessed(Protocol):
    """One log as its witnesses see it; errors of its store become :class:`AuditUnavailable`."""

    object_type: str  # of the audit events about its checkpoints
    cosign_action: Action

    def latest(self) -> str | None:
        """The latest signed checkpoint with its cosignature lines, if any."""
        ...

    def size(self) -> int:
        """How many leaves the log holds."""
        ...

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """RFC 6962 consistency proof from ``old`` to ``new`` leaves."""
        ...

    def check(self, note: str, line: str) -> tuple[int, CosignatureVerifier]:
        """The size cosigned and the witness; :class:`CosignatureRefused` otherwise."""
        ...

    def add(self, note: str, line: str) -> bool:
        """Store the cosignature (committed); ``False`` for a retry."""
        ...


class _AuditJournal:
    object_type = "audit_checkpoint"
    cosign_action = Action.AUDIT_COSIGN

    def __init__(self) -> None:
        self.log: AuditLog = state().audit_log

    def latest(self) -> str | None:
        return self.log.latest_checkpoint(with_cosignatures=True)

    def size(self) -> int:
        return self.log.size()

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return self.log.consistency_proof(old, new)

    def check(self, note: str, line: str) -> tuple[int, CosignatureVerifier]:
        cosignature = self.log.check_cosignature(note, line)
        return cosignature.checkpoint.size, cosignature.witness

    def add(self, note: str, line: str) -> bool:
        return self.log.add_cosignature(note, line)


class _KeyDirectory:
    object_type = "annuaire"
    cosign_action = Action.KEY_COSIGN

    def __init__(self) -> None:
        self.log = liaison.directory_log(db(), state())

    @functools.cached_property
    def accepted(self) -> list[CosignatureVerifier]:
        """One registry of accepted witnesses for both logs (the audit store's), read only
        when a cosignature is posted."""
        return state().audit_log.witnesses()

    def latest(self) -> str | None:
        return self.log.checkpoint(with_cosignatures=True)

    def size(self) -> int:
        return self.log.size()

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        return self.log.consistency_proof(old, new)

    def check(self, note: str, line: str) -> tuple[int, CosignatureVerifier]:
        posted = self.log.check_cosignature(note, line, self.accepted)
        return posted.checkpoint.size, posted.witness

    def add(self, note: str, line: str) -> bool:
        _posted, stored = self.log.add_cosignature(note, line, self.accepted)
        db().commit()
        return stored


def _size_arg(name: str) -> int:
    value = request.args.get(name, "")
    if _SIZE.fullmatch(value) is None or int(value) > MAX_SIZE:
        raise ApiError(400, "invalid_request", _(_INVALID_SIZES))
    return int(value)


def _checkpoint_size(note: str) -> str:
    """The size a posted note claims, for the event's object id ("" when unreadable)."""
    try:
        size = Checkpoint.parse_body(SignedNote.parse(note).text).size
    except CheckpointError:
        return ""
    return str(size) if size <= MAX_SIZE else ""


def _checkpoint(log: _Witnessed) -> Any:
    record(Action.API_READ, object_type=log.object_type, object_id="latest")
    try:
        note = log.latest()
    except AuditError as error:
        raise AuditUnavailable() from error
    if note is None:
        raise ApiError(
            404, "no_checkpoint", _("Le journal n'a encore signé aucun point de contrôle.")
        )
    return jsonify({"note": note})


def _consistency(log: _Witnessed, proof_type: str) -> Any:
    old, new = _size_arg("ancien"), _size_arg("nouveau")
    if old > new:
        raise ApiError(400, "invalid_request", _(_INVALID_SIZES))
    try:
        if new > log.size():
            raise ApiError(
                400,
                "size_out_of_range",
                _("Le journal ne compte pas encore autant d'événements."),
            )
        record(Action.API_READ, object_type=proof_type, object_id=f"{old}-{new}")
        proof = log.consistency_proof(old, new)
    except ProofError as error:  # cannot happen once new <= size: the log only grows
        raise ApiError(
            400, "size_out_of_range", _("Le journal ne compte pas encore autant d'événements.")
        ) from error
    except AuditError as error:
        raise AuditUnavailable() from error
    return jsonify(
        {
            "old": old,
            "new": new,
            "proof": [base64.b64encode(h).decode("ascii") for h in proof],
        }
    )


def _refused(log: _Witnessed, refusal: CosignatureRefused, note: str) -> ApiError:
    """The API error of a refused cosignature, recorded (denied, with its code) first."""
    db().rollback()
    record(
        log.cosign_action,
        object_type=log.object_type,
        object_id=_checkpoint_size(note),
        decision=Decision.DENY,
        rule=refusal.code,
    )
    status, message = _REFUSALS[refusal.code]
    return ApiError(status, refusal.code, _(message))


def _cosign(log: _Witnessed) -> Any:
    body = request.get_json(silent=True)
    note = body.get("checkpoint") if isinstance(body, dict) else None
    line = body.get("cosignature") if isinstance(body, dict) else None
    if (
        not isinstance(note, str)
        or not isinstance(line, str)
        or len(note) > MAX_NOTE_CHARS
        or len(line) > MAX_LINE_CHARS
    ):
        raise ApiError(400, "invalid_request", _(_INVALID_BODY))
    try:
        try:
            size, witness = log.check(note, line)
        except CosignatureRefused as refusal:
            raise _refused(log, refusal, note) from refusal
        record(
            log.cosign_action,
            object_type=log.object_type,
            object_id=str(size),
            rule=f"witness:{witness.key_id.hex()}",
        )
        try:
            stored = log.add(note, line)
        except CosignatureRefused as refusal:  # the registry or the checkpoint changed since
            raise _refused(log, refusal, note) from refusal
    except AuditError as error:
        raise AuditUnavailable() from error
    answer = jsonify({"size": size, "witness": witness.name, "stored": stored})
    return answer, 201 if stored else 200


# -- the audit log ----------------------------------------------------------------------------


@bp.route(f"/{JOURNAL_CHECKPOINT}")
def checkpoint() -> Any:
    """The largest signed checkpoint, with the cosignatures stored for it: a C2SP signed note
    (``note``), to be verified with the log's key, never trusted as sent. Recorded as
    ``api.read`` of ``audit_checkpoint``."""
    return _checkpoint(_AuditJournal())


@bp.route(f"/{JOURNAL_CONSISTENCY}")
def consistency() -> Any:
    """The RFC 6962 consistency proof from the tree of ``ancien`` events to the tree of
    ``nouveau`` events (base64 hashes). Recorded as ``api.read`` of ``audit_proof``."""
    return _consistency(_AuditJournal(), "audit_proof")


@bp.route(f"/{JOURNAL_COSIGNATURES}", methods=["POST"])
def cosign() -> Any:
    """Store a witness's cosignature of a checkpoint the hub signed.

    Body: ``{"checkpoint": "<the signed note, as served>", "cosignature": "— <witness name>
    <base64>"}``. The witness must be accepted, the checkpoint one the log signed, the line a
    valid c2sp.org/tlog-cosignature over it; otherwise a 4xx with a stable code and nothing
    stored. A retry of a stored cosignature answers 200 (``stored: false``), a new one 201.
    Recorded as ``audit.cosign`` (allowed or denied).
    """
    return _cosign(_AuditJournal())


# -- the key directory ------------------------------------------------------------------------


@directory_bp.route(f"/{JOURNAL_CHECKPOINT}")
def directory_checkpoint() -> Any:
    """The key directory's latest checkpoint with its cosignatures (``api.read`` of
    ``annuaire``). Clients use ``GET /api/v1/annuaire``, without them."""
    return _checkpoint(_KeyDirectory())


@directory_bp.route(f"/{JOURNAL_CONSISTENCY}")
def directory_consistency() -> Any:
    """Consistency proof between two sizes of the key directory (``api.read`` of
    ``annuaire_proof``); for witnesses and for clients that keep only checkpoints."""
    return _consistency(_KeyDirectory(), "annuaire_proof")


@directory_bp.route(f"/{JOURNAL_COSIGNATURES}", methods=["POST"])
def directory_cosign() -> Any:
    """Store a witness's cosignature of a key directory checkpoint, as :func:`cosign` does
    for the audit log. Recorded as ``key.cosign``."""
    return _cosign(_KeyDirectory())
