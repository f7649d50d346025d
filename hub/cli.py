"""Command-line interface: ``flask --app hub COMMAND`` (or the ``maillon`` script).

Administrators bootstrap and manage the territory from here as from the web UI; both go through
the same services in :mod:`hub.accounts`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn, TypeVar

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import Select, select
from sqlalchemy.orm import Session
from werkzeug.serving import run_simple

from audit.checkpoint import CosignatureVerifier
from audit.errors import AuditError, CheckpointError, WitnessRegistryError
from audit.events import Action
from audit.export import export_log
from charter import CharterError, has_errors, lint, load_charter
from charter.vocabulary import OVERSIGHT_ROLES, OrgKind, Role
from exchange.errors import ExchangeError
from hub import assets, liaison, migrate
from hub.api_auth import ClientKeyError, parse_public_jwk
from hub.charters import Charters
from hub.demo import DemoAct, accounts_as_json, seed_demo
from hub.democode import demo_code
from hub.i18n import MessageError
from hub.models import ApiClient, GroupMembership, OperationalGroup, Organisation, User
from hub.recording import record
from hub.state import HubState
from hub.tasks import prune_audit_log, sign_checkpoint_if_grown

T = TypeVar("T")

# Acts from the command line have no logged-in person: they are recorded as the operator's.
CLI_ACTOR = ("cli", "")


def _record_cli(
    action: Action,
    object_type: str,
    object_id: str,
    *,
    charter_version: str = "",
    purpose: str = "",
) -> None:
    """Record an act done from the command line (fail closed like the web: no event, no act)."""
    record(
        action,
        object_type=object_type,
        object_id=object_id,
        charter_version=charter_version,
        purpose=purpose,
        actor=CLI_ACTOR,
    )


def _state() -> HubState:
    hub_state: HubState = current_app.extensions["maillon"]
    return hub_state


def _fail(error: MessageError | str) -> NoReturn:
    raise click.ClickException(str(error))


def _one(session: Session, statement: Select[T], missing: str) -> T:
    """The single row ``statement`` selects, or a clear CLI error saying what is missing."""
    row = session.scalar(statement)
    if row is None:
        _fail(missing)
    return row


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or migrate the databases (main store and audit store)."""
    hub_state = _state()
    hub_state.config.var_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(hub_state.engine)
    hub_state.audit_log.create_schema()
    click.echo(f"Base principale à la révision {migrate.current_revision(hub_state.engine)}.")
    with hub_state.session_factory() as session:
        published = liaison.publish_code(session, hub_state)
        session.commit()
    for script in published:
        click.echo(f"Annuaire des clés : empreinte de {script} publiée ({assets.release()}).")


