"""Web forms (Flask-WTF: CSRF on every form). Labels are French and translated to English."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import g
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, InputRequired, Length, NumberRange, Optional
from wtforms.widgets import CheckboxInput, HiddenInput, ListWidget

from charter.vocabulary import ORG_KIND_LABELS_FR, ROLE_LABELS_FR, OrgKind, Role
from hub.dates import DAY_FORMATS, DayInRange, day_format_message


class Form(FlaskForm):
    """Every form of the hub: a refused one marks the request, so that the page's title says
    so (« Erreur — … », what a screen reader announces first, WCAG 3.3.1)."""

    def validate(self, extra_validators: Any = None) -> bool:
        """Validate, and note a refusal for the page title."""
        valid = bool(super().validate(extra_validators=extra_validators))
        if not valid:
            g.form_refused = True
        return valid


def form_refused() -> bool:
    """Whether a form of this request was refused (the base template's title)."""
    return bool(g.get("form_refused"))


class DayField(DateField):
    """A day typed as people write it in France (JJ/MM/AAAA) or picked (AAAA-MM-JJ, what a
    date picker sends); anything else is refused in French."""

    def __init__(self, label: Any = None, validators: Any = None, **kwargs: Any) -> None:
        super().__init__(
            label,
            validators,
            format=list(DAY_FORMATS),
            invalid_value_message=_l(day_format_message()),
            **kwargs,
        )


def choices(pairs: Sequence[tuple[object, str]]) -> list[SelectChoice]:
    """WTForms choices from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


class MultiCheckboxField(SelectMultipleField):
    """A group of checkboxes (accessible alternative to a multiple select)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class LoginForm(Form):
    """Email, password and code are asked together: one answer whatever is wrong."""

    email = EmailField(
        _l("Adresse électronique"),
        validators=[DataRequired(), Length(max=254)],
        render_kw={"autocomplete": "username"},
    )
    password = PasswordField(
        _l("Mot de passe"),
        validators=[DataRequired(), Length(max=256)],
        render_kw={"autocomplete": "current-password"},
    )
    code = StringField(
        _l("Code de l'application d'authentification (ou code de secours)"),
        validators=[DataRequired(), Length(max=20)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )
    submit = SubmitField(_l("Se connecter"))


class ReauthForm(Form):
    """Confirm identity before a sensitive action."""

    password = PasswordField(
        _l("Mot de passe"),
        validators=[DataRequired(), Length(max=256)],
        render_kw={"autocomplete": "current-password"},
    )
    code = StringField(
        _l("Code de l'application d'authentification (ou code de secours)"),
        validators=[DataRequired(), Length(max=20)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )
    submit = SubmitField(_l("Confirmer"))


class ActivationForm(Form):
    """Choose a password (invitations only) and confirm the authenticator with a code."""

    password = PasswordField(
        _l("Choisissez un mot de passe (12 caractères au moins)"),
        validators=[Optional(), Length(max=256)],
        render_kw={"autocomplete": "new-password"},
    )
    password_again = PasswordField(
        _l("Confirmez le mot de passe"),
        validators=[Optional(), Length(max=256)],
        render_kw={"autocomplete": "new-password"},
    )
    code = StringField(
        _l("Code à 6 chiffres affiché par l'application"),
        validators=[DataRequired(), Length(min=6, max=8)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )
    submit = SubmitField(_l("Activer mon compte"))


class PasswordChangeForm(Form):
    """Change one's password; every other session ends."""

    current = PasswordField(
        _l("Mot de passe actuel"),
        validators=[DataRequired(), Length(max=256)],
        render_kw={"autocomplete": "current-password"},
    )
    new = PasswordField(
        _l("Nouveau mot de passe (12 caractères au moins)"),
        validators=[DataRequired(), Length(max=256)],
        render_kw={"autocomplete": "new-password"},
    )
    new_again = PasswordField(
        _l("Confirmez le nouveau mot de passe"),
        validators=[DataRequired(), Length(max=256)],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField(_l("Changer le mot de passe"))


class ConfirmForm(Form):
    """A bare form for POST-only actions (CSRF token and a button)."""

    submit = SubmitField(_l("Confirmer"))


class OrganisationForm(Form):
    """Create a partner organisation."""

    name = StringField(_l("Nom"), validators=[DataRequired(), Length(max=200)])
    kind = SelectField(
        _l("Type d'organisation"),
        choices=choices([(k.value, ORG_KIND_LABELS_FR[k]) for k in OrgKind]),
        validators=[DataRequired()],
    )
    submit = SubmitField(_l("Créer l'organisation"))


class UserForm(Form):
    """Invite a user (the activation link is sent by mail)."""

    # Another person's name and address: the browser must not fill in the administrator's own.
    name = StringField(
        _l("Nom et prénom"),
        validators=[DataRequired(), Length(max=200)],
        render_kw={"autocomplete": "off"},
    )
    email = EmailField(
        _l("Adresse électronique professionnelle"),
        validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)],
        render_kw={"autocomplete": "off"},
    )
    organisation = SelectField(_l("Organisation"), coerce=int, validators=[DataRequired()])
    roles = MultiCheckboxField(
        _l("Rôles"), choices=choices([(r.value, ROLE_LABELS_FR[r]) for r in Role])
    )
    submit = SubmitField(_l("Créer le compte et envoyer l'invitation"))


class GroupForm(Form):
    """Create an operational group."""

    name = StringField(_l("Nom du groupe"), validators=[DataRequired(), Length(max=200)])
    territory = StringField(_l("Territoire"), validators=[DataRequired(), Length(max=200)])
    coordinator = SelectField(_l("Coordinateur"), coerce=int, validators=[Optional()])
    submit = SubmitField(_l("Créer le groupe"))


class MembersForm(Form):
    """Set the members of an operational group."""

    members = MultiCheckboxField(_l("Membres"), coerce=int)
    coordinator = SelectField(_l("Coordinateur"), coerce=int, validators=[Optional()])
    submit = SubmitField(_l("Enregistrer"))


class SearchForm(Form):
    """A search box for lists (GET, no CSRF needed)."""

    class Meta:
        csrf = False

    q = StringField(_l("Rechercher"), validators=[Optional(), Length(max=100)])
    active_only = BooleanField(_l("Actifs seulement"))


class CharterPublishForm(Form):
    """Propose a new charter version (TOML): preview first, then publish."""

    text = TextAreaField(
        _l("Texte de la charte (format TOML)"),
        validators=[DataRequired(), Length(max=512 * 1024)],
        render_kw={"rows": "24", "spellcheck": "false"},
    )
    preview = SubmitField(_l("Vérifier et comparer"))
    publish = SubmitField(_l("Publier cette version"))


class CharterSignForm(Form):
    """Sign a charter version on behalf of one's organisation."""

    signatory = StringField(
        _l("Nom et qualité du signataire"), validators=[DataRequired(), Length(max=200)]
    )
    submit = SubmitField(_l("Signer pour mon organisation"))


class DeclinationForm(Form):
    """Decline to share a field, with the reason recorded."""

    field_glob = StringField(
        _l("Champ (identifiant du catalogue, ex. sante.orientation)"),
        validators=[DataRequired(), Length(max=200)],
    )
    reason = TextAreaField(_l("Raison"), validators=[DataRequired(), Length(min=10, max=2000)])
    submit = SubmitField(_l("Enregistrer le refus"))


class WhatIfForm(Form):
    """Choose a sender, a recipient and a purpose (GET form)."""

    class Meta:
        csrf = False

    sender = SelectField(_l("Organisation émettrice"), coerce=int, validators=[DataRequired()])
    recipient_kind = SelectField(
        _l("Type d'organisation destinataire"),
        choices=choices([(k.value, ORG_KIND_LABELS_FR[k]) for k in OrgKind]),
        validators=[DataRequired()],
    )
    recipient_roles = MultiCheckboxField(
        _l("Rôles du destinataire"), choices=choices([(r.value, ROLE_LABELS_FR[r]) for r in Role])
    )
    recipient_member = BooleanField(_l("Le destinataire siège dans le groupe"), default=True)
    purpose = SelectField(_l("Finalité"), validators=[DataRequired()])
    meeting_day = BooleanField(_l("Jour de réunion du groupe"), default=True)
    submit = SubmitField(_l("Simuler"))


class PeriodForm(Form):
    """A period (GET form)."""

    class Meta:
        csrf = False

    start = DayField(_l("Du"), validators=[Optional(), DayInRange()])
    end = DayField(_l("Au"), validators=[Optional(), DayInRange()])
    submit = SubmitField(_l("Afficher"))


class ReferentForm(Form):
    """The coordinator records the référent the group named."""

    referent = SelectField(_l("Référent de parcours"), coerce=int, validators=[DataRequired()])
    submit = SubmitField(_l("Désigner"))


class PartnerForm(Form):
    """Orient the young person to another partner and name who follows the case there."""

    organisation = SelectField(_l("Partenaire"), coerce=int, validators=[DataRequired()])
    agents = MultiCheckboxField(_l("Agents de ce partenaire qui suivront le jeune"), coerce=int)
    submit = SubmitField(_l("Associer au dossier"))


class MeetingForm(Form):
    """The coordinator schedules a meeting of the group."""

    day = DayField(_l("Date de la réunion"), validators=[InputRequired(), DayInRange()])
    submit = SubmitField(_l("Ajouter la réunion"))


class InformationForm(Form):
    """Prior information of the young person or a holder — or the documented exception."""

    subject = SelectField(_l("Personne informée"), validators=[DataRequired()])
    method = SelectField(_l("Comment"), validators=[Optional()])
    informed_on = DayField(_l("Date de l'information"), validators=[Optional(), DayInRange()])
    notice_version = StringField(
        _l("Version de la note d'information remise"), validators=[Optional(), Length(max=64)]
    )
    exception = BooleanField(
        _l(
            "Ne pas informer ce titulaire : l'information serait contraire à l'intérêt de "
            "l'enfant (exception signalée au délégué à la protection des données)"
        )
    )
    justification = TextAreaField(
        _l("Justification de l'exception"),
        validators=[Optional(), Length(max=2000)],
        render_kw={"rows": "4"},
    )
    supersedes = IntegerField(
        validators=[Optional(), NumberRange(min=1, max=2**31 - 1)], widget=HiddenInput()
    )
    submit = SubmitField(_l("Enregistrer l'information"))


class ConsentForm(Form):
    """The accord (or refusal) of one grantor over a scope, with its evidence."""

    grantor = SelectField(_l("Qui se prononce"), validators=[DataRequired()])
    decision = RadioField(
        _l("Décision"),
        choices=choices([("given", _l("Accord donné")), ("refused", _l("Accord refusé"))]),
        default="given",
        validators=[DataRequired()],
    )
    purposes = MultiCheckboxField(_l("Pour quelles finalités"))
    categories = MultiCheckboxField(_l("Quelles informations"))
    recipient_kinds = MultiCheckboxField(_l("Avec quels types de partenaires"))
    recipient_orgs = MultiCheckboxField(_l("Ou avec ces partenaires nommément"), coerce=int)
    excluded_kinds = MultiCheckboxField(_l("Jamais avec ces types de partenaires"))
    excluded_orgs = MultiCheckboxField(_l("Jamais avec ces partenaires"), coerce=int)
    valid_from = DayField(_l("Valable à partir du"), validators=[InputRequired(), DayInRange()])
    valid_until = DayField(_l("Jusqu'au"), validators=[InputRequired(), DayInRange()])
    evidence_kind = RadioField(
        _l("Preuve de l'accord"),
        choices=choices(
            [
                ("scan", _l("Formulaire signé, numérisé (PDF, JPEG ou PNG)")),
                ("signature", _l("Signature recueillie ici, en personne")),
            ]
        ),
        default="scan",
        validators=[Optional()],
    )
    scan = FileField(_l("Formulaire signé numérisé"))
    signature = HiddenField()
    supersedes = IntegerField(
        validators=[Optional(), NumberRange(min=1, max=2**31 - 1)], widget=HiddenInput()
    )
    submit = SubmitField(_l("Enregistrer"))


class AdhesionForm(Form):
    """The tripartite contract: young person, counsellor, référent."""

    signed_on = DayField(
        _l("Date de signature du contrat"), validators=[InputRequired(), DayInRange()]
    )
    counsellor = SelectField(_l("Conseiller signataire"), coerce=int, validators=[DataRequired()])
    evidence_kind = RadioField(
        _l("Preuve"),
        choices=choices(
            [
                ("scan", _l("Contrat signé, numérisé (PDF, JPEG ou PNG)")),
                ("signature", _l("Signature du jeune recueillie ici, en personne")),
            ]
        ),
        default="scan",
        validators=[Optional()],
    )
    scan = FileField(_l("Contrat signé numérisé"))
    signature = HiddenField()
    supersedes = IntegerField(
        validators=[Optional(), NumberRange(min=1, max=2**31 - 1)], widget=HiddenInput()
    )
    submit = SubmitField(_l("Enregistrer le contrat"))


class TeamForm(Form):
    """Name an agent of a following organisation on the case team."""

    agent = SelectField(_l("Agent"), coerce=int, validators=[DataRequired()])
    submit = SubmitField(_l("Ajouter à l'équipe"))
