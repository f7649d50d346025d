"""The key directory: the hub's log and index, and the replica a client verifies it with.

Every registration and revocation is a leaf of a signed Merkle log; a client's replica accepts
an update only if the entries extend what it verified to exactly the newly signed root, so a
hub that rolls back, forks, drops a revocation or shows two parties two directories is caught.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from audit import merkle
from audit.checkpoint import Checkpoint, NoteSigner
from audit.events import Action
from exchange.directory import Directory, key_added, replay
from exchange.errors import ConflictError, ForbiddenError, VerificationError
from exchange.keys import DeviceSecrets
from exchange.server.devices import Devices, Owner
from exchange.server.directory import DirectoryLog
from hub.models import User
from tests.conftest import Account, FakeClock

ORIGIN = "localhost/cles"


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner(ORIGIN, Ed25519PrivateKey.generate())


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    with app.extensions["maillon"].session_factory() as session:
        yield session


def _owner(session: Session, email: str) -> Owner:
    user = session.scalar(select(User).where(User.email == email))
    assert user is not None
    return Owner("user", user.id, user.public_id, user.organisation_id, user.organisation.public_id)


def _services(
    session: Session, clock: FakeClock, signer: NoteSigner
) -> tuple[DirectoryLog, Devices]:
    log = DirectoryLog(session, clock=clock, signer=signer)
    return log, Devices(session, clock=clock, log=log)


def _sync(log: DirectoryLog, replica: Directory) -> Directory:
    size = log.size()
    return replica.update(log.entries(replica.size, size), log.checkpoint())


def test_registrations_and_revocations_reach_a_verifying_replica(
    session: Session, clock: FakeClock, signer: NoteSigner, territory: dict[str, Account]
) -> None:
    log, devices = _services(session, clock, signer)
    cpip = _owner(session, territory["cpip"].email)
    conseillere = _owner(session, territory["conseillere"].email)
    laptop, phone, other = (
        DeviceSecrets.generate(),
        DeviceSecrets.generate(),
        DeviceSecrets.generate(),
    )
    devices.register(laptop.public.record(), owner=cpip, label="Portable")
    devices.register(phone.public.record(), owner=cpip, label="Téléphone")
    devices.register(other.public.record(), owner=conseillere, label="Poste")
    session.commit()
    replica = _sync(log, Directory.empty(signer.verifier().vkey()))
    assert replica.size == 3
    assert [s.key for s in replica.devices([cpip.name])] == [laptop.public, phone.public]
    # When the owner revokes one device
    clock.advance(minutes=5)
    devices.revoke(phone.public.key_id, by=cpip, reason="owner")
    session.commit()
    replica = _sync(log, replica)
    # Then the replica knows, and refuses to seal to it
    assert [s.key for s in replica.devices([cpip.name])] == [laptop.public]
    with pytest.raises(VerificationError) as refused:
        replica.key(phone.public.key_id)
    assert refused.value.code == "key_revoked"
    assert replica.key(other.public.key_id) == other.public
    # And the hub's index says the same
    assert [d.key for d in devices.of(cpip)] == [laptop.public]


def test_proofs_verify_against_signed_checkpoints(
    session: Session, clock: FakeClock, signer: NoteSigner, territory: dict[str, Account]
) -> None:
    log, devices = _services(session, clock, signer)
    owner = _owner(session, territory["cpip"].email)
    for _ in range(7):
        devices.register(DeviceSecrets.generate().public.record(), owner=owner, label="x")
        if devices.of(owner).__len__() >= 5:
            devices.revoke(devices.of(owner)[-1].key.key_id, by=owner, reason="owner")
    session.commit()
    size = log.size()
    checkpoint = signer.verifier().verify_checkpoint(log.checkpoint())
    assert checkpoint.size == size
    entries = log.entries(0, size)
    for index, entry in enumerate(entries):
        merkle.verify_inclusion(
            merkle.leaf_hash(entry), index, size, log.inclusion_proof(index, size), checkpoint.root
        )
    for old in range(1, size):
        old_root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in entries[:old]])
        merkle.verify_consistency(
            old, size, old_root, checkpoint.root, log.consistency_proof(old, size)
        )


def test_a_key_is_published_once_and_an_owner_holds_at_most_ten(
    session: Session, clock: FakeClock, signer: NoteSigner, territory: dict[str, Account]
) -> None:
    _log, devices = _services(session, clock, signer)
    owner = _owner(session, territory["cpip"].email)
    device = DeviceSecrets.generate()
    devices.register(device.public.record(), owner=owner, label="Portable")
    with pytest.raises(ConflictError) as refused:
        devices.register(
            device.public.record(), owner=_owner(session, territory["conseillere"].email), label="x"
        )
    assert refused.value.code == "key_exists"
    for _ in range(9):
        devices.register(DeviceSecrets.generate().public.record(), owner=owner, label="x")
    with pytest.raises(ConflictError) as refused:
        devices.register(DeviceSecrets.generate().public.record(), owner=owner, label="x")
    assert refused.value.code == "too_many_devices"


def test_only_the_owner_revokes_a_device_an_administrator_too(
    session: Session, clock: FakeClock, signer: NoteSigner, territory: dict[str, Account]
) -> None:
    _log, devices = _services(session, clock, signer)
    owner = _owner(session, territory["cpip"].email)
    intruder = _owner(session, territory["conseillere"].email)
    device = DeviceSecrets.generate()
    devices.register(device.public.record(), owner=owner, label="Portable")
    with pytest.raises(ForbiddenError):
        devices.revoke(device.public.key_id, by=intruder, reason="owner")
    devices.revoke(device.public.key_id, by=None, reason="admin")
    with pytest.raises(ConflictError):
        devices.revoke(device.public.key_id, by=None, reason="admin")


def test_the_directory_log_is_append_only(
    session: Session, clock: FakeClock, signer: NoteSigner, territory: dict[str, Account]
) -> None:
    log, devices = _services(session, clock, signer)
    devices.register(
        DeviceSecrets.generate().public.record(),
        owner=_owner(session, territory["cpip"].email),
        label="x",
    )
    session.commit()
    for statement in (
        "UPDATE exchange_directory_entries SET entry = entry",
        "DELETE FROM exchange_directory_nodes",
        "DELETE FROM exchange_directory_checkpoints",
    ):
        with pytest.raises(DBAPIError):
            session.execute(text(statement))
        session.rollback()
    assert log.size() == 1


# -- the replica refuses what a rigged hub would show ---------------------------------------------


def _log_of(signer: NoteSigner, entries: list[bytes], when: datetime) -> str:
    root = merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in entries])
    return str(signer.sign_checkpoint(Checkpoint(ORIGIN, len(entries), root, when)))


NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _entries(n: int) -> list[bytes]:
    return [
        key_added(DeviceSecrets.generate().public, owner=f"user:u{i}", org="o-1", now=NOW)
        for i in range(n)
    ]


def test_a_replica_refuses_rollback_fork_and_a_foreign_signer(signer: NoteSigner) -> None:
    entries = _entries(5)
    vkey = signer.verifier().vkey()
    replica = replay(vkey, entries, _log_of(signer, entries, NOW))
    # An older tree
    with pytest.raises(VerificationError) as refused:
        replica.update([], _log_of(signer, entries[:3], NOW))
    assert refused.value.code == "rollback"
    # The same size with another history (an entry swapped): a fork
    forged = [*entries[:4], _entries(1)[0]]
    with pytest.raises(VerificationError) as refused:
        Directory.empty(vkey).update(forged, _log_of(signer, entries, NOW))
    assert refused.value.code == "fork"
    # A checkpoint signed by another key
    rogue = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(VerificationError) as refused:
        replica.update(_entries(1), _log_of(rogue, [*entries, *_entries(1)], NOW))
    assert refused.value.code == "checkpoint_invalid"
    # Entries that do not lead to the signed size
    with pytest.raises(VerificationError) as refused:
        replica.update(_entries(2), _log_of(signer, [*entries, *_entries(1)], NOW))
    assert refused.value.code == "entries_missing"
    # Nothing changed in what the replica trusts
    assert replica.size == 5


def test_a_dropped_revocation_cannot_be_hidden(signer: NoteSigner) -> None:
    device = DeviceSecrets.generate().public
    add = key_added(device, owner="user:u1", org="o-1", now=NOW)
    from exchange.directory import key_revoked

    revoke = key_revoked(device.key_id, reason="owner", now=NOW)
    vkey = signer.verifier().vkey()
    replica = replay(vkey, [add], _log_of(signer, [add], NOW))
    # The hub signs the tree with the revocation but sends the client an update without it
    with pytest.raises(VerificationError):
        replica.update([], _log_of(signer, [add, revoke], NOW))
    updated = replica.update([revoke], _log_of(signer, [add, revoke], NOW))
    with pytest.raises(VerificationError):
        updated.key(device.key_id)


def test_a_split_view_is_caught_through_the_sender_checkpoint(signer: NoteSigner) -> None:
    # The hub shows the sender a directory where Bob's key is its own, and Bob the real one
    common = _entries(3)
    bob_real = key_added(DeviceSecrets.generate().public, owner="user:bob", org="o-1", now=NOW)
    bob_fake = key_added(DeviceSecrets.generate().public, owner="user:bob", org="o-1", now=NOW)
    vkey = signer.verifier().vkey()
    bob_view = replay(vkey, [*common, bob_real], _log_of(signer, [*common, bob_real], NOW))
    sender_note = _log_of(signer, [*common, bob_fake], NOW)
    with pytest.raises(VerificationError) as refused:
        bob_view.check_peer(sender_note)
    assert refused.value.code == "split_view"
    # An honest sender's older checkpoint is a prefix: accepted
    assert bob_view.check_peer(_log_of(signer, common, NOW)).size == 3
    # A newer one cannot be judged before updating
    with pytest.raises(VerificationError) as refused:
        bob_view.check_peer(_log_of(signer, [*common, bob_real, *_entries(1)], NOW))
    assert refused.value.code == "checkpoint_ahead"


def test_concurrent_registrations_never_exceed_ten_devices(
    app: Flask, clock: FakeClock, signer: NoteSigner, territory: dict[str, Account]
) -> None:
    import threading

    factory = app.extensions["maillon"].session_factory
    with factory() as session:
        owner = _owner(session, territory["cpip"].email)
        _log, devices = _services(session, clock, signer)
        for _ in range(8):
            devices.register(DeviceSecrets.generate().public.record(), owner=owner, label="x")
        session.commit()
    # Given 8 keys in force, when four registrations race
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def register() -> None:
        with factory() as session:
            _log, devices = _services(session, clock, signer)
            barrier.wait()
            try:
                devices.register(DeviceSecrets.generate().public.record(), owner=owner, label="x")
                session.commit()
                outcomes.append("stored")
            except ConflictError as refused:
                session.rollback()
                outcomes.append(refused.code)
            except DBAPIError:  # SQLite's writer lock may time out: nothing stored either
                session.rollback()
                outcomes.append("busy")

    threads = [threading.Thread(target=register) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # Then at most two are stored, the others refused, and the limit holds in the index
    assert outcomes.count("stored") <= 2 and len(outcomes) == 4
    with factory() as session:
        from exchange.server.tables import devices as table

        current = session.execute(
            select(table.c.key_id).where(
                table.c.user_id == owner.row_id, table.c.revoked_at.is_(None)
            )
        ).all()
        assert len(current) == 8 + outcomes.count("stored") <= 10


def test_disabling_an_account_or_a_client_revokes_its_keys(
    app: Flask, territory: dict[str, Account], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILLON_PASSPHRASE", "une phrase de passe assez longue")
    import json as json_module

    from hub.models import ApiClient
    from tests.integration.test_liaison_client import _workspace

    state = app.extensions["maillon"]
    _workspace(app, "Mission Locale de Démoville", tmp_path, "ml")
    config = json_module.loads((tmp_path / "ml" / "config.json").read_text())
    with state.session_factory() as session:
        from hub import liaison

        person = _owner(session, territory["cpip"].email)
        service = liaison.devices(session, state)
        service.register(DeviceSecrets.generate().public.record(), owner=person, label="x")
        session.commit()
        client = session.scalar(select(ApiClient).where(ApiClient.client_id == config["client_id"]))
        assert client is not None
        system = liaison.client_owner(client)
        assert len(service.of(person)) == len(service.of(system)) == 1
    log = state.audit_log
    before = log.size()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["user", "disable", territory["cpip"].email]).exit_code == 0
    assert runner.invoke(args=["api-client", "disable", config["client_id"]]).exit_code == 0
    with state.session_factory() as session:
        service = liaison.devices(session, state)
        assert service.of(person) == [] and service.of(system) == []
        # The directory itself says so: a client replaying it sees both keys revoked
        replica = _sync(
            liaison.directory_log(session, state),
            Directory.empty(liaison.directory_signer(state).verifier().vkey()),
        )
        assert replica.devices([person.name, system.name]) == []
    revocations = [e for e in log.events(before, log.size()) if e.action == Action.KEY_REVOKE]
    assert len(revocations) == 2


def test_an_administrator_revokes_a_device_from_the_command_line(
    app: Flask, clock: FakeClock, signer: NoteSigner, territory: dict[str, Account]
) -> None:
    state = app.extensions["maillon"]
    from hub import liaison

    with state.session_factory() as session:
        owner = _owner(session, territory["cpip"].email)
        device = DeviceSecrets.generate().public
        liaison.devices(session, state).register(device.record(), owner=owner, label="Portable")
        session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["device", "revoke", device.key_id])
    assert result.exit_code == 0, result.output
    with state.session_factory() as session:
        assert liaison.devices(session, state).of(owner) == []
    (event,) = state.audit_log.events(state.audit_log.size() - 1, state.audit_log.size())
    assert (event.action, event.object_id) == (Action.KEY_REVOKE, device.key_id)
    # Twice, or an unknown key: a clear refusal, nothing recorded
    size = state.audit_log.size()
    assert runner.invoke(args=["device", "revoke", device.key_id]).exit_code != 0
    assert runner.invoke(args=["device", "revoke", "dk_inconnue"]).exit_code != 0
    assert state.audit_log.size() == size
