"""Consent pages of a case: the history of the three records, and recording each of them.

``/dossiers/<ref>/consentement``. Anyone with a part in the case sees the situation and the
history (never the evidence itself: its digest); the référent and the professionals named on the
case team record prior information, accords and the tripartite contract, and withdraw an accord
at its grantor's request (fresh login). Every page records its event; every change takes effect
before its event is placed in the log (:mod:`hub.consents`). The rules are :mod:`consent`'s.
"""

from __future__ import annotations

import base64
import binascii
from datetime import date, timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from audit.events import Action
from charter.vocabulary import ORG_KIND_LABELS_EN, ORG_KIND_LABELS_FR, OrgKind
from consent import (
    ConsentError,
    ConsentInvalidError,
    EvidenceKind,
    Grantor,
    InformationMethod,
    Scope,
    Upload,
    age_on,
    local_day,
)
from consent.vocabulary import (
    GRANTOR_LABELS_EN,
    GRANTOR_LABELS_FR,
    METHOD_LABELS_EN,
    METHOD_LABELS_FR,
)
from hub import consents
from hub.cases import (
    CaseAccessDeniedError,
    CaseContext,
    charter_ref,
    loggable_reference,
    unknown_case,
)
from hub.forms import AdhesionForm, ConfirmForm, ConsentForm, InformationForm, choices
from hub.i18n import page_is_english
from hub.models import Case, Organisation, User
from hub.pdf import ascii_filename, pdf_response, render_pdf
from hub.recording import record_case
from hub.security import fresh_login_required, is_fresh
from hub.state import cases, db, state

bp = Blueprint("consent", __name__, url_prefix="/dossiers/<reference>/consentement")

# A drawn signature arrives as a PNG data URL; anything larger is not a signature.
MAX_SIGNATURE_BYTES = 512 * 1024
_PNG_DATA_URL = "data:image/png;base64,"


def _grantor_label(grantor: Grantor) -> str:
    return (GRANTOR_LABELS_EN if page_is_english() else GRANTOR_LABELS_FR)[grantor]


def _method_label(method: InformationMethod) -> str:
    return (METHOD_LABELS_EN if page_is_english() else METHOD_LABELS_FR)[method]


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"grantor_label": _grantor_label, "method_label": _method_label}


def _context(reference: str, action: Action) -> CaseContext:
    """The person's part in the case; a refusal is recorded as ``action`` denied (403)."""
    case = cases().by_reference(reference)
    try:
        if case is None:
            raise unknown_case()  # the same answer as a refusal
        return cases().context(case, current_user)
    except CaseAccessDeniedError as error:
        record_case(action, loggable_reference(reference), allowed=False, rule=error.rule)
        abort(403)


def _manager(reference: str, action: Action) -> CaseContext:
    """Like :func:`_context`, for the people who record consent (référent, case team)."""
    ctx = _context(reference, action)
    if not consents.may_manage(ctx):
        consents.record_refusal(ctx, action, "not_case_team")
        abort(403)
    return ctx


def _refused(ctx: CaseContext, action: Action, error: ConsentError) -> None:
    """Roll back, record the refusal with its code, and show it in French."""
    db().rollback()
    consents.record_refusal(ctx, action, error.code)
    flash(_(error.message, **error.params), "error")