def _previous_credentials(path: Path) -> dict[str, tuple[str, str]]:
    """What a previous ``demo --out PATH`` gave out, by e-mail (empty if unreadable): running
    ``make run`` again keeps the passwords and TOTP secrets people already use."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            str(a["email"]): (str(a["password"]), str(a["totp_secret"]))
            for a in data["accounts"]
            if a.get("password") and a.get("totp_secret")
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


@click.command("demo")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Fichier JSON où écrire les comptes de démonstration (secrets en clair).",
)
@with_appcontext
def demo(out: Path) -> None:
    """Seed the demo territory and write its accounts to OUT (development and tests only)."""
    hub_state = _state()
    if hub_state.config.production:
        _fail("La démonstration est interdite en production.")
    acts: list[DemoAct] = []
    with hub_state.session_factory() as session:
        created = seed_demo(
            session,
            hub_state.accounts(session),
            now=hub_state.clock(),
            vault=hub_state.vault,
            keep=_previous_credentials(out),
            acts=acts,
        )
        session.commit()
        # Recorded as the pages record them, each under its person: the log and the annual
        # review show the demo's signatures and cases like anyone's.
        for act in acts:
            record(
                act.action,
                object_type=act.object_type,
                object_id=act.object_id,
                purpose=act.purpose,
                rule=act.rule,
                charter_version=act.charter_version,
                actor=(act.actor.public_id, act.actor.organisation.public_id),
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(
            {"base_url": hub_state.config.base_url, "accounts": accounts_as_json(created)},
            handle,
            ensure_ascii=False,
            indent=2,
        )
    click.echo(f"Territoire de démonstration prêt : {len(created)} comptes écrits dans {out}.")
    for account in created:
        click.echo(
            f"  {account.email:<40} mot de passe {account.password}  "
            f"TOTP {account.totp_secret}  ({', '.join(account.roles)})"
        )
    click.echo("Code TOTP du moment : flask --app hub demo-code ADRESSE")


# -- organisations -------------------------------------------------------------------------


@click.group("org")
def org_group() -> None:
    """Partner organisations."""


@org_group.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice([k.value for k in OrgKind]), required=True)
@with_appcontext
def org_create(name: str, kind: str) -> None:
    """Create an organisation."""
    hub_state = _state()
    with hub_state.session_factory() as session:
        try:
            org = hub_state.accounts(session).create_organisation(name, OrgKind(kind))
        except MessageError as error:
            _fail(error)
        _record_cli(Action.ADMIN_ORG_CREATE, "organisation", org.public_id)
        session.commit()
        click.echo(f"Organisation créée : {org.public_id}")


@org_group.command("list")
@with_appcontext
def org_list() -> None:
    """List organisations."""
    with _state().session_factory() as session:
        for org in session.scalars(select(Organisation).order_by(Organisation.name)):
            status = "active" if org.active else "suspendue"
            click.echo(f"{org.public_id}  {org.kind.value:<24} {status:<10} {org.name}")


# -- users ---------------------------------------------------------------------------------


def _user(hub_state: HubState, session: Session, email: str) -> User:
    user = hub_state.accounts(session).by_email(email)
    if user is None:
        raise click.ClickException("Aucun compte avec cette adresse.")
    return user


@click.group("user")
def user_group() -> None:
    """User accounts."""


@user_group.command("invite")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--org", "org_name", required=True, help="Nom exact de l'organisation.")
@click.option(
    "--role", "roles", multiple=True, required=True, type=click.Choice([r.value for r in Role])
)
@with_appcontext
def user_invite(name: str, email: str, org_name: str, roles: tuple[str, ...]) -> None:
    """Create a user and print the one-time activation link (to hand over securely)."""
    hub_state = _state()
    with hub_state.session_factory() as session:
        org = _one(
            session,
            select(Organisation).where(Organisation.name == org_name),
            "Organisation inconnue.",
        )
        service = hub_state.accounts(session)
        try:
            user = service.create_user(
                name=name, email=email, organisation=org, roles={Role(r) for r in roles}
            )
        except MessageError as error:
            _fail(error)
        token = service.issue_link(user, purpose="invite", created_by=None)
        _record_cli(Action.ADMIN_USER_INVITE, "user", user.public_id)
        session.commit()
    click.echo(
        f"Lien d'activation (usage unique, expire dans {hub_state.config.invitation_hours} h) :"
    )
    click.echo(f"{hub_state.config.base_url}/activation/{token}")


@user_group.command("unlock")
@click.argument("email")
@with_appcontext
def user_unlock(email: str) -> None:
    """Lift a lockout."""
    hub_state = _state()
    with hub_state.session_factory() as session:
        user = _user(hub_state, session, email)
        hub_state.accounts(session).unlock(user)
        _record_cli(Action.ADMIN_USER_UNLOCK, "user", user.public_id)
        session.commit()
    click.echo("Compte déverrouillé.")


@user_group.command("reset-mfa")
@click.argument("email")
@with_appcontext
def user_reset_mfa(email: str) -> None:
    """Reset the second factor and print a re-enrolment link."""
    hub_state = _state()
    with hub_state.session_factory() as session:
        service = hub_state.accounts(session)
        user = _user(hub_state, session, email)
        invitation = service.reset_mfa(user, by=None)
        token = service.mint_token(invitation)
        _record_cli(Action.ADMIN_USER_RESET_MFA, "user", user.public_id)
        session.commit()
    click.echo(f"{hub_state.config.base_url}/activation/{token}")


def _set_active(email: str, active: bool) -> None:
    hub_state = _state()
    with hub_state.session_factory() as session:
        user = _user(hub_state, session, email)
        hub_state.accounts(session).set_active(user, active)
        action = Action.ADMIN_USER_ENABLE if active else Action.ADMIN_USER_DISABLE
        _record_cli(action, "user", user.public_id)
        if not active:  # the directory stops vouching for the person's devices at once
            for key_id in liaison.revoke_devices_of(session, hub_state, users=[user]):
                _record_cli(Action.KEY_REVOKE, "device", key_id)
        session.commit()
    click.echo("Compte réactivé." if active else "Compte désactivé.")


@user_group.command("disable")
@click.argument("email")
@with_appcontext
def user_disable(email: str) -> None:
    """Disable an account; every session ends at once."""
    _set_active(email, False)


@user_group.command("enable")
@click.argument("email")
@with_appcontext
def user_enable(email: str) -> None:
    """Re-enable an account."""
    _set_active(email, True)


# -- groups --------------------------------------------------------------------------------


@click.group("group")
def group_group() -> None:
    """Operational groups."""


@group_group.command("create")
@click.argument("name")
@click.option("--territory", required=True)
@click.option("--coordinator", "coordinator_email", default=None)
@with_appcontext
def group_create(name: str, territory: str, coordinator_email: str | None) -> None:
    """Create an operational group, optionally with its coordinator."""
    hub_state = _state()
    with hub_state.session_factory() as session:
        group = OperationalGroup(name=name.strip(), territory=territory.strip())
        if coordinator_email:
            coordinator = _user(hub_state, session, coordinator_email)
            group.coordinator = coordinator
            group.memberships.append(GroupMembership(user=coordinator))
        session.add(group)
        session.flush()
        _record_cli(Action.ADMIN_GROUP_CREATE, "group", group.public_id)
        session.commit()
        click.echo(f"Groupe créé : {group.public_id}")


@group_group.command("add-member")
@click.argument("group_name")
@click.argument("email")
@with_appcontext
def group_add_member(group_name: str, email: str) -> None:
    """Add a user to a group."""
    hub_state = _state()
    with hub_state.session_factory() as session:
        group = _one(
            session,
            select(OperationalGroup).where(OperationalGroup.name == group_name),
            "Groupe inconnu.",
        )
        user = _user(hub_state, session, email)
        if group.coordinator_id is not None:
            # Setting a group up only: once it has a coordinator, its composition is theirs.
            raise click.ClickException(
                "Le groupe a un coordinateur : c'est lui qui décide de sa composition "
                "(page « Composition du groupe »)."
            )
        if user.roles & OVERSIGHT_ROLES:
            raise click.ClickException(
                "Un administrateur ou le délégué à la protection des données ne siège dans "
                "aucun groupe."
            )
        if all(m.user_id != user.id for m in group.memberships):
            group.memberships.append(GroupMembership(user=user))
        _record_cli(Action.ADMIN_GROUP_UPDATE, "group", group.public_id)
        session.commit()
    click.echo("Membre ajouté.")


# -- API clients and keys ------------------------------------------------------------------


@click.group("api-client")
def api_client_group() -> None:
    """API clients of organisation systems."""


@api_client_group.command("register")
@click.option("--org", "org_name", required=True)
@click.option("--name", required=True)
@click.option(
    "--jwk",
    "jwk_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help=(
        "Clé publique du client au format JWK (JSON) : Ed25519 (OKP), P-256 (EC) "
        "ou RSA de 3072 bits au moins."
    ),
)
@with_appcontext
def api_client_register(org_name: str, name: str, jwk_file: Path) -> None:
    """Register a client's public key; prints the client_id.

    The key's type fixes the algorithms its assertions may use (Ed25519/EdDSA, ES256 or PS256).
    """
    hub_state = _state()
    try:
        key = parse_public_jwk(jwk_file.read_bytes())
    except ClientKeyError as error:
        _fail(error)
    with hub_state.session_factory() as session:
        org = _one(
            session,
            select(Organisation).where(Organisation.name == org_name),
            "Organisation inconnue.",
        )
        client = ApiClient(organisation=org, name=name, public_jwk=key.to_json(), key_id=key.key_id)
        session.add(client)
        session.flush()
        _record_cli(Action.ADMIN_API_CLIENT_REGISTER, "api_client", client.client_id)
        session.commit()
        click.echo(client.client_id)


@click.command("directory-key")
@with_appcontext
def directory_key() -> None:
    """Print the key directory's verifier key.

    Hand it to each partner out of band (letter, meeting): their client pins it with
    ``maillon init --directory-key`` and then trusts no directory head signed by another key.
    """
    click.echo(liaison.directory_signer(_state()).verifier().vkey())


@click.group("device")
def device_group() -> None:
    """Device keys of the key directory (people's browsers, organisations' systems)."""


@device_group.command("revoke")
@click.argument("key_id")
@with_appcontext
def device_revoke(key_id: str) -> None:
    """Revoke the device key KEY_ID as an administrator (a lost laptop, a stolen server key):
    a key.revoke entry of the directory, recorded; senders stop sealing to it at their next
    sync and its signatures are refused on forms sealed after it."""
    hub_state = _state()
    with hub_state.session_factory() as session:
        try:
            liaison.devices(session, hub_state).revoke(key_id, by=None, reason="admin")
        except ExchangeError as error:
            _fail(error.message % error.params if error.params else error.message)
        # Recorded before the revocation is committed: no event, no revocation.
        _record_cli(Action.KEY_REVOKE, "device", key_id)
        session.commit()
    click.echo(f"Clé révoquée : {key_id}")


@api_client_group.command("disable")
@click.argument("client_id")
@with_appcontext
def api_client_disable(client_id: str) -> None:
    """Disable a client: its tokens are refused at once."""
    with _state().session_factory() as session:
        client = _one(
            session, select(ApiClient).where(ApiClient.client_id == client_id), "Client inconnu."
        )
        client.active = False
        _record_cli(Action.ADMIN_API_CLIENT_DISABLE, "api_client", client.client_id)
        for key_id in liaison.revoke_devices_of(session, _state(), clients=[client]):
            _record_cli(Action.KEY_REVOKE, "device", key_id)
        session.commit()
    click.echo("Client désactivé.")


# -- charter -------------------------------------------------------------------------------


@click.group("charter")
def charter_group() -> None:
    """Charters of the operational groups."""


@charter_group.command("lint")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def charter_lint(file: Path) -> None:
    """Check a charter file: every problem with its line; exit 1 on any error."""
    try:
        charter = load_charter(file.read_text(encoding="utf-8"), source=str(file))
    except CharterError as error:
        for problem in error.problems:
            click.echo(f"{file}:{problem}")
        raise SystemExit(1) from error
    findings = lint(charter)
    for finding in findings:
        click.echo(f"{file}:{finding}")
    if has_errors(findings):
        raise SystemExit(1)
    click.echo(f"{file} : charte « {charter.id} » version {charter.version} valide.")


@charter_group.command("publish")
@click.argument("group_name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def charter_publish(group_name: str, file: Path) -> None:
    """Publish FILE as the group's next charter version (partners then sign it)."""
    hub_state = _state()
    with hub_state.session_factory() as session:
        group = _one(
            session,
            select(OperationalGroup).where(OperationalGroup.name == group_name),
            "Groupe inconnu.",
        )
        service = Charters(session, clock=hub_state.clock)
        preview = service.preview(group, file.read_text(encoding="utf-8"))
        for problem in preview.problems:
            click.echo(f"{file}:{problem}")
        for finding in preview.findings:
            click.echo(f"{file}:{finding}")
        if not preview.publishable:
            _fail("Charte non publiée.")
        version = service.publish(group, file.read_text(encoding="utf-8"), by=None)
        _record_cli(
            Action.CHARTER_PUBLISH,
            "charter",
            f"{group.public_id}:v{version.version}",
            charter_version=str(version.version),
        )
        session.commit()
        click.echo(f"Version {version.version} publiée ({version.digest}).")


