"""``flask --app hub demo-code ADRESSE``: the current TOTP code of a demo account, at once.

A Flask *plugin* command (entry point ``flask.commands``): Flask finds it without building the
application, so it answers without loading the database, the audit log, the blueprints or the
password hasher — the whole point of a command typed before each demo login. It reads only the
configuration (for the ``var/`` directory and to refuse production) and the accounts file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from hub.config import ConfigError, load_config


@click.command("demo-code")
@click.argument("email")
@click.option(
    "--accounts",
    "accounts_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Fichier écrit par « demo --out » (défaut : var/demo-accounts.json).",
)
def demo_code(email: str, accounts_file: Path | None) -> None:
    """Print the current TOTP code of a demo account (development only)."""
    from hub import totp  # noqa: PLC0415 - only when the command runs (pyotp, qrcode)

    try:
        config = load_config()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    if config.production:
        raise click.ClickException("Commande interdite en production.")
    path = accounts_file or config.var_dir / "demo-accounts.json"
    if not path.exists():
        raise click.ClickException(
            f"{path} n'existe pas : lancez d'abord « make run » (ou « flask --app hub demo »)."
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    for account in data["accounts"]:
        if account["email"] == email.strip().lower():
            click.echo(totp.code_at(account["totp_secret"], datetime.now(UTC)))
            return
    raise click.ClickException("Compte de démonstration inconnu.")
