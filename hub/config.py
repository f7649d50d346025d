"""Typed, frozen configuration read from ``MAILLON_*`` environment variables.

Development defaults work out of the box: secrets are generated once into ``var/`` (never in
code). In production every secret must be given, or start-up stops with a clear message.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

Environment = Literal["development", "production", "testing"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to set, in French."""


@dataclass(frozen=True)
class Argon2Params:
    """Argon2id cost parameters (RFC 9106 second recommended option by default)."""

    time_cost: int = 3
    memory_cost: int = 65536  # KiB
    parallelism: int = 4


@dataclass(frozen=True)
class Config:
    """Everything the hub needs to start. Build it with :func:`load_config`."""

    env: Environment
    secret_key: str
    database_url: str
    audit_database_url: str
    broker_url: str
    server_key_file: Path
    ip_hash_key: bytes
    data_key: bytes
    base_url: str
    var_dir: Path
    ratelimit_storage_url: str = "memory://"
    mail_server: str = ""
    mail_port: int = 587
    mail_username: str = ""
    mail_password: str = ""
    mail_use_tls: bool = True
    mail_sender: str = "Maillon <ne-pas-repondre@maillon.invalid>"
    trusted_proxies: int = 0
    session_idle_minutes: int = 30
    fresh_login_minutes: int = 10
    lockout_threshold: int = 10
    lockout_minutes: int = 30
    invitation_hours: int = 72
    access_token_seconds: int = 300
    assertion_max_seconds: int = 300
    max_content_length: int = 2 * 1024 * 1024
    # A scanned consent form or contract: the only pages that accept more than the above.
    consent_evidence_max_bytes: int = 4 * 1024 * 1024
    ratelimit_enabled: bool = True
    audit_retention_days: int = 365
    # How long the hub keeps a relayed liaison form (ciphertext and routing) before destroying
    # it; recipients open it within that time (DESIGN §2.6).
    form_retention_days: int = 365
    # Fail fast: an audited request waits this long for a locked or stalled audit store.
    audit_write_timeout_seconds: int = 5
    # /healthz and the DPO console warn when the audit store's volume has less free space.
    audit_free_space_warn_mb: int = 1024
    # Refusals of requests nobody is logged in for (forged forms, other sites, bad tokens):
    # after this many in a minute from one client, its requests are answered 429 at once.
    anonymous_refusals_per_minute: int = 30
    # Beyond this many distinct clients refused in a minute, the others' refusals are counted
    # in one event for all of them (someone rotating addresses cannot flood the log either).
    anonymous_refusal_clients_per_minute: int = 30
    argon2: Argon2Params = field(default_factory=Argon2Params)

    @property
    def production(self) -> bool:
        """True when running with production security settings (HSTS, ``__Host-`` cookies)."""
        return self.env == "production"

    @property
    def mail_outbox(self) -> Path:
        """Where mail is written when no SMTP server is configured (development only)."""
        return self.var_dir / "outbox"

    def with_overrides(self, **changes: object) -> Config:
        """A copy with some values changed (tests, CLI)."""
        return replace(self, **changes)  # type: ignore[arg-type]


_REQUIRED_IN_PRODUCTION = {
    "MAILLON_SECRET_KEY": "la clé secrète des sessions (au moins 32 caractères aléatoires)",
    "MAILLON_DATABASE_URL": "l'URL de la base de données principale (PostgreSQL)",
    "MAILLON_AUDIT_DATABASE_URL": "l'URL de la base du journal d'audit (distincte)",
    "MAILLON_BROKER_URL": "l'URL du courtier Celery (Redis)",
    "MAILLON_SERVER_KEY_FILE": "le fichier de la clé Ed25519 du serveur (PEM)",
    "MAILLON_IP_HASH_KEY": "la clé de hachage des adresses IP (au moins 32 caractères)",
    "MAILLON_DATA_KEY": (
        "la clé de chiffrement au repos des informations des dossiers (au moins 32 caractères ;"
        " sa perte rend ces informations illisibles : sauvegardez-la à part)"
    ),
    "MAILLON_BASE_URL": "l'adresse publique du service, en https",
    "MAILLON_RATELIMIT_STORAGE_URL": "le stockage partagé des limites de débit (Redis)",
    "MAILLON_MAIL_SERVER": "le serveur SMTP d'envoi des courriels",
}


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "oui", "on"}


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} doit être un nombre entier (valeur reçue : {raw!r}).") from exc