# -- audit log -----------------------------------------------------------------------------


@click.group("audit")
def audit_group() -> None:
    """The audit log: checkpoints, export for the offline verifier, retention."""


@audit_group.command("checkpoint")
@with_appcontext
def audit_checkpoint() -> None:
    """Sign a checkpoint now (the beat task does it every minute while events arrive)."""
    note = sign_checkpoint_if_grown()
    click.echo(note if note else "Aucun nouvel événement depuis le dernier point de contrôle.")


@audit_group.command("export")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True)
@with_appcontext
def audit_export(out: Path) -> None:
    """Export events, checkpoints and the public key for ``python -m audit.verify OUT``."""
    hub_state = _state()
    if out.exists() and any(out.iterdir()):
        _fail("Le dossier de destination n'est pas vide.")
    _record_cli(Action.AUDIT_EXPORT, "audit_log", "", purpose="cli")
    sign_checkpoint_if_grown()  # so the export ends on a signed size
    summary = export_log(hub_state.audit_log, out, verifier=hub_state.audit_signer.verifier())
    click.echo(f"Journal exporté dans {out} ({summary.size} événements).")
    vkey = hub_state.audit_signer.verifier().vkey()
    # The keys to pin are those the DPO received from the log's operator and from each
    # witness; the hub's own copies are printed for convenience.
    witnesses = "".join(f" --witness-key '{w.vkey()}'" for w in hub_state.audit_log.witnesses())
    click.echo(f"Vérifier : python -m audit.verify {out} --key '{vkey}'{witnesses}")


