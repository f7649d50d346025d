"""Case pages: the list of the cases a person follows, signalling a young person, the
need-to-know view of a case for a stated purpose, and what the group records on it.

Every page asks :class:`hub.cases.Cases` for the person's part in the case and for the charter's
decision, and records that decision (allowed or refused, articles, charter version) in the audit
log before anything is shown or stored.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from audit.events import Action, Decision
from charter.vocabulary import Role
from consent import local_day, summarise
from hub import consents
from hub.blueprints.auth import show_error
from hub.cases import (
    EXIT_TYPE_FIELD,
    EXIT_TYPES,
    CaseAccessDeniedError,
    CaseContext,
    CaseRefusedError,
    Team,
    articles,
    charter_ref,
    is_date_field,
    loggable_reference,
    unknown_case,
)
from hub.forms import ConfirmForm, MeetingForm, PartnerForm, ReferentForm, TeamForm, choices
from hub.i18n import N_, page_is_english
from hub.models import Case, GroupMembership, OperationalGroup, User, UserRole
from hub.pagination import page_number, paginate
from hub.recording import (
    append_staged,
    audited_case_view,
    audited_publish,
    new_event,
    record,
    record_case,
    stage,
)
from hub.state import cases, db

bp = Blueprint("cases", __name__, url_prefix="/dossiers")

STATUS_LABELS = {
    "reperage": N_("repérage"),
    "suivi": N_("suivi du parcours"),
    "sortie": N_("sortie du dispositif"),
}


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "status_label": lambda status: _(STATUS_LABELS[status]),
        "is_date": is_date_field,
        "value_label": _value_label,
    }


def _value_label(field_id: str, value: str) -> str:
    """A stored value as people read it (an exit type's label rather than its code)."""
    if field_id == EXIT_TYPE_FIELD:
        return str(_(dict(EXIT_TYPES).get(value, value)))
    return value


@bp.app_template_filter("day")
def day(value: date | str | None) -> str:
    """A calendar day (a date or ISO text) in the page's language; other text unchanged."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            return day(date.fromisoformat(value))
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d" if page_is_english() else "%d/%m/%Y")


def _case_or_403(reference: str) -> Case:
    """The case, or the same 403 as for a case one takes no part in (recorded by the handler):
    the answer never tells which references exist."""
    case = cases().by_reference(reference)
    if case is None:
        abort(403)
    return case


def _context_or_403(case: Case) -> CaseContext:
    """The person's part in the case; a refusal goes through the recorded 403 handler."""
    try:
        return cases().context(case, current_user)
    except CaseAccessDeniedError:
        abort(403)


_FORM_CONTROLS = frozenset({"csrf_token", "groupe"})


def _posted_values() -> dict[str, str]:
    """Every posted field, not only those the form offered: a field the charter refuses must
    be refused by name, not silently dropped."""
    return {k: v for k, v in request.form.items() if k not in _FORM_CONTROLS}


@bp.route("/")
def index() -> Any:
    """The cases the person follows (référent, group member, coordinator or partner agent)."""
    search = request.args.get("q", "")[:16]
    page = paginate(
        db(), cases().visible_to(current_user, search=search), page_number(request.args.get("page"))
    )
    record(Action.CASE_LIST, object_type="page", object_id="cases.index")
    service = cases()
    # Consent running out within thirty days, on the cases this person is référent of.
    mine = [c.id for c in page.items if c.referent_id == current_user.id]
    return render_template(
        "cases/index.html",
        page=page,
        search=search,
        may_open=bool(service.signed_groups(current_user.organisation)),
        expiring=consents.expiring_soon(service.consents, mine, local_day(service.clock())),
    )


def _signed_group(public_id: str | None) -> tuple[list[OperationalGroup], OperationalGroup | None]:
    groups = cases().signed_groups(current_user.organisation)
    chosen = next((g for g in groups if g.public_id == public_id), groups[0] if groups else None)
    return groups, chosen


@bp.route("/nouveau", methods=["GET", "POST"])
def new() -> Any:
    """Signal a young person to the group: opens a case with what the hub may hold."""
    groups, group = _signed_group(request.values.get("groupe"))
    if group is None:
        flash(
            _("Votre organisation n'a signé la charte d'aucun groupe : elle ne signale personne."),
            "error",
        )
        return redirect(url_for("cases.index"))
    fields = cases().publishable(current_user.organisation, group)
    values = _posted_values() if request.method == "POST" else {}
    if request.method == "POST":
        try:
            case, decision, version = cases().open_case(group, current_user, values)
        except CaseRefusedError as error:
            db().rollback()
            record(
                Action.CASE_CREATE,
                object_type="group",
                object_id=group.public_id,
                decision=Decision.DENY,
                rule=articles(error.reasons),
            )
            show_error(error)
            return _new_page(groups, group, fields, values, 400, invalid=error.invalid)
        record_case(
            Action.CASE_CREATE,
            case.reference,
            purpose="reperage",
            rule=articles(decision.reasons),
            charter_version=charter_ref(version),
        )
        db().commit()
        flash(_("Le dossier %(ref)s est ouvert.", ref=case.reference), "success")
        return redirect(url_for("cases.show", reference=case.reference))
    return _new_page(groups, group, fields, values, 200)


def _new_page(
    groups: list[OperationalGroup],
    group: OperationalGroup,
    fields: list[Any],
    values: dict[str, str],
    status: int,
    *,
    invalid: frozenset[str] = frozenset(),
) -> Any:
    return (
        render_template(
            "cases/new.html",
            groups=groups,
            group=group,
            fields=fields,
            values=values,
            choices=cases().choices(group),
            invalid=invalid,
        ),
        status,
    )


@bp.route("/<reference>")
def show(reference: str) -> Any:
    """The case as the charter lets this person see it, for the purpose they state."""
    service = cases()
    case = service.by_reference(reference)
    try:
        if case is None:
            raise unknown_case()
        ctx = service.context(case, current_user)
    except CaseAccessDeniedError as error:
        record_case(
            Action.CASE_VIEW,
            loggable_reference(reference),
            allowed=False,
            rule=error.rule,
        )
        return (
            render_template(
                "errors/error.html", status=403, title=_("Accès refusé"), message=_(error.message)
            ),
            403,
        )
    try:
        view = audited_case_view(service, ctx, request.args.get("finalite"))
    except CaseAccessDeniedError as error:  # part lost meanwhile, or purpose not for the step
        return (
            render_template(
                "errors/error.html", status=403, title=_("Accès refusé"), message=_(error.message)
            ),
            403,
        )
    if view is None:
        abort(400)
    ctx = view.context  # decided again if the team or the consent changed meanwhile
    manages = bool(ctx.roles & {Role.REFERENT, Role.COORDINATOR})
    # The team's names are for those who work with it, not for every group member.
    shows_team = bool(ctx.roles & {Role.REFERENT, Role.COORDINATOR, Role.AGENT})
    # Read once (two small queries) for the list, the forms and who may be taken off.
    team = service.team_of(case)
    return render_template(
        "cases/case.html",
        case=case,
        ctx=ctx,
        view=view,
        situation=consents.ConsentOverview(
            view.consent,
            summarise(view.consent, ctx.consent_rules, birth=view.birth, at=service.clock()),
            view.birth is not None,
        ),
        manages_consent=consents.may_manage(ctx),
        # The age gives the date of birth away: only where the charter shows that date.
        show_age=any(v.field.id == ctx.consent_rules.birth_date_field for v in view.shown),
        purposes=service.purposes_for(ctx),
        # Decided on the consent and date of birth the view was just decided (and recorded)
        # with, rather than read and opened again.
        may_publish=bool(
            service.publishable(ctx.organisation, case.group, ctx.version, case, seen=view)
        ),
        manages=manages,
        shows_team=shows_team,
        team=service.team(case, team) if shows_team else [],
        team_form=_team_form(ctx, team),
        removable=_removable(ctx, team),
        remove_form=ConfirmForm(),
        referent_form=_referent_form(case) if Role.COORDINATOR in ctx.roles else None,
        partner_form=_partner_form(case, team) if manages else None,
    )


def _referent_form(case: Case) -> ReferentForm:
    form = ReferentForm()
    people = db().scalars(
        select(User)
        .join(UserRole, UserRole.user_id == User.id)
        .join(GroupMembership, GroupMembership.user_id == User.id)
        .where(
            UserRole.role == Role.REFERENT,
            GroupMembership.group_id == case.group_id,
            User.active.is_(True),
        )
        .order_by(User.name)
    )
    form.referent.choices = choices([(u.id, f"{u.name} ({u.organisation.name})") for u in people])
    return form


def _partner_form(case: Case, team: Team | None = None) -> PartnerForm:
    """The orientation form: group organisations not following the case yet, their agents
    (``team``: the case's team as read for the page)."""
    form = PartnerForm()
    partners, agents = cases().orientation_choices(case, team)
    form.organisation.choices = choices(partners)
    form.agents.choices = choices(agents)
    return form


def _team_form(ctx: CaseContext, team: Team | None = None) -> TeamForm | None:
    people = cases().assignable_choices(ctx, team)
    if not people:
        return None
    form = TeamForm()
    form.agent.choices = choices(people)
    return form


def _removable(ctx: CaseContext, team: Team | None = None) -> frozenset[int]:
    """Team members this person may take off the case (``team``: as read for the page)."""
    members = (
        [(m.id, m.organisation_id) for m in team.members]
        if team is not None
        else [(m.user_id, m.organisation_id) for m in ctx.case.members]
    )
    if ctx.roles & {Role.REFERENT, Role.COORDINATOR}:
        return frozenset(user_id for user_id, _org in members)
    if ctx.user is not None and any(user_id == ctx.user.id for user_id, _org in members):
        return frozenset(
            user_id for user_id, org_id in members if org_id == ctx.user.organisation_id
        )
    return frozenset()


@bp.route("/<reference>/informations", methods=["GET", "POST"])
def edit(reference: str) -> Any:
    """Record what the hub may hold on the case, within what the charter lets the person's
    organisation publish (nothing is stored if one value is refused)."""
    case = _case_or_403(reference)
    ctx = _context_or_403(case)
    service = cases()
    fields = service.publishable(ctx.organisation, case.group, ctx.version, case)
    values = _posted_values() if request.method == "POST" else {}
    if request.method == "POST":
        try:
            audited_publish(service, ctx, values)
        except CaseRefusedError as error:
            show_error(error)
            return _edit_page(case, fields, values, 400, invalid=error.invalid)
        flash(_("Les informations sont enregistrées."), "success")
        return redirect(url_for("cases.show", reference=case.reference))
    return _edit_page(case, fields, values, 200)


def _edit_page(
    case: Case,
    fields: list[Any],
    values: dict[str, str],
    status: int,
    *,
    invalid: frozenset[str] = frozenset(),
) -> Any:
    return (
        render_template(
            "cases/edit.html",
            case=case,
            fields=fields,
            values=values,
            choices=cases().choices(case.group),
            invalid=invalid,
        ),
        status,
    )


@bp.route("/<reference>/referent", methods=["POST"])
def name_referent(reference: str) -> Any:
    """The coordinator records the référent de parcours the group named."""
    case = _case_or_403(reference)
    ctx = _context_or_403(case)
    if Role.COORDINATOR not in ctx.roles:
        abort(403)
    form = _referent_form(case)
    referent = db().get(User, form.referent.data) if form.validate_on_submit() else None
    if referent is None:
        flash(_("Choisissez un référent parmi les membres du groupe."), "error")
        return redirect(url_for("cases.show", reference=reference))
    try:
        decision = cases().name_referent(ctx, referent)
    except CaseRefusedError as error:
        db().rollback()
        show_error(error)
        return redirect(url_for("cases.show", reference=reference))
    record_case(
        Action.CASE_REFERENT,
        case.reference,
        rule=articles(decision.reasons),
        charter_version=charter_ref(ctx.version),
    )
    db().commit()
    flash(_("Le référent de parcours est désigné."), "success")
    return redirect(url_for("cases.show", reference=reference))


@bp.route("/<reference>/partenaires", methods=["POST"])
def add_partner(reference: str) -> Any:
    """The référent or the coordinator associates another partner with the case."""
    case = _case_or_403(reference)
    ctx = _context_or_403(case)
    if not ctx.roles & {Role.REFERENT, Role.COORDINATOR}:
        abort(403)
    form = _partner_form(case)
    partners = cases().charters.partners(case.group) if form.validate_on_submit() else []
    org = next((o for o in partners if o.id == form.organisation.data), None)
    if org is None:
        flash(_("Choisissez un partenaire du groupe."), "error")
        return redirect(url_for("cases.show", reference=reference))
    agents = [u for u in (db().get(User, i) for i in form.agents.data or ()) if u is not None]
    try:
        named = cases().add_partner(ctx, org, agents)
    except CaseRefusedError as error:
        db().rollback()
        show_error(error)
        return redirect(url_for("cases.show", reference=reference))
    record_case(
        Action.CASE_PARTNER,
        case.reference,
        purpose="orientation",
        charter_version=charter_ref(ctx.version),
    )
    for agent in named:
        record_case(
            Action.CASE_TEAM_ADD, case.reference, rule=agent.public_id, purpose="orientation"
        )
    db().commit()
    flash(_("Le partenaire suit désormais le dossier."), "success")
    return redirect(url_for("cases.show", reference=reference))


@bp.route("/<reference>/equipe", methods=["POST"])
def add_to_team(reference: str) -> Any:
    """Name an agent of a following organisation on the case team."""
    case = _case_or_403(reference)
    ctx = _context_or_403(case)
    form = _team_form(ctx)
    agent = db().get(User, form.agent.data) if form and form.validate_on_submit() else None
    if agent is None:
        record_case(Action.CASE_TEAM_ADD, case.reference, allowed=False, rule="not_allowed")
        flash(_("Choisissez un agent d'un partenaire qui suit le dossier."), "error")
        return redirect(url_for("cases.show", reference=reference))
    try:
        cases().assign(ctx, agent)
    except CaseRefusedError as error:
        db().rollback()
        record_case(Action.CASE_TEAM_ADD, case.reference, allowed=False, rule="not_allowed")
        show_error(error)
        return redirect(url_for("cases.show", reference=reference))
    # The event names the person added by their opaque id (never a name).
    record_case(Action.CASE_TEAM_ADD, case.reference, rule=agent.public_id)
    db().commit()
    flash(_("%(name)s fait désormais partie de l'équipe du dossier.", name=agent.name), "success")
    return redirect(url_for("cases.show", reference=reference))


@bp.route("/<reference>/equipe/<public_id>/retirer", methods=["POST"])
def remove_from_team(reference: str, public_id: str) -> Any:
    """Take an agent off the case team (hand-over, end of a partner's part)."""
    case = _case_or_403(reference)
    ctx = _context_or_403(case)
    agent = db().scalar(select(User).where(User.public_id == public_id))
    if agent is None or not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        cases().unassign(ctx, agent)
    except CaseRefusedError as error:
        db().rollback()
        record_case(Action.CASE_TEAM_REMOVE, case.reference, allowed=False, rule="not_allowed")
        show_error(error)
        return redirect(url_for("cases.show", reference=reference))
    # It restricts who may read: in force (generation bumped) before its event is placed in the
    # log, so a read by the person removed cannot be recorded after it and still be served.
    cases().consents.touch(case.id)
    staged = stage(
        db(),
        new_event(
            Action.CASE_TEAM_REMOVE,
            object_type="case",
            object_id=case.reference,
            rule=agent.public_id,
        ),
    )
    db().commit()
    append_staged(db(), [staged])
    flash(_("%(name)s ne fait plus partie de l'équipe du dossier.", name=agent.name), "success")
    return redirect(url_for("cases.show", reference=reference))


@bp.route("/reunions/<public_id>", methods=["GET", "POST"])
def meetings(public_id: str) -> Any:
    """The group's meetings: the coordinator schedules them; monthly-review rules of the
    charter apply only around these dates."""
    group = db().scalar(select(OperationalGroup).where(OperationalGroup.public_id == public_id))
    if group is None:
        abort(404)
    if group.coordinator_id != current_user.id:
        abort(403)
    form = MeetingForm()
    if form.validate_on_submit() and form.day.data is not None:
        try:
            cases().add_meeting(group, current_user, form.day.data)
        except CaseRefusedError as error:
            db().rollback()
            show_error(error)
        else:
            record(Action.GROUP_MEETING, object_type="group", object_id=group.public_id)
            db().commit()
            flash(_("La réunion est ajoutée."), "success")
            return redirect(url_for("cases.meetings", public_id=public_id))
    return render_template(
        "cases/meetings.html",
        group=group,
        form=form,
        meetings=cases().meeting_rows(group),
    )


@bp.route("/reunions/<public_id>/<int(max=2147483647):meeting_id>", methods=["POST"])
def move_meeting(public_id: str, meeting_id: int) -> Any:
    """The coordinator moves a meeting to another day, or cancels it."""
    group = db().scalar(select(OperationalGroup).where(OperationalGroup.public_id == public_id))
    if group is None:
        abort(404)
    if group.coordinator_id != current_user.id:
        abort(403)
    cancel = request.form.get("annuler") == "1"
    # The app-wide CSRF protection has checked the token already (one per page).
    form = MeetingForm(prefix="edit", meta={"csrf": False})
    if not cancel and not form.validate_on_submit():
        for errors in form.errors.values():
            flash(" ".join(str(e) for e in errors), "error")
        return redirect(url_for("cases.meetings", public_id=public_id))
    try:
        cases().move_meeting(group, current_user, meeting_id, None if cancel else form.day.data)
    except CaseRefusedError as error:
        db().rollback()
        show_error(error)
        return redirect(url_for("cases.meetings", public_id=public_id))
    record(
        Action.GROUP_MEETING_CANCEL if cancel else Action.GROUP_MEETING_MOVE,
        object_type="group",
        object_id=group.public_id,
    )
    db().commit()
    flash(_("La réunion est annulée.") if cancel else _("La réunion est déplacée."), "success")
    return redirect(url_for("cases.meetings", public_id=public_id))
