"""Witnesses of the audit log against a real hub: the DPO's witness cosigns the hub's checkpoints
through the journal API, the hub keeps the cosignatures of the witnesses it accepts and exports
them, and the offline verifier reports which checkpoints carry a valid one. Refused
cosignatures store nothing and are recorded as refusals."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit.checkpoint import CosignatureVerifier, Cosigner, SignedNote
from audit.events import Action, Decision
from audit.export import export_log
from audit.verify import verify_export
from audit.witness import Fetch, Witness, witness_round
from hub import liaison
from tests.conftest import Account, FakeClock
from tests.integration.test_api_auth import get_token, register_client

# What each call of the journal API records, exactly (tests/integration/test_audit_trail.py
# counts these endpoints as covered).
RECORDED: dict[str, list[Action]] = {
    "api.witness.checkpoint": [Action.API_READ],
    "api.witness.consistency": [Action.API_READ],
    "api.witness.cosign": [Action.AUDIT_COSIGN],
    "api.directory_witness.directory_checkpoint": [Action.API_READ],
    "api.directory_witness.directory_consistency": [Action.API_READ],
    "api.directory_witness.directory_cosign": [Action.KEY_COSIGN],
}


def _fetch(http: FlaskClient, token: str, prefix: str = "/api/v1/journal/") -> Fetch:
    """A witness round's calls to the hub under ``prefix``, with ``token``."""

    def fetch(method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        response = http.open(
            prefix + path,
            method=method,
            data=body,
            content_type="application/json" if body is not None else None,
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.status_code, response.get_data()

    return fetch


def _api_fetch(app: Flask, clock: FakeClock, prefix: str = "/api/v1/journal/") -> Fetch:
    """:func:`_fetch` for a newly registered organisation system (each its own organisation)."""
    http = app.test_client()
    system = register_client(app, Ed25519PrivateKey.generate(), f"SPIP {uuid.uuid4().hex[:8]}")
    token = get_token(http, system, clock)
    return _fetch(http, token, prefix)


def _accept(app: Flask, cosigner: Cosigner) -> Result:
    return app.test_cli_runner().invoke(
        args=["audit", "witness", "add", cosigner.verifier().vkey()]
    )


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client folders' keystore passphrase (``maillon`` reads it from the environment)."""
    monkeypatch.setenv("MAILLON_PASSPHRASE", "une phrase de passe assez longue")


@pytest.fixture
def fetch(app: Flask, clock: FakeClock) -> Fetch:
    return _api_fetch(app, clock)


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
    app: Flask, clock: FakeClock, territory: dict[str, Account], fetch: Fetch, tmp_path: Path
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
    # The key directory's routes, the same way (once it holds a key: the empty tree's head is
    # signed on demand, never stored, so there is nothing to cosign)
    from tests.integration.test_liaison_client import _workspace

    _workspace(app, "Mission Locale de Démoville", tmp_path, "ml")
    directory = _api_fetch(app, clock, "/api/v1/annuaire/")
    for endpoint, (method, path) in {
        "api.directory_witness.directory_checkpoint": ("GET", "point-de-controle"),
        "api.directory_witness.directory_consistency": (
            "GET",
            "preuve-de-coherence?ancien=0&nouveau=1",
        ),
    }.items():
        before = log.size()
        status, _ = directory(method, path, None)
        assert status == 200
        assert [e.action for e in log.events(before, log.size())] == RECORDED[endpoint]
    Witness.init(tmp_path / "annuaire.json", liaison.directory_signer(state).verifier().vkey())
    before = log.size()
    witness_round(Witness(tmp_path / "annuaire.json", cosigner, clock=clock), directory)
    assert [e.action for e in log.events(before, log.size())] == [
        *RECORDED["api.directory_witness.directory_checkpoint"],
        *RECORDED["api.directory_witness.directory_cosign"],  # no proof from the empty tree
    ]
    endpoints = {
        r.endpoint
        for r in app.url_map.iter_rules()
        if r.endpoint.startswith(("api.witness.", "api.directory_witness."))
    }
    assert endpoints == set(RECORDED)


# -- the key directory -------------------------------------------------------------------------


def test_a_partner_witnesses_the_key_directory_and_the_journal_with_maillon(
    app: Flask, clock: FakeClock, territory: dict[str, Account], tmp_path: Path, capsys: Any
) -> None:
    from exchange.cli import main
    from tests.integration.test_liaison_client import FlaskFetcher, _workspace

    state = app.extensions["maillon"]
    fetcher = FlaskFetcher(app.test_client())
    # Given a partner's client folder (its device key registered: the directory has one entry)
    folder = _workspace(app, "Mission Locale de Démoville", tmp_path, "ml")
    assert main([*folder, "witness", "keygen", "--name", "ml.demoville.test/temoin"]) == 0
    vkey = capsys.readouterr().out.strip().splitlines()[-1]
    journal_key = state.audit_signer.verifier().vkey()
    init = ["witness", "init", "--annuaire", "--journal", "--journal-key", journal_key]
    assert main([*folder, *init]) == 0
    state.audit_log.checkpoint(state.audit_signer)
    # When the hub does not accept the witness yet, both rounds are refused and nothing kept
    assert main([*folder, "witness", "run"], fetcher=fetcher) == 1
    assert "unknown_witness" in capsys.readouterr().err
    # Then, once the operator accepted its key, a round cosigns both logs (the deployment
    # logged its browser code, as init-db does)
    assert app.test_cli_runner().invoke(args=["audit", "witness", "add", vkey]).exit_code == 0
    with state.session_factory() as session:
        liaison.publish_code(session, state)
        session.commit()
    assert main([*folder, "witness", "run"], fetcher=fetcher) == 0
    out = capsys.readouterr().out
    assert "annuaire des clés : taille 3 cosignée" in out and "journal d'audit" in out
    # And the directory's checkpoint is served with the cosignature, which verifies
    fetch = _api_fetch(app, clock, "/api/v1/annuaire/")
    _status, body = fetch("GET", "point-de-controle", None)
    note = SignedNote.parse(json.loads(body)["note"])
    assert CosignatureVerifier.from_vkey(vkey).check(note) is not None
    # And after another key is registered, the next round proves consistency from size 1
    _workspace(app, "SPIP de Démoville", tmp_path, "spip")
    assert main([*folder, "witness", "run", "--annuaire"], fetcher=fetcher) == 0
    assert "taille 4 cosignée (depuis 3)" in capsys.readouterr().out


def test_the_directory_keeps_only_cosignatures_it_can_check(
    app: Flask, clock: FakeClock, territory: dict[str, Account], tmp_path: Path
) -> None:
    from tests.integration.test_liaison_client import _workspace

    _workspace(app, "Mission Locale de Démoville", tmp_path, "ml")
    fetch = _api_fetch(app, clock, "/api/v1/annuaire/")
    state = app.extensions["maillon"]
    vkey = liaison.directory_signer(state).verifier().vkey()
    cosigner = Cosigner("dpo.demoville.test/temoin", Ed25519PrivateKey.generate())
    # A witness the hub does not accept
    Witness.init(tmp_path / "w.json", vkey)
    with pytest.raises(Exception, match="unknown_witness"):
        witness_round(Witness(tmp_path / "w.json", cosigner, clock=clock), fetch)
    # An accepted witness cosigning a checkpoint the directory never signed (another time)
    assert _accept(app, cosigner).exit_code == 0
    _status, body = fetch("GET", "point-de-controle", None)
    served = json.loads(body)["note"]
    forged = served.replace("\n\n", "\n", 1)  # not even a note
    line = cosigner.cosign(SignedNote.parse(served).text, clock()).text()
    for note, code in ((forged, "malformed_checkpoint"), (served + "x", "malformed_checkpoint")):
        posted = json.dumps({"checkpoint": note, "cosignature": line}).encode()
        _status, body = fetch("POST", "cosignatures", posted)
        assert json.loads(body)["error"] == code, body
    # A good one is kept once; a retry is answered 200, not stored twice
    posted = json.dumps({"checkpoint": served, "cosignature": line}).encode()
    assert fetch("POST", "cosignatures", posted)[0] == 201
    assert fetch("POST", "cosignatures", posted)[0] == 200
    with state.session_factory() as session:
        from exchange.server.tables import directory_cosignatures

        assert len(session.execute(select(directory_cosignatures)).all()) == 1


def test_the_witness_checks_the_browser_code_served_is_the_code_logged(
    app: Flask, clock: FakeClock, territory: dict[str, Account], tmp_path: Path, capsys: Any
) -> None:
    from exchange.cli import main
    from exchange.client import Response
    from tests.integration.test_liaison_client import FlaskFetcher, _workspace

    state = app.extensions["maillon"]
    folder = _workspace(app, "Mission Locale de Démoville", tmp_path, "ml")
    assert main([*folder, "witness", "keygen", "--name", "ml.demoville.test/temoin"]) == 0
    vkey = capsys.readouterr().out.strip().splitlines()[-1]
    assert main([*folder, "witness", "init", "--annuaire"]) == 0
    assert app.test_cli_runner().invoke(args=["audit", "witness", "add", vkey]).exit_code == 0
    fetcher = FlaskFetcher(app.test_client())
    asked: list[dict[str, str]] = []

    def watched(method: str, path: str, *, body: bytes | None, headers: Any) -> Response:
        if path.startswith("/static/"):
            asked.append(dict(headers))
        return fetcher(method, path, body=body, headers=headers)

    # A hub that never logged its browser code: nothing to compare, an alarm
    assert main([*folder, "witness", "run"], fetcher=watched) == 1
    assert "aucune empreinte de ce script" in capsys.readouterr().err
    # Given a deployment that logged its browser code (init-db does it), once only
    with state.session_factory() as session:
        assert liaison.publish_code(session, state) == ["js/echange.js", "js/fiches.js"]
        assert liaison.publish_code(session, state) == []
        session.commit()
    # When the hub serves that code, the witness says so, and tells each new release once
    assert main([*folder, "witness", "run"], fetcher=watched) == 0
    out = capsys.readouterr().out
    assert "js/echange.js conforme" in out and "js/fiches.js conforme" in out
    assert out.count("nouvelle publication") == 2
    assert main([*folder, "witness", "run"], fetcher=watched) == 0
    assert "nouvelle publication" not in capsys.readouterr().out
    # The scripts were asked for as a browser asks: no token a hub could tell a witness by
    assert asked and all(
        "Authorization" not in h and h["Sec-Fetch-Dest"] == "script" for h in asked
    )

    # When a rigged hub serves another module than the one it logged
    def rigged(method: str, path: str, *, body: bytes | None, headers: Any) -> Response:
        answer = fetcher(method, path, body=body, headers=headers)
        if path.endswith("/static/js/echange.js"):
            return Response(200, answer.body + b"\n// exfiltrate()", answer.content_type)
        return answer

    # Then the round fails and the alarm names the module
    assert main([*folder, "witness", "run"], fetcher=rigged) == 1
    err = capsys.readouterr().err
    assert "ALERTE" in err and "js/echange.js" in err and "fiches.js" not in err
