"""The charter pages: versions in force, publication by the coordinator, partner signatures,
declinations, the what-if simulator and the annual review of how the charter was applied."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from audit.events import Action, Decision
from audit.queries import EventFilter, tally
from charter.vocabulary import OrgKind, Role
from hub.blueprints.auth import show_error
from hub.charters import Charters, parse
from hub.forms import (
    CharterPublishForm,
    CharterSignForm,
    DeclinationForm,
    MembersForm,
    PeriodForm,
    WhatIfForm,
    choices,
)
from hub.groups import GroupRefusedError, Groups
from hub.i18n import MessageError
from hub.models import CharterDeclination, CharterVersion, OperationalGroup, User
from hub.pdf import ascii_filename, pdf_response, render_pdf
from hub.recording import record
from hub.security import fresh_login_required
from hub.state import db, now, state

bp = Blueprint("charter", __name__, url_prefix="/charte")

# Who speaks for a partner organisation in the group: signing and declining commit it.
REPRESENTATIVES = (Role.COORDINATOR, Role.GROUP_MEMBER)
# Who may read every group's charter without sitting in it.
OVERSIGHT = (Role.ADMIN, Role.DPO)


def charters() -> Charters:
    """Charter services for the current request."""
    return Charters(db(), clock=state().clock)


def _group_or_404(public_id: str) -> OperationalGroup:
    group = db().scalar(select(OperationalGroup).where(OperationalGroup.public_id == public_id))
    if group is None:
        abort(404)
    return group


def _is_partner(group: OperationalGroup) -> bool:
    return current_user.organisation_id in {o.id for o in charters().partners(group)}


def _readable_group(public_id: str) -> OperationalGroup:
    """The group, if the person's organisation sits in it or the person oversees (else 403)."""
    group = _group_or_404(public_id)
    if not (_is_partner(group) or any(current_user.has_role(r) for r in OVERSIGHT)):
        abort(403)
    return group


def _version_or_404(group: OperationalGroup, number: int) -> CharterVersion:
    version = charters().version(group, number)
    if version is None:
        abort(404)
    return version


def _may_represent(group: OperationalGroup) -> bool:
    return _is_partner(group) and any(current_user.has_role(r) for r in REPRESENTATIVES)


def _may_review(group: OperationalGroup) -> bool:
    """The annual review is the coordinator's and the DPO's."""
    return bool(group.coordinator_id == current_user.id or current_user.has_role(Role.DPO))


@bp.app_template_global()
def charter_tabs(group: OperationalGroup) -> list[tuple[str, str]]:
    """The charter pages of ``group`` this person may open (no tab ends in a 403)."""
    tabs = [("charter.group", _("Versions et signatures")), ("charter.what_if", _("Simulation"))]
    if _may_represent(group):
        tabs.append(("charter.decline", _("Refus de partager")))
    if _may_review(group):
        tabs.append(("charter.review", _("Bilan annuel")))
    return tabs


@bp.route("/")
def index() -> Any:
    """The groups the person's organisation sits in, and the charter that applies to it."""
    service = charters()
    groups = db().scalars(select(OperationalGroup).order_by(OperationalGroup.name)).all()
    oversees = any(current_user.has_role(r) for r in OVERSIGHT)
    rows = []
    for group in groups:
        partners = service.partners(group)
        if not oversees and current_user.organisation_id not in {o.id for o in partners}:
            continue
        rows.append(
            {
                "group": group,
                "latest": service.latest(group),
                "mine": service.applicable(group, current_user.organisation),
            }
        )
    return render_template("charter/index.html", rows=rows)


@bp.route("/<public_id>/")
def group(public_id: str) -> Any:
    """Versions, who signed the newest one, and this partner's declinations."""
    group = _readable_group(public_id)
    service = charters()
    latest = service.latest(group)
    partners = service.partners(group)
    status = [(org, service.signature_of(latest, org) if latest else None) for org in partners]
    return render_template(
        "charter/group.html",
        group=group,
        versions=service.versions(group),
        latest=latest,
        status=status,
        mine=service.applicable(group, current_user.organisation),
        declinations=service.declinations(group),
        may_represent=_may_represent(group),
        signed=service.signature_of(latest, current_user.organisation) if latest else None,
        is_coordinator=group.coordinator_id == current_user.id,
        sign_form=CharterSignForm(signatory=current_user.name),
    )


@bp.route("/<public_id>/v<int:number>")
def version(public_id: str, number: int) -> Any:
    """The text partners sign: articles, then the field catalogue."""
    group = _readable_group(public_id)
    stored = _version_or_404(group, number)
    return render_template(
        "charter/version.html", group=group, version=stored, charter=parse(stored.text)
    )


