"""``maillon``: the command a partner's system (or its IT staff) runs to exchange sealed forms.

Everything lives in one folder (``--dossier``, default ``$MAILLON_CLIENT_DIR`` or
``~/.maillon``)::

    config.json     the hub's address, the API client id, its private key file, the directory key
    keystore.json   this device's private keys, under a passphrase ($MAILLON_PASSPHRASE or asked)
    annuaire.json   the verified replica of the key directory

Typical use::

    maillon init --hub https://maillon.example.fr --client-id ID --client-key client.pem \\
                 --directory-key 'maillon.example.fr/cles+…'
    maillon keys create && maillon keys register --label "Serveur APPI"
    maillon send --case C-7K3Q-X9M2 --purpose suivi_parcours fiche.json
    maillon inbox && maillon open f-…
    maillon witness keygen --name dpo.example.fr/temoin     # give the printed key to the hub
    maillon witness init --annuaire --journal --journal-key 'maillon.example.fr/audit+…'
    maillon witness run                                       # e.g. from cron, every hour

Exit status: 0 done, 1 refused (by the hub or a check), 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from audit.checkpoint import Cosigner
from audit.errors import CheckpointError, WitnessError
from audit.witness import Witness, create_key, load_key, witness_round
from exchange import directory as directory_module
from exchange.client import (
    Credentials,
    Fetcher,
    HttpFetcher,
    HubClient,
    check_own_keys,
    check_served_code,
    open_received,
    plan_form,
    seal_plan,
    sender_key,
)
from exchange.directory import Directory
from exchange.envelope import SENDER_FAULTS, Attachment, parse, verify
from exchange.errors import ExchangeError, MalformedError, VerificationError
from exchange.hpke import Suite
from exchange.keys import DeviceSecrets
from exchange.keystore import Kind, lock, unlock, write_atomically

CONFIG = "config.json"
KEYSTORE = "keystore.json"
DIRECTORY = "annuaire.json"


class UsageError(Exception):
    """The command cannot run as asked (exit 2); the message says why, in French."""


@dataclass
class Workspace:
    """The client's folder and what it holds."""

    folder: Path
    fetcher: Fetcher | None = None  # tests inject the hub's test client here

    def path(self, name: str) -> Path:
        """A file of the folder."""
        return self.folder / name

    def config(self) -> dict[str, Any]:
        """The folder's configuration (``maillon init`` writes it)."""
        path = self.path(CONFIG)
        if not path.exists():
            raise UsageError(f"Aucune configuration dans {self.folder} : lancez « maillon init ».")
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def client(self, progress: bool = True) -> HubClient:
        """The hub client, authenticated with the folder's API client key."""
        config = self.config()
        key = load_pem_private_key(Path(config["client_key"]).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise UsageError("La clé du client API doit être une clé Ed25519 (PEM).")
        fetcher = self.fetcher or HttpFetcher(config["hub"])
        return HubClient(
            fetcher,
            Credentials(config["client_id"], config["hub"], key),
            progress=_progress if progress else (lambda _text: None),
        )

    def secrets(self) -> DeviceSecrets:
        """This device's keys, unlocked with the passphrase."""
        path = self.path(KEYSTORE)
        if not path.exists():
            raise UsageError("Aucune clé d'appareil : lancez « maillon keys create ».")
        return unlock(path.read_bytes(), _passphrase("MAILLON_PASSPHRASE", "Phrase de passe : "))

    def replica(self) -> tuple[Directory, list[bytes]]:
        """The saved directory replica (empty before the first sync), checked again."""
        vkey = self.config()["directory_key"]
        path = self.path(DIRECTORY)
        if not path.exists():
            return Directory.empty(vkey), []
        return directory_module.load(path, vkey)

    def synced(self, client: HubClient) -> Directory:
        """The replica brought up to date with the hub and saved (after verification only);
        refused if it gives this system a key it never registered."""
        replica, entries = self.replica()
        replica, entries = client.sync(replica, entries)
        directory_module.save(self.path(DIRECTORY), replica, entries)
        config = self.config()
        check_own_keys(replica, f"client:{config['client_id']}", config.get("own_keys", []))
        return replica

    def remember_key(self, key_id: str) -> None:
        """Note a key as this system's own, before it is published (so a crash in between
        cannot make the next sync take it for a foreign key)."""
        config = self.config()
        known = list(config.get("own_keys", []))
        if key_id not in known:
            config["own_keys"] = [*known, key_id]
            write_atomically(self.path(CONFIG), json.dumps(config, indent=1).encode())


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _passphrase(variable: str, prompt: str) -> str:
    value = os.environ.get(variable)
    if value:
        return value
    if not sys.stdin.isatty():
        raise UsageError(f"Phrase de passe absente : définissez {variable}.")
    return getpass.getpass(prompt)


def _print(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=1))


