"""Administration: organisations, users, operational groups. Admins never see case content."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, or_, select

from audit.events import Action, Decision
from charter.vocabulary import OrgKind, Role
from hub import liaison
from hub.blueprints.auth import show_error
from hub.celery_app import enqueue
from hub.forms import (
    ConfirmForm,
    GroupForm,
    MembersForm,
    OrganisationForm,
    SearchForm,
    UserForm,
    choices,
)
from hub.groups import GroupRefusedError, Groups
from hub.i18n import N_, MessageError
from hub.models import ApiClient, OperationalGroup, Organisation, User
from hub.pagination import page_number, paginate
from hub.recording import record
from hub.security import fresh_login_required, role_required
from hub.state import accounts, db, now, state
from hub.tasks import send_activation_mail

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
@role_required(Role.ADMIN)
def _admins_only() -> None:
    """Every page here is for administrators; every page read is recorded first."""
    if request.method == "GET":
        public_id = (request.view_args or {}).get("public_id")
        object_type = _OBJECT_TYPES.get(request.endpoint or "", "page")
        record(
            Action.ADMIN_READ,
            object_type=object_type,
            object_id=public_id or request.endpoint or "",
        )


# Detail pages name the record they show; list pages are recorded as pages.
_OBJECT_TYPES = {"admin.user_detail": "user", "admin.group_detail": "group"}


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _org_or_404(public_id: str) -> Organisation:
    org = db().scalar(select(Organisation).where(Organisation.public_id == public_id))
    if org is None:
        abort(404)
    return org


def _user_or_404(public_id: str) -> User:
    user = db().scalar(select(User).where(User.public_id == public_id))
    if user is None:
        abort(404)
    return user


def _group_or_404(public_id: str) -> OperationalGroup:
    group = db().scalar(select(OperationalGroup).where(OperationalGroup.public_id == public_id))
    if group is None:
        abort(404)
    return group


@bp.route("/")
def dashboard() -> Any:
    """Overview for administrators."""
    session = db()

    def count(statement: Any) -> int:
        return int(session.scalar(statement) or 0)

    counts = {
        "organisations": count(select(func.count(Organisation.id))),
        "users": count(select(func.count(User.id))),
        "groups": count(select(func.count(OperationalGroup.id))),
        "locked": count(select(func.count(User.id)).where(User.locked_until.is_not(None))),
    }
    return render_template("admin/dashboard.html", counts=counts)


# -- organisations -------------------------------------------------------------------------


@bp.route("/organisations", methods=["GET", "POST"])
def organisations() -> Any:
    """List (searchable, paginated) and create organisations."""
    form = OrganisationForm()
    if form.validate_on_submit():
        try:
            org = accounts().create_organisation(form.name.data or "", OrgKind(form.kind.data))
        except MessageError as error:
            db().rollback()
            record(Action.ADMIN_ORG_CREATE, object_type="organisation", decision=Decision.DENY)
            show_error(error)
        else:
            record(Action.ADMIN_ORG_CREATE, object_type="organisation", object_id=org.public_id)
            db().commit()
            flash(_("L'organisation a été créée."), "success")
            return redirect(url_for("admin.organisations"))
    search = SearchForm(request.args)
    statement = select(Organisation).order_by(Organisation.name)
    if search.q.data:
        statement = statement.where(Organisation.name.ilike(_like(search.q.data), escape="\\"))
    page = paginate(db(), statement, page_number(request.args.get("page")))
    return render_template(
        "admin/organisations.html", form=form, search=search, page=page, confirm=ConfirmForm()
    )


def _confirmation(
    title: str, consequences: list[str], button: str, back: str, target: str = ""
) -> Any:
    """The page that asks an administrator to confirm an act that locks people out (after a
    fresh login): what will happen, then one button that posts the act, or back. ``target``
    (``actif``/``inactif``) travels with the post, so a stale page cannot do the opposite."""
    return render_template(
        "admin/confirm.html",
        title=title,
        consequences=consequences,
        button=button,
        back=back,
        target=target,
        confirm=ConfirmForm(),
    )


def _stale(active_now: bool) -> bool:
    """Whether the posted target state is missing or already the current one (the page was
    stale, or posted twice): then nothing is done."""
    wanted = request.form.get("vers")
    return wanted not in {"actif", "inactif"} or (wanted == "actif") == active_now


@bp.route("/organisations/<public_id>/statut", methods=["GET", "POST"])
@fresh_login_required
def organisation_status(public_id: str) -> Any:
    """Suspend or reactivate an organisation (asked to confirm first); suspending ends its
    users' sessions and revokes their devices."""
    org = _org_or_404(public_id)
    if request.method == "GET":
        if not org.active:
            return _confirmation(
                _("Réactiver l'organisation « %(name)s » ?", name=org.name),
                [_("Ses agents pourront de nouveau se connecter.")],
                _("Réactiver l'organisation"),
                url_for("admin.organisations"),
                "actif",
            )
        return _confirmation(
            _("Suspendre l'organisation « %(name)s » ?", name=org.name),
            [
                _(
                    "Ses %(n)d compte(s) sont déconnectés sur-le-champ et ne peuvent plus se "
                    "connecter.",
                    n=len(org.users),
                ),
                _(
                    "Les appareils de ses agents et de ses systèmes sont révoqués : ils ne "
                    "reçoivent plus de fiches de liaison."
                ),
            ],
            _("Suspendre l'organisation"),
            url_for("admin.organisations"),
            "inactif",
        )
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if _stale(org.active):
        flash(_("L'état de l'organisation a changé entre-temps : rien n'est fait."), "error")
        return redirect(url_for("admin.organisations"))
    org.active = not org.active
    for user in org.users:
        accounts().end_all_sessions(user)
    record(
        Action.ADMIN_ORG_ACTIVATE if org.active else Action.ADMIN_ORG_SUSPEND,
        object_type="organisation",
        object_id=org.public_id,
    )
    if not org.active:
        clients = db().scalars(select(ApiClient).where(ApiClient.organisation_id == org.id))
        _revoke_devices(users=list(org.users), clients=list(clients))
    db().commit()
    flash(
        _("L'organisation est suspendue.")
        if not org.active
        else _("L'organisation est réactivée."),
        "success",
    )
    return redirect(url_for("admin.organisations"))


