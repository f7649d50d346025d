"""Cases: need-to-know views of what the hub holds (issue 4 §5), charter-gated writes,
encryption at rest, and the decision with its articles in every audit event."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit.events import Action, Event
from audit.store import AuditLog
from hub.models import Case, CaseField, CasePartner, Organisation
from tests.conftest import Account, FakeClock, csrf_token, login, post_form

CHARTER = "charte-type-clspd-jeunes-justice:2"


def _cases(app: Flask) -> dict[str, Case]:
    """The demo's three cases: followed (référent named), signalled, minor (PJJ)."""
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        rows = list(session.scalars(select(Case).order_by(Case.id)))
        session.expunge_all()
    return dict(zip(("followed", "signalled", "minor"), rows, strict=True))


@pytest.fixture
def refs(app: Flask, territory: dict[str, Account]) -> dict[str, str]:
    return {name: case.reference for name, case in _cases(app).items()}


def _as(app: Flask, clock: FakeClock, account: Account) -> FlaskClient:
    client = app.test_client()
    assert login(client, clock, account).status_code == 302
    return client


def _events(app: Flask, before: int) -> list[Event]:
    log: AuditLog = app.extensions["maillon"].audit_log
    return list(log.events(before, log.size()))


def _size(app: Flask) -> int:
    return int(app.extensions["maillon"].audit_log.size())


def _stored(app: Flask, reference: str) -> dict[str, CaseField]:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        case = session.scalar(select(Case).where(Case.reference == reference))
        assert case is not None
        rows = session.scalars(select(CaseField).where(CaseField.case_id == case.id))
        result = {row.field_id: row for row in rows}
        session.expunge_all()
        return result


def _day(clock: FakeClock, days: int) -> str:
    return (clock().date() + timedelta(days=days)).isoformat()


# -- the access matrix ---------------------------------------------------------------------

# who, case, purpose → hub-tier fields shown (the demo's values exist for all of these)
MATRIX: list[tuple[str, str, str, set[str]]] = [
    # The référent (Mission Locale) centralises the path: dates, référent, entry.
    (
        "conseillere",
        "followed",
        "suivi_parcours",
        {
            "identite.date_naissance",
            "justice.date_sortie",
            "justice.date_fin_mesure",
            "parcours.referent",
            "parcours.date_entree",
            "sortie.type",
            "sortie.date",
        },
    ),
    # The SPIP agent of a partner organisation follows the path, not the identity.
    (
        "cpip",
        "followed",
        "suivi_parcours",
        {"parcours.referent", "parcours.date_entree", "sortie.type", "sortie.date"},
    ),
    # The coordinator follows progress without the detail of the situation.
    (
        "coordinatrice",
        "followed",
        "suivi_parcours",
        {"parcours.referent", "parcours.date_entree", "sortie.type", "sortie.date"},
    ),
    # A group member whose organisation does not follow the case: nothing outside repérage…
    ("educateur", "followed", "suivi_parcours", set()),
    # …and around a meeting (the demo has one in two days), the monthly review's fields.
    (
        "educateur",
        "followed",
        "revue_mensuelle",
        {
            "justice.date_sortie",
            "justice.date_fin_mesure",
            "parcours.referent",
            "parcours.date_entree",
            "sortie.type",
            "sortie.date",
        },
    ),
]


@pytest.mark.parametrize(("who", "case", "purpose", "shown"), MATRIX)
def test_each_recipient_sees_exactly_what_the_charter_grants_and_it_is_recorded(
    app: Flask,
    clock: FakeClock,
    territory: dict[str, Account],
    refs: dict[str, str],
    who: str,
    case: str,
    purpose: str,
    shown: set[str],
) -> None:
    # Given a person with a part in the case
    client = _as(app, clock, territory[who])
    before = _size(app)
    # When they open it for a purpose
    page = client.get(f"/dossiers/{refs[case]}?finalite={purpose}")
    # Then the page holds the granted fields, and the refused values are not sent at all
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    birth_shown = "identite.date_naissance" in shown
    assert ("12/05/2005" in html) is birth_shown
    sortie = date.fromisoformat(_day(clock, 95)).strftime("%d/%m/%Y")
    assert (sortie in html) is ("justice.date_sortie" in shown)
    assert ("Mina Conseil" in html) is ("parcours.referent" in shown)
    # And the decision, its articles and the charter version are in the log
    (event,) = _events(app, before)
    assert (event.action, event.object_type, event.object_id) == (
        Action.CASE_VIEW,
        "case",
        refs[case],
    )
    assert event.purpose == purpose and event.charter_version == CHARTER
    assert event.decision.value == ("allow" if shown else "deny")
    assert event.rule and all(a.startswith("art-") for a in event.rule.split("/"))


