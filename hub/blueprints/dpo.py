"""The DPO console: integrity of the audit log, journal search, access reports (page and PDF),
exports and anomaly review (DESIGN §1 DPO row, §8).

For the DPO only. The DPO sees who did what, when, why and under which rule — the log holds
pseudonymous ids, never form content. Reading the log is itself logged: each view records its
``audit.read`` (or ``audit.export``) event *before* it reads the data, and
:func:`hub.recording.record` answers 503 when that event cannot be written, so nothing is
served unrecorded. Query logic lives in :mod:`hub.dpo_reports` and :mod:`hub.anomaly_review`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from sqlalchemy import select
from wtforms import Field, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from audit.errors import AuditError
from audit.events import IDENT, OBJECT_TYPE, Action, Decision
from audit.queries import EventFilter, search
from charter.vocabulary import Role
from consent import ConsentRules, summarise
from hub import anomaly_review, dpo_reports
from hub.action_labels import action_label, recorded_actions
from hub.anomaly_review import AnomalyFinding
from hub.cases import Cases
from hub.celery_app import enqueue
from hub.charters import parse
from hub.dates import DayError, parse_day
from hub.dpo_reports import API_CLIENT_PREFIX
from hub.dpo_tasks import detect_anomalies
from hub.forms import ConfirmForm, Form
from hub.home import case_refs
from hub.i18n import N_, page_is_english
from hub.models import Case, Organisation, User
from hub.pagination import page_number, paginate
from hub.pdf import ascii_filename, attachment, pdf_response, render_pdf
from hub.recording import AuditUnavailable, record
from hub.security import role_required
from hub.state import db, now, state

bp = Blueprint("dpo", __name__, url_prefix="/dpo")

# The charsets the log itself enforces (audit.events): anything else cannot be in it.
_IDENT = IDENT
_OBJECT_TYPE = OBJECT_TYPE

RULE_LABELS = {
    "bulk_access": N_("Consultations en masse"),
    "off_hours": N_("Consultations hors des heures ouvrées"),
    "refusal_burst": N_("Série d'accès refusés"),
    "unexpected_access": N_("Accès par une personne non attendue"),
}
DECISION_LABELS = {
    Decision.ALLOW.value: N_("Autorisé"),
    Decision.DENY.value: N_("Refusé"),
    Decision.NONE.value: N_("Sans objet"),
}
# The decision select needs a non-empty value for "no decision" ("" means "any").
_NO_DECISION = "none"


@bp.before_request
@role_required(Role.DPO)
def _dpo_only() -> None:
    """Every page here is for the DPO; others get 403 (recorded as a refusal)."""


@bp.errorhandler(AuditError)
def _log_unreadable(_error: AuditError) -> Any:
    # The log could be written (the read was recorded) but not read back: same answer as an
    # unwritable log, 503 with nothing served.
    return current_app.handle_http_exception(AuditUnavailable())


def _url(endpoint: str, *values: Mapping[str, str]) -> str:
    """``url_for`` with the query values of several mappings (later ones win)."""
    merged: dict[str, Any] = {}
    for part in values:
        merged.update(part)
    return url_for(endpoint, **merged)


def _record_read(object_type: str, object_id: str, purpose: str) -> None:
    record(Action.AUDIT_READ, object_type=object_type, object_id=object_id, purpose=purpose)


# -- forms ---------------------------------------------------------------------------------


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _parse_date(value: str | None) -> date | None:
    try:
        return parse_day(value)
    except DayError as error:
        raise ValueError(error.message) from None


class PeriodForm(Form):
    """A period in days, Europe/Paris, both ends included (GET form)."""

    class Meta:
        csrf = False

    start = StringField(
        _l("Du"), filters=[_strip], render_kw={"type": "date"}, validators=[Optional()]
    )
    end = StringField(
        _l("Au"), filters=[_strip], render_kw={"type": "date"}, validators=[Optional()]
    )

    def _date(self, field: Field) -> date | None:
        try:
            return _parse_date(field.data)
        except ValueError:
            return None

    def validate_start(self, field: Field) -> None:
        """A real date, within the days Maillon handles."""
        if field.data:
            try:
                parse_day(field.data)
            except DayError as error:
                raise ValidationError(_(error.message)) from None

    def validate_end(self, field: Field) -> None:
        """A real date within the days Maillon handles, not before the start."""
        if not field.data:
            return
        try:
            end = parse_day(field.data)
        except DayError as error:
            raise ValidationError(_(error.message)) from None
        start = self._date(self.start)
        if start is not None and end is not None and end < start:
            raise ValidationError(_("La date de fin précède la date de début."))

    def bounds(self) -> tuple[datetime | None, datetime | None]:
        """The period as instants (call after a successful validation)."""
        return dpo_reports.period_bounds(self._date(self.start), self._date(self.end))


def _identifier(pattern: re.Pattern[str]) -> Callable[[FlaskForm, Field], None]:
    def check(_form: FlaskForm, field: Field) -> None:
        if field.data and pattern.fullmatch(field.data) is None:
            raise ValidationError(
                _("Identifiant invalide : lettres, chiffres et . _ : / - uniquement, sans espace.")
            )

    return check


def _resolve(value: str | None, model: type[User] | type[Organisation]) -> str | None:
    """The public id ``value`` names: itself when it is one, else the single row whose name
    contains it (case-insensitive); a clear error when none or several match."""
    if not value:
        return value
    if _IDENT.fullmatch(value) and (
        # An organisation's system is logged as client:<id>: searched as it stands.
        (model is User and value.startswith(API_CLIENT_PREFIX))
        or db().scalar(select(model.public_id).where(model.public_id == value))
    ):
        return value
    found = list(
        db().scalars(
            select(model.public_id).where(model.name.icontains(value, autoescape=True)).limit(2)
        )
    )
    person = model is User
    if not found:
        raise ValidationError(
            _("Aucune personne ne correspond à « %(value)s ».", value=value)
            if person
            else _("Aucune organisation ne correspond à « %(value)s ».", value=value)
        )
    if len(found) > 1:
        raise ValidationError(
            _(
                "Plusieurs personnes correspondent à « %(value)s » : choisissez dans la liste.",
                value=value,
            )
            if person
            else _(
                "Plusieurs organisations correspondent à « %(value)s » : choisissez dans la liste.",
                value=value,
            )
        )
    return str(found[0])


class JournalForm(PeriodForm):
    """Journal filters (GET form): every field set narrows the search."""

    object_type = StringField(
        _l("Type d'objet"),
        filters=[_strip],
        validators=[Optional(), Length(max=32), _identifier(_OBJECT_TYPE)],
    )
    object_id = StringField(
        _l("Identifiant de l'objet"),
        filters=[_strip],
        validators=[Optional(), Length(max=128), _identifier(_IDENT)],
    )
    actor_user = StringField(
        _l("Personne (nom ou identifiant)"),
        filters=[_strip],
        validators=[Optional(), Length(max=128)],
    )
    actor_org = StringField(
        _l("Organisation (nom ou identifiant)"),
        filters=[_strip],
        validators=[Optional(), Length(max=128)],
    )
    action = SelectField(_l("Action"), validate_choice=False)
    decision = SelectField(_l("Décision"), validate_choice=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action.choices = [("", _("Toutes"))] + [
            (a.value, action_label(a)) for a in recorded_actions()
        ]
        self.decision.choices = [
            ("", _("Toutes")),
            (Decision.ALLOW.value, _("Autorisé")),
            (Decision.DENY.value, _("Refusé")),
            (_NO_DECISION, _("Sans objet")),
        ]
        # Suggestions by name from the page's datalists; the value sent is the public id.
        self.actor_user.render_kw = {"list": "dpo-people", "autocomplete": "off"}
        self.actor_org.render_kw = {"list": "dpo-organisations", "autocomplete": "off"}

    def validate_actor_user(self, field: Field) -> None:
        """A public id as it stands, or a name (or part of one) naming exactly one person."""
        field.data = _resolve(field.data, User)

    def validate_actor_org(self, field: Field) -> None:
        """A public id as it stands, or a name (or part of one) naming one organisation."""
        field.data = _resolve(field.data, Organisation)

    def validate_object_id(self, field: Field) -> None:
        """An object id means nothing without its type."""
        if field.data and not self.object_type.data:
            raise ValidationError(_("Précisez aussi le type d'objet (par exemple case)."))

    def validate_action(self, field: Field) -> None:
        """One of the log's actions."""
        if field.data and field.data not in {a.value for a in recorded_actions()}:
            raise ValidationError(_("Choisissez une action de la liste."))

    def validate_decision(self, field: Field) -> None:
        """Allowed, refused or none."""
        if field.data and field.data not in {Decision.ALLOW, Decision.DENY, _NO_DECISION}:
            raise ValidationError(_("Choisissez une décision de la liste."))

    def criteria(self) -> EventFilter:
        """The filter (call after a successful validation)."""
        since, until = self.bounds()
        decision = self.decision.data
        return EventFilter(
            object_type=self.object_type.data or None,
            object_id=self.object_id.data or None,
            actor_user=self.actor_user.data or None,
            actor_org=self.actor_org.data or None,
            actions=(Action(self.action.data),) if self.action.data else (),
            decision=(
                None
                if not decision
                else Decision.NONE
                if decision == _NO_DECISION
                else Decision(decision)
            ),
            since=since,
            until=until,
        )

    def query_args(self) -> dict[str, str]:
        """The filter as query-string arguments (for links to other pages and exports)."""
        names = ("object_type", "object_id", "actor_user", "actor_org", "action", "decision")
        args = {name: self[name].data for name in (*names, "start", "end")}
        return {k: v for k, v in args.items() if v}