def _upload(kind: str | None, scan: Any, signature: str | None) -> Upload | None:
    """The evidence posted: a scanned file, or a signature drawn on the page (PNG data URL)."""
    if kind == EvidenceKind.SIGNATURE.value:
        raw = (signature or "").strip()
        if not raw.startswith(_PNG_DATA_URL):
            return None
        encoded = raw[len(_PNG_DATA_URL) :]
        if len(encoded) > MAX_SIGNATURE_BYTES * 4 // 3 + 4:
            raise ConsentInvalidError(
                "evidence_too_large",
                "La signature dépasse %(max)d Kio : effacez-la et signez à nouveau.",
                max=MAX_SIGNATURE_BYTES // 1024,
            )
        try:
            return Upload(EvidenceKind.SIGNATURE, base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            return Upload(EvidenceKind.SIGNATURE, b"")
    if scan is None or not getattr(scan, "filename", ""):
        return None
    limit = state().config.consent_evidence_max_bytes
    # Read one byte more than allowed: the consent package refuses it with a clear message.
    return Upload(EvidenceKind.SCAN, scan.stream.read(limit + 1))


# -- the history --------------------------------------------------------------------------


@bp.route("")
def show(reference: str) -> Any:
    """The case's consent situation and the history of its three records."""
    ctx = _context(reference, Action.CONSENT_READ)
    service = cases()
    record_case(Action.CONSENT_READ, ctx.case.reference, charter_version=charter_ref(ctx.version))
    situation = consents.overview(service, ctx)
    history = service.consents.history(ctx.case.id)
    people = _names(
        {i.recorded_by_id for i in history.information}
        | {c.recorded_by_id for c in history.consents}
        | {a.counsellor_id for a in history.adhesions}
        | {a.referent_id for a in history.adhesions}
        | {e.by_id for c in history.consents for e in c.history}
    )
    orgs = _org_names(
        {o for c in history.consents for o in c.scope.recipient_orgs | c.scope.excluded_orgs}
        | {i.recorded_by_org_id for i in history.information}
        | {c.recorded_by_org_id for c in history.consents}
    )
    return render_template(
        "consent/show.html",
        ctx=ctx,
        case=ctx.case,
        situation=situation,
        history=history,
        people=people,
        orgs=orgs,
        manages=consents.may_manage(ctx),
        show_age=consents.sees_birth_date(service, ctx, situation.state),
        today=local_day(service.clock()),
        purposes={p.id: p for p in ctx.charter.purposes},
        category_label=lambda cid: _category_label(ctx, cid),
        kind_label=_kind_label,
        withdraw_form=ConfirmForm(),
    )


def _names(ids: set[int | None]) -> dict[int, str]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    return {u.id: u.name for u in db().scalars(select(User).where(User.id.in_(wanted)))}


def _org_names(ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = db().scalars(select(Organisation).where(Organisation.id.in_(ids)))
    return {o.id: o.name for o in rows}


def _category_label(ctx: CaseContext, category_id: str) -> str:
    found = ctx.charter.consent_category(category_id)
    if found is None:
        return category_id
    return found.label_en if page_is_english() else found.label_fr


def _kind_label(kind: OrgKind) -> str:
    return (ORG_KIND_LABELS_EN if page_is_english() else ORG_KIND_LABELS_FR)[kind]


# -- prior information --------------------------------------------------------------------


@bp.route("/information", methods=["GET", "POST"])
def information(reference: str) -> Any:
    """Record the prior information of the young person or a holder of parental authority."""
    ctx = _manager(reference, Action.CONSENT_INFORMATION)
    service = cases()
    rules = ctx.consent_rules
    form = InformationForm()
    form.subject.choices = choices([(g.value, _grantor_label(g)) for g in Grantor])
    form.method.choices = choices(
        [("", _("— choisir —"))] + [(m.value, _method_label(m)) for m in InformationMethod]
    )
    if request.method == "GET":
        form.notice_version.data = rules.notice_version
        form.informed_on.data = local_day(service.clock())
        form.subject.data = request.args.get("personne", Grantor.YOUNG_PERSON.value)
    if form.validate_on_submit():
        birth = service.birth_date(ctx.case, rules)
        subject = Grantor(form.subject.data)
        exception = bool(form.exception.data)
        if exception and not is_fresh():
            # Setting a parent's say aside is as sensitive as a withdrawal.
            flash(_("Pour cette action, confirmez votre identité."), "info")
            return redirect(url_for("auth.reauthenticate", next=request.path))

        def inform() -> Any:
            recorded = service.consents.inform(
                ctx.case.id,
                consents.actor_of(ctx),
                subject=subject,
                rules=rules,
                birth=birth,
                method=InformationMethod(form.method.data) if form.method.data else None,
                informed_on=form.informed_on.data,
                notice_version=form.notice_version.data,
                exception=exception,
                justification=form.justification.data or "",
                sealer=consents.sealer(service, ctx.case),
                supersedes=form.supersedes.data,
            )
            if exception:
                consents.tell(
                    service,
                    ctx.case,
                    "consent_exception",
                    f"consent-exception:{recorded.id}",
                    consents.dpo_users(service),
                )
            return recorded

        try:
            consents.audited_change(
                service,
                ctx,
                Action.CONSENT_INFORMATION,
                inform,
                # An exception widens (a parent's accord is no longer asked); a holder newly
                # informed, or a correction, restricts (that accord is now needed).
                restricts=not exception and (subject.is_holder or form.supersedes.data is not None),
                rule="exception" if exception else rules.article,
                grantor=subject,
            )
        except ConsentError as error:
            _refused(ctx, Action.CONSENT_INFORMATION, error)
            return render_template("consent/information.html", ctx=ctx, form=form), 400
        flash(_("L'information est enregistrée."), "success")
        return redirect(url_for("consent.show", reference=reference))
    status = 400 if request.method == "POST" else 200
    return render_template("consent/information.html", ctx=ctx, form=form), status


# -- consent ------------------------------------------------------------------------------


def _consent_form(ctx: CaseContext) -> ConsentForm:
    form = ConsentForm()
    english = page_is_english()
    charter = ctx.charter
    form.grantor.choices = choices([(g.value, _grantor_label(g)) for g in Grantor])
    form.purposes.choices = choices(
        [(p.id, p.label_en if english else p.label_fr) for p in charter.purposes]
    )
    form.categories.choices = choices(
        [(c, _category_label(ctx, c)) for c in charter.consent_category_ids]
    )
    kinds = choices([(k.value, _kind_label(k)) for k in OrgKind])
    form.recipient_kinds.choices = kinds
    form.excluded_kinds.choices = list(kinds)
    partners = cases().charters.partners(ctx.case.group)
    form.recipient_orgs.choices = choices([(o.id, o.name) for o in partners])
    form.excluded_orgs.choices = choices([(o.id, o.name) for o in partners])
    return form


@bp.route("/accord", methods=["GET", "POST"])
def record_consent(reference: str) -> Any:
    """Record a grantor's accord (or refusal): scope, validity, evidence."""
    ctx = _manager(reference, Action.CONSENT_RECORD)
    service = cases()
    rules = ctx.consent_rules
    form = _consent_form(ctx)
    birth = service.birth_date(ctx.case, rules)
    today = local_day(service.clock())
    if request.method == "GET":
        form.grantor.data = request.args.get("personne", Grantor.YOUNG_PERSON.value)
        form.valid_from.data = today
        form.valid_until.data = today + timedelta(days=365)
        form.purposes.data = [p.id for p in ctx.charter.purposes]
        form.recipient_orgs.data = [o.id for o in cases().charters.partners(ctx.case.group)]
    if form.validate_on_submit():
        assert form.valid_from.data is not None and form.valid_until.data is not None
        scope = Scope(
            purposes=frozenset(form.purposes.data or ()),
            categories=frozenset(form.categories.data or ()),
            recipient_kinds=frozenset(OrgKind(k) for k in form.recipient_kinds.data or ()),
            recipient_orgs=frozenset(form.recipient_orgs.data or ()),
            excluded_kinds=frozenset(OrgKind(k) for k in form.excluded_kinds.data or ()),
            excluded_orgs=frozenset(form.excluded_orgs.data or ()),
        )
        given = form.decision.data == "given"
        grantor = Grantor(form.grantor.data)
        valid_from, valid_until = form.valid_from.data, form.valid_until.data
        action = Action.CONSENT_RECORD if given else Action.CONSENT_REFUSE
        try:
            upload = _upload(form.evidence_kind.data, form.scan.data, form.signature.data)
            consents.audited_change(
                service,
                ctx,
                action,
                lambda: service.consents.record_consent(
                    ctx.case.id,
                    consents.actor_of(ctx),
                    grantor=grantor,
                    given=given,
                    scope=scope,
                    valid_from=valid_from,
                    valid_until=valid_until,
                    rules=rules,
                    birth=birth,
                    purposes=ctx.charter.purpose_ids,
                    categories=ctx.charter.consent_category_ids,
                    charter_version=charter_ref(ctx.version),
                    evidence=upload,
                    sealer=consents.sealer(service, ctx.case),
                    supersedes=form.supersedes.data,
                ),
                # A refusal or a correction narrows what passes; a new accord widens it.
                restricts=not given or form.supersedes.data is not None,
                rule=rules.article,
                grantor=grantor,
            )
        except ConsentError as error:
            _refused(ctx, action, error)
            return _consent_page(ctx, form, birth, today, 400)
        flash(
            _("L'accord est enregistré. Remettez le reçu à la personne.")
            if given
            else _("Le refus est enregistré : rien ne sera partagé sur ce fondement."),
            "success",
        )
        return redirect(url_for("consent.show", reference=reference))
    return _consent_page(ctx, form, birth, today, 400 if request.method == "POST" else 200)


def _consent_page(
    ctx: CaseContext, form: ConsentForm, birth: date | None, today: date, status: int
) -> Any:
    rules = ctx.consent_rules
    shows = birth is not None and consents.sees_birth_date(cases(), ctx)
    return (
        render_template(
            "consent/accord.html",
            ctx=ctx,
            form=form,
            rules=rules,
            age=age_on(birth, today) if shows and birth is not None else None,
            minor=rules.is_minor(birth, today),
            parents_required=rules.parents_required(birth, today),
            max_mib=state().config.consent_evidence_max_bytes // (1024 * 1024),
        ),
        status,
    )


@bp.route("/<int(max=2147483647):consent_id>/retrait", methods=["GET", "POST"])
@fresh_login_required
def withdraw(reference: str, consent_id: int) -> Any:
    """Withdraw an accord at its grantor's request: effective at once (fresh login)."""
    ctx = _manager(reference, Action.CONSENT_WITHDRAW)
    service = cases()
    try:
        consent = service.consents.consent(ctx.case.id, consent_id)
    except ConsentError:
        abort(404)
    form = ConfirmForm()
    if form.validate_on_submit():
        try:
            consents.withdraw(service, ctx, consent_id, consent.grantor.value)
        except ConsentError as error:
            _refused(ctx, Action.CONSENT_WITHDRAW, error)
            return redirect(url_for("consent.show", reference=reference))
        flash(
            _(
                "L'accord est retiré. Plus rien n'est partagé sur son fondement ; les "
                "partenaires concernés sont prévenus."
            ),
            "success",
        )
        return redirect(url_for("consent.show", reference=reference))
    return render_template("consent/withdraw.html", ctx=ctx, consent=consent, form=form)


# -- adhesion -----------------------------------------------------------------------------


@bp.route("/adhesion", methods=["GET", "POST"])
def adhesion(reference: str) -> Any:
    """Record the tripartite contract signed by the young person, a counsellor, the référent."""
    ctx = _manager(reference, Action.CONSENT_ADHESION)
    service = cases()
    form = AdhesionForm()
    case: Case = ctx.case
    team = [m.user for m in case.members if m.user_id != case.referent_id]
    form.counsellor.choices = choices(
        [(u.id, f"{u.name} ({u.organisation.name})") for u in sorted(team, key=lambda u: u.name)]
    )
    if request.method == "GET":
        form.signed_on.data = local_day(service.clock())
    if case.referent_id is None:
        flash(_("Le groupe doit d'abord désigner le référent de parcours."), "error")
        return redirect(url_for("consent.show", reference=reference))
    if form.validate_on_submit():
        assert form.signed_on.data is not None
        signed_on, counsellor = form.signed_on.data, int(form.counsellor.data)
        referent_id = case.referent_id
        try:
            upload = _upload(form.evidence_kind.data, form.scan.data, form.signature.data)
            consents.audited_change(
                service,
                ctx,
                Action.CONSENT_ADHESION,
                lambda: service.consents.record_adhesion(
                    case.id,
                    consents.actor_of(ctx),
                    signed_on=signed_on,
                    counsellor_id=counsellor,
                    referent_id=referent_id,
                    evidence=upload,
                    sealer=consents.sealer(service, case),
                    supersedes=form.supersedes.data,
                ),
                restricts=form.supersedes.data is not None,
                grantor=Grantor.YOUNG_PERSON,
            )
        except ConsentError as error:
            _refused(ctx, Action.CONSENT_ADHESION, error)
            return render_template("consent/adhesion.html", ctx=ctx, form=form), 400
        flash(_("Le contrat d'engagement est enregistré."), "success")
        return redirect(url_for("consent.show", reference=reference))
    status = 400 if request.method == "POST" else 200
    return render_template("consent/adhesion.html", ctx=ctx, form=form), status


# -- receipts -----------------------------------------------------------------------------


@bp.route("/<int(max=2147483647):consent_id>/recu", methods=["POST"])
def receipt_pdf(reference: str, consent_id: int) -> Any:
    """Issue a receipt of an accord in force for its grantor, as a tagged PDF (PDF/UA), in
    French or English (a POST: issuing keeps a receipt and records it)."""
    ctx = _manager(reference, Action.CONSENT_RECEIPT)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    language = "en" if request.form.get("langue") == "en" else "fr"
    service = cases()
    try:
        consent = service.consents.consent(ctx.case.id, consent_id)
    except ConsentError:
        abort(404)
    if not consent.in_force(local_day(service.clock())):
        consents.record_refusal(ctx, Action.CONSENT_RECEIPT, "not_in_force")
        flash(_("Cet accord n'est pas en vigueur : il n'y a pas de reçu à remettre."), "error")
        return redirect(url_for("consent.show", reference=reference))
    history = service.consents.history(ctx.case.id)
    receipt = consents.issue_receipt(
        service, ctx, consent, language=language, evidence=dict(history.evidence)
    )
    # PDF/UA: the receipt is for the young person and their parents; it must read aloud well.
    # Printed in the receipt's language, whatever the page's.
    with force_locale(language):
        data = render_pdf(
            "consent/receipt_pdf.html", variant="pdf/ua-1", receipt=receipt, body=receipt.body
        )
    return pdf_response(data, filename=ascii_filename("recu", receipt.reference, extension="pdf"))
