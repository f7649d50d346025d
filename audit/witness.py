"""A witness (the DPO, or a partner) that cosigns audit checkpoints it has seen grow honestly.

The witness keeps its own small state file: the log's verifier key and the last tree size and
root it cosigned. It cosigns a new checkpoint only if the log's signature verifies and a
consistency proof from its last cosigned tree verifies (RFC 9162 §2.1.4.2), so the log cannot
show it one history and the DPO another, nor roll back, without the witness refusing. The
state is written durably *before* the cosignature is released, so a crash cannot make it
cosign two conflicting trees.

Requests use the body of the C2SP tlog-witness ``add-checkpoint`` call::

    old <size the witness last cosigned>
    <base64 consistency proof hash>      (one per line, possibly none)
    <blank line>
    <signed checkpoint note>

Against a running hub, :func:`witness_round` does one round over the hub's journal API
(``/api/v1/journal/…``): fetch the latest checkpoint, fetch the consistency proof from the size
last cosigned, cosign, post the cosignature. It takes the HTTP request as a callable, so this
package needs no HTTP client and the ``maillon witness`` client command only wires its
authenticated session in.

Command line (``python -m audit.witness``)::

    keygen --name dpo.example.fr/witness --out witness.pem     # prints the witness vkey
    init   --state witness.json --log-key '<log vkey>'
    cosign --state witness.json --key witness.pem --name dpo.example.fr/witness REQUEST
           # prints the checkpoint with the cosignature added; exit 1 if refused
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

try:
    import fcntl
except ImportError:  # not POSIX (Windows): rounds are not locked there; run one at a time
    fcntl = None  # type: ignore[assignment]

from audit.checkpoint import Checkpoint, Cosigner, NoteVerifier, SignatureLine, SignedNote
from audit.errors import AuditError, CheckpointError, ProofError, WitnessError
from audit.events import format_time
from audit.merkle import EMPTY_ROOT, HASH_SIZE, verify_consistency

STATE_VERSION = 1

# The hub's journal API, relative to ``/api/v1/journal/`` (the hub routes these very names).
JOURNAL_CHECKPOINT = "point-de-controle"
JOURNAL_CONSISTENCY = "preuve-de-coherence"
JOURNAL_COSIGNATURES = "cosignatures"
# A checkpoint note, a proof of at most 2 * 64 hashes, an answer: far below this.
MAX_RESPONSE_BYTES = 64 * 1024

Fetch = Callable[[str, str, bytes | None], tuple[int, bytes]]
"""``fetch(method, path, body)`` → ``(HTTP status, response body)``.