class ReviewForm(Form):
    """Mark an anomaly reviewed, saying what was found."""

    note = TextAreaField(
        _l("Conclusion de l'examen"),
        filters=[_strip],
        validators=[DataRequired(), Length(min=3, max=2000)],
        render_kw={"rows": "6", "cols": "60"},
    )
    submit = SubmitField(_l("Marquer comme examinée"))


# -- template helpers ----------------------------------------------------------------------


def _paris(value: datetime, *, english: str, french: str) -> str:
    """``value`` in Europe/Paris, formatted for the page's language."""
    return value.astimezone(dpo_reports.PARIS).strftime(english if page_is_english() else french)


@bp.app_template_filter("paris_time")
def paris_time(value: datetime | None) -> str:
    """A time in Europe/Paris, to the second, in the page's language."""
    if value is None:
        return ""
    return _paris(value, english="%Y-%m-%d %H:%M:%S", french="%d/%m/%Y %H:%M:%S")


@bp.app_template_filter("paris_date")
def paris_date(value: datetime | None) -> str:
    """A day in Europe/Paris, in the page's language."""
    if value is None:
        return ""
    return _paris(value, english="%Y-%m-%d", french="%d/%m/%Y")


@bp.app_template_filter("breakable")
def breakable(value: object, every: int = 16) -> Markup:
    """``value`` escaped, with line-break opportunities inside long identifiers (hex ids,
    hashes), so that tables stay within the page; short words are left whole."""
    text = str(value)
    return Markup("<wbr>").join(escape(text[i : i + every]) for i in range(0, len(text), every))


