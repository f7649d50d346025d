"""Witnesses of the audit log against a real hub: the DPO's witness cosigns the hub's checkpoints
through the journal API, the hub keeps the cosignatures of the witnesses it accepts and exports
them, and the offline verifier reports which checkpoints carry a valid one. Refused
cosignatures store nothing and are recorded as refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient

from audit.checkpoint import Cosigner
from audit.events import Action, Decision
from audit.export import export_log
from audit.verify import verify_export
from audit.witness import Fetch, Witness, witness_round
from tests.conftest import FakeClock
from tests.integration.test_api_auth import get_token, register_client

# What each call of the journal API records, exactly (tests/integration/test_audit_trail.py
# counts these endpoints as covered).
RECORDED: dict[str, list[Action]] = {
    "api.witness.checkpoint": [Action.API_READ],
    "api.witness.consistency": [Action.API_READ],
    "api.witness.cosign": [Action.AUDIT_COSIGN],
}


def _fetch(http: FlaskClient, token: str) -> Fetch:
    def fetch(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        response = http.open(
            f"/api/v1/journal/{path}",
            method=method,
            data=body,
            content_type="application/json" if body is not None else None,
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.status_code, response.get_data()

    return fetch


def _accept(app: Flask, cosigner: Cosigner) -> Result:
    return app.test_cli_runner().invoke(
        args=["audit", "witness", "add", cosigner.verifier().vkey()]
    )


@pytest.fixture
def fetch(app: Flask, clock: FakeClock) -> Fetch:
    http = app.test_client()
    return _fetch(http, get_token(http, register_client(app, Ed25519PrivateKey.generate()), clock))


def _witness(app: Flask, tmp_path: Path, cosigner: Cosigner, clock: FakeClock) -> Witness:
    state = app.extensions["maillon"]
    Witness.init(tmp_path / "witness.json", state.audit_signer.verifier().vkey())
    return Witness(tmp_path / "witness.json", cosigner, clock=clock)


def test_a_witness_cosigns_round_after_round_and_the_export_proves_it(
    app: Flask, clock: FakeClock, fetch: Fetch, tmp_path: Path
) -> None:
    state = app.extensions["maillon"]
    log, signer = state.audit_log, state.audit_signer
    cosigner = Cosigner("dpo.demoville.test/temoin", Ed25519PrivateKey.generate())
    accepted = _accept(app, cosigner)
    assert accepted.exit_code == 0, accepted.output
    witness = _witness(app, tmp_path, cosigner, clock)
    # Given a first checkpoint, cosigned
    log.checkpoint(signer)
    first = witness_round(witness, fetch)
    assert first.stored and first.old_size == 0
    # When the log grows and is signed again, the next round proves consistency from the first
    before = log.size()
    fetch("GET", "point-de-controle", None)  # an audited read: the log grows
    log.checkpoint(signer)
    second = witness_round(witness, fetch)
    assert second.stored and second.old_size == first.checkpoint.size > 0
    assert second.checkpoint.size > before
    # Then the export carries both cosignatures, and the verifier reports them with the key
    export_log(log, tmp_path / "export", verifier=signer.verifier())
    report = verify_export(
        tmp_path / "export",
        trusted_key=signer.verifier().vkey(),
        witness_keys=[cosigner.verifier().vkey()],
    )
    cosigned = {c.size for c in report.cosignatures if cosigner.name in c.witnesses}
    assert {first.checkpoint.size, second.checkpoint.size} <= cosigned
    # And without the key the cosignatures are reported as unchecked, not as valid
    unchecked = verify_export(tmp_path / "export", trusted_key=signer.verifier().vkey())
    assert not any(c.witnesses for c in unchecked.cosignatures)
    assert any("--witness-key" in w for w in unchecked.warnings)


def test_cosignatures_the_hub_cannot_accept_store_nothing(
    app: Flask, clock: FakeClock, fetch: Fetch, tmp_path: Path
) -> None:
    state = app.extensions["maillon"]
    log, signer = state.audit_log, state.audit_signer
    log.checkpoint(signer)
    stranger = Cosigner("inconnu.test/temoin", Ed25519PrivateKey.generate())
    # A witness the hub does not accept: refused, recorded, nothing kept
    with pytest.raises(Exception, match="unknown_witness"):
        witness_round(_witness(app, tmp_path, stranger, clock), fetch)
    (refusal,) = log.events(log.size() - 1, log.size())
    assert (refusal.action, refusal.decision, refusal.rule) == (
        Action.AUDIT_COSIGN,
        Decision.DENY,
        "unknown_witness",
    )
    assert log.latest_checkpoint(with_cosignatures=True) == log.latest_checkpoint()
    # An accepted witness whose line does not verify (signed over another checkpoint)
    cosigner = Cosigner("dpo.demoville.test/temoin", Ed25519PrivateKey.generate())
    assert _accept(app, cosigner).exit_code == 0
    note = log.latest_checkpoint(with_cosignatures=True)
    assert note is not None
    line = cosigner.cosign("maillon.test/autre\n1\n" + "A" * 43 + "=\n", clock()).text()
    posted = json.dumps({"checkpoint": note, "cosignature": line}).encode()
    before = log.latest_checkpoint(with_cosignatures=True)
    status, body = fetch("POST", "cosignatures", posted)
    assert (status, json.loads(body)["error"]) == (422, "bad_cosignature")
    assert log.latest_checkpoint(with_cosignatures=True) == before
    # Accepting the same witness twice is refused too
    assert _accept(app, cosigner).exit_code != 0


def test_every_call_records_exactly_what_it_should(
    app: Flask, clock: FakeClock, fetch: Fetch, tmp_path: Path
) -> None:
    state = app.extensions["maillon"]
    log, signer = state.audit_log, state.audit_signer
    cosigner = Cosigner("dpo.demoville.test/temoin", Ed25519PrivateKey.generate())
    assert _accept(app, cosigner).exit_code == 0
    witness = _witness(app, tmp_path, cosigner, clock)
    log.checkpoint(signer)
    witness_round(witness, fetch)
    log.checkpoint(signer)
    size = log.size()
    calls = {
        "api.witness.checkpoint": ("GET", "point-de-controle", None),
        "api.witness.consistency": ("GET", f"preuve-de-coherence?ancien=1&nouveau={size}", None),
    }
    for endpoint, (method, path, body) in calls.items():
        before = log.size()
        status, _ = fetch(method, path, body)
        assert status == 200
        assert [e.action for e in log.events(before, log.size())] == RECORDED[endpoint]
    before = log.size()
    witness_round(witness, fetch)  # GET checkpoint, GET proof, POST cosignature
    assert [e.action for e in log.events(before, log.size())] == [
        *RECORDED["api.witness.checkpoint"],
        *RECORDED["api.witness.consistency"],
        *RECORDED["api.witness.cosign"],
    ]
    endpoints = {
        r.endpoint for r in app.url_map.iter_rules() if r.endpoint.startswith("api.witness.")
    }
    assert endpoints == set(RECORDED)
