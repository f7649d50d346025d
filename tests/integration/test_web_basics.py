"""Security headers, CSP nonces, CSRF, French first, error pages, health check."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from hub import create_app
from tests.conftest import Account, FakeClock, login, make_config

PAGES = [
    "/",
    "/compte",
    "/admin/",
    "/admin/organisations",
    "/admin/utilisateurs",
    "/admin/groupes",
    "/admin/utilisateurs/nouveau",
]


def test_every_page_sends_strict_security_headers(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    login(client, clock, territory["admin"])
    nonces = set()
    for path in ["/connexion", *PAGES]:
        response = client.get(path)
        assert response.status_code in (200, 302), path
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert (
            "frame-ancestors 'none'" in csp
            and "object-src 'none'" in csp
            and "base-uri 'none'" in csp
        )
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce
        nonces.add(nonce.group(1))
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
    assert len(nonces) == len(PAGES) + 1  # a fresh nonce per response


def test_pages_carry_no_inline_script_or_style(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    login(client, clock, territory["admin"])
    for path in ["/connexion", *PAGES]:
        html = client.get(path).get_data(as_text=True)
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, f"inline script on {path}"
        assert "<style" not in html and " style=" not in html, path
        assert re.search(r' on[a-z]+="', html) is None, f"inline handler on {path}"


def test_production_adds_hsts_and_host_prefixed_secure_cookie(tmp_path, sqlite_template) -> None:  # type: ignore[no-untyped-def]
    import shutil

    var = tmp_path / "var"
    var.mkdir()
    shutil.copy(sqlite_template, var / "maillon.sqlite")
    from hub.keys import load_server_key

    load_server_key(var / "server-key.pem", create=True)
    config = make_config(var, env="production", base_url="https://maillon.example")
    app = create_app(config)
    client = app.test_client()
    response = client.get("/connexion", base_url="https://maillon.example")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=63072000")
    cookie = response.headers.get("Set-Cookie", "")
    assert cookie.startswith("__Host-maillon=")
    assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie


def test_a_form_posted_without_csrf_token_is_refused_and_changes_nothing(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account], app: Flask
) -> None:
    login(client, clock, territory["admin"])
    response = client.post(
        "/admin/organisations", data={"name": "Organisation pirate", "kind": "autre"}
    )
    assert response.status_code == 400
    assert "Le formulaire a expiré" in response.get_data(as_text=True)
    assert "Organisation pirate" not in client.get("/admin/organisations").get_data(as_text=True)


def test_logout_without_csrf_token_is_refused(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    login(client, clock, territory["cpip"])
    assert client.post("/deconnexion").status_code == 400
    assert client.get("/").status_code == 200


def test_french_by_default_and_english_on_request(client: FlaskClient) -> None:
    page = client.get("/connexion").get_data(as_text=True)
    assert '<html lang="fr">' in page and "Connexion à Maillon" in page
    english = client.get("/connexion", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(
        as_text=True
    )
    assert '<html lang="en">' in english and "Sign in to Maillon" in english
    french_first = client.get("/connexion", headers={"Accept-Language": "de-DE"}).get_data(
        as_text=True
    )
    assert '<html lang="fr">' in french_first


def test_language_choice_is_kept_in_the_session(client: FlaskClient) -> None:
    from tests.conftest import csrf_token

    token = csrf_token(client, "/connexion")
    client.post("/langue", data={"csrf_token": token, "lang": "en", "next": "/connexion"})
    assert "Sign in to Maillon" in client.get("/connexion").get_data(as_text=True)


def test_error_pages_are_french_and_accessible(
    client: FlaskClient, clock: FakeClock, territory: dict[str, Account]
) -> None:
    login(client, clock, territory["cpip"])
    response = client.get("/cette-page-n-existe-pas")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "<h1>Page introuvable</h1>" in html and 'href="#contenu"' in html
    response = client.get("/admin/")
    assert response.status_code == 403 and "Accès refusé" in response.get_data(as_text=True)


def test_anonymous_people_are_sent_to_login(client: FlaskClient) -> None:
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 302 and response.location.startswith("/connexion"), path


def test_api_errors_are_json_with_a_stable_code(client: FlaskClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code in (401, 404)
    body = response.get_json()
    assert set(body) == {"error", "message"}


def test_oversized_upload_is_refused(client: FlaskClient) -> None:
    response = client.post("/connexion", data={"email": "x" * (3 * 1024 * 1024)})
    assert response.status_code == 413


@pytest.mark.config(audit_free_space_warn_mb=1)
def test_healthz_reports_each_component(client: FlaskClient, db_backend: str) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "checks": {
            "database": "ok",
            "audit": "ok",
            "broker": "ok",
            # The hub sees the embedded store's volume, not a PostgreSQL server's disk.
            "audit_space": "ok" if db_backend == "sqlite" else "unknown",
        },
    }


def test_healthz_is_503_when_a_component_is_down(tmp_path, sqlite_template) -> None:  # type: ignore[no-untyped-def]
    import shutil

    var = tmp_path / "var"
    var.mkdir()
    shutil.copy(sqlite_template, var / "maillon.sqlite")
    config = make_config(
        var,
        broker_url="redis://127.0.0.1:1/0",
        audit_database_url=f"sqlite:///{tmp_path}/missing/dir/audit.sqlite",
    )
    app = create_app(config)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"] == {
        "database": "ok",
        "audit": "down",
        "broker": "down",
        "audit_space": "unknown",
    }


def test_a_cross_site_post_is_refused_even_with_a_token(client: FlaskClient) -> None:
    from tests.conftest import csrf_token

    token = csrf_token(client, "/connexion")
    data = {"csrf_token": token, "email": "a@b.example", "password": "x", "code": "1"}
    assert (
        client.post("/connexion", data=data, headers={"Sec-Fetch-Site": "cross-site"}).status_code
        == 403
    )
    assert (
        client.post("/connexion", data=data, headers={"Sec-Fetch-Site": "same-origin"}).status_code
        == 200
    )