@bp.context_processor
def _labels() -> dict[str, Any]:
    space, room = state().audit_space()
    return {
        "rule_labels": RULE_LABELS,
        "decision_labels": DECISION_LABELS,
        # Every DPO page warns while the audit store runs short (see _nav.html).
        "audit_space_low": room if space == "low" else None,
    }


# -- overview ------------------------------------------------------------------------------

# Who takes part in groups decides who sees what: the DPO sees every change of it.
COMPOSITION_ACTIONS = (
    Action.ADMIN_GROUP_CREATE,
    Action.ADMIN_GROUP_UPDATE,
    Action.GROUP_MEMBERS,
    Action.GROUP_COORDINATOR,
)


@bp.route("/")
def overview() -> Any:
    """Integrity of the log, anomalies waiting, links to the other pages."""
    _record_read("audit_log", "", "integrity")
    hub_state = state()
    integrity = dpo_reports.check_integrity(hub_state.audit_log, hub_state.audit_signer.verifier())
    composition = search(
        hub_state.audit_log,
        EventFilter(actions=COMPOSITION_ACTIONS),
        limit=20,
    )
    return render_template(
        "dpo/overview.html",
        integrity=integrity,
        composition=composition.events,
        names=dpo_reports.directory_for(db(), composition.events),
        unreviewed=anomaly_review.unreviewed_count(db()),
        last_scan=anomaly_review.last_scan(db()),
        vkey=hub_state.audit_signer.verifier().vkey(),
    )


# -- journal and exports -------------------------------------------------------------------