# -- commands --------------------------------------------------------------------------------


def _init(ws: Workspace, args: argparse.Namespace) -> int:
    ws.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Run again (a new address, a new client key): the keys this system registered stay its own.
    previous = ws.config() if ws.path(CONFIG).exists() else {}
    config = {
        "hub": args.hub.rstrip("/"),
        "client_id": args.client_id,
        "client_key": str(Path(args.client_key).resolve()),
        "directory_key": args.directory_key or "",
        "own_keys": list(previous.get("own_keys", [])),
    }
    if "witness_name" in previous:
        config["witness_name"] = previous["witness_name"]
    write_atomically(ws.path(CONFIG), json.dumps(config, indent=1).encode())
    if not args.directory_key:
        announced = ws.client().directory_vkey()
        if not args.trust_on_first_use:
            print(
                "Clé de l'annuaire annoncée par le hub :\n  " + announced + "\n"
                "Comparez-la avec celle que le hub publie hors ligne (courrier, réunion), puis "
                "relancez avec --directory-key.",
                file=sys.stderr,
            )
            return 1
        config["directory_key"] = announced
        write_atomically(ws.path(CONFIG), json.dumps(config, indent=1).encode())
    print(f"Dossier prêt : {ws.folder}")
    return 0


def _keys_create(ws: Workspace, args: argparse.Namespace) -> int:
    if ws.path(KEYSTORE).exists() and not args.replace:
        raise UsageError(
            "Ce dossier a déjà des clés d'appareil (--replace pour en créer d'autres)."
        )
    suite = Suite.MLKEM768_X25519 if args.post_quantum else Suite.X25519
    secrets = DeviceSecrets.generate(suite)
    passphrase = _passphrase("MAILLON_PASSPHRASE", "Nouvelle phrase de passe : ")
    write_atomically(ws.path(KEYSTORE), lock(secrets, passphrase))
    print(f"Clé d'appareil créée : {secrets.public.key_id}")
    print(f"Numéro de sécurité : {secrets.public.fingerprint}")
    return 0


def _keys_register(ws: Workspace, args: argparse.Namespace) -> int:
    secrets = ws.secrets()
    ws.remember_key(secrets.public.key_id)
    answer = ws.client().register(secrets.public, args.label)
    print(f"Clé publiée dans l'annuaire (entrée {answer['index']}) : {answer['key_id']}")
    return 0


def _keys_trust(ws: Workspace, args: argparse.Namespace) -> int:
    """Accept a key of this system registered by another of its installations (up to ten
    devices per system), after comparing its numéro de sécurité with that installation's."""
    replica, _entries = ws.replica()
    state = replica.state(args.key_id)
    config = ws.config()
    if state is None or state.owner != f"client:{config['client_id']}":
        raise UsageError("Clé absente de l'annuaire vérifié sous le nom de ce système.")
    print(f"Numéro de sécurité de {args.key_id} :\n  {state.key.fingerprint}")
    print("Comparez-le avec celui qu'affiche l'autre installation (maillon keys fingerprint).")
    if not args.yes and input("Est-ce bien le même ? [o/N] ").strip().lower() not in ("o", "oui"):
        print("Clé non acceptée.")
        return 1
    ws.remember_key(args.key_id)
    print(f"Clé acceptée comme appartenant à ce système : {args.key_id}")
    return 0


def _keys_list(ws: Workspace, _args: argparse.Namespace) -> int:
    _print(ws.client().devices())
    return 0


def _keys_revoke(ws: Workspace, args: argparse.Namespace) -> int:
    ws.client().revoke(args.key_id)
    print(f"Clé révoquée : {args.key_id}")
    return 0


def _keys_backup(ws: Workspace, args: argparse.Namespace) -> int:
    secrets = ws.secrets()
    recovery = _passphrase("MAILLON_RECOVERY_PASSPHRASE", "Phrase de passe de secours : ")
    write_atomically(Path(args.out), lock(secrets, recovery, kind=Kind.RECOVERY))
    print(f"Sauvegarde de secours écrite : {args.out} (gardez la phrase de passe à part)")
    return 0


