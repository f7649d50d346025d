"""The charter in the product: publication, signatures with fresh MFA, declinations, what-if,
annual review, linter command (issue 4 §3, §4, §6, §8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit.events import Action, Decision, NewEvent
from charter import default_charter_text
from hub.charters import Charters
from hub.demo import GROUP_NAME
from hub.models import CharterVersion, OperationalGroup, Organisation
from tests.conftest import Account, FakeClock, csrf_token, fresh_code, login, post_form

NEXT = (
    default_charter_text()
    .replace("version = 2", "version = 3", 1)
    .replace(
        'title = "Objet et cadre juridique"', 'title = "Objet, cadre juridique et principes"', 1
    )
)


@pytest.fixture
def group_id(app: Flask, territory: dict[str, Account]) -> str:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        group = session.scalar(select(OperationalGroup).where(OperationalGroup.name == GROUP_NAME))
        assert group is not None
        return group.public_id


def _applicable(app: Flask, org_name: str) -> int | None:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        group = session.scalar(select(OperationalGroup).where(OperationalGroup.name == GROUP_NAME))
        org = session.scalar(select(Organisation).where(Organisation.name == org_name))
        assert group is not None and org is not None
        version = Charters(session, clock=state.clock).applicable(group, org)
        return version.version if version else None


def _user_client(
    app: Flask, clock: FakeClock, territory: dict[str, Account], who: str
) -> FlaskClient:
    client = app.test_client()
    assert login(client, clock, territory[who]).status_code == 302
    return client


def _events(app: Flask, since: int) -> list[tuple[str, str]]:
    log = app.extensions["maillon"].audit_log
    return [(e.action.value, e.decision.value) for e in log.events(since, log.size())]


def test_the_demo_territory_works_under_the_default_charter_signed_by_every_partner(
    app: Flask, territory: dict[str, Account]
) -> None:
    for org in (
        "SPIP de Démoville",
        "Mission Locale de Démoville",
        "PJJ — UEMO de Démoville",
        "Ville de Démoville — CLSPD",
    ):
        assert _applicable(app, org) == 2
    # Not sitting in the group: takes no part
    assert _applicable(app, "Démoville Habitat") is None


def test_publishing_needs_the_coordinator_and_a_valid_text(
    app: Flask, clock: FakeClock, territory: dict[str, Account], group_id: str
) -> None:
    path = f"/charte/{group_id}/publier"
    agent = _user_client(app, clock, territory, "cpip")
    assert agent.get(path).status_code == 403
    coordinator = _user_client(app, clock, territory, "coordinatrice")
    # A malformed text: every problem with its line, nothing stored
    broken = '[charter]\nid = "x"\nversion = "deux"\n'
    response = post_form(coordinator, path, text=broken, publish="1")
    page = response.get_data(as_text=True).replace("&#39;", "'")
    assert response.status_code == 200 and "ligne 3" in page and "n'est pas publiée" in page
    # A valid next version: the diff is shown, then it is published and recorded
    preview = (
        post_form(coordinator, path, text=NEXT, preview="1")
        .get_data(as_text=True)
        .replace("&#39;", "'")
    )
    assert (
        "Changements par rapport à la version 2" in preview
        and "Objet, cadre juridique et principes" in preview
    )
    size = app.extensions["maillon"].audit_log.size()
    response = post_form(coordinator, path, text=NEXT, publish="1")
    assert response.status_code == 302
    assert ("charter.publish", "allow") in _events(app, size)
    # Published is not in force: nobody signed version 3 yet
    assert _applicable(app, "SPIP de Démoville") == 2
    # The same version cannot be published twice
    again = (
        post_form(coordinator, path, text=NEXT, preview="1")
        .get_data(as_text=True)
        .replace("&#39;", "'")
    )
    assert "La version doit être supérieure à la version publiée (3)" in again


def _publish_next(app: Flask) -> None:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        group = session.scalar(select(OperationalGroup).where(OperationalGroup.name == GROUP_NAME))
        assert group is not None
        Charters(session, clock=state.clock).publish(group, NEXT, by=None)
        session.commit()


def test_a_new_version_applies_to_a_partner_once_it_signs_with_fresh_mfa(
    app: Flask, clock: FakeClock, territory: dict[str, Account], group_id: str
) -> None:
    _publish_next(app)
    cpip = _user_client(app, clock, territory, "cpip")
    page = f"/charte/{group_id}/"
    assert "Signer la version 3" in cpip.get(page).get_data(as_text=True).replace("&#39;", "'")
    # An old login must be confirmed again before signing
    clock.advance(minutes=11)
    cpip.get("/")
    size = app.extensions["maillon"].audit_log.size()
    token = csrf_token(cpip, page)
    response = cpip.post(
        f"/charte/{group_id}/v3/signer",
        data={"csrf_token": token, "signatory": "Paul Probation, CPIP"},
    )
    assert response.status_code == 302 and response.location.startswith("/confirmer-identite")
    assert _applicable(app, "SPIP de Démoville") == 2
    post_form(
        cpip,
        "/confirmer-identite",
        password=territory["cpip"].password,
        code=fresh_code(clock, territory["cpip"].totp_secret),
    )
    token = csrf_token(cpip, page)
    response = cpip.post(
        f"/charte/{group_id}/v3/signer",
        data={"csrf_token": token, "signatory": "Paul Probation, CPIP"},
    )
    assert response.status_code == 302
    assert _applicable(app, "SPIP de Démoville") == 3
    assert _applicable(app, "Mission Locale de Démoville") == 2  # others keep what they signed
    assert ("charter.sign", "allow") in _events(app, size)
    listing = cpip.get(page).get_data(as_text=True).replace("&#39;", "'")
    assert "Paul Probation, CPIP" in listing and "Signer la version 3" not in listing
    # Signing twice is refused
    token = csrf_token(cpip, page)
    again = cpip.post(
        f"/charte/{group_id}/v3/signer",
        data={"csrf_token": token, "signatory": "x"},
        follow_redirects=True,
    )
    assert "déjà signé" in again.get_data(as_text=True).replace("&#39;", "'")


def test_only_representatives_of_partners_may_sign_or_decline(
    app: Flask, clock: FakeClock, territory: dict[str, Account], group_id: str
) -> None:
    outsider = _user_client(
        app, clock, territory, "logement"
    )  # Démoville Habitat, not in the group
    assert outsider.get(f"/charte/{group_id}/").status_code == 403
    assert outsider.get(f"/charte/{group_id}/refus").status_code == 403
    token = csrf_token(outsider, "/compte/mot-de-passe")
    assert (
        outsider.post(
            f"/charte/{group_id}/v2/signer", data={"csrf_token": token, "signatory": "x"}
        ).status_code
        == 403
    )
    dpo = _user_client(app, clock, territory, "dpo")
    assert dpo.get(f"/charte/{group_id}/v2").status_code == 200  # oversight may read the text


def test_a_declined_field_no_longer_passes_in_the_what_if(
    app: Flask, clock: FakeClock, territory: dict[str, Account], group_id: str
) -> None:
    cpip = _user_client(app, clock, territory, "cpip")
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        spip = session.scalar(select(Organisation).where(Organisation.name == "SPIP de Démoville"))
        assert spip is not None
        spip_id = spip.id
    query = (
        f"/charte/{group_id}/simulation?sender={spip_id}&recipient_kind=mission_locale&recipient_roles=referent"
        "&recipient_roles=group_member&recipient_member=y&purpose=suivi_parcours&meeting_day=y"
    )
    before = cpip.get(query).get_data(as_text=True).replace("&#39;", "'")
    row = re.search(
        r"<code class=\"hint\">justice\.date_sortie</code></td>\s*<td>(.*?)</td>", before, re.S
    )
    assert row and "oui" in row.group(1)
    # Bad input is refused with a clear message and changes nothing
    response = post_form(
        cpip, f"/charte/{group_id}/refus", field_glob="n.existe.pas", reason="Une raison suffisante"
    )
    assert "n'existe pas dans le catalogue" in response.get_data(as_text=True).replace("&#39;", "'")
    size = state.audit_log.size()
    response = post_form(
        cpip,
        f"/charte/{group_id}/refus",
        field_glob="justice.date_sortie",
        reason="Date communiquée directement au référent par le SPIP.",
    )
    assert response.status_code == 302
    assert ("charter.decline", "allow") in _events(app, size)
    after = cpip.get(query).get_data(as_text=True).replace("&#39;", "'")
    row = re.search(
        r"<code class=\"hint\">justice\.date_sortie</code></td>\s*<td>(.*?)</td>"
        r"\s*<td>(.*?)</td>\s*<td>(.*?)</td>",
        after,
        re.S,
    )
    # Field, passes or not, article, and a short reason naming the side that refused
    assert row and "non" in row.group(1) and row.group(2) == "art-9"
    assert row.group(3) == "Émetteur — refusé : le partenaire a choisi de ne pas partager ce champ"


def test_what_if_never_lets_a_forbidden_field_through(
    app: Flask, clock: FakeClock, territory: dict[str, Account], group_id: str
) -> None:
    cpip = _user_client(app, clock, territory, "cpip")
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        version = session.scalar(select(CharterVersion))
        spip = session.scalar(select(Organisation).where(Organisation.name == "SPIP de Démoville"))
        assert version is not None and spip is not None
        from hub.charters import parse

        forbidden = [f.id for f in parse(version.text).fields if f.secrecy.value == "interdit"]
        spip_id = spip.id
    assert forbidden
    page = (
        cpip.get(
            f"/charte/{group_id}/simulation?sender={spip_id}&recipient_kind=spip&recipient_roles=referent"
            "&recipient_roles=coordinator&recipient_roles=group_member&recipient_member=y&purpose=suivi_parcours&meeting_day=y"
        )
        .get_data(as_text=True)
        .replace("&#39;", "'")
    )
    for field_id in forbidden:
        row = re.search(
            rf"<code class=\"hint\">{re.escape(field_id)}</code></td>\s*<td>(.*?)</td>", page, re.S
        )
        assert row and "non" in row.group(1), field_id


def test_annual_review_counts_refusals_by_article(
    app: Flask, clock: FakeClock, territory: dict[str, Account], group_id: str
) -> None:
    log = app.extensions["maillon"].audit_log
    for _ in range(3):
        log.append(
            NewEvent(
                action=Action.FORM_SEND_REFUSED,
                actor_user="u1",
                actor_org="o1",
                decision=Decision.DENY,
                rule="art-6",
            )
        )
    coordinator = _user_client(app, clock, territory, "coordinatrice")
    page = coordinator.get(f"/charte/{group_id}/bilan").get_data(as_text=True).replace("&#39;", "'")
    assert re.search(
        r"<td>Envoi d'une fiche de liaison refusé</td><td>art-6</td><td>[3-9]\d*</td>", page
    )
    assert "Paul Probation" in page  # the demo signatures of version 2
    assert (
        _user_client(app, clock, territory, "cpip").get(f"/charte/{group_id}/bilan").status_code
        == 403
    )
    assert (
        _user_client(app, clock, territory, "dpo").get(f"/charte/{group_id}/bilan").status_code
        == 200
    )


def test_charter_lint_command(app: Flask, tmp_path: Path) -> None:
    good = tmp_path / "charte.toml"
    good.write_text(default_charter_text(), encoding="utf-8")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["charter", "lint", str(good)])
    assert result.exit_code == 0 and "valide" in result.output
    bad = tmp_path / "cassee.toml"
    bad.write_text(
        default_charter_text().replace('secrecy = "interdit"', 'secrecy = "top-secret"', 1),
        encoding="utf-8",
    )
    result = runner.invoke(args=["charter", "lint", str(bad)])
    assert result.exit_code == 1 and re.search(r"ligne \d+", result.output)


def test_what_if_api_answers_for_the_calling_organisation(
    app: Flask, clock: FakeClock, territory: dict[str, Account], group_id: str
) -> None:
    from tests.integration.test_api_auth import request_token
    from tests.integration.test_audit_trail import _api_client

    api = _api_client(app)  # a client of the SPIP, which signed version 2
    client = app.test_client()
    token = request_token(client, api.assertion(clock)).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "group": group_id,
        "purpose": "suivi_parcours",
        "recipient": {
            "roles": ["referent", "group_member"],
            "org_kind": "mission_locale",
            "group_member": True,
        },
    }
    response = client.post("/api/v1/charte/simulation", json=body, headers=headers)
    assert response.status_code == 200
    data = response.get_json()
    assert data["charter"]["version"] == 2 and data["charter"]["digest"].startswith("sha256:")
    by_field = {f["field"]: f for f in data["fields"]}
    assert by_field["justice.date_sortie"]["passes"] is True
    assert by_field["identite.convictions"]["passes"] is False
    assert all(f["publish"]["article"] and f["view"]["article"] for f in data["fields"])
    bad = client.post("/api/v1/charte/simulation", json={"group": group_id}, headers=headers)
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_request"
    unknown = client.post(
        "/api/v1/charte/simulation", json={**body, "purpose": "curiosite"}, headers=headers
    )
    assert unknown.status_code == 400 and unknown.get_json()["error"] == "unknown_purpose"


def test_a_partner_that_does_not_sign_the_version_in_force_keeps_the_previous_one_for_the_grace_period(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    """Charter-type v2, art. 4: thirty days after a version is published, a partner that has
    not signed it takes no part until it signs."""
    _publish_next(app)
    assert _applicable(app, "SPIP de Démoville") == 2
    clock.advance(days=30)
    assert _applicable(app, "SPIP de Démoville") == 2
    clock.advance(days=1)
    assert _applicable(app, "SPIP de Démoville") is None
    # …and it no longer sees the cases of the group
    cpip = _user_client(app, clock, territory, "cpip")
    state = app.extensions["maillon"]
    from hub.models import Case

    with state.session_factory() as session:
        reference = session.scalar(select(Case.reference).order_by(Case.id).limit(1))
    assert cpip.get(f"/dossiers/{reference}").status_code == 403


@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_the_charter_tabs_lead_only_to_pages_the_person_may_open(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        group = session.scalar(select(OperationalGroup).where(OperationalGroup.name == GROUP_NAME))
        assert group is not None
        public_id = group.public_id
    shown: dict[str, set[str]] = {}
    for name in ("cpip", "conseillere", "coordinatrice", "dpo", "admin"):
        client = app.test_client()
        assert login(client, clock, territory[name]).status_code == 302
        page = client.get(f"/charte/{public_id}/").get_data(as_text=True)
        nav = page.split('class="subnav"', 1)[1].split("</nav>", 1)[0]
        links = re.findall(r'href="([^"]+)"', nav)
        for link in links:
            assert client.get(link).status_code == 200, (name, link)
        shown[name] = {link.rsplit("/", 1)[-1] for link in links}
    assert "bilan" not in shown["cpip"] and "bilan" in shown["coordinatrice"]
    assert "bilan" in shown["dpo"] and "refus" not in shown["dpo"]
    assert "refus" in shown["cpip"]