def _journal_hints() -> dict[str, Any]:
    return {
        "people": dpo_reports.people_choices(db()),
        "organisations": dpo_reports.organisation_choices(db()),
    }


@bp.route("/journal")
def journal() -> Any:
    """Search the log by object, person, organisation, action, decision and period."""
    form = JournalForm(request.args)
    if not form.validate():
        # Nothing is read from the log: no event, and the errors say what to fix.
        return render_template("dpo/journal.html", form=form, page=None, **_journal_hints())
    criteria = form.criteria()
    _record_read(*dpo_reports.subject(criteria), "search")
    cursor = _cursor(request.args.get("apres"))
    page = dpo_reports.journal(state().audit_log, db(), criteria, cursor=cursor)
    return render_template(
        "dpo/journal.html",
        form=form,
        page=page,
        args=form.query_args(),
        first_page=cursor is None,
        **_journal_hints(),
    )


def _cursor(raw: str | None) -> int | None:
    """The keyset cursor of the journal's next pages (a sequence number); None: first page."""
    if raw is None or not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


def _export(extension: str) -> Any:
    form = JournalForm(request.args)
    if not form.validate():
        return redirect(_url("dpo.journal", request.args))
    criteria = form.criteria()
    log = state().audit_log
    matching = dpo_reports.count(log, criteria)
    if matching > dpo_reports.EXPORT_LIMIT:
        flash(
            _(
                "L'export est limité à %(limit)s événements et %(n)s correspondent : "
                "réduisez la période ou précisez les filtres.",
                limit=f"{dpo_reports.EXPORT_LIMIT:,}".replace(",", "\u202f"),
                n=f"{matching:,}".replace(",", "\u202f"),
            ),
            "error",
        )
        return redirect(_url("dpo.journal", form.query_args()))
    object_type, object_id = dpo_reports.subject(criteria)
    record(
        Action.AUDIT_EXPORT,
        object_type=object_type,
        object_id=object_id,
        purpose=f"export_{extension}",
    )
    generated = now()
    # A snapshot: the events below the size read now, and the root of exactly that tree.
    log_state = dpo_reports.log_state(log, generated)
    events = dpo_reports.matching_events(
        log, criteria, stop=log_state.size, limit=dpo_reports.EXPORT_LIMIT
    )
    filename = ascii_filename(
        "maillon-journal",
        generated.astimezone(dpo_reports.PARIS).strftime("%Y%m%d-%H%M%S"),
        extension=extension,
    )
    if extension == "csv":
        return attachment(dpo_reports.csv_lines(events), filename=filename, mimetype="text/csv")
    header = {
        "format": "maillon-dpo-journal",
        "version": 1,
        "generated_at": generated.isoformat(),
        "log_size": log_state.size,
        "log_root": log_state.root,
        "filter": dpo_reports.filter_description(criteria),
    }
    return attachment(
        dpo_reports.json_chunks(events, header), filename=filename, mimetype="application/json"
    )


@bp.route("/export.csv")
def export_csv() -> Response:
    """The journal's current filter as CSV (recorded as ``audit.export``)."""
    response: Response = _export("csv")
    return response


@bp.route("/export.json")
def export_json() -> Response:
    """The journal's current filter as JSON (recorded as ``audit.export``)."""
    response: Response = _export("json")
    return response


# -- access reports ------------------------------------------------------------------------


def _report(kind: dpo_reports.ReportKind, object_type: str, object_id: str, *, pdf: bool) -> Any:
    if _OBJECT_TYPE.fullmatch(object_type) is None or _IDENT.fullmatch(object_id) is None:
        abort(404)  # such an id cannot be in the log
    form = PeriodForm(request.args)
    endpoint = "dpo.object_report" if kind is dpo_reports.ReportKind.OBJECT else "dpo.person_report"
    ids = (
        {"object_type": object_type, "object_id": object_id}
        if kind is dpo_reports.ReportKind.OBJECT
        else {"public_id": object_id}
    )
    if not form.validate():
        if pdf:
            return redirect(_url(endpoint, ids, request.args))
        return render_template("dpo/report.html", form=form, report=None, kind=kind, ids=ids)
    if pdf:
        record(
            Action.AUDIT_EXPORT, object_type=object_type, object_id=object_id, purpose="report_pdf"
        )
    else:
        _record_read(object_type, object_id, "report")
    since, until = form.bounds()
    report = dpo_reports.access_report(
        state().audit_log,
        db(),
        kind,
        object_type,
        object_id,
        since=since,
        until=until,
        now=now(),
        event_limit=dpo_reports.PDF_EVENT_LIMIT if pdf else dpo_reports.REPORT_EVENT_LIMIT,
    )
    if not pdf:
        period = {k: v for k, v in (("start", form.start.data), ("end", form.end.data)) if v}
        return render_template(
            "dpo/report.html",
            form=form,
            report=report,
            kind=kind,
            ids=ids,
            pdf_url=_url(f"{endpoint}_pdf", ids, period),
        )
    data = render_pdf("dpo/report_pdf.html", report=report)
    stamp = report.state.at.astimezone(dpo_reports.PARIS).strftime("%Y%m%d-%H%M%S")
    name = ascii_filename("maillon-acces", object_type, object_id, stamp, extension="pdf")
    return pdf_response(data, filename=name)


