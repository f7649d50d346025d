"""The seed file of a load run: the simulated people's credentials, the cases, the API clients.

Written by :mod:`tests.load.seed` (in the hub's environment), read by the locust users and the
crash test (which import neither Flask nor the hub's models through it).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LoadAccount:
    """A simulated person's credentials and what their organisation may write."""

    email: str
    password: str
    totp_secret: str
    organisation: str
    kind: str
    roles: list[str]
    writable: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LoadApiClient:
    """A registered organisation system: its client id and Ed25519 private key (PEM)."""

    client_id: str
    private_key_pem: str
    organisation: str
    writable: list[str]


@dataclass(frozen=True)
class LoadTerritory:
    """What the load generator and the crash test read back (the ``--out`` file)."""

    base_url: str
    today: str
    purposes: list[str]
    cases: list[str]
    partners: list[LoadAccount]
    dpos: list[LoadAccount]
    api_clients: list[LoadApiClient]
    # The purposes a read may state for each case, at the step it has reached (the charter
    # binds purposes to steps: ``reperage`` before the group decides, ``suivi_parcours`` after).
    case_purposes: dict[str, list[str]] = field(default_factory=dict)


def write_private(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` with mode 0600 (it holds secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, ensure_ascii=False, indent=1)


def load_territory(path: Path) -> LoadTerritory:
    """Read back a ``--out`` file."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return LoadTerritory(
        base_url=raw["base_url"],
        today=raw["today"],
        purposes=list(raw["purposes"]),
        cases=list(raw["cases"]),
        partners=[LoadAccount(**a) for a in raw["partners"]],
        dpos=[LoadAccount(**a) for a in raw["dpos"]],
        api_clients=[LoadApiClient(**c) for c in raw["api_clients"]],
        case_purposes={k: list(v) for k, v in raw.get("case_purposes", {}).items()},
    )