def test_the_api_view_lists_granted_values_and_refusals_without_values(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    from tests.integration.test_api_auth import request_token
    from tests.integration.test_audit_trail import _api_client

    api = _api_client(app)  # the SPIP's system: its organisation follows the case
    http = app.test_client()
    token = request_token(http, api.assertion(clock)).get_json()["access_token"]
    before = _size(app)
    response = http.get(
        f"/api/v1/dossiers/{refs['followed']}?finalite=suivi_parcours",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    body = response.get_json()
    granted = {f["field"]: f for f in body["fields"]}
    assert set(granted) == {
        "parcours.referent",
        "parcours.date_entree",
        "sortie.type",
        "sortie.date",
    }
    assert granted["parcours.referent"]["value"].startswith("Mina Conseil")
    assert granted["sortie.type"]["value"] is None  # granted, not recorded yet
    refused = {r["field"]: r for r in body["refused"]}
    assert refused["identite.date_naissance"] == {
        "field": "identite.date_naissance",
        "code": "no_rule",
        "article": "art-3",
    }
    assert "2005-05-12" not in response.get_data(as_text=True)
    (event,) = _events(app, before)
    assert event.action == Action.CASE_VIEW and event.actor_user == f"client:{api.client_id}"
    # A case its organisation does not follow: refused, recorded
    before = _size(app)
    denied = http.get(
        f"/api/v1/dossiers/{refs['minor']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert denied.status_code == 403 and denied.get_json()["error"] == "not_involved"
    (event,) = _events(app, before)
    assert event.decision.value == "deny" and event.rule == "art-3"


@pytest.mark.parametrize(
    ("who", "rule"),
    [
        ("dpo", "art-3"),  # the DPO never reads content
        ("admin", "art-3"),  # nor does the administrator
        # Their organisations signed no charter of this group: there is no article to cite
        ("logement", "no_charter_signed"),
        ("educatrice-rue", "no_charter_signed"),
    ],
)
def test_people_without_a_part_in_the_case_are_refused_and_it_is_recorded(
    app: Flask,
    clock: FakeClock,
    territory: dict[str, Account],
    refs: dict[str, str],
    who: str,
    rule: str,
) -> None:
    client = _as(app, clock, territory[who])
    before = _size(app)
    page = client.get(f"/dossiers/{refs['followed']}?finalite=suivi_parcours")
    assert page.status_code == 403
    assert "Mina Conseil" not in page.get_data(as_text=True)
    (event,) = _events(app, before)
    assert (event.action, event.decision.value, event.rule) == (Action.CASE_VIEW, "deny", rule)
    # The list shows none of the cases either
    listing = client.get("/dossiers/").get_data(as_text=True)
    assert all(ref not in listing for ref in refs.values())


def test_the_list_shows_the_cases_a_person_follows(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    conseillere = _as(app, clock, territory["conseillere"]).get("/dossiers/").get_data(as_text=True)
    # She sits in the group, so she sees its three cases; as référent of one only.
    assert all(ref in conseillere for ref in refs.values())
    search = _as(app, clock, territory["cpip"]).get(f"/dossiers/?q={refs['minor'][:6]}")
    assert refs["minor"] in search.get_data(as_text=True)


def test_monthly_review_rules_apply_only_around_a_meeting(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    # Ten days later the meeting (in 2 days) is past its window and the next is 20 days away.
    clock.advance(days=10)
    client = _as(app, clock, territory["educateur"])
    before = _size(app)
    html = client.get(f"/dossiers/{refs['followed']}?finalite=revue_mensuelle").get_data(
        as_text=True
    )
    assert "Mina Conseil" not in html
    assert "permise seulement autour d" in html  # the refusal explains itself
    (event,) = _events(app, before)
    assert event.decision.value == "deny"


def test_a_purpose_that_does_not_fit_the_cases_step_is_refused_and_recorded(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    # The followed young man entered the programme long ago: his liaison form is not examined
    # for entry again, so a group member cannot state that purpose to see its fields
    client = _as(app, clock, territory["cpip"])
    before = _size(app)
    page = client.get(f"/dossiers/{refs['followed']}?finalite=reperage")
    assert page.status_code == 403
    assert "12/05/2005" not in page.get_data(as_text=True)
    (event,) = _events(app, before)
    assert (event.action, event.purpose, event.decision.value, event.rule) == (
        Action.CASE_VIEW,
        "reperage",
        "deny",
        "purpose_not_for_step",
    )
    # The page offers only the purposes that fit the step
    offered = client.get(f"/dossiers/{refs['followed']}").get_data(as_text=True)
    assert 'value="reperage"' not in offered and 'value="suivi_parcours"' in offered
    # While a young person is only signalled, examining the liaison form is the purpose
    signalled = client.get(f"/dossiers/{refs['signalled']}?finalite=reperage")
    assert signalled.status_code == 200


def test_an_unknown_purpose_is_a_bad_request(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    client = _as(app, clock, territory["conseillere"])
    assert client.get(f"/dossiers/{refs['followed']}?finalite=controle").status_code == 400


# -- writing -------------------------------------------------------------------------------


def _post(client: FlaskClient, path: str, **data: Any) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(client, path), **data})


def test_signalling_a_young_person_opens_a_case_with_sealed_values(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    # Given a SPIP agent signalling a young person: before any accord only the date of birth
    # may be recorded (it decides whose accord is needed), sealed at rest
    client = _as(app, clock, territory["cpip"])
    before = _size(app)
    response = _post(client, "/dossiers/nouveau", **{"identite.date_naissance": "2007-04-03"})
    assert response.status_code == 302
    reference = response.headers["Location"].rsplit("/", 1)[-1]
    (event,) = _events(app, before)
    assert (event.action, event.object_id, event.charter_version) == (
        Action.CASE_CREATE,
        reference,
        CHARTER,
    )
    stored = _stored(app, reference)
    assert set(stored) == {"identite.date_naissance"}
    assert b"2007-04-03" not in stored["identite.date_naissance"].ciphertext
    # And nobody sees it until the young person agrees (fail closed)
    page = client.get(f"/dossiers/{reference}?finalite=reperage").get_data(as_text=True)
    assert "03/04/2007" not in page
    assert "aucun accord de la personne en vigueur" in page


@pytest.mark.parametrize("sent", [{}, {"identite.date_naissance": "   "}])
def test_an_empty_signalling_form_opens_no_blank_case(
    app: Flask, clock: FakeClock, territory: dict[str, Account], sent: dict[str, str]
) -> None:
    client = _as(app, clock, territory["cpip"])
    before = _size(app)
    response = _post(client, "/dossiers/nouveau", **sent)
    assert response.status_code == 400
    assert "renseignez au moins une information" in response.get_data(as_text=True)
    (event,) = _events(app, before)
    assert (event.action, event.decision.value) == (Action.CASE_CREATE, "deny")
    with app.extensions["maillon"].session_factory() as session:
        assert session.scalar(select(Case.id).order_by(Case.id.desc()).limit(1)) == 3


def test_signalling_with_what_rests_on_accord_is_refused_before_any_consent(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    client = _as(app, clock, territory["cpip"])
    before = _size(app)
    response = _post(client, "/dossiers/nouveau", **{"justice.date_sortie": _day(clock, 40)})
    assert response.status_code == 400
    assert "art-5" in response.get_data(as_text=True)
    (event,) = _events(app, before)
    assert (event.action, event.decision.value, event.rule) == (
        Action.CASE_CREATE,
        "deny",
        "art-5",
    )
    with app.extensions["maillon"].session_factory() as session:
        assert session.scalar(select(Case.id).order_by(Case.id.desc()).limit(1)) == 3


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        # The commune may not publish judicial information (no publish rule for it).
        ("justice.date_sortie", "2027-01-01", "aucune règle de la charte ne l"),
        # Identity travels only in sealed liaison forms.
        ("identite.nom", "Dupont", "fiche de liaison"),
        # Never exchanged, whatever a rule says.
        ("identite.convictions", "x", "interdit"),
        # Unknown to the catalogue.
        ("justice.casier", "x", "absent du catalogue"),
        # Chosen from a list, not typed: an exit type, the path's référent.
        ("sortie.type", "CDI chez un boulanger", "se choisit dans la liste"),
        ("parcours.referent", "Quelqu'un de tapé", "se choisit dans la liste"),
    ],
)
def test_a_refused_field_is_named_and_nothing_is_stored(
    app: Flask,
    clock: FakeClock,
    territory: dict[str, Account],
    refs: dict[str, str],
    field: str,
    value: str,
    says: str,
) -> None:
    client = _as(app, clock, territory["coordinatrice"])
    path = f"/dossiers/{refs['followed']}/informations"
    stored_before = {k: v.ciphertext for k, v in _stored(app, refs["followed"]).items()}
    before = _size(app)
    response = _post(client, path, **{"sortie.type": "emploi", field: value})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Rien n" in html and says in html
    assert {k: v.ciphertext for k, v in _stored(app, refs["followed"]).items()} == stored_before
    (event,) = _events(app, before)
    assert (event.action, event.decision.value) == (Action.CASE_UPDATE, "deny")


def test_a_malformed_date_is_refused_in_french_and_changes_nothing(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    client = _as(app, clock, territory["cpip"])
    stored_before = _stored(app, refs["followed"])["justice.date_sortie"].ciphertext
    response = _post(
        client, f"/dossiers/{refs['followed']}/informations", **{"justice.date_sortie": "demain"}
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "JJ/MM/AAAA" in html
    # The field in error is the one highlighted, and said to be so
    assert re.search(r'<div class="field field--error">\s*<label for="justice.date_sortie">', html)
    assert html.count('aria-invalid="true"') == 1
    assert _stored(app, refs["followed"])["justice.date_sortie"].ciphertext == stored_before


def test_a_day_is_typed_as_people_write_it_in_france(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    client = _as(app, clock, territory["cpip"])
    response = _post(
        client,
        f"/dossiers/{refs['followed']}/informations",
        **{"justice.date_sortie": "15/01/2027"},
    )
    assert response.status_code == 302
    state = app.extensions["maillon"]
    sealed = _stored(app, refs["followed"])["justice.date_sortie"].ciphertext
    with state.session_factory() as session:
        case = session.scalar(select(Case).where(Case.reference == refs["followed"]))
        assert case is not None
        opened = state.vault.open(case.wrapped_key, case.reference, "justice.date_sortie", sealed)
        public_id = case.group.public_id
    assert opened == "2027-01-15"  # stored in one form whatever was typed
    # Meetings too (a day field of a form): JJ/MM/AAAA accepted, nonsense refused in French
    coordinator = _as(app, clock, territory["coordinatrice"])
    page = f"/dossiers/reunions/{public_id}"
    day = (clock().date() + timedelta(days=40)).strftime("%d/%m/%Y")
    assert post_form(coordinator, page, day=day).status_code == 302
    refused = post_form(coordinator, page, day="32/13/2027").get_data(as_text=True)
    assert "Saisissez une date au format JJ/MM/AAAA." in refused
    assert "Not a valid" not in refused


def test_a_partner_updates_what_it_may_publish(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    client = _as(app, clock, territory["conseillere"])
    before = _size(app)
    response = _post(
        client,
        f"/dossiers/{refs['followed']}/informations",
        **{"sortie.type": "emploi", "sortie.date": _day(clock, 120)},
    )
    assert response.status_code == 302
    (event,) = _events(app, before)
    assert (event.action, event.decision.value, event.rule) == (
        Action.CASE_UPDATE,
        "allow",
        "art-8",
    )
    html = client.get(f"/dossiers/{refs['followed']}?finalite=suivi_parcours").get_data(
        as_text=True
    )
    assert "emploi" in html
    assert "— sortie du dispositif —" in html  # recording the exit: the path reaches its last step


def test_a_person_without_a_part_cannot_write(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    # Given the landlord's agent with a valid session and CSRF token
    client = _as(app, clock, territory["logement"])
    token = csrf_token(client, "/dossiers/")
    stored_before = {k: v.ciphertext for k, v in _stored(app, refs["followed"]).items()}
    before = _size(app)
    # When they post values to a case they take no part in
    response = client.post(
        f"/dossiers/{refs['followed']}/informations",
        data={"csrf_token": token, "logement.situation": "x", "sortie.type": "emploi"},
    )
    # Then it is refused, recorded, and nothing changed
    assert response.status_code == 403
    (event,) = _events(app, before)
    assert (event.action, event.decision.value) == (Action.ACCESS_REFUSED, "deny")
    assert {k: v.ciphertext for k, v in _stored(app, refs["followed"]).items()} == stored_before


def test_the_coordinator_names_the_referent_whose_organisation_then_follows_the_case(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        from hub.models import User

        mina = session.scalar(select(User).where(User.email == territory["conseillere"].email))
        assert mina is not None
        mina_id, ml_id = mina.id, mina.organisation_id
    coordinator = _as(app, clock, territory["coordinatrice"])
    case_page = f"/dossiers/{refs['signalled']}"
    token = csrf_token(coordinator, case_page)
    before = _size(app)
    response = coordinator.post(
        f"{case_page}/referent", data={"csrf_token": token, "referent": str(mina_id)}
    )
    assert response.status_code == 302
    assert [e.action for e in _events(app, before)] == [Action.CASE_REFERENT]
    with state.session_factory() as session:
        case = session.scalar(select(Case).where(Case.reference == refs["signalled"]))
        assert case is not None and case.referent_id == mina_id and case.status == "suivi"
        assert session.get(CasePartner, (case.id, ml_id)) is not None
    # Now the référent sees the case as référent
    html = _as(app, clock, territory["conseillere"]).get(f"{case_page}?finalite=suivi_parcours")
    assert "Mina Conseil" in html.get_data(as_text=True)
    # Only the coordinator may do this
    cpip = _as(app, clock, territory["cpip"])
    token = csrf_token(cpip, case_page)
    refused = cpip.post(f"{case_page}/referent", data={"csrf_token": token, "referent": "1"})
    assert refused.status_code == 403


def test_the_referent_associates_a_partner_of_the_group(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    from hub.models import User

    state = app.extensions["maillon"]
    with state.session_factory() as session:
        pjj = session.scalar(select(Organisation).where(Organisation.kind == "pjj"))
        educateur = session.scalar(select(User).where(User.email == territory["educateur"].email))
        assert pjj is not None and educateur is not None
        pjj_id, educateur_id = pjj.id, educateur.id
    client = _as(app, clock, territory["conseillere"])
    case_page = f"/dossiers/{refs['followed']}"
    token = csrf_token(client, case_page)
    response = client.post(
        f"{case_page}/partenaires",
        data={"csrf_token": token, "organisation": str(pjj_id), "agents": str(educateur_id)},
    )
    assert response.status_code == 302
    # The PJJ educator named by the référent now follows the case as a partner agent
    html = _as(app, clock, territory["educateur"]).get(f"{case_page}?finalite=suivi_parcours")
    assert "Mina Conseil" in html.get_data(as_text=True)


def test_the_coordinator_schedules_meetings(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        from hub.models import OperationalGroup

        group = session.scalar(select(OperationalGroup.public_id))
    client = _as(app, clock, territory["coordinatrice"])
    path = f"/dossiers/reunions/{group}"
    response = _post(client, path, day=_day(clock, 60))
    assert response.status_code == 302
    again = _post(client, path, day=_day(clock, 60))
    assert "déjà prévue" in again.get_data(as_text=True)
    # A date already past is a typing slip, refused; today is still possible
    past = _post(client, path, day=_day(clock, -1))
    assert "ou plus tard" in past.get_data(as_text=True)
    assert _post(client, path, day=_day(clock, 0)).status_code == 302
    assert _as(app, clock, territory["cpip"]).get(path).status_code == 403


def test_refused_values_are_never_decrypted_for_anyone(
    app: Flask, territory: dict[str, Account]
) -> None:
    """Exhaustively over the demo (every person × case × purpose): the vault opens only the
    values the charter grants — and the date of birth, which the hub reads for itself to apply
    the minors' rule of consent — and what is shown is exactly what the charter grants."""
    from hub.cases import CaseAccessDeniedError, Cases
    from hub.charters import parse
    from hub.models import User
    from hub.vault import FieldVault

    state = app.extensions["maillon"]

    class SpyVault(FieldVault):
        def __init__(self, key: bytes) -> None:
            super().__init__(key)
            self.opened: list[str] = []

        def open(self, wrapped_key: bytes, case_ref: str, field_id: str, blob: bytes) -> str:
            self.opened.append(field_id)
            return super().open(wrapped_key, case_ref, field_id, blob)

    spy = SpyVault(state.config.data_key)
    checked = 0
    with state.session_factory() as session:
        service = Cases(session, clock=state.clock, vault=spy)
        for account in territory.values():
            user = session.scalar(select(User).where(User.email == account.email))
            assert user is not None
            for case in session.scalars(select(Case)):
                try:
                    ctx = service.context(case, user)
                except CaseAccessDeniedError:
                    continue
                for purpose in parse(ctx.version.text).purposes:
                    spy.opened = []
                    view = service.view(ctx, purpose.id)
                    granted = {
                        r.field
                        for r in service.decide_view(ctx, purpose.id).reasons.values()
                        if r.allowed
                    }
                    own_use = {ctx.consent_rules.birth_date_field}
                    assert set(spy.opened) - own_use <= granted
                    assert {v.field.id for v in view.shown} == granted
                    assert not {r.field for r in view.refused} & (set(spy.opened) - own_use)
                    checked += 1
    # Sanity: the walk covered people with a part (not only refusals)
    assert checked >= 20


def test_reads_by_someone_outside_the_group_are_listed_for_the_dpo(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    """DESIGN §8: a read the charter allowed, by someone who is neither the référent nor in the
    case's group, becomes an anomaly for the DPO to review; the référent's reads do not."""
    from charter.vocabulary import Role
    from hub import totp
    from hub.anomaly_review import AnomalyFinding, scan_all
    from hub.models import User

    state = app.extensions["maillon"]
    # Given a second SPIP agent who does not sit in the group (the SPIP follows the case)
    with state.session_factory() as session:
        accounts = state.accounts(session)
        spip = session.scalar(select(Organisation).where(Organisation.kind == "spip"))
        assert spip is not None
        agent = accounts.create_user(
            name="Agathe Remplaçante",
            email="remplacante@demoville.example",
            organisation=spip,
            roles={Role.AGENT},
        )
        secret = totp.new_secret()
        agent.password_hash = accounts.passwords.hash("un mot de passe solide")
        agent.totp_secret = secret
        session.commit()
        agent_id = agent.public_id
    outsider = Account(agent.email, "un mot de passe solide", secret, ["agent"], spip.name)
    # And her colleague on the case hands it over to her (the team is people)
    page = f"/dossiers/{refs['followed']}?finalite=suivi_parcours"
    assert _as(app, clock, outsider).get(page).status_code == 403
    cpip = _as(app, clock, territory["cpip"])
    with state.session_factory() as session:
        agent_db_id = session.scalar(select(User.id).where(User.public_id == agent_id))
    _post(cpip, f"/dossiers/{refs['followed']}/equipe", agent=str(agent_db_id))
    # When she and the référent read the case
    assert _as(app, clock, outsider).get(page).status_code == 200
    assert _as(app, clock, territory["conseillere"]).get(page).status_code == 200
    with state.session_factory() as session:
        scan_all(session, state.audit_log, now=clock())
        findings = session.scalars(
            select(AnomalyFinding).where(AnomalyFinding.rule == "unexpected_access")
        ).all()
        referent = session.scalar(
            select(User.public_id).where(User.email == territory["conseillere"].email)
        )
    # Then only her read is listed, without any name
    assert [f.actor_user for f in findings] == [agent_id]
    assert refs["followed"] in findings[0].detail and "Agathe" not in findings[0].detail
    assert referent not in {f.actor_user for f in findings}


def test_an_organisation_system_records_what_the_charter_lets_it_publish(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    """The SPIP's software pushes a release date (the hub's answer to « dry » releases): the
    publish decision applies as for a person, and a refusal names each field and article."""
    from tests.integration.test_api_auth import request_token
    from tests.integration.test_audit_trail import _api_client

    api = _api_client(app)  # the SPIP's system: its organisation follows the case
    http = app.test_client()
    token = request_token(http, api.assertion(clock)).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/api/v1/dossiers/{refs['followed']}/informations"
    # Accepted: stored sealed, recorded
    before = _size(app)
    ok = http.post(path, json={"fields": {"justice.date_sortie": "2027-06-30"}}, headers=headers)
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["stored"] == ["justice.date_sortie"]
    (event,) = _events(app, before)
    assert (event.action, event.decision.value, event.actor_user) == (
        Action.CASE_UPDATE,
        "allow",
        f"client:{api.client_id}",
    )
    assert b"2027-06-30" not in _stored(app, refs["followed"])["justice.date_sortie"].ciphertext
    # Refused: one forbidden field refuses the whole request, which names it with its article
    stored_before = {k: v.ciphertext for k, v in _stored(app, refs["followed"]).items()}
    before = _size(app)
    refused = http.post(
        path,
        json={"fields": {"justice.date_sortie": "2027-07-01", "identite.convictions": "x"}},
        headers=headers,
    )
    assert refused.status_code == 422
    body = refused.get_json()
    assert body["error"] == "charter_refused" and "identite.convictions" in body["message"]
    assert body["refused"] == [
        {"field": "identite.convictions", "code": "interdit", "article": "art-10"}
    ]
    assert {k: v.ciphertext for k, v in _stored(app, refs["followed"]).items()} == stored_before
    (event,) = _events(app, before)
    assert (event.decision.value, event.rule) == ("deny", "art-10")
    # Malformed bodies and cases the organisation does not follow
    assert http.post(path, json={"fields": ["x"]}, headers=headers).status_code == 400
    assert http.post(path, data="pas du JSON", headers=headers).status_code == 400
    other = http.post(
        f"/api/v1/dossiers/{refs['minor']}/informations",
        json={"fields": {"justice.date_sortie": "2027-01-01"}},
        headers=headers,
    )
    assert other.status_code == 403 and other.get_json()["error"] == "not_involved"


def test_the_case_page_speaks_of_withheld_fields_only_when_some_are(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    referent = _as(app, clock, territory["conseillere"])
    # The référent following the path sees every hub-tier field: nothing to explain
    page = referent.get(f"/dossiers/{refs['followed']}?finalite=suivi_parcours")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Pourquoi ?" not in html
    assert "ne vous sont pas communiquées" not in html
    # For the monthly review, some are withheld, and the page says how many and why
    html = referent.get(f"/dossiers/{refs['followed']}?finalite=revue_mensuelle").get_data(
        as_text=True
    )
    assert "Pourquoi ?" in html


def test_the_exit_type_and_the_referent_are_chosen_from_lists(
    app: Flask, clock: FakeClock, territory: dict[str, Account], refs: dict[str, str]
) -> None:
    client = _as(app, clock, territory["conseillere"])
    path = f"/dossiers/{refs['followed']}/informations"
    form = client.get(path).get_data(as_text=True).replace("&#39;", "'")
    assert '<select id="sortie.type" name="sortie.type"' in form
    assert '<option value="formation_qualifiante">Formation qualifiante</option>' in form
    assert '<select id="parcours.referent" name="parcours.referent"' in form
    assert '<option value="Mina Conseil (Mission Locale de Démoville)">' in form
    response = _post(client, path, **{"sortie.type": "formation_qualifiante"})
    assert response.status_code == 302
    page = client.get(f"/dossiers/{refs['followed']}?finalite=suivi_parcours").get_data(
        as_text=True
    )
    assert "Formation qualifiante" in page and "formation_qualifiante" not in page