@bp.route("/rapport/objet/<object_type>/<object_id>")
def object_report(object_type: str, object_id: str) -> Any:
    """Who accessed this object (e.g. a case: "who received my data")."""
    return _report(dpo_reports.ReportKind.OBJECT, object_type, object_id, pdf=False)


@bp.route("/rapport/objet/<object_type>/<object_id>/pdf")
def object_report_pdf(object_type: str, object_id: str) -> Any:
    """The same report as a PDF to hand out (recorded as ``audit.export``)."""
    return _report(dpo_reports.ReportKind.OBJECT, object_type, object_id, pdf=True)


@bp.route("/rapport/personne/<public_id>")
def person_report(public_id: str) -> Any:
    """Everything one person (or API client) did."""
    object_type, _id = dpo_reports.actor_subject(public_id)
    return _report(dpo_reports.ReportKind.PERSON, object_type, public_id, pdf=False)


@bp.route("/rapport/personne/<public_id>/pdf")
def person_report_pdf(public_id: str) -> Any:
    """The same report as a PDF (recorded as ``audit.export``)."""
    object_type, _id = dpo_reports.actor_subject(public_id)
    return _report(dpo_reports.ReportKind.PERSON, object_type, public_id, pdf=True)


# -- anomalies -----------------------------------------------------------------------------


@bp.route("/anomalies")
def anomalies() -> Any:
    """Findings of the periodic scan, those waiting for review first."""
    show_all = request.args.get("etat") == "toutes"
    _record_read("anomaly", "", "anomalies")
    page = paginate(
        db(),
        anomaly_review.findings_query(unreviewed_only=not show_all),
        page_number(request.args.get("page")),
    )
    names = dpo_reports.directory(
        db(), [f.actor_user for f in page.items], [f.actor_org for f in page.items]
    )
    return render_template(
        "dpo/anomalies.html",
        page=page,
        names=names,
        show_all=show_all,
        last_scan=anomaly_review.last_scan(db()),
        confirm=ConfirmForm(),
    )


@bp.route("/anomalies/analyser", methods=["POST"])
def run_detection() -> Any:
    """Run the anomaly scan now (in the background)."""
    if not ConfirmForm().validate_on_submit():
        abort(400)
    # The scan reads the log on the DPO's request.
    _record_read("audit_log", "", "anomaly_scan")
    enqueue(db(), detect_anomalies)
    db().commit()
    flash(
        _("Analyse lancée : les nouveaux signalements apparaîtront dans quelques instants."),
        "success",
    )
    return redirect(url_for("dpo.anomalies"))


@bp.route("/anomalies/<int:finding_id>", methods=["GET", "POST"])
def finding(finding_id: int) -> Any:
    """One finding: what the rule saw, links to the events, and the review."""
    item = db().get(AnomalyFinding, finding_id)
    if item is None:
        abort(404)
    form = ReviewForm()
    if form.validate_on_submit():
        if item.reviewed:
            flash(_("Ce signalement a déjà été examiné."), "info")
            return redirect(url_for("dpo.finding", finding_id=finding_id))
        _record_read("anomaly", str(finding_id), "anomaly_review")
        done = anomaly_review.mark_reviewed(
            db(), finding_id, by=current_user, note=form.note.data or "", now=now()
        )
        db().commit()
        if done:
            flash(_("Le signalement est marqué comme examiné."), "success")
        else:
            flash(_("Ce signalement a déjà été examiné."), "info")
        return redirect(url_for("dpo.anomalies"))
    _record_read("anomaly", str(finding_id), "anomalies")
    names = dpo_reports.directory(db(), [item.actor_user], [item.actor_org])
    journal_args = {
        k: v
        for k, v in {
            "actor_user": item.actor_user,
            "actor_org": "" if item.actor_user else item.actor_org,
            "start": item.window_start.astimezone(dpo_reports.PARIS).date().isoformat(),
            "end": item.window_end.astimezone(dpo_reports.PARIS).date().isoformat(),
        }.items()
        if v
    }
    return render_template(
        "dpo/finding.html", finding=item, form=form, names=names, journal_args=journal_args
    )