@audit_group.group("witness")
def audit_witness() -> None:
    """Witnesses whose cosignatures the hub accepts and keeps (registry in the audit store)."""


def _witness_key(vkey: str) -> CosignatureVerifier:
    try:
        return CosignatureVerifier.from_vkey(vkey)
    except CheckpointError as error:
        _fail(f"Clé de témoin refusée ({error}) : attendu nom+identifiant+base64, type 0x04.")


def _change_witnesses(vkey: str, *, accept: bool) -> CosignatureVerifier:
    """Record the change, then make it (fail closed): a typo or a duplicate records nothing."""
    log = _state().audit_log
    witness = _witness_key(vkey)
    accepted = {w.vkey() for w in log.witnesses()}
    if accept and witness.vkey() in accepted:
        _fail("Ce témoin est déjà accepté.")
    if not accept and witness.vkey() not in accepted:
        _fail("Ce témoin n'est pas accepté.")
    action = Action.ADMIN_WITNESS_ADD if accept else Action.ADMIN_WITNESS_REMOVE
    _record_cli(action, "audit_witness", witness.key_id.hex())
    try:
        return log.add_witness(vkey) if accept else log.remove_witness(vkey)
    except WitnessRegistryError as error:
        _fail(f"Registre des témoins inchangé : {error}")
    except AuditError as error:
        _fail(f"Journal d'audit indisponible : {error}")