def _dev_secrets(var_dir: Path) -> dict[str, str]:
    """Secrets for development, generated once and kept in ``var/`` with mode 0600.

    A secret added by a later version is generated and added to an existing file; the ones
    already there are never changed (the data key especially: values sealed under it would be
    lost).
    """
    path = var_dir / "dev-secrets.json"
    values: dict[str, str] = {}
    if path.exists():
        values = json.loads(path.read_text(encoding="utf-8"))
    missing = [name for name in _DEV_SECRETS if name not in values]
    if not missing:
        return values
    for name in missing:
        values[name] = secrets.token_urlsafe(48)
    var_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(values, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    return values


_DEV_SECRETS = ("secret_key", "ip_hash_key", "data_key")


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """Read the configuration from the environment.

    ``MAILLON_ENV`` selects ``development`` (default), ``testing`` or ``production``.
    Raises :class:`ConfigError` with a French message naming every missing setting.
    """
    env_map: Mapping[str, str] = os.environ if environ is None else environ
    env = env_map.get("MAILLON_ENV", "development")
    if env not in ("development", "production", "testing"):
        raise ConfigError(
            f"MAILLON_ENV doit valoir development, testing ou production (reçu : {env!r})."
        )
    var_dir = Path(env_map.get("MAILLON_VAR_DIR", str(PROJECT_ROOT / "var"))).resolve()

    if env == "production":
        missing = [name for name in _REQUIRED_IN_PRODUCTION if not env_map.get(name)]
        if missing:
            lines = "\n".join(f"  - {name} : {_REQUIRED_IN_PRODUCTION[name]}" for name in missing)
            raise ConfigError(
                "Démarrage refusé : configuration de production incomplète. "
                f"Variables manquantes :\n{lines}"
            )
        secret_key = env_map["MAILLON_SECRET_KEY"]
        ip_hash_key = env_map["MAILLON_IP_HASH_KEY"]
        data_key = env_map["MAILLON_DATA_KEY"]
        for name, value in (
            ("MAILLON_SECRET_KEY", secret_key),
            ("MAILLON_IP_HASH_KEY", ip_hash_key),
            ("MAILLON_DATA_KEY", data_key),
        ):
            if len(value) < 32:
                raise ConfigError(f"{name} est trop courte : au moins 32 caractères aléatoires.")
        if not env_map["MAILLON_BASE_URL"].startswith("https://"):
            raise ConfigError("MAILLON_BASE_URL doit commencer par https:// en production.")
        if env_map["MAILLON_DATABASE_URL"] == env_map["MAILLON_AUDIT_DATABASE_URL"]:
            raise ConfigError(
                "MAILLON_AUDIT_DATABASE_URL doit désigner une autre base que MAILLON_DATABASE_URL."
            )
    else:
        generated = _dev_secrets(var_dir)
        secret_key = env_map.get("MAILLON_SECRET_KEY") or generated["secret_key"]
        ip_hash_key = env_map.get("MAILLON_IP_HASH_KEY") or generated["ip_hash_key"]
        data_key = env_map.get("MAILLON_DATA_KEY") or generated["data_key"]

    form_retention_days = _int(env_map, "MAILLON_FORM_RETENTION_DAYS", 365)
    if not 7 <= form_retention_days <= 3660:
        raise ConfigError("MAILLON_FORM_RETENTION_DAYS doit être compris entre 7 et 3660.")
    retention_days = _int(env_map, "MAILLON_AUDIT_RETENTION_DAYS", 365)
    if not 30 <= retention_days <= 3660:
        raise ConfigError(
            "MAILLON_AUDIT_RETENTION_DAYS doit être compris entre 30 et 3660 jours "
            "(la CNIL recommande de 6 à 12 mois)."
        )
    write_timeout = _int(env_map, "MAILLON_AUDIT_WRITE_TIMEOUT_SECONDS", 5)
    if not 1 <= write_timeout <= 60:
        raise ConfigError(
            "MAILLON_AUDIT_WRITE_TIMEOUT_SECONDS doit être compris entre 1 et 60 secondes."
        )
    positive = {
        name: _int(env_map, name, default)
        for name, default in (
            ("MAILLON_ANONYMOUS_REFUSALS_PER_MINUTE", Config.anonymous_refusals_per_minute),
            (
                "MAILLON_ANONYMOUS_REFUSAL_CLIENTS_PER_MINUTE",
                Config.anonymous_refusal_clients_per_minute,
            ),
            ("MAILLON_AUDIT_FREE_SPACE_WARN_MB", Config.audit_free_space_warn_mb),
        )
    }
    for name, amount in positive.items():
        if amount < 1:
            raise ConfigError(f"{name} doit être un nombre entier positif.")
    argon2 = Argon2Params(
        time_cost=_int(env_map, "MAILLON_ARGON2_TIME_COST", Argon2Params.time_cost),
        memory_cost=_int(env_map, "MAILLON_ARGON2_MEMORY_KIB", Argon2Params.memory_cost),
        parallelism=_int(env_map, "MAILLON_ARGON2_PARALLELISM", Argon2Params.parallelism),
    )
    return Config(
        env=env,  # type: ignore[arg-type]  # checked above
        secret_key=secret_key,
        database_url=env_map.get("MAILLON_DATABASE_URL")
        or f"sqlite:///{var_dir / 'maillon.sqlite'}",
        audit_database_url=env_map.get("MAILLON_AUDIT_DATABASE_URL")
        or f"sqlite:///{var_dir / 'audit.sqlite'}",
        broker_url=env_map.get("MAILLON_BROKER_URL")
        or f"sqla+sqlite:///{var_dir / 'broker.sqlite'}",
        server_key_file=Path(
            env_map.get("MAILLON_SERVER_KEY_FILE") or str(var_dir / "server-key.pem")
        ),
        ip_hash_key=ip_hash_key.encode(),
        data_key=data_key.encode(),
        base_url=(env_map.get("MAILLON_BASE_URL") or "http://127.0.0.1:5000").rstrip("/"),
        var_dir=var_dir,
        ratelimit_storage_url=env_map.get("MAILLON_RATELIMIT_STORAGE_URL") or "memory://",
        mail_server=env_map.get("MAILLON_MAIL_SERVER", ""),
        mail_port=_int(env_map, "MAILLON_MAIL_PORT", 587),
        mail_username=env_map.get("MAILLON_MAIL_USERNAME", ""),
        mail_password=env_map.get("MAILLON_MAIL_PASSWORD", ""),
        mail_use_tls=_flag(env_map.get("MAILLON_MAIL_USE_TLS", "true")),
        mail_sender=env_map.get("MAILLON_MAIL_SENDER", Config.mail_sender),
        trusted_proxies=_int(env_map, "MAILLON_TRUSTED_PROXIES", 0),
        session_idle_minutes=_int(env_map, "MAILLON_SESSION_IDLE_MINUTES", 30),
        fresh_login_minutes=_int(env_map, "MAILLON_FRESH_LOGIN_MINUTES", 10),
        lockout_threshold=_int(env_map, "MAILLON_LOCKOUT_THRESHOLD", 10),
        lockout_minutes=_int(env_map, "MAILLON_LOCKOUT_MINUTES", 30),
        invitation_hours=_int(env_map, "MAILLON_INVITATION_HOURS", 72),
        access_token_seconds=_int(env_map, "MAILLON_ACCESS_TOKEN_SECONDS", 300),
        ratelimit_enabled=_flag(env_map.get("MAILLON_RATELIMIT_ENABLED", "true")),
        audit_retention_days=retention_days,
        form_retention_days=form_retention_days,
        audit_write_timeout_seconds=write_timeout,
        audit_free_space_warn_mb=positive["MAILLON_AUDIT_FREE_SPACE_WARN_MB"],
        anonymous_refusals_per_minute=positive["MAILLON_ANONYMOUS_REFUSALS_PER_MINUTE"],
        anonymous_refusal_clients_per_minute=positive[
            "MAILLON_ANONYMOUS_REFUSAL_CLIENTS_PER_MINUTE"
        ],
        consent_evidence_max_bytes=_int(
            env_map, "MAILLON_CONSENT_EVIDENCE_MAX_BYTES", Config.consent_evidence_max_bytes
        ),
        argon2=argon2,
    )
