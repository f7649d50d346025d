"""Configuration: development works out of the box; production refuses to start incomplete."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hub.config import ConfigError, load_config

PRODUCTION = {
    "MAILLON_ENV": "production",
    "MAILLON_SECRET_KEY": "s" * 40,
    "MAILLON_DATABASE_URL": "postgresql+psycopg://maillon@db/maillon",
    "MAILLON_AUDIT_DATABASE_URL": "postgresql+psycopg://maillon_audit@db/maillon_audit",
    "MAILLON_BROKER_URL": "redis://127.0.0.1:6379/0",
    "MAILLON_SERVER_KEY_FILE": "/etc/maillon/server-key.pem",
    "MAILLON_IP_HASH_KEY": "i" * 40,
    "MAILLON_DATA_KEY": "d" * 40,
    "MAILLON_BASE_URL": "https://maillon.example",
    "MAILLON_RATELIMIT_STORAGE_URL": "redis://127.0.0.1:6379/1",
    "MAILLON_MAIL_SERVER": "smtp.example",
}


def test_development_defaults_work_and_secrets_are_generated_once(tmp_path: Path) -> None:
    env = {"MAILLON_VAR_DIR": str(tmp_path)}
    first = load_config(env)
    second = load_config(env)
    assert first.env == "development"
    assert first.database_url == f"sqlite:///{tmp_path / 'maillon.sqlite'}"
    assert first.audit_database_url != first.database_url
    assert first.broker_url.startswith("sqla+sqlite:///")
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32
    mode = stat.S_IMODE((tmp_path / "dev-secrets.json").stat().st_mode)
    assert mode == 0o600


def test_an_older_dev_secrets_file_gains_the_new_secrets_and_keeps_its_own(
    tmp_path: Path,
) -> None:
    # Given a file written before the data key existed
    (tmp_path / "dev-secrets.json").write_text('{"secret_key": "k1", "ip_hash_key": "i1"}')
    # When the configuration is loaded twice
    first = load_config({"MAILLON_VAR_DIR": str(tmp_path)})
    second = load_config({"MAILLON_VAR_DIR": str(tmp_path)})
    # Then the old secrets are kept and the new one is generated once
    assert first.secret_key == "k1" and first.ip_hash_key == b"i1"
    assert len(first.data_key) >= 32 and first.data_key == second.data_key
    assert stat.S_IMODE((tmp_path / "dev-secrets.json").stat().st_mode) == 0o600


def test_production_with_everything_set_loads() -> None:
    config = load_config(PRODUCTION)
    assert config.production and config.base_url == "https://maillon.example"


@pytest.mark.parametrize("missing", sorted(PRODUCTION.keys() - {"MAILLON_ENV"}))
def test_production_refuses_to_start_without_a_setting(missing: str) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    with pytest.raises(ConfigError) as error:
        load_config(env)
    assert missing in str(error.value) and "Démarrage refusé" in str(error.value)


def test_production_refuses_short_secrets_plain_http_and_a_shared_audit_database() -> None:
    with pytest.raises(ConfigError, match="trop courte"):
        load_config({**PRODUCTION, "MAILLON_SECRET_KEY": "short"})
    with pytest.raises(ConfigError, match="https"):
        load_config({**PRODUCTION, "MAILLON_BASE_URL": "http://maillon.example"})
    with pytest.raises(ConfigError, match="autre base"):
        load_config(
            {**PRODUCTION, "MAILLON_AUDIT_DATABASE_URL": PRODUCTION["MAILLON_DATABASE_URL"]}
        )


def test_bad_values_are_reported_in_french() -> None:
    with pytest.raises(ConfigError, match="nombre entier"):
        load_config({**PRODUCTION, "MAILLON_LOCKOUT_THRESHOLD": "dix"})
    with pytest.raises(ConfigError, match="MAILLON_ENV"):
        load_config({"MAILLON_ENV": "staging"})


def test_production_needs_an_existing_server_key(tmp_path: Path) -> None:
    from hub import create_app

    env = {
        **PRODUCTION,
        "MAILLON_SERVER_KEY_FILE": str(tmp_path / "absent.pem"),
        "MAILLON_DATABASE_URL": f"sqlite:///{tmp_path}/m.sqlite",
        "MAILLON_AUDIT_DATABASE_URL": f"sqlite:///{tmp_path}/a.sqlite",
    }
    with pytest.raises(ConfigError, match="Clé du serveur introuvable"):
        create_app(load_config(env))