@bp.route("/<public_id>/publier", methods=["GET", "POST"])
@fresh_login_required
def publish(public_id: str) -> Any:
    """The coordinator proposes a new version: checked, compared, then published."""
    group = _group_or_404(public_id)
    if group.coordinator_id != current_user.id:
        abort(403)
    service = charters()
    form = CharterPublishForm()
    preview = None
    if form.validate_on_submit():
        preview = service.preview(group, form.text.data or "")
        if form.publish.data and preview.publishable:
            stored = service.publish(group, form.text.data or "", by=current_user)
            record(
                Action.CHARTER_PUBLISH,
                object_type="charter",
                object_id=f"{group.public_id}:v{stored.version}",
                charter_version=str(stored.version),
            )
            db().commit()
            flash(
                _(
                    "La version %(n)d est publiée. "
                    "Elle s'applique à chaque partenaire dès sa signature.",
                    n=stored.version,
                ),
                "success",
            )
            return redirect(url_for("charter.group", public_id=public_id))
        if form.publish.data:
            record(
                Action.CHARTER_PUBLISH,
                object_type="charter",
                object_id=group.public_id,
                decision=Decision.DENY,
            )
            db().commit()
            flash(_("La charte n'est pas publiée : corrigez les erreurs signalées."), "error")
    elif request.method == "GET":
        latest = service.latest(group)
        form.text.data = latest.text if latest else ""
    return render_template("charter/publish.html", group=group, form=form, preview=preview)


@bp.route("/<public_id>/v<int:number>/signer", methods=["POST"])
@fresh_login_required
def sign(public_id: str, number: int) -> Any:
    """A representative signs the version for their organisation (fresh login required)."""
    group = _group_or_404(public_id)
    if not _may_represent(group):
        abort(403)
    stored = _version_or_404(group, number)
    form = CharterSignForm()
    if not form.validate_on_submit():
        flash(_("Indiquez le nom et la qualité du signataire."), "error")
        return redirect(url_for("charter.group", public_id=public_id))
    try:
        charters().sign(
            stored, current_user.organisation, signatory=form.signatory.data or "", by=current_user
        )
    except MessageError as error:
        db().rollback()
        show_error(error)
        return redirect(url_for("charter.group", public_id=public_id))
    record(
        Action.CHARTER_SIGN,
        object_type="charter",
        object_id=f"{group.public_id}:v{stored.version}",
        charter_version=str(stored.version),
    )
    db().commit()
    flash(_("Votre organisation a signé la version %(n)d.", n=stored.version), "success")
    return redirect(url_for("charter.group", public_id=public_id))


@bp.route("/<public_id>/refus", methods=["GET", "POST"])
def decline(public_id: str) -> Any:
    """A partner declines to share a field, with its reason (the charter allows it)."""
    group = _group_or_404(public_id)
    if not _may_represent(group):
        abort(403)
    service = charters()
    form = DeclinationForm()
    if form.validate_on_submit():
        try:
            declination = service.decline(
                group,
                current_user.organisation,
                field_glob=form.field_glob.data or "",
                reason=form.reason.data or "",
                by=current_user,
            )
        except MessageError as error:
            db().rollback()
            show_error(error)
        else:
            record(
                Action.CHARTER_DECLINE,
                object_type="declination",
                # The glob itself (e.g. "sante.*") stays in the database: audit ids are plain.
                object_id=str(declination.id),
            )
            db().commit()
            flash(_("Le refus de partager est enregistré."), "success")
            return redirect(url_for("charter.decline", public_id=public_id))
    latest = service.latest(group)
    return render_template(
        "charter/decline.html",
        group=group,
        form=form,
        declinations=service.declinations(group, current_user.organisation),
        fields=parse(latest.text).fields if latest else (),
    )


@bp.route("/<public_id>/simulation")
def what_if(public_id: str) -> Any:
    """Choose a sender, a recipient and a purpose; see field by field what passes and why."""
    group = _readable_group(public_id)
    service = charters()
    form = WhatIfForm(request.args)
    partners = service.partners(group)
    form.sender.choices = choices([(o.id, o.name) for o in partners])
    latest = service.latest(group)
    charter = parse(latest.text) if latest else None
    form.purpose.choices = choices(
        [(p.id, p.label_fr) for p in charter.purposes] if charter else []
    )
    result = None
    sender = None
    if request.args and form.validate():
        sender = next((o for o in partners if o.id == form.sender.data), None)
        applied = service.applicable(group, sender) if sender else None
        if sender is None or applied is None:
            flash(
                _(
                    "Cette organisation n'a signé aucune version : "
                    "elle ne prend pas part aux échanges."
                ),
                "error",
            )
        else:
            result = (
                *service.what_if(
                    applied,
                    sender=sender,
                    recipient_roles=[Role(r) for r in form.recipient_roles.data or []],
                    recipient_kind=OrgKind(form.recipient_kind.data),
                    recipient_member=bool(form.recipient_member.data),
                    purpose=form.purpose.data or "",
                    meeting_day=bool(form.meeting_day.data),
                ),
                applied,
            )
    return render_template("charter/what_if.html", group=group, form=form, result=result)