# -- consent ------------------------------------------------------------------------------

CONSENT_STATUSES = ("absent", "incomplet", "en_vigueur", "retire", "expire")


@bp.route("/consentements")
def consents_overview() -> Any:
    """Consent status of every case, the exceptions « contraire à l'intérêt de l'enfant » to
    look at, and a receipt looked up by its reference — never a case's content."""
    wanted = (request.args.get("statut") or "").strip()
    reference = (request.args.get("recu") or "").strip().upper()[:16]
    _record_read("page", "dpo.consents_overview", "consent")
    service = state().cases(db())
    statuses = dpo_consent_statuses(service)
    rows = [r for r in statuses if not wanted or r.status == wanted]
    page = page_number(request.args.get("page"))
    per_page = 50
    exceptions = service.consents.exceptions()
    refs = case_refs(db(), {e.case_id for e in exceptions})
    receipt = service.consents.receipt(reference) if reference else None
    receipt_case = case_refs(db(), {receipt.case_id}).get(receipt.case_id) if receipt else None
    if reference:
        _record_read("receipt", reference, "consent")
    return render_template(
        "dpo/consents.html",
        rows=rows[(page - 1) * per_page : page * per_page],
        total=len(rows),
        pages=max(1, (len(rows) + per_page - 1) // per_page),
        number=page,
        counts={s: sum(r.status == s for r in statuses) for s in CONSENT_STATUSES},
        wanted=wanted,
        statuses=CONSENT_STATUSES,
        exceptions=exceptions,
        exception_refs=refs,
        orgs={o.id: o.name for o in db().scalars(select(Organisation))},
        reference=reference,
        receipt=receipt,
        receipt_case=receipt_case,
    )


@bp.route("/consentements/exception/<int(max=2147483647):information_id>")
def consent_exception(information_id: int) -> Any:
    """One exception « contraire à l'intérêt de l'enfant » with its justification, for the DPO
    to examine. Reading it is recorded against the case before it is shown."""
    service = state().cases(db())
    information = service.consents.information(information_id)
    if information is None or not information.exception:
        abort(404)
    case = db().get(Case, information.case_id)
    assert case is not None
    _record_read("case", case.reference, "exception")
    text = service.consents.justification(
        information, service.vault.for_case(case.wrapped_key, case.reference)
    )
    org = db().get(Organisation, information.recorded_by_org_id)
    return render_template(
        "dpo/consent_exception.html",
        information=information,
        reference=case.reference,
        justification=text,
        organisation=org.name if org else "",
    )


@dataclass(frozen=True)
class ConsentRow:
    """One case as the DPO sees its consent: reference, group, status, dates — no content."""

    reference: str
    group: str
    status: str
    minor: bool
    exceptions: int
    expires_on: date | None


def dpo_consent_statuses(service: Cases) -> list[ConsentRow]:
    """Every case's consent situation today, oldest case first (the DPO's overview).

    The date of birth is opened for the minors' rule only; the DPO sees « mineur », never it.
    """
    rows: list[ConsentRow] = []
    for case in db().scalars(select(Case).order_by(Case.opened_at, Case.id)):
        version = service.charters.latest(case.group)
        if version is None:
            continue
        rules = ConsentRules.of(parse(version.text))
        birth = service.birth_date(case, rules)
        state_ = service.consent_state(case)
        summary = summarise(state_, rules, birth=birth, at=service.clock())
        rows.append(
            ConsentRow(
                case.reference,
                case.group.name,
                summary.status,
                summary.minor,
                len(summary.exceptions),
                summary.expires_on,
            )
        )
    return rows
