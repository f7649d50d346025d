"""Everything that exists is recorded (issue 3 §4–5): a walk over every route of the app checks
the events each one appends, and an unwritable audit store stops every access (fail closed)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import OKPKey
from sqlalchemy import select

from audit.events import Action, Event
from audit.store import AuditLog, make_audit_engine
from charter import default_charter_text
from hub.api_auth import public_jwk
from hub.demo import GROUP_NAME
from hub.models import ApiClient, Case, OperationalGroup, Organisation, User
from tests.conftest import Account, FakeClock, csrf_token, fresh_code, login, post_form
from tests.integration.test_api_auth import Client, request_token
from tests.integration.test_echange_web import RECORDED as ECHANGE_RECORDED
from tests.integration.test_journal_witness import RECORDED as JOURNAL_RECORDED
from tests.integration.test_liaison_api import RECORDED as LIAISON_RECORDED

# Endpoints that serve no protected data and so record nothing. The charter is the public
# rulebook every partner signs: reading it or simulating it is not an access to personal data.
SILENT = {
    "static",
    # A person's own notifications hold a kind and a pseudonymous reference, nothing more.
    "main.notifications",
    "main.healthz",
    "main.set_language",
    "main.index",
    "main.account",
    "auth.login",
    "charter.index",
    "charter.group",
    "charter.version",
    "charter.what_if",
    "api.charter_what_if",
    # The API's OpenAPI description: routes and schemas, no personal data.
    "api.openapi",
}


def _events_during(app: Flask, action: Callable[[], Any]) -> tuple[Any, list[Event]]:
    log: AuditLog = app.extensions["maillon"].audit_log
    before = log.size()
    result = action()
    return result, list(log.events(before, log.size()))


def _public_id(app: Flask, model: Any, **where: Any) -> str:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        row = session.scalar(select(model).filter_by(**where))
        assert row is not None
        return str(row.public_id)


def _followed_case(app: Flask) -> str:
    """The demo case whose référent is named (the first one opened)."""
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        return str(session.scalar(select(Case.reference).order_by(Case.id).limit(1)))


def _young_persons_consent(app: Flask, reference: str) -> str:
    """The id of the accord the young person of the followed case gave (the demo's)."""
    from consent.tables import consents_table

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        case_id = session.scalar(select(Case.id).where(Case.reference == reference))
        return str(
            session.execute(
                select(consents_table.c.id).where(
                    consents_table.c.case_id == case_id, consents_table.c.grantor == "jeune"
                )
            ).scalar_one()
        )


@pytest.fixture
def ids(app: Flask, territory: dict[str, Account]) -> dict[str, str]:
    case = _followed_case(app)
    return {
        "user": _public_id(app, User, email=territory["cpip"].email),
        "group": _public_id(app, OperationalGroup, name=GROUP_NAME),
        "org": _public_id(app, Organisation, name="Démoville Habitat"),
        "case": case,
        "consent": _young_persons_consent(app, case),
    }


def _api_client(app: Flask) -> Client:
    key = Ed25519PrivateKey.generate()
    jwk = public_jwk(key)
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        org = session.scalar(select(Organisation).where(Organisation.name == "SPIP de Démoville"))
        kid = OKPKey.import_key(jwk).thumbprint()
        client = ApiClient(
            organisation=org, name="Logiciel", public_jwk=json.dumps(jwk), key_id=kid
        )
        session.add(client)
        session.commit()
        return Client(client.client_id, key, kid)


# -- GET routes: who reads, and what must land in the log ----------------------------------

GET_ROUTES: dict[str, tuple[str, str, list[tuple[Action, str, str]]]] = {
    # endpoint: (who, path template, [(action, object_type, object_id template)])
    "admin.dashboard": ("admin", "/admin/", [(Action.ADMIN_READ, "page", "admin.dashboard")]),
    "admin.organisations": (
        "admin",
        "/admin/organisations",
        [(Action.ADMIN_READ, "page", "admin.organisations")],
    ),
    "admin.users": ("admin", "/admin/utilisateurs", [(Action.ADMIN_READ, "page", "admin.users")]),
    "admin.new_user": (
        "admin",
        "/admin/utilisateurs/nouveau",
        [(Action.ADMIN_READ, "page", "admin.new_user")],
    ),
    "admin.user_detail": (
        "admin",
        "/admin/utilisateurs/{user}",
        [(Action.ADMIN_READ, "user", "{user}")],
    ),
    "admin.groups": ("admin", "/admin/groupes", [(Action.ADMIN_READ, "page", "admin.groups")]),
    "admin.group_detail": (
        "admin",
        "/admin/groupes/{group}",
        [(Action.ADMIN_READ, "group", "{group}")],
    ),
    "auth.activate": (
        "anonymous",
        "/activation/not-a-valid-token",
        [(Action.ACCESS_REFUSED, "link", "")],
    ),
    "auth.reauthenticate": ("cpip", "/confirmer-identite", []),
    "auth.change_password": ("cpip", "/compte/mot-de-passe", []),
    "charter.publish": ("coordinatrice", "/charte/{group}/publier", []),
    "charter.decline": ("cpip", "/charte/{group}/refus", []),
    # The names of the professionals who may sit in the group: no personal data of a young person.
    "charter.composition": ("coordinatrice", "/charte/{group}/composition", []),
    "charter.review": (
        "coordinatrice",
        "/charte/{group}/bilan",
        [(Action.AUDIT_READ, "group", "{group}")],
    ),
    "charter.review_pdf": (
        "coordinatrice",
        "/charte/{group}/bilan.pdf",
        [(Action.AUDIT_READ, "group", "{group}")],
    ),
    "cases.index": ("cpip", "/dossiers/", [(Action.CASE_LIST, "page", "cases.index")]),
    "cases.new": ("cpip", "/dossiers/nouveau", []),
    "cases.show": ("conseillere", "/dossiers/{case}", [(Action.CASE_VIEW, "case", "{case}")]),
    # The form offers inputs, never the values held: no read of the case's content.
    "cases.edit": ("conseillere", "/dossiers/{case}/informations", []),
    "cases.meetings": ("coordinatrice", "/dossiers/reunions/{group}", []),
    "consent.show": (
        "cpip",
        "/dossiers/{case}/consentement",
        [(Action.CONSENT_READ, "case", "{case}")],
    ),
    # Forms offer inputs and the charter's catalogue, never a record of the case.
    "consent.information": ("conseillere", "/dossiers/{case}/consentement/information", []),
    "consent.record_consent": ("conseillere", "/dossiers/{case}/consentement/accord", []),
    "consent.adhesion": ("conseillere", "/dossiers/{case}/consentement/adhesion", []),
    "consent.withdraw": ("conseillere", "/dossiers/{case}/consentement/{consent}/retrait", []),
}


def _client_for(
    app: Flask, clock: FakeClock, territory: dict[str, Account], who: str
) -> FlaskClient:
    client = app.test_client()
    if who != "anonymous":
        login(client, clock, territory[who])
    return client


@pytest.mark.parametrize("endpoint", sorted(GET_ROUTES))
def test_get_routes_record_exactly_what_they_should(
    app: Flask, clock: FakeClock, territory: dict[str, Account], ids: dict[str, str], endpoint: str
) -> None:
    who, path, expected = GET_ROUTES[endpoint]
    client = _client_for(app, clock, territory, who)
    response, events = _events_during(app, lambda: client.get(path.format(**ids)))
    assert response.status_code in (200, 404), response.status_code
    got = [(e.action, e.object_type, e.object_id) for e in events]
    assert got == [(a, t, o.format(**ids)) for a, t, o in expected]
    for event in events:
        assert event.request_id and len(event.ip_hash) == 64
        if who != "anonymous":
            assert event.actor_user == _public_id(app, User, email=territory[who].email)


# -- POST routes -----------------------------------------------------------------------------


def _post(
    app: Flask, clock: FakeClock, territory: dict[str, Account], ids: dict[str, str], endpoint: str
) -> Any:
    admin = lambda: _client_for(app, clock, territory, "admin")  # noqa: E731
    state = app.extensions["maillon"]
    if endpoint == "auth.login":
        client = app.test_client()
        return lambda: login(client, clock, territory["cpip"])
    if endpoint == "auth.logout":
        client = _client_for(app, clock, territory, "cpip")
        # The token from a page that reads nothing (the home page lists cases: a read)
        token = csrf_token(client, "/compte")
        return lambda: client.post("/deconnexion", data={"csrf_token": token})
    if endpoint == "auth.reauthenticate":
        client = _client_for(app, clock, territory, "cpip")
        token = csrf_token(client, "/confirmer-identite")
        return lambda: client.post(
            "/confirmer-identite",
            data={
                "csrf_token": token,
                "password": territory["cpip"].password,
                "code": fresh_code(clock, territory["cpip"].totp_secret),
            },
        )
    if endpoint == "auth.change_password":
        client = _client_for(app, clock, territory, "cpip")
        token = csrf_token(client, "/compte/mot-de-passe")
        new = "un autre mot de passe solide"
        return lambda: client.post(
            "/compte/mot-de-passe",
            data={
                "csrf_token": token,
                "current": territory["cpip"].password,
                "new": new,
                "new_again": new,
            },
        )
    if endpoint == "auth.activate":
        with state.session_factory() as session:
            service = state.accounts(session)
            user = service.by_email(territory["logement"].email)
            assert user is not None
            link = f"/activation/{service.issue_link(user, purpose='mfa_reset', created_by=None)}"
            session.commit()
        client = app.test_client()
        page = client.get(link).get_data(as_text=True)
        import re

        secret = (
            re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', page).group(1).replace(" ", "")
        )  # type: ignore[union-attr]
        token = csrf_token(client, link)
        return lambda: client.post(
            link, data={"csrf_token": token, "code": fresh_code(clock, secret)}
        )
    if endpoint == "main.set_language":
        client = app.test_client()
        token = csrf_token(client, "/connexion")
        return lambda: client.post("/langue", data={"csrf_token": token, "lang": "en"})
    if endpoint == "api.token":
        api = _api_client(app)
        return lambda: request_token(app.test_client(), api.assertion(clock))
    if endpoint == "api.whoami":
        api = _api_client(app)
        client = app.test_client()
        token = request_token(client, api.assertion(clock)).get_json()["access_token"]
        return lambda: client.get("/api/v1/moi", headers={"Authorization": f"Bearer {token}"})
    if endpoint.startswith("charter."):
        return _charter_post(app, clock, territory, ids["group"], endpoint)
    if endpoint.startswith("cases.") or endpoint in ("api.case_view", "api.case_publish"):
        return _case_post(app, clock, territory, ids, endpoint)
    if endpoint.startswith(("consent.", "api.consent_")):
        return _consent_post(app, clock, territory, ids, endpoint)
    client = admin()
    user, org = ids["user"], ids["org"]
    forms: dict[str, tuple[str, str, dict[str, Any]]] = {
        "admin.organisations": (
            "/admin/organisations",
            "/admin/organisations",
            {"name": "Nouvelle", "kind": "autre"},
        ),
        "admin.organisation_status": (
            "/admin/organisations",
            f"/admin/organisations/{org}/statut",
            {"submit": "1", "vers": "inactif"},
        ),
        "admin.new_user": (
            "/admin/utilisateurs/nouveau",
            "/admin/utilisateurs/nouveau",
            {
                "name": "Nina Neuve",
                "email": f"{uuid.uuid4().hex[:8]}@habitat.example",
                "organisation": str(_id(app, Organisation, org)),
                "roles": ["agent"],
            },
        ),
        "admin.user_unlock": (
            f"/admin/utilisateurs/{user}",
            f"/admin/utilisateurs/{user}/deverrouiller",
            {"submit": "1"},
        ),
        "admin.user_reset_mfa": (
            f"/admin/utilisateurs/{user}",
            f"/admin/utilisateurs/{user}/reinitialiser-mfa",
            {"submit": "1"},
        ),
        "admin.user_status": (
            f"/admin/utilisateurs/{user}",
            f"/admin/utilisateurs/{user}/statut",
            {"submit": "1", "vers": "inactif"},
        ),
        "admin.groups": (
            "/admin/groupes",
            "/admin/groupes",
            {"name": "GO Sud", "territory": "Sud", "coordinator": "0"},
        ),
        "admin.group_detail": (
            f"/admin/groupes/{_new_group(app)}",
            f"/admin/groupes/{_new_group(app)}",
            {
                "coordinator": str(
                    _id(app, User, _public_id(app, User, email=territory["coordinatrice"].email))
                )
            },
        ),
    }
    if endpoint == "admin.user_reinvite":
        with state.session_factory() as session:
            org_row = session.scalar(select(Organisation).where(Organisation.public_id == org))
            from charter.vocabulary import Role

            fresh = state.accounts(session).create_user(
                name="Pas Active",
                email="pas.active@habitat.example",
                organisation=org_row,
                roles={Role.AGENT},
            )
            session.commit()
            page = f"/admin/utilisateurs/{fresh.public_id}"
        token = csrf_token(client, page)
        return lambda: client.post(f"{page}/invitation", data={"csrf_token": token, "submit": "1"})
    form_page, action, data = forms[endpoint]
    token = csrf_token(client, form_page)
    return lambda: client.post(action, data={"csrf_token": token, **data})


def _charter_post(
    app: Flask, clock: FakeClock, territory: dict[str, Account], group: str, endpoint: str
) -> Any:
    next_version = default_charter_text().replace("version = 2", "version = 3", 1)
    if endpoint == "charter.composition":
        client = _client_for(app, clock, territory, "coordinatrice")
        token = csrf_token(client, f"/charte/{group}/composition")
        return lambda: client.post(
            f"/charte/{group}/composition",
            data={"csrf_token": token, "members": [], "coordinator": "0"},
        )
    if endpoint == "charter.publish":
        client = _client_for(app, clock, territory, "coordinatrice")
        token = csrf_token(client, f"/charte/{group}/publier")
        return lambda: client.post(
            f"/charte/{group}/publier",
            data={"csrf_token": token, "text": next_version, "publish": "1"},
        )
    if endpoint == "charter.sign":
        coordinator = _client_for(app, clock, territory, "coordinatrice")
        post_form(coordinator, f"/charte/{group}/publier", text=next_version, publish="1")
        client = _client_for(app, clock, territory, "cpip")
        token = csrf_token(client, f"/charte/{group}/")
        return lambda: client.post(
            f"/charte/{group}/v3/signer", data={"csrf_token": token, "signatory": "P. Probation"}
        )
    client = _client_for(app, clock, territory, "cpip")
    token = csrf_token(client, f"/charte/{group}/refus")
    return lambda: client.post(
        f"/charte/{group}/refus",
        data={
            "csrf_token": token,
            "field_glob": "sante.*",
            "reason": "Pas d'échange sur la santé ici.",
        },
    )


def _case_post(
    app: Flask, clock: FakeClock, territory: dict[str, Account], ids: dict[str, str], endpoint: str
) -> Any:
    case, group = ids["case"], ids["group"]
    if endpoint in ("api.case_view", "api.case_publish"):
        api = _api_client(app)
        client = app.test_client()
        token = request_token(client, api.assertion(clock)).get_json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        if endpoint == "api.case_publish":
            return lambda: client.post(
                f"/api/v1/dossiers/{case}/informations",
                json={"fields": {"justice.date_sortie": "2030-01-01"}},
                headers=headers,
            )
        return lambda: client.get(f"/api/v1/dossiers/{case}", headers=headers)
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        referent = session.scalar(
            select(User.id).where(User.email == territory["conseillere"].email)
        )
        pjj = session.scalar(select(Organisation.id).where(Organisation.kind == "pjj"))
    forms: dict[str, tuple[str, str, str, dict[str, Any]]] = {
        "cases.new": (
            "cpip",
            "/dossiers/nouveau",
            "/dossiers/nouveau",
            {"identite.date_naissance": "2006-01-01"},
        ),
        "cases.edit": (
            "conseillere",
            f"/dossiers/{case}/informations",
            f"/dossiers/{case}/informations",
            {"sortie.type": "emploi"},
        ),
        "cases.name_referent": (
            "coordinatrice",
            f"/dossiers/{case}",
            f"/dossiers/{case}/referent",
            {"referent": str(referent)},
        ),
        "cases.add_partner": (
            "conseillere",
            f"/dossiers/{case}",
            f"/dossiers/{case}/partenaires",
            {"organisation": str(pjj)},
        ),
        "cases.meetings": (
            "coordinatrice",
            f"/dossiers/reunions/{group}",
            f"/dossiers/reunions/{group}",
            {"day": "2030-01-07"},
        ),
        "cases.move_meeting": (
            "coordinatrice",
            f"/dossiers/reunions/{group}",
            f"/dossiers/reunions/{group}/{_first_meeting(app)}",
            {"edit-day": "2030-01-08"},
        ),
        "cases.add_to_team": (
            "cpip",
            f"/dossiers/{case}",
            f"/dossiers/{case}/equipe",
            {"agent": str(_second_spip_agent(app))},
        ),
        "cases.remove_from_team": (
            "conseillere",
            f"/dossiers/{case}",
            f"/dossiers/{case}/equipe/{ids['user']}/retirer",
            {"submit": "1"},
        ),
    }
    who, form_page, action, data = forms[endpoint]
    client = _client_for(app, clock, territory, who)
    token = csrf_token(client, form_page)
    return lambda: client.post(action, data={"csrf_token": token, **data})


def _new_group(app: Flask) -> str:
    """A group with no coordinator yet (only then does an administrator name one)."""
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        group = session.scalar(select(OperationalGroup).where(OperationalGroup.name == "GO Neuf"))
        if group is None:
            group = OperationalGroup(name="GO Neuf", territory="Neuf")
            session.add(group)
            session.commit()
        return str(group.public_id)


def _first_meeting(app: Flask) -> int:
    from hub.models import GroupMeeting

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        return int(session.scalar(select(GroupMeeting.id).order_by(GroupMeeting.id).limit(1)))


def _second_spip_agent(app: Flask) -> int:
    """A SPIP agent who is not on any case team yet."""
    from charter.vocabulary import Role

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        spip = session.scalar(select(Organisation).where(Organisation.kind == "spip"))
        agent = state.accounts(session).create_user(
            name="Agathe Relais", email="relais@spip.example", organisation=spip, roles={Role.AGENT}
        )
        session.commit()
        return int(agent.id)


SCAN = b"%PDF-1.7\n% signed form\n%%EOF\n"


def _consent_post(
    app: Flask, clock: FakeClock, territory: dict[str, Account], ids: dict[str, str], endpoint: str
) -> Any:
    import io

    case, consent = ids["case"], ids["consent"]
    if endpoint.startswith("api."):
        api = _api_client(app)
        client = app.test_client()
        token = request_token(client, api.assertion(clock)).get_json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        base = f"/api/v1/dossiers/{case}/consentement"
        if endpoint == "api.consent_status":
            return lambda: client.get(base, headers=headers)
        if endpoint == "api.consent_withdraw":
            return lambda: client.post(
                f"{base}/{consent}/retrait", json={"requested_by": "jeune"}, headers=headers
            )
        return lambda: client.post(f"{base}/{consent}/recu", headers=headers)
    client = _client_for(app, clock, territory, "conseillere")
    base = f"/dossiers/{case}/consentement"
    today = clock().date().isoformat()
    forms: dict[str, tuple[str, dict[str, Any]]] = {
        "consent.information": (
            f"{base}/information",
            {"subject": "jeune", "method": "courrier", "informed_on": today},
        ),
        "consent.record_consent": (
            f"{base}/accord",
            {
                "grantor": "jeune",
                "decision": "given",
                "purposes": ["suivi_parcours"],
                "categories": ["justice"],
                "recipient_kinds": ["mission_locale"],
                "valid_from": today,
                "valid_until": (clock().date() + timedelta(days=200)).isoformat(),
                "evidence_kind": "scan",
            },
        ),
        "consent.withdraw": (f"{base}/{consent}/retrait", {"submit": "1"}),
        "consent.receipt_pdf": (f"{base}/{consent}/recu", {"langue": "fr"}),
        "consent.adhesion": (
            f"{base}/adhesion",
            {
                "signed_on": today,
                "counsellor": str(_id(app, User, ids["user"])),
                "evidence_kind": "scan",
            },
        ),
    }
    page, data = forms[endpoint]
    token = csrf_token(client, base if endpoint == "consent.receipt_pdf" else page)

    def post() -> Any:
        files = {"scan": (io.BytesIO(SCAN), "formulaire.pdf")} if "evidence_kind" in data else {}
        return client.post(page, data={"csrf_token": token, **data, **files})

    return post


def _id(app: Flask, model: Any, public_id: str) -> int:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        return int(session.scalar(select(model.id).where(model.public_id == public_id)))  # type: ignore[arg-type]


POST_ROUTES: dict[str, list[Action]] = {
    "auth.login": [Action.AUTH_LOGIN],
    "auth.logout": [Action.AUTH_LOGOUT],
    "auth.reauthenticate": [Action.AUTH_REAUTH],
    "auth.change_password": [Action.AUTH_PASSWORD_CHANGE],
    "auth.activate": [Action.AUTH_MFA_ENROL],
    "main.set_language": [],
    "api.token": [Action.API_TOKEN_ISSUE],
    "api.whoami": [Action.API_READ],
    "admin.organisations": [Action.ADMIN_ORG_CREATE],
    "admin.organisation_status": [Action.ADMIN_ORG_SUSPEND],
    "admin.new_user": [Action.ADMIN_USER_INVITE],
    "admin.user_unlock": [Action.ADMIN_USER_UNLOCK],
    "admin.user_reset_mfa": [Action.ADMIN_USER_RESET_MFA],
    "admin.user_status": [Action.ADMIN_USER_DISABLE],
    "admin.user_reinvite": [Action.ADMIN_USER_INVITE],
    "admin.groups": [Action.ADMIN_GROUP_CREATE],
    "admin.group_detail": [Action.ADMIN_GROUP_UPDATE],
    "charter.publish": [Action.CHARTER_PUBLISH],
    "charter.sign": [Action.CHARTER_SIGN],
    "charter.decline": [Action.CHARTER_DECLINE],
    "charter.composition": [Action.GROUP_MEMBERS],
    "cases.new": [Action.CASE_CREATE],
    "cases.edit": [Action.CASE_UPDATE],
    "cases.name_referent": [Action.CASE_REFERENT],
    "cases.add_partner": [Action.CASE_PARTNER],
    "cases.meetings": [Action.GROUP_MEETING],
    "api.case_view": [Action.CASE_VIEW],
    "api.case_publish": [Action.CASE_UPDATE],
    "cases.add_to_team": [Action.CASE_TEAM_ADD],
    "cases.move_meeting": [Action.GROUP_MEETING_MOVE],
    "cases.remove_from_team": [Action.CASE_TEAM_REMOVE],
    "consent.information": [Action.CONSENT_INFORMATION],
    "consent.record_consent": [Action.CONSENT_RECORD],
    "consent.withdraw": [Action.CONSENT_WITHDRAW],
    "consent.adhesion": [Action.CONSENT_ADHESION],
    "consent.receipt_pdf": [Action.CONSENT_RECEIPT],
    "api.consent_status": [Action.CONSENT_READ],
    "api.consent_withdraw": [Action.CONSENT_WITHDRAW],
    "api.consent_receipt": [Action.CONSENT_RECEIPT],
}


@pytest.mark.parametrize("endpoint", sorted(POST_ROUTES))
def test_writes_and_api_calls_record_exactly_what_they_should(
    app: Flask, clock: FakeClock, territory: dict[str, Account], ids: dict[str, str], endpoint: str
) -> None:
    act = _post(app, clock, territory, ids, endpoint)
    response, events = _events_during(app, act)
    assert response.status_code in (200, 201, 302), (endpoint, response.status_code)
    assert [e.action for e in events] == POST_ROUTES[endpoint]
    assert all(e.decision.value in ("allow", "") for e in events)


def test_every_route_of_the_app_is_covered_by_the_walk(app: Flask) -> None:
    # The liaison and journal APIs are walked call by call in their own test files.
    covered = (
        SILENT
        | set(GET_ROUTES)
        | set(POST_ROUTES)
        | set(LIAISON_RECORDED)
        | set(ECHANGE_RECORDED)
        | set(JOURNAL_RECORDED)
    )
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    # The DPO console is walked in test_dpo.py (every page read records audit.read).
    missing = sorted(e for e in endpoints - covered if not e.startswith("dpo."))
    assert missing == [], f"routes with no recording expectation: {missing}"


# -- refusals ----------------------------------------------------------------------------------


def test_refusals_are_recorded(app: Flask, clock: FakeClock, territory: dict[str, Account]) -> None:
    cpip = _client_for(app, clock, territory, "cpip")
    _, events = _events_during(app, lambda: cpip.get("/admin/utilisateurs"))
    assert [(e.action, e.object_id, e.decision.value) for e in events] == [
        (Action.ACCESS_REFUSED, "admin.users", "deny")
    ]
    _, events = _events_during(app, lambda: cpip.post("/deconnexion"))  # no CSRF token
    assert [(e.action, e.purpose) for e in events] == [(Action.ACCESS_REFUSED, "csrf")]
    _, events = _events_during(
        app, lambda: login(app.test_client(), clock, territory["cpip"], code="000000")
    )
    assert [(e.action, e.rule, e.decision.value) for e in events] == [
        (Action.AUTH_LOGIN_REFUSED, "bad_code", "deny")
    ]
    # Refusals nobody answers for are recorded once per client and minute, then counted
    # (hub.refusals; tests/integration/test_audit_flooding.py): a new minute for this one
    clock.advance(minutes=1)
    _, events = _events_during(app, lambda: app.test_client().get("/api/v1/moi"))
    assert [(e.action, e.rule) for e in events] == [(Action.ACCESS_REFUSED, "missing_token")]


def test_unknown_accounts_leave_no_trace_of_the_typed_email(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    ghost = Account("fantome@nulle-part.example", "x" * 12, territory["cpip"].totp_secret, [], "")
    _, events = _events_during(app, lambda: login(app.test_client(), clock, ghost))
    (event,) = events
    assert (
        event.action == Action.AUTH_LOGIN_REFUSED
        and event.object_id == ""
        and event.rule == "unknown_user"
    )
    assert b"fantome" not in event.canonical()


@pytest.mark.config(ratelimit_enabled=False)
def test_lockout_is_recorded(app: Flask, clock: FakeClock, territory: dict[str, Account]) -> None:
    for _ in range(9):
        login(app.test_client(), clock, territory["cpip"], code="000000")
    _, events = _events_during(
        app, lambda: login(app.test_client(), clock, territory["cpip"], code="000000")
    )
    # The lockout has its own event; the refusal itself is counted with the account's others
    # of the minute (hub.refusals)
    assert [e.action for e in events] == [Action.AUTH_LOCKOUT]


# -- fail closed -------------------------------------------------------------------------------


def _break_audit_store(app: Flask, tmp_path: Path, how: str) -> None:
    state = app.extensions["maillon"]
    if how == "read-only":
        # A copy of the log opened read-only: reads work, appends fail.
        path = tmp_path / "audit-ro.sqlite"
        good = AuditLog(make_audit_engine(f"sqlite:///{path}"), clock=state.clock)
        good.create_schema()
        good.engine.dispose()
        url = f"sqlite:///file:{path}?mode=ro&uri=true"
    else:
        url = f"sqlite:///{tmp_path}/missing/directory/audit.sqlite"
    state.audit_log = AuditLog(make_audit_engine(url), clock=state.clock)


@pytest.mark.parametrize("how", ["read-only", "down"])
def test_an_unwritable_audit_store_stops_logins_and_changes_nothing(
    app: Flask, clock: FakeClock, territory: dict[str, Account], tmp_path: Path, how: str
) -> None:
    _break_audit_store(app, tmp_path, how)
    client = app.test_client()
    response = login(client, clock, territory["cpip"])
    assert response.status_code == 503
    assert client.get("/").status_code == 302  # no session was opened
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        user = session.scalar(select(User).where(User.email == territory["cpip"].email))
        assert user is not None and user.last_login_at is None and user.totp_last_step is None


def test_an_unwritable_audit_store_stops_reads_and_writes(
    app: Flask, clock: FakeClock, territory: dict[str, Account], tmp_path: Path
) -> None:
    admin = _client_for(app, clock, territory, "admin")
    token = csrf_token(admin, "/admin/organisations")
    _break_audit_store(app, tmp_path, "read-only")
    page = admin.get("/admin/utilisateurs")
    assert page.status_code == 503
    assert "Paul Probation" not in page.get_data(as_text=True)  # nothing served
    created = admin.post(
        "/admin/organisations", data={"csrf_token": token, "name": "Fantôme", "kind": "autre"}
    )
    assert created.status_code == 503
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        assert session.scalar(select(Organisation).where(Organisation.name == "Fantôme")) is None
    api = _api_client(app)
    response = request_token(app.test_client(), api.assertion(clock))
    assert response.status_code == 503 and response.get_json()["error"] == "unavailable"
    assert "access_token" not in response.get_json()
