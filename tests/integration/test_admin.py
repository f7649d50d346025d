"""Administration: organisations, invitations by one-time link, MFA reset, disabling, groups."""

from __future__ import annotations

import email
import re
from pathlib import Path

from flask import Flask
from sqlalchemy import select

from hub.models import Invitation, OperationalGroup, Organisation, User
from hub.tasks import send_activation_mail
from tests.conftest import Account, FakeClock, csrf_token, fresh_code, login, post_form

NON_ADMIN = ["cpip", "conseillere", "dpo", "coordinatrice"]


def _outbox(app: Flask) -> list[email.message.Message]:
    folder: Path = app.extensions["maillon"].config.mail_outbox
    return [email.message_from_bytes(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]


def _run_pending_mail_tasks(app: Flask) -> None:
    """Run the activation-mail task for every link not mailed yet (what the worker does)."""
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        ids = session.scalars(
            select(Invitation.id).where(
                Invitation.mail_sent_at.is_(None), Invitation.used_at.is_(None)
            )
        ).all()
    with app.app_context():
        for invitation_id in ids:
            send_activation_mail.run(invitation_id)


def _link(message: email.message.Message) -> str:
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    match = re.search(r"http://localhost(/activation/\S+)", body)
    assert match
    return match.group(1)


def _user(app: Flask, email_address: str) -> User:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        user = session.scalar(select(User).where(User.email == email_address))
        assert user is not None
        session.expunge(user)
        return user


def test_non_admins_get_403_on_every_admin_page(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    for who in NON_ADMIN:
        client = app.test_client()
        login(client, clock, territory[who])
        for path in [
            "/admin/",
            "/admin/organisations",
            "/admin/utilisateurs",
            "/admin/groupes",
            "/admin/utilisateurs/nouveau",
        ]:
            assert client.get(path).status_code == 403, (who, path)


def test_admin_invites_a_person_who_activates_with_totp_and_recovery_codes(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    # Given an organisation created by the admin
    post_form(admin, "/admin/organisations", name="Mission Locale du Val", kind="mission_locale")
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        org = session.scalar(
            select(Organisation).where(Organisation.name == "Mission Locale du Val")
        )
        assert org is not None and org.kind.value == "mission_locale"
        org_id = org.id
    # When the admin invites a counsellor
    response = post_form(
        admin,
        "/admin/utilisateurs/nouveau",
        name="Nora Nouvelle",
        email="Nora@Val.example",
        organisation=str(org_id),
        roles=["agent", "referent"],
    )
    assert response.status_code == 302
    # Then the mail is only sent by the task, after commit, and holds a one-time link
    assert _outbox(app) == []
    _run_pending_mail_tasks(app)
    messages = _outbox(app)
    assert len(messages) == 1 and messages[0]["To"] == "nora@val.example"
    link = _link(messages[0])
    # The link token is never stored in clear
    with state.session_factory() as session:
        stored = session.scalars(select(Invitation.token_hash)).all()
    assert link.rsplit("/", 1)[1] not in " ".join(h or "" for h in stored)
    # The person opens it, sees a QR code, chooses a password and confirms a code
    person = app.test_client()
    page = person.get(link).get_data(as_text=True)
    assert "<svg" in page
    secret = re.search(r'<code class="secret">([A-Z2-7 ]+)</code>', page).group(1).replace(" ", "")  # type: ignore[union-attr]
    password = "un mot de passe assez long"
    token = csrf_token(person, link)
    response = person.post(
        link,
        data={
            "csrf_token": token,
            "password": password,
            "password_again": password,
            "code": fresh_code(clock, secret),
        },
    )
    assert response.status_code == 200
    codes = re.findall(
        r"<code>([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})</code>", response.get_data(as_text=True)
    )
    assert len(codes) == 10
    assert person.get("/").status_code == 200  # logged in after activation
    # The link cannot be used twice
    assert app.test_client().get(link).status_code == 404
    # And the new account logs in with password + TOTP, or once with a recovery code
    nora = Account("nora@val.example", password, secret, ["agent"], "Mission Locale du Val")
    assert login(app.test_client(), clock, nora).status_code == 302
    assert login(app.test_client(), clock, nora, code=codes[3]).status_code == 302
    assert login(app.test_client(), clock, nora, code=codes[3]).status_code == 200


def test_an_activation_link_expires(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    org_id = _user(app, territory["cpip"].email).organisation_id
    post_form(
        admin,
        "/admin/utilisateurs/nouveau",
        name="Tard Venu",
        email="tard@spip.example",
        organisation=str(org_id),
        roles=["agent"],
    )
    _run_pending_mail_tasks(app)
    link = _link(_outbox(app)[0])
    clock.advance(hours=73)
    assert app.test_client().get(link).status_code == 404


def test_a_wrong_code_at_activation_changes_nothing(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    org_id = _user(app, territory["cpip"].email).organisation_id
    post_form(
        admin,
        "/admin/utilisateurs/nouveau",
        name="Eve Essai",
        email="eve@spip.example",
        organisation=str(org_id),
        roles=["agent"],
    )
    _run_pending_mail_tasks(app)
    link = _link(_outbox(app)[0])
    person = app.test_client()
    token = csrf_token(person, link)
    response = person.post(
        link,
        data={
            "csrf_token": token,
            "password": "un mot de passe assez long",
            "password_again": "un mot de passe assez long",
            "code": "123456",
        },
    )
    assert response.status_code == 200 and "ne correspond pas" in response.get_data(as_text=True)
    user = _user(app, "eve@spip.example")
    assert user.password_hash is None and user.totp_secret is None
    assert person.get(link).status_code == 200  # still usable


def test_mfa_reset_needs_fresh_login_ends_sessions_and_mails_a_new_link(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip_client = app.test_client()
    login(cpip_client, clock, territory["cpip"])
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    public_id = _user(app, territory["cpip"].email).public_id
    detail = f"/admin/utilisateurs/{public_id}"
    clock.advance(minutes=11)
    admin.get("/")
    confirm = f"{detail}/reinitialiser-mfa"
    response = admin.get(confirm)
    assert response.status_code == 302 and response.location.startswith("/confirmer-identite")
    assert _user(app, territory["cpip"].email).totp_secret is not None  # nothing done yet
    response = post_form(
        admin,
        "/confirmer-identite?next=" + confirm,
        password=territory["admin"].password,
        code=fresh_code(clock, territory["admin"].totp_secret),
    )
    # Back on the confirmation page, which says what will happen and changes nothing
    assert response.location == confirm
    page = admin.get(confirm).get_data(as_text=True)
    assert "Toutes ses sessions sont fermées" in page and "Annuler" in page
    assert _user(app, territory["cpip"].email).totp_secret is not None
    response = post_form(admin, confirm, submit="1")
    assert response.status_code == 302 and response.location == detail
    assert _user(app, territory["cpip"].email).totp_secret is None
    assert cpip_client.get("/").status_code == 302  # the user's sessions ended
    assert login(app.test_client(), clock, territory["cpip"]).status_code == 200  # old TOTP is gone
    _run_pending_mail_tasks(app)
    (message,) = _outbox(app)
    page = app.test_client().get(_link(message)).get_data(as_text=True)
    assert "Choisissez un mot de passe" not in page  # reset keeps the password


def test_disabling_an_account_ends_its_sessions_at_once(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip_client = app.test_client()
    login(cpip_client, clock, territory["cpip"])
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    detail = f"/admin/utilisateurs/{_user(app, territory['cpip'].email).public_id}"
    page = admin.get(f"{detail}/statut").get_data(as_text=True)
    assert "Désactiver le compte de Paul Probation ?" in page
    assert 'name="vers" value="inactif"' in page
    assert cpip_client.get("/").status_code == 200  # asking changed nothing
    # A stale page asking to re-enable an active account does nothing (not the opposite)
    stale = post_form(admin, f"{detail}/statut", submit="1", vers="actif")
    assert stale.status_code == 302 and cpip_client.get("/").status_code == 200
    assert post_form(admin, f"{detail}/statut", submit="1", vers="inactif").status_code == 302
    assert cpip_client.get("/").status_code == 302
    assert login(app.test_client(), clock, territory["cpip"]).status_code == 200
    assert "Réactiver le compte de" in admin.get(f"{detail}/statut").get_data(as_text=True)
    post_form(admin, f"{detail}/statut", submit="1", vers="inactif")  # posted twice: nothing
    assert login(app.test_client(), clock, territory["cpip"]).status_code == 200
    post_form(admin, f"{detail}/statut", submit="1", vers="actif")
    assert login(app.test_client(), clock, territory["cpip"]).status_code == 302


def test_suspending_an_organisation_locks_out_its_people(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    cpip_client = app.test_client()
    login(cpip_client, clock, territory["cpip"])
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        spip = session.scalar(select(Organisation).where(Organisation.name == "SPIP de Démoville"))
        assert spip is not None
        public_id = spip.public_id
    confirm = f"/admin/organisations/{public_id}/statut"
    page = admin.get(confirm).get_data(as_text=True)
    assert "Suspendre l&#39;organisation « SPIP de Démoville » ?" in page
    assert "sont révoqués" in page
    assert cpip_client.get("/").status_code == 200  # asking changed nothing
    post_form(admin, confirm, submit="1", vers="inactif")
    assert cpip_client.get("/").status_code == 302
    assert login(app.test_client(), clock, territory["cpip"]).status_code == 200


def test_user_list_is_searchable_and_paginated(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        service = state.accounts(session)
        org = session.scalar(select(Organisation).where(Organisation.name == "Démoville Habitat"))
        assert org is not None
        from charter.vocabulary import Role

        for i in range(30):
            service.create_user(
                name=f"Personne {i:02d}",
                email=f"p{i}@habitat.example",
                organisation=org,
                roles={Role.AGENT},
            )
        session.commit()
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    first = admin.get("/admin/utilisateurs").get_data(as_text=True)
    assert "38 comptes" in first and "Page 1 sur 2" in first
    assert "Page 2 sur 2" in admin.get("/admin/utilisateurs?page=2").get_data(as_text=True)
    found = admin.get("/admin/utilisateurs?q=Personne+07").get_data(as_text=True)
    assert "Personne 07" in found and "Personne 08" not in found and "1 comptes" in found
    assert (
        "Personne"
        not in admin.get("/admin/utilisateurs?q=%25").get_data(as_text=True).split("<tbody>")[1]
    )


def test_admin_creates_a_group_and_names_its_first_coordinator_who_then_decides_its_members(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    from audit.events import Action

    admin = app.test_client()
    login(admin, clock, territory["admin"])
    coordinator = _user(app, territory["coordinatrice"].email)
    member = _user(app, territory["conseillere"].email)
    response = post_form(
        admin,
        "/admin/groupes",
        name="GO Quartier Nord",
        territory="Démoville Nord",
        coordinator=str(coordinator.id),
    )
    assert response.status_code == 302
    detail = response.location
    # The administrator no longer decides who sits in the group: refused (and recorded)
    refused = post_form(admin, detail, members=[str(member.id)], coordinator=str(coordinator.id))
    assert refused.status_code == 403
    state = app.extensions["maillon"]
    with state.session_factory() as session:
        group = session.scalar(
            select(OperationalGroup).where(OperationalGroup.name == "GO Quartier Nord")
        )
        assert group is not None
        assert group.coordinator_id == coordinator.id
        assert {m.user_id for m in group.memberships} == {coordinator.id}
        public_id = group.public_id
    # The coordinator does (fresh login), and it is recorded for the DPO
    chosen = app.test_client()
    login(chosen, clock, territory["coordinatrice"])
    log = state.audit_log
    before = log.size()
    page = f"/charte/{public_id}/composition"
    done = post_form(chosen, page, members=[str(member.id)], coordinator="0")
    assert done.status_code == 302
    assert [e.action for e in log.events(before, log.size())][-1] == Action.GROUP_MEMBERS
    with state.session_factory() as session:
        group = session.scalar(
            select(OperationalGroup).where(OperationalGroup.public_id == public_id)
        )
        assert group is not None
        assert {m.user_id for m in group.memberships} == {coordinator.id, member.id}
    dpo = app.test_client()
    login(dpo, clock, territory["dpo"])
    assert public_id in dpo.get("/dpo/").get_data(as_text=True)


def test_an_admin_or_dpo_account_cannot_hold_a_role_that_sees_cases(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    org_id = _user(app, territory["cpip"].email).organisation_id
    for roles in (
        ["admin", "agent"],
        ["dpo", "group_member"],
        ["admin", "dpo"],
        ["dpo", "coordinator"],
    ):
        response = post_form(
            admin,
            "/admin/utilisateurs/nouveau",
            name="Cumul",
            email=f"cumul-{'-'.join(roles)}@demoville.example",
            organisation=str(org_id),
            roles=roles,
        )
        assert response.status_code == 200
        assert "comptes distincts" in response.get_data(as_text=True)
    state = app.extensions["maillon"]
    from hub.models import User

    with state.session_factory() as session:
        assert session.scalar(select(User).where(User.name == "Cumul")) is None


def test_an_admin_cannot_sit_in_a_group_nor_coordinate_one(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    dpo_user = _user(app, territory["dpo"].email)
    response = post_form(
        admin, "/admin/groupes", name="GO Sud", territory="Sud", coordinator=str(dpo_user.id)
    )
    assert response.status_code == 200
    assert "ni administrateur ni délégué" in response.get_data(as_text=True)


def test_duplicate_email_is_refused_with_a_clear_message(
    app: Flask, clock: FakeClock, territory: dict[str, Account]
) -> None:
    admin = app.test_client()
    login(admin, clock, territory["admin"])
    org_id = _user(app, territory["cpip"].email).organisation_id
    response = post_form(
        admin,
        "/admin/utilisateurs/nouveau",
        name="Doublon",
        email=territory["cpip"].email.upper(),
        organisation=str(org_id),
        roles=["agent"],
    )
    assert response.status_code == 200
    assert "Un compte existe déjà" in response.get_data(as_text=True)
    assert _outbox(app) == []