def _keys_restore(ws: Workspace, args: argparse.Namespace) -> int:
    ws.config()  # init first: the restored key must be remembered as this system's own
    recovery = _passphrase("MAILLON_RECOVERY_PASSPHRASE", "Phrase de passe de secours : ")
    secrets = unlock(Path(args.backup).read_bytes(), recovery, kind=Kind.RECOVERY)
    passphrase = _passphrase("MAILLON_PASSPHRASE", "Nouvelle phrase de passe : ")
    ws.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ws.remember_key(secrets.public.key_id)
    write_atomically(ws.path(KEYSTORE), lock(secrets, passphrase))
    print(f"Clés restaurées : {secrets.public.key_id}")
    return 0


def _keys_fingerprint(ws: Workspace, args: argparse.Namespace) -> int:
    if args.key_id:
        replica, _entries = ws.replica()
        state = replica.state(args.key_id)
        if state is None:
            raise UsageError("Clé absente de l'annuaire vérifié (lancez « maillon sync »).")
        print(f"{state.owner} — {state.key.fingerprint}" + ("" if state.current else " (révoquée)"))
        return 0
    print(ws.secrets().public.fingerprint)
    return 0


def _sync(ws: Workspace, _args: argparse.Namespace) -> int:
    replica = ws.synced(ws.client())
    print(f"Annuaire vérifié : {replica.size} entrées.")
    return 0


def _send(ws: Workspace, args: argparse.Namespace) -> int:
    values = json.loads(Path(args.file).read_text(encoding="utf-8"))
    if not isinstance(values, dict) or not values:
        raise UsageError('Le fichier doit contenir un objet JSON {"champ": valeur, …}.')
    files = [_attachment(spec) for spec in args.joindre]
    for attachment in files:
        values.setdefault(attachment.field, "Voir la pièce jointe.")
    client = ws.client()
    secrets = ws.secrets()
    replica = ws.synced(client)
    answer = client.recipients(args.case, args.purpose, list(values))
    plan = plan_form(answer, values, replica, args.purpose, case=args.case)
    print(f"Fiche pour le dossier {plan.case}, finalité « {plan.purpose} » :")
    for owner, fields, count in plan.owners:
        # The organisation as the verified directory records it, not as the hub says.
        org = next((s.org for s in replica.devices([owner])), "?")
        print(f"  {owner} ({org}, {count} appareil·s) : {', '.join(fields)}")
    if plan.left_out:
        print("  Personne ne peut recevoir : " + ", ".join(plan.left_out))
    files = [f for f in files if f.field not in plan.left_out]
    for attachment in files:
        print(f"  Pièce jointe {attachment.name} : avec {attachment.field}")
    if not plan.views:
        print("Aucun destinataire autorisé : rien n'est envoyé.", file=sys.stderr)
        return 1
    if not args.yes and input("Envoyer ? [o/N] ").strip().lower() not in ("o", "oui", "y"):
        print("Rien n'est envoyé.")
        return 1
    me = client.call("GET", "/api/v1/moi")
    envelope = seal_plan(
        plan,
        secrets=secrets,
        sender=f"client:{me['client_id']}",
        org=me["organisation"]["id"],
        directory_note=replica.note,
        now=datetime.now(UTC),
        files=files,
    )
    sent = client.send(envelope)
    print(f"Fiche envoyée : {sent['form']} ({sent['recipients']} appareil·s).")
    return 0


def _saved_name(file_id: str, attachment: Attachment) -> str:
    """A local file name for an attachment: the file id first (unique in the form), the
    sender's name without separators nor leading dots, short enough for any file system, and
    an extension of its (checked) type whatever the sender called it."""
    extension = {"application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg"}
    stem = "".join("_" if c in "/\\" else c for c in attachment.name).lstrip(".")
    stem = stem.encode("utf-8")[:150].decode("utf-8", "ignore")
    suffix = extension[attachment.type]
    if not stem.lower().endswith((suffix, ".jpeg") if suffix == ".jpg" else suffix):
        stem += suffix
    return f"{file_id}-{stem}"


_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg",
          ".jpeg": "image/jpeg"}  # fmt: skip


def _attachment(spec: str) -> Attachment:
    """``champ=chemin``: a PDF, PNG or JPEG file supporting the field ``champ``."""
    field, _sep, name = spec.partition("=")
    path = Path(name)
    kind = _TYPES.get(path.suffix.lower())
    if not field or kind is None or not path.is_file():
        raise UsageError(f"Pièce jointe « {spec} » : champ=chemin d'un fichier PDF, PNG ou JPEG.")
    attachment = Attachment(field, path.name[:200], kind, path.read_bytes())
    try:
        attachment.check()
    except ValueError as error:
        raise UsageError(f"Pièce jointe « {path.name} » refusée : {error}.") from None
    return attachment