@audit_witness.command("add")
@click.argument("vkey")
@with_appcontext
def audit_witness_add(vkey: str) -> None:
    """Accept the cosignatures of the witness key VKEY (``python -m audit.witness keygen``).

    Take the key from the witness itself (the partner or the DPO), never from the hub.
    """
    witness = _change_witnesses(vkey, accept=True)
    click.echo(f"Témoin accepté : {witness.name} ({witness.key_id.hex()}).")


@audit_witness.command("remove")
@click.argument("vkey")
@with_appcontext
def audit_witness_remove(vkey: str) -> None:
    """Stop accepting the witness key VKEY (its cosignatures already kept stay exported)."""
    witness = _change_witnesses(vkey, accept=False)
    click.echo(f"Témoin retiré : {witness.name} ({witness.key_id.hex()}).")


@audit_witness.command("list")
@with_appcontext
def audit_witness_list() -> None:
    """List the accepted witness keys, one vkey a line."""
    witnesses = _state().audit_log.witnesses()
    for witness in witnesses:
        click.echo(witness.vkey())
    if not witnesses:
        click.echo("Aucun témoin accepté.", err=True)


@audit_group.command("prune")
@with_appcontext
def audit_prune() -> None:
    """Apply the retention period now (the beat task does it daily)."""
    cut = prune_audit_log.run()
    click.echo(f"Événements conservés à partir du numéro {cut}." if cut else "Rien à supprimer.")


# -- embedded runtime ----------------------------------------------------------------------


@click.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
@with_appcontext
def serve(host: str, port: int) -> None:
    """Serve the hub with a real Celery worker and beat (embedded mode). Ctrl-C stops all."""
    hub_state = _state()
    celery = [sys.executable, "-m", "celery", "-A", "hub.worker"]
    children = [
        subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            [
                *celery,
                "worker",
                "--pool=threads",
                "--concurrency=2",
                "-Q",
                "maillon",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ]
        ),
        subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            [
                *celery,
                "beat",
                "--loglevel=INFO",
                f"--schedule={hub_state.config.var_dir / 'celerybeat-schedule'}",
            ]
        ),
    ]
    click.echo(f"Maillon : http://{host}:{port}/  (Ctrl-C pour tout arrêter)")
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    # Not app.run(): Flask ignores it inside a `flask` command. run_simple serves for real.
    # Ctrl-C and SIGTERM both stop everything, even when started from a shell that had set
    # SIGINT to "ignore" (background jobs of non-interactive shells inherit that).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        click.echo("Maillon est arrêté.")


def register(app: Flask) -> None:
    """Attach the commands to ``app.cli``."""
    for command in (
        init_db,
        demo,
        demo_code,
        org_group,
        user_group,
        group_group,
        api_client_group,
        directory_key,
        device_group,
        charter_group,
        audit_group,
        serve,
    ):
        app.cli.add_command(command)


def main() -> None:
    """The ``maillon-hub`` console script: ``flask --app hub`` under another name."""
    from hub import create_app  # noqa: PLC0415

    FlaskGroup(create_app=create_app)(prog_name="maillon-hub")