def review_period(form: PeriodForm) -> tuple[datetime, datetime]:
    """The period of the review: the last 12 months by default, whole days, UTC bounds."""
    end = form.end.data or now().date()
    start = form.start.data or (end - timedelta(days=365))
    return (
        datetime.combine(start, time.min, tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC),
    )


def review_data(group: OperationalGroup, since: datetime, until: datetime) -> dict[str, Any]:
    """How the charter was applied over a period: versions, signatures, declinations, refusals."""
    service = charters()
    versions = [v for v in service.versions(group) if since <= v.published_at < until]
    signatures = [
        s for v in service.versions(group) for s in v.signatures if since <= s.signed_at < until
    ]
    declinations = (
        db()
        .scalars(
            select(CharterDeclination).where(
                CharterDeclination.group_id == group.id,
                CharterDeclination.recorded_at >= since,
                CharterDeclination.recorded_at < until,
            )
        )
        .all()
    )
    refusals = tally(
        state().audit_log, EventFilter(decision=Decision.DENY, since=since, until=until)
    )
    charter_acts = tally(
        state().audit_log,
        EventFilter(
            actions=(Action.CHARTER_PUBLISH, Action.CHARTER_SIGN, Action.CHARTER_DECLINE),
            since=since,
            until=until,
        ),
    )
    return {
        "versions": versions,
        "signatures": sorted(signatures, key=lambda s: s.signed_at),
        "declinations": declinations,
        "refusals": refusals,
        "charter_acts": charter_acts,
    }


def _review_context(public_id: str) -> dict[str, Any]:
    group = _group_or_404(public_id)
    if not _may_review(group):
        abort(403)
    form = PeriodForm(request.args)
    if request.args and not form.validate():
        # An impossible or out-of-range day is shown as an error and the default used.
        for field in (form.start, form.end):
            if field.errors:
                field.data = None
    since, until = review_period(form)
    record(
        Action.AUDIT_READ, object_type="group", object_id=group.public_id, purpose="charter_review"
    )
    return {
        "group": group,
        "form": form,
        "since": since,
        "until": until - timedelta(days=1),
        **review_data(group, since, until),
    }


@bp.route("/<public_id>/bilan")
def review(public_id: str) -> Any:
    """Annual review of how the charter was applied (coordinator and DPO)."""
    return render_template("charter/review.html", **_review_context(public_id))


@bp.route("/<public_id>/bilan.pdf")
def review_pdf(public_id: str) -> Any:
    """The annual review as a printable PDF (no personal data about the young people)."""
    context = _review_context(public_id)
    data = render_pdf("charter/review_pdf.html", generated=now(), **context)
    name = ascii_filename(
        "maillon-bilan-charte",
        context["group"].public_id,
        context["since"].strftime("%Y%m%d"),
        context["until"].strftime("%Y%m%d"),
        extension="pdf",
    )
    return pdf_response(data, filename=name)


@bp.route("/<public_id>/composition", methods=["GET", "POST"])
@fresh_login_required
def composition(public_id: str) -> Any:
    """The coordinator decides who sits in the group and may hand the coordination over
    (fresh login: who sits in the group decides who sees what). Each change is recorded and
    listed for the DPO."""
    group = _group_or_404(public_id)
    if group.coordinator_id != current_user.id:
        abort(403)
    service = Groups(db(), clock=now)
    eligible = service.eligible()
    form = MembersForm()
    form.members.choices = choices([(u.id, f"{u.name} — {u.organisation.name}") for u in eligible])
    form.coordinator.choices = choices(
        [(0, _("— garder la coordination —"))]
        + [
            (u.id, f"{u.name} — {u.organisation.name}")
            for u in eligible
            if u.has_role(Role.COORDINATOR) and u.id != current_user.id
        ]
    )
    if form.validate_on_submit():
        successor = db().get(User, form.coordinator.data) if form.coordinator.data else None
        try:
            service.set_members(group, current_user, form.members.data or [])
            if successor is not None:
                service.hand_over(group, current_user, successor)
        except GroupRefusedError as error:
            db().rollback()
            record(
                Action.GROUP_MEMBERS,
                object_type="group",
                object_id=group.public_id,
                decision=Decision.DENY,
            )
            show_error(error)
        else:
            record(Action.GROUP_MEMBERS, object_type="group", object_id=group.public_id)
            if successor is not None:
                record(
                    Action.GROUP_COORDINATOR,
                    object_type="group",
                    object_id=group.public_id,
                    rule=successor.public_id,
                )
            db().commit()
            flash(_("La composition du groupe est enregistrée."), "success")
            if successor is not None:
                return redirect(url_for("charter.group", public_id=public_id))
            return redirect(url_for("charter.composition", public_id=public_id))
    if request.method == "GET":
        form.members.data = [m.user_id for m in group.memberships]
        form.coordinator.data = 0
    return render_template("charter/composition.html", group=group, form=form)