def _inbox(ws: Workspace, _args: argparse.Namespace) -> int:
    _print(ws.client().inbox())
    return 0


def _open(ws: Workspace, args: argparse.Namespace) -> int:
    client = ws.client()
    secrets = ws.secrets()
    replica = ws.synced(client)
    key_id = secrets.public.key_id
    data = client.fetch_form(args.form, key_id)
    if parse(data).manifest.form != args.form:
        # Another form than the one asked for: the hub's doing, never blamed on a sender.
        raise VerificationError(
            "form_mismatch", "Le hub a remis une autre fiche que celle demandée."
        )
    try:
        opened = open_received(data, secrets=secrets, replica=replica)
    except ExchangeError as error:
        if error.code in SENDER_FAULTS:
            # Signed by the sender's key, yet not what it signed for us: the DPO must see it.
            client.acknowledge(args.form, key_id, violation=error.code)
        # Anything else (a revoked or foreign key, a split view, a form not for this device)
        # is no proof against the sender and may be the hub's doing: told here, not there.
        raise
    saved = []
    # Into a folder of the form's own, before acknowledging: an unwritable file is not "opened".
    folder = Path(args.pieces) / opened.manifest.form
    for file_id, attachment in opened.files.items():
        path = folder / _saved_name(file_id, attachment)
        write_atomically(path, attachment.data)
        saved.append({"field": attachment.field, "name": attachment.name,
                      "type": attachment.type, "saved_as": str(path)})  # fmt: skip
    client.acknowledge(args.form, key_id)
    _print(
        {
            "form": opened.manifest.form,
            "case": opened.manifest.case,
            "purpose": opened.manifest.purpose,
            "sender": opened.manifest.sender.user,
            "created": opened.manifest.created.isoformat(),
            "values": opened.values,
            "files": saved,
        }
    )
    return 0


def _verify(ws: Workspace, args: argparse.Namespace) -> int:
    replica, _entries = ws.replica()
    envelope = parse(Path(args.envelope).read_bytes())
    manifest = verify(envelope, sender_key(replica, envelope.manifest))
    state = replica.state(manifest.sender.device)
    if state is not None and state.revoked is not None:
        # Accepted only as signed before a rotation, which the signer alone asserts.
        print(
            f"Fiche {manifest.form} : signature et empreintes vérifiées, mais la clé de "
            "l'expéditeur a été remplacée depuis : antériorité non prouvable."
        )
        return 0
    print(f"Fiche {manifest.form} : signature, empreintes et annuaire vérifiés.")
    return 0


# -- witness -----------------------------------------------------------------------------------

WITNESS_KEY = "witness.pem"
CODE_SEEN = "witness-code.json"  # the browser code releases this witness already reported
# The hub's two logs a witness can watch: API prefix, state file, how the log key is named.
WITNESSED = {
    "journal": ("/api/v1/journal/", "witness-journal.json", "journal d'audit"),
    "annuaire": ("/api/v1/annuaire/", "witness-annuaire.json", "annuaire des clés"),
}


def _witness_keygen(ws: Workspace, args: argparse.Namespace) -> int:
    config = ws.config()
    if ws.path(WITNESS_KEY).exists():
        raise UsageError("Ce dossier a déjà une clé de témoin.")
    try:
        cosigner = Cosigner(args.name, create_key(ws.path(WITNESS_KEY)))
    except CheckpointError as error:
        ws.path(WITNESS_KEY).unlink(missing_ok=True)
        raise UsageError(f"Nom de témoin refusé : {error}") from None
    config["witness_name"] = cosigner.name
    write_atomically(ws.path(CONFIG), json.dumps(config, indent=1).encode())
    print("Clé de témoin créée. À remettre à l'exploitant du hub (« audit witness add ») :")
    print(cosigner.verifier().vkey())
    return 0


def _witness_init(ws: Workspace, args: argparse.Namespace) -> int:
    keys = {"journal": args.journal_key, "annuaire": ws.config()["directory_key"]}
    chosen = [log for log in WITNESSED if getattr(args, log)] or ["annuaire"]
    for log in chosen:
        if not keys[log]:
            raise UsageError(
                "Indiquez la clé du journal d'audit (--journal-key), comparée hors ligne."
            )
        Witness.init(ws.path(WITNESSED[log][1]), keys[log])
        print(f"Témoin du {WITNESSED[log][2]} prêt, depuis l'arbre vide.")
    return 0