def _revoke_devices(*, users: Sequence[User] = (), clients: Sequence[ApiClient] = ()) -> None:
    """Revoke the directory keys of disabled people and clients, each revocation recorded."""
    for key_id in liaison.revoke_devices_of(db(), state(), users=users, clients=clients):
        record(Action.KEY_REVOKE, object_type="device", object_id=key_id, rule="admin")


# -- users ---------------------------------------------------------------------------------


@bp.route("/utilisateurs")
def users() -> Any:
    """List users (searchable, paginated)."""
    search = SearchForm(request.args)
    statement = select(User).order_by(User.name)
    if search.q.data:
        pattern = _like(search.q.data)
        statement = statement.where(
            or_(User.name.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\"))
        )
    if search.active_only.data:
        statement = statement.where(User.active.is_(True))
    page = paginate(db(), statement, page_number(request.args.get("page")))
    return render_template("admin/users.html", search=search, page=page)


def _organisation_choices() -> list[tuple[int, str]]:
    orgs = db().scalars(
        select(Organisation).where(Organisation.active.is_(True)).order_by(Organisation.name)
    )
    return [(o.id, o.name) for o in orgs]


@bp.route("/utilisateurs/nouveau", methods=["GET", "POST"])
def new_user() -> Any:
    """Create a user and send the one-time activation link by mail."""
    form = UserForm()
    form.organisation.choices = choices(_organisation_choices())
    if form.validate_on_submit():
        org = db().get(Organisation, form.organisation.data)
        if org is None or not org.active:
            abort(400)
        try:
            service = accounts()
            user = service.create_user(
                name=form.name.data or "",
                email=form.email.data or "",
                organisation=org,
                roles={Role(r) for r in form.roles.data or []},
            )
            invitation = service.prepare_link(user, purpose="invite", created_by=current_user)
        except MessageError as error:
            db().rollback()
            record(Action.ADMIN_USER_INVITE, object_type="user", decision=Decision.DENY)
            show_error(error)
        else:
            enqueue(db(), send_activation_mail, invitation.id)
            record(Action.ADMIN_USER_INVITE, object_type="user", object_id=user.public_id)
            db().commit()
            flash(_("Le compte est créé ; l'invitation part par courriel."), "success")
            return redirect(url_for("admin.user_detail", public_id=user.public_id))
    return render_template("admin/user_new.html", form=form)


@bp.route("/utilisateurs/<public_id>")
def user_detail(public_id: str) -> Any:
    """One user's account state and the actions on it."""
    user = _user_or_404(public_id)
    return render_template(
        "admin/user_detail.html",
        user=user,
        locked=accounts().is_locked(user),
        confirm=ConfirmForm(),
    )


@bp.route("/utilisateurs/<public_id>/deverrouiller", methods=["POST"])
def user_unlock(public_id: str) -> Any:
    """Lift a lockout."""
    user = _user_or_404(public_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    accounts().unlock(user)
    record(Action.ADMIN_USER_UNLOCK, object_type="user", object_id=user.public_id)
    db().commit()
    flash(_("Le compte est déverrouillé."), "success")
    return redirect(url_for("admin.user_detail", public_id=public_id))


@bp.route("/utilisateurs/<public_id>/reinitialiser-mfa", methods=["GET", "POST"])
@fresh_login_required
def user_reset_mfa(public_id: str) -> Any:
    """Reset the second factor (asked to confirm first): sessions end and a re-enrolment link
    is mailed."""
    user = _user_or_404(public_id)
    if request.method == "GET":
        return _confirmation(
            _("Réinitialiser la double authentification de %(name)s ?", name=user.name),
            [
                _("Toutes ses sessions sont fermées sur-le-champ."),
                _(
                    "Son application d'authentification ne sert plus : un lien lui est envoyé "
                    "par courriel pour en enregistrer une nouvelle."
                ),
            ],
            _("Réinitialiser la double authentification"),
            url_for("admin.user_detail", public_id=public_id),
        )
    if not ConfirmForm().validate_on_submit():
        abort(400)
    invitation = accounts().reset_mfa(user, by=current_user)
    enqueue(db(), send_activation_mail, invitation.id)
    record(Action.ADMIN_USER_RESET_MFA, object_type="user", object_id=user.public_id)
    db().commit()
    flash(
        _("La double authentification est réinitialisée ; un lien est envoyé par courriel."),
        "success",
    )
    return redirect(url_for("admin.user_detail", public_id=public_id))


@bp.route("/utilisateurs/<public_id>/statut", methods=["GET", "POST"])
@fresh_login_required
def user_status(public_id: str) -> Any:
    """Disable (ending every session at once) or re-enable an account, asked to confirm."""
    user = _user_or_404(public_id)
    if request.method == "GET":
        back = url_for("admin.user_detail", public_id=public_id)
        if not user.active:
            return _confirmation(
                _("Réactiver le compte de %(name)s ?", name=user.name),
                [_("La personne pourra de nouveau se connecter.")],
                _("Réactiver le compte"),
                back,
                "actif",
            )
        return _confirmation(
            _("Désactiver le compte de %(name)s ?", name=user.name),
            [
                _(
                    "Toutes ses sessions sont fermées sur-le-champ et elle ne peut plus se "
                    "connecter."
                ),
                _("Ses appareils sont révoqués : elle ne reçoit plus de fiches de liaison."),
            ],
            _("Désactiver le compte"),
            back,
            "inactif",
        )
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if _stale(user.active):
        flash(_("L'état du compte a changé entre-temps : rien n'est fait."), "error")
        return redirect(url_for("admin.user_detail", public_id=public_id))
    if user.id == current_user.id:
        flash(_("Vous ne pouvez pas désactiver votre propre compte."), "error")
        return redirect(url_for("admin.user_detail", public_id=public_id))
    accounts().set_active(user, not user.active)
    record(
        Action.ADMIN_USER_ENABLE if user.active else Action.ADMIN_USER_DISABLE,
        object_type="user",
        object_id=user.public_id,
    )
    if not user.active:
        _revoke_devices(users=[user])
    db().commit()
    flash(
        _("Le compte est désactivé.") if not user.active else _("Le compte est réactivé."),
        "success",
    )
    return redirect(url_for("admin.user_detail", public_id=public_id))


@bp.route("/utilisateurs/<public_id>/invitation", methods=["POST"])
def user_reinvite(public_id: str) -> Any:
    """Send a new activation link to a user who has not activated the account."""
    user = _user_or_404(public_id)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    if user.mfa_enrolled:
        flash(_("Ce compte est déjà activé."), "error")
        return redirect(url_for("admin.user_detail", public_id=public_id))
    invitation = accounts().prepare_link(user, purpose="invite", created_by=current_user)
    enqueue(db(), send_activation_mail, invitation.id)
    record(
        Action.ADMIN_USER_INVITE, object_type="user", object_id=user.public_id, purpose="reinvite"
    )
    db().commit()
    flash(_("Une nouvelle invitation part par courriel."), "success")
    return redirect(url_for("admin.user_detail", public_id=public_id))


# -- operational groups --------------------------------------------------------------------


def _user_choices() -> list[tuple[int, str]]:
    people = db().scalars(select(User).where(User.active.is_(True)).order_by(User.name))
    return [(u.id, f"{u.name} — {u.organisation.name}") for u in people]


@bp.route("/groupes", methods=["GET", "POST"])
def groups() -> Any:
    """List and create operational groups."""
    form = GroupForm()
    form.coordinator.choices = choices([(0, _("— à désigner —")), *_user_choices()])
    if form.validate_on_submit():
        session = db()
        name = (form.name.data or "").strip()
        if session.scalar(select(OperationalGroup).where(OperationalGroup.name == name)):
            flash(_("Un groupe porte déjà ce nom."), "error")
        else:
            coordinator = (
                session.get(User, form.coordinator.data) if form.coordinator.data else None
            )
            group = OperationalGroup(name=name, territory=(form.territory.data or "").strip())
            session.add(group)
            session.flush()
            try:
                if coordinator is not None:
                    Groups(session, clock=now).name_first_coordinator(group, coordinator)
            except GroupRefusedError as error:
                session.rollback()
                record(Action.ADMIN_GROUP_CREATE, object_type="group", decision=Decision.DENY)
                show_error(error)
            else:
                record(Action.ADMIN_GROUP_CREATE, object_type="group", object_id=group.public_id)
                session.commit()
                flash(_("Le groupe a été créé."), "success")
                return redirect(url_for("admin.group_detail", public_id=group.public_id))
    page = paginate(
        db(),
        select(OperationalGroup).order_by(OperationalGroup.name),
        page_number(request.args.get("page")),
    )
    return render_template("admin/groups.html", form=form, page=page)


@bp.route("/groupes/<public_id>", methods=["GET", "POST"])
def group_detail(public_id: str) -> Any:
    """A group's composition; an administrator names only its first coordinator (then the
    composition is the coordinator's act)."""
    group = _group_or_404(public_id)
    form = MembersForm()
    service = Groups(db(), clock=now)
    form.coordinator.choices = choices(
        [(0, _("— à désigner —"))]
        + [
            (u.id, f"{u.name} — {u.organisation.name}")
            for u in service.eligible()
            if u.has_role(Role.COORDINATOR)
        ]
    )
    if group.coordinator_id is None and form.validate_on_submit():
        coordinator = db().get(User, form.coordinator.data) if form.coordinator.data else None
        try:
            if coordinator is None:
                raise GroupRefusedError(N_("Choisissez le coordinateur du groupe."))
            service.name_first_coordinator(group, coordinator)
        except GroupRefusedError as error:
            db().rollback()
            record(
                Action.ADMIN_GROUP_UPDATE,
                object_type="group",
                object_id=group.public_id,
                decision=Decision.DENY,
            )
            show_error(error)
        else:
            record(Action.ADMIN_GROUP_UPDATE, object_type="group", object_id=group.public_id)
            db().commit()
            flash(_("Le coordinateur est désigné."), "success")
            return redirect(url_for("admin.group_detail", public_id=public_id))
    elif request.method == "POST":
        abort(403)  # the composition is the coordinator's act
    return render_template("admin/group_detail.html", group=group, form=form)