``path`` is relative to the hub's ``/api/v1/journal/`` (query string included), ``body`` the
JSON to post (``None`` for a GET). The caller adds the base URL, the bearer token and its
timeouts; it may stop reading past :data:`MAX_RESPONSE_BYTES`, and the round refuses more.
"""


@dataclass(frozen=True, slots=True)
class WitnessState:
    """What the witness remembers: the log it watches and the last tree it cosigned."""

    log_vkey: str
    size: int
    root: bytes

    def to_json(self) -> dict[str, object]:
        """JSON form of the state file."""
        return {
            "version": STATE_VERSION,
            "log_vkey": self.log_vkey,
            "size": self.size,
            "root": base64.b64encode(self.root).decode("ascii"),
        }

    @classmethod
    def load(cls, path: Path) -> WitnessState:
        """Read a state file; :class:`WitnessError` if it is missing or malformed."""
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            if obj["version"] != STATE_VERSION:
                raise WitnessError("unknown witness state version")
            root = base64.b64decode(obj["root"], validate=True)
            state = cls(str(obj["log_vkey"]), int(obj["size"]), root)
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise WitnessError(f"unreadable witness state {path}: {exc}") from None
        if state.size < 0 or len(state.root) != HASH_SIZE:
            raise WitnessError("corrupt witness state")
        return state

    def save(self, path: Path) -> None:
        """Write the state atomically and durably (temp file, fsync, rename, fsync dir)."""
        tmp = path.with_name(path.name + ".tmp")
        data = (json.dumps(self.to_json(), indent=1) + "\n").encode("utf-8")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def format_request(old_size: int, proof: Sequence[bytes], note: str) -> str:
    """The add-checkpoint request body the log sends to a witness."""
    lines = [f"old {old_size}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    return "\n".join(lines) + "\n\n" + note


def parse_request(body: str) -> tuple[int, list[bytes], str]:
    """Split a request body into (old size, consistency proof, checkpoint note)."""
    head, sep, note = body.partition("\n\n")
    lines = head.split("\n")
    if not sep or not lines[0].startswith("old ") or not lines[0][4:].isdigit():
        raise WitnessError("malformed add-checkpoint request")
    try:
        proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    except binascii.Error:
        raise WitnessError("malformed proof in request") from None
    return int(lines[0][4:]), proof, note


class Witness:
    """Cosigns checkpoints of one log, keeping its state in ``state_path``."""

    def __init__(
        self, state_path: Path, cosigner: Cosigner, *, clock: Callable[[], datetime]
    ) -> None:
        self._path = state_path
        self._cosigner = cosigner
        self._clock = clock

    @staticmethod
    def init(state_path: Path, log_vkey: str) -> WitnessState:
        """Start watching a log from the empty tree (refuses to overwrite a state file)."""
        try:
            NoteVerifier.from_vkey(log_vkey)
        except CheckpointError as exc:
            raise WitnessError(f"bad log key: {exc}") from None
        if state_path.exists():
            raise WitnessError(f"{state_path} exists: a witness never forgets what it saw")
        state = WitnessState(log_vkey.strip(), 0, EMPTY_ROOT)
        state.save(state_path)
        return state

    def state(self) -> WitnessState:
        """The current state."""
        return WitnessState.load(self._path)

    def cosign(self, note: str, proof: Sequence[bytes], old_size: int | None = None) -> SignedNote:
        """Cosign ``note`` if it extends the last cosigned tree; return the note with the
        cosignature added. :class:`WitnessError` otherwise (nothing is recorded).

        Read, check and save happen under an exclusive lock on the state: two rounds at once
        (cron and a person) cannot both cosign from the same state, which could put this
        witness's name on two forked trees."""
        lock_path = self._path.with_name(self._path.name + ".lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            return self._cosign(note, proof, old_size)
        finally:
            os.close(fd)  # releases the lock

    def _cosign(self, note: str, proof: Sequence[bytes], old_size: int | None) -> SignedNote:
        state = self.state()
        if old_size is not None and old_size != state.size:
            # The log must prove from what we hold, not from what it thinks we hold.
            raise WitnessError(f"witness is at size {state.size}, request is from {old_size}")
        try:
            verifier = NoteVerifier.from_vkey(state.log_vkey)
            parsed = SignedNote.parse(note)
            checkpoint: Checkpoint = verifier.verify_checkpoint(parsed)
        except CheckpointError as exc:
            raise WitnessError(f"checkpoint refused: {exc}") from None
        if checkpoint.size < state.size:
            raise WitnessError(
                f"rollback: checkpoint size {checkpoint.size} < cosigned {state.size}"
            )
        try:
            verify_consistency(state.size, checkpoint.size, state.root, checkpoint.root, proof)
        except ProofError as exc:
            raise WitnessError(
                f"checkpoint at size {checkpoint.size} is not consistent with the cosigned "
                f"tree at size {state.size}: {exc}"
            ) from None
        WitnessState(state.log_vkey, checkpoint.size, checkpoint.root).save(self._path)
        line = self._cosigner.cosign(parsed.text, self._clock())
        return parsed.with_signature(line)


@dataclass(frozen=True, slots=True)
class RoundResult:
    """One witness round: the checkpoint cosigned, the size it was proven from, the
    cosignature line, and whether the hub stored it (``False``: it already held it)."""

    checkpoint: Checkpoint
    old_size: int
    cosignature: SignatureLine
    stored: bool


def _answer(fetch: Fetch, method: str, path: str, body: object = None) -> dict[str, object]:
    """Call the hub; the JSON object it answers with a 2xx status, else :class:`WitnessError`."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    status, raw = fetch(method, path, data)
    if len(raw) > MAX_RESPONSE_BYTES:
        raise WitnessError(f"the hub's answer to {path} is larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        answer = None
    if not 200 <= status < 300:
        code = answer.get("error") if isinstance(answer, dict) else None
        raise WitnessError(f"the hub answered {status} ({code or 'no error code'}) to {path}")
    if not isinstance(answer, dict):
        raise WitnessError(f"the hub's answer to {path} is not a JSON object")
    return answer


def witness_round(witness: Witness, fetch: Fetch) -> RoundResult:
    """Cosign the hub's latest checkpoint if it extends what this witness cosigned before.

    1. fetch the latest checkpoint (the hub's signed note, other witnesses' lines included);
    2. fetch the consistency proof from the size this witness last cosigned to that size;
    3. cosign through :meth:`Witness.cosign`, which verifies the log's signature, refuses a
       rollback or an inconsistent tree, and saves its new state durably first;
    4. post the cosignature line to the hub.

    :class:`WitnessError` when the hub refuses, answers nonsense, or the witness refuses. A
    failed post leaves the witness advanced (it did cosign): the next round cosigns again.
    """
    note = _answer(fetch, "GET", JOURNAL_CHECKPOINT).get("note")
    if not isinstance(note, str):
        raise WitnessError("the hub's checkpoint answer carries no note")
    try:
        # Read only to ask for the right proof: Witness.cosign verifies everything.
        claimed = Checkpoint.parse_body(SignedNote.parse(note).text)
    except CheckpointError as exc:
        raise WitnessError(f"the hub's checkpoint is malformed: {exc}") from None
    old = witness.state().size
    proof: list[bytes] = []
    if 0 < old < claimed.size:
        answer = _answer(fetch, "GET", f"{JOURNAL_CONSISTENCY}?ancien={old}&nouveau={claimed.size}")
        hashes = answer.get("proof")
        if (
            answer.get("old") != old
            or answer.get("new") != claimed.size
            or not isinstance(hashes, list)
            or len(hashes) > 128
            or not all(isinstance(h, str) for h in hashes)
        ):
            raise WitnessError("the hub's consistency proof answer is malformed")
        try:
            proof = [base64.b64decode(h, validate=True) for h in hashes]
        except binascii.Error:
            raise WitnessError("the hub's consistency proof is not base64") from None
    cosigned = witness.cosign(note, proof, old)
    line = cosigned.signatures[-1]
    stored = _answer(
        fetch, "POST", JOURNAL_COSIGNATURES, {"checkpoint": note, "cosignature": line.text()}
    ).get("stored")
    if not isinstance(stored, bool):
        raise WitnessError("the hub's answer to the cosignature is malformed")
    return RoundResult(claimed, old, line, stored)


def create_key(path: Path) -> Ed25519PrivateKey:
    """A new witness key, written to ``path`` (PEM, mode 0600; never over an existing file)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    """The witness key written by :func:`create_key`; :class:`WitnessError` otherwise."""
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise WitnessError(f"cannot read witness key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise WitnessError("the witness key must be Ed25519")
    return key


def main(argv: list[str] | None = None, *, clock: Callable[[], datetime] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 refused, 2 bad input)."""
    now = clock or (lambda: datetime.now(UTC))
    parser = argparse.ArgumentParser(prog="python -m audit.witness", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="create a witness key")
    keygen.add_argument("--name", required=True)
    keygen.add_argument("--out", type=Path, required=True)
    init = sub.add_parser("init", help="start watching a log")
    init.add_argument("--state", type=Path, required=True)
    init.add_argument("--log-key", required=True)
    cosign = sub.add_parser("cosign", help="cosign a checkpoint request")
    cosign.add_argument("--state", type=Path, required=True)
    cosign.add_argument("--key", type=Path, required=True)
    cosign.add_argument("--name", required=True)
    cosign.add_argument("request", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "keygen":
            print(Cosigner(args.name, create_key(args.out)).verifier().vkey())
            return 0
        if args.command == "init":
            Witness.init(args.state, args.log_key)
            print(f"watching {args.log_key.split('+')[0]} from the empty tree")
            return 0
        try:
            body = args.request.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"cannot read request: {exc}", file=sys.stderr)
            return 2
        old, proof, note = parse_request(body)
        witness = Witness(args.state, Cosigner(args.name, load_key(args.key)), clock=now)
        cosigned = witness.cosign(note, proof, old)
    except FileExistsError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except WitnessError as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        return 1
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(str(cosigned))
    print(f"cosigned at {format_time(now())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
