"""The server's Ed25519 signing key (API access tokens, audit checkpoints)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hub.config import ConfigError


def load_server_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    """Load the PEM key at ``path``; create it (mode 0600) when ``create`` and it is missing."""
    if not path.exists():
        if not create:
            raise ConfigError(
                f"Clé du serveur introuvable : {path}. Créez-la avec "
                "« python -m hub.keys FICHIER » (voir deploy/README.md)."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError(f"La clé du serveur {path} doit être une clé Ed25519.")
    return loaded


def main(argv: list[str] | None = None) -> int:
    """``python -m hub.keys FILE``: create the server key file; never overwrites one.

    Standalone on purpose: in production the app cannot start before this key exists.
    """
    parser = argparse.ArgumentParser(description="Crée la clé Ed25519 du serveur (mode 0600).")
    parser.add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.file.exists():
        print(f"Le fichier existe déjà, il n'est pas écrasé : {args.file}", file=sys.stderr)
        return 1
    load_server_key(args.file, create=True)
    print(f"Clé créée : {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