def _witness_run(ws: Workspace, args: argparse.Namespace) -> int:
    config = ws.config()
    if "witness_name" not in config:
        raise UsageError("Aucune clé de témoin : lancez « maillon witness keygen ».")
    cosigner = Cosigner(config["witness_name"], load_key(ws.path(WITNESS_KEY)))
    chosen = [log for log in WITNESSED if getattr(args, log)]
    chosen = chosen or [log for log in WITNESSED if ws.path(WITNESSED[log][1]).exists()]
    if not chosen:
        raise UsageError("Aucun journal suivi : lancez « maillon witness init ».")
    client = ws.client()
    refused = 0
    for log in chosen:
        prefix, state_file, label = WITNESSED[log]
        witness = Witness(ws.path(state_file), cosigner, clock=lambda: datetime.now(UTC))

        def fetch(method: str, path: str, body: bytes | None, prefix: str = prefix) -> Any:
            answer = client.raw(method, prefix + path, raw=body)
            return answer.status, answer.body

        try:
            result = witness_round(witness, fetch)
        except WitnessError as error:
            print(f"maillon : {label} — REFUSÉ : {error}", file=sys.stderr)
            refused += 1
            continue
        kept = "conservée" if result.stored else "déjà conservée"
        print(
            f"{label} : taille {result.checkpoint.size} cosignée (depuis {result.old_size}), "
            f"cosignature {kept} par le hub."
        )
        if log == "annuaire":
            refused += _check_code(ws, client)
    return 1 if refused else 0


# Asked as a browser loads a module script: no token, no cookie, a browser's headers — a hub
# must not be able to serve witnesses honest code and browsers another.
_AS_A_BROWSER = {
    "Accept": "*/*",
    "Sec-Fetch-Dest": "script",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Site": "same-origin",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36",
}


def _check_code(ws: Workspace, client: HubClient) -> int:
    """Compare the browser code the hub serves with the digests its directory logged; the
    number of mismatches (each an alarm). Each release seen for the first time is printed, to
    compare with the published Maillon release's digests."""

    def served(module: str) -> bytes:
        answer = client.fetch("GET", "/static/" + module, body=None, headers=_AS_A_BROWSER)
        if answer.status != 200:
            raise UsageError(f"Le hub ne sert pas {module} ({answer.status}).")
        return answer.body

    replica = ws.synced(client)
    bad = 0
    for check in check_served_code(replica, served):
        if check.matches:
            print(f"code du navigateur : {check.module} conforme à l'empreinte publiée.")
            continue
        bad += 1
        if not check.served:
            why = "un script que ce client ne connaît pas est publié dans l'annuaire"
        elif not check.logged:
            why = "aucune empreinte de ce script n'est publiée dans l'annuaire"
        else:
            why = (
                f"le script servi ({check.served[:16]}…) n'est pas celui publié "
                f"({check.logged[:16]}…)"
            )
        print(f"maillon : ALERTE — {check.module} : {why}. Prévenez le DPO.", file=sys.stderr)
    seen_path = ws.path(CODE_SEEN)
    seen = json.loads(seen_path.read_text(encoding="utf-8")) if seen_path.exists() else []
    for release in replica.releases:
        if release.sha256 not in seen:
            print(
                f"code du navigateur : nouvelle publication de {release.module} "
                f"(version {release.release}, SHA-256 {release.sha256}) — à comparer avec celle "
                "de la version de Maillon annoncée."
            )
            seen.append(release.sha256)
    write_atomically(seen_path, json.dumps(seen).encode("ascii"))
    return bad


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="maillon", description="Fiches de liaison scellées.")
    parser.add_argument(
        "--dossier",
        default=os.environ.get("MAILLON_CLIENT_DIR", str(Path.home() / ".maillon")),
        help="dossier des clés et de l'annuaire",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="configurer le dossier")
    init.add_argument("--hub", required=True)
    init.add_argument("--client-id", required=True)
    init.add_argument("--client-key", required=True, help="clé privée Ed25519 du client API (PEM)")
    init.add_argument("--directory-key", default="", help="clé de l'annuaire, comparée hors ligne")
    init.add_argument("--trust-on-first-use", action="store_true")
    init.set_defaults(run=_init)
    keys = commands.add_parser("keys", help="clés de l'appareil").add_subparsers(
        dest="keys", required=True
    )
    create = keys.add_parser("create")
    create.add_argument("--post-quantum", action="store_true", help="clé hybride ML-KEM-768")
    create.add_argument("--replace", action="store_true")
    create.set_defaults(run=_keys_create)
    register = keys.add_parser("register")
    register.add_argument("--label", default="Appareil")
    register.set_defaults(run=_keys_register)
    keys.add_parser("list").set_defaults(run=_keys_list)
    trust = keys.add_parser("trust", help="accepter une clé d'une autre installation")
    trust.add_argument("key_id")
    trust.add_argument("--yes", action="store_true")
    trust.set_defaults(run=_keys_trust)
    revoke = keys.add_parser("revoke")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_keys_revoke)
    backup = keys.add_parser("backup")
    backup.add_argument("--out", required=True)
    backup.set_defaults(run=_keys_backup)
    restore = keys.add_parser("restore")
    restore.add_argument("backup")
    restore.set_defaults(run=_keys_restore)
    fingerprint = keys.add_parser("fingerprint")
    fingerprint.add_argument("key_id", nargs="?", default="")
    fingerprint.set_defaults(run=_keys_fingerprint)
    commands.add_parser("sync", help="vérifier l'annuaire").set_defaults(run=_sync)
    send = commands.add_parser("send", help="sceller et envoyer une fiche")
    send.add_argument("--case", required=True)
    send.add_argument("--purpose", required=True)
    send.add_argument("--yes", action="store_true", help="ne pas demander de confirmation")
    send.add_argument("file", help='les valeurs : {"champ": valeur, …}')
    send.add_argument(
        "--joindre", action="append", default=[], metavar="CHAMP=CHEMIN",
        help="pièce jointe (PDF, PNG, JPEG) accompagnant le champ CHAMP ; répétable",
    )  # fmt: skip
    send.set_defaults(run=_send)
    commands.add_parser("inbox", help="fiches reçues").set_defaults(run=_inbox)
    opening = commands.add_parser("open", help="ouvrir une fiche reçue")
    opening.add_argument("form")
    opening.add_argument("--pieces", default=".", help="dossier où enregistrer les pièces jointes")
    opening.set_defaults(run=_open)
    check = commands.add_parser("verify", help="vérifier une enveloppe hors ligne")
    check.add_argument("envelope")
    check.set_defaults(run=_verify)
    witness = commands.add_parser(
        "witness", help="témoin : cosigner les points de contrôle du journal et de l'annuaire"
    ).add_subparsers(dest="witness", required=True)
    keygen = witness.add_parser("keygen", help="créer la clé de témoin")
    keygen.add_argument("--name", required=True, help="ex. dpo.demoville.fr/temoin")
    keygen.set_defaults(run=_witness_keygen)
    watch = witness.add_parser("init", help="commencer à suivre un journal")
    watch.add_argument("--journal", action="store_true", help="le journal d'audit")
    watch.add_argument("--journal-key", default="", help="clé du journal d'audit (hors ligne)")
    watch.add_argument("--annuaire", action="store_true", help="l'annuaire des clés (défaut)")
    watch.set_defaults(run=_witness_init)
    run = witness.add_parser("run", help="un tour : vérifier la cohérence et cosigner")
    run.add_argument("--journal", action="store_true")
    run.add_argument("--annuaire", action="store_true")
    run.set_defaults(run=_witness_run)
    return parser


def main(argv: Sequence[str] | None = None, *, fetcher: Fetcher | None = None) -> int:
    """Run ``maillon``; the exit status."""
    args = build_parser().parse_args(argv)
    workspace = Workspace(Path(args.dossier).expanduser(), fetcher)
    try:
        return int(args.run(workspace, args))
    except UsageError as error:
        print(f"maillon : {error}", file=sys.stderr)
        return 2
    except MalformedError as error:
        print(f"maillon : {error.code} — {error.message % error.params}", file=sys.stderr)
        return 2
    except ExchangeError as error:
        message = error.message % error.params if error.params else error.message
        print(f"maillon : refusé ({error.code}) — {message}", file=sys.stderr)
        for refusal in getattr(error, "details", {}).get("refusals", []):
            print(f"  - {json.dumps(refusal, ensure_ascii=False)}", file=sys.stderr)
        return 1
    except WitnessError as error:  # a state or key the witness cannot use
        print(f"maillon : témoin — {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"maillon : {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
