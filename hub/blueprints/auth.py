"""Login with mandatory TOTP, activation links, re-authentication, password change, logout."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from audit.events import Action, Decision
from hub import totp
from hub.accounts import LoginOutcome
from hub.extensions import limiter
from hub.forms import ActivationForm, LoginForm, PasswordChangeForm, ReauthForm
from hub.i18n import N_, MessageError
from hub.models import User
from hub.recording import append_staged, new_event, record, stage
from hub.refusals import record_refusal, record_refused
from hub.security import (
    end_session,
    fresh_login_required,
    mark_fresh,
    safe_next,
    start_session,
)
from hub.state import accounts, db

bp = Blueprint("auth", __name__)

LOGIN_REFUSED = N_(
    "Connexion impossible. Vérifiez votre adresse, votre mot de passe et votre code. "
    "Après plusieurs échecs, le compte est bloqué : adressez-vous alors à votre administrateur."
)


def _account_key() -> str:
    """Rate-limit key for one account: the submitted email (never logged)."""
    email = (request.form.get("email") or "").strip().lower()
    return f"account:{email}"


def _actor(user: User) -> tuple[str, str]:
    """A user as the actor (before the session exists)."""
    return (user.public_id, user.organisation.public_id)


def show_error(error: MessageError) -> None:
    """Flash a domain error, translated."""
    flash(_(error.message, **error.params), "error")


@bp.route("/connexion", methods=["GET", "POST"])
@limiter.limit("20 per minute", methods=["POST"])
@limiter.limit("10 per minute", methods=["POST"], key_func=_account_key)
def login() -> Any:
    """Email, password and code together; the same answer for every failure."""
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if form.validate_on_submit():
        result = accounts().authenticate(
            form.email.data or "", form.password.data or "", form.code.data or ""
        )
        account_id = result.user_public_id or ""
        if result.outcome is LoginOutcome.OK and result.user is not None:
            record(
                Action.AUTH_LOGIN,
                object_type="user",
                object_id=account_id,
                actor=(result.user_public_id, result.org_public_id or ""),
            )
            db().commit()
            start_session(result.user)
            target = safe_next(request.args.get("next")) or url_for("main.index")
            return redirect(target)
        # The typed email is never logged: an unknown account leaves the object empty. Anyone
        # can send wrong passwords, so refusals are counted: per client and minute for unknown
        # accounts, per account and minute for existing ones (the first names the account,
        # the rest one event naming it), whatever addresses they come from.
        refused = new_event(
            Action.AUTH_LOGIN_REFUSED,
            object_type="user",
            object_id=account_id,
            decision=Decision.DENY,
            rule=result.outcome,
        )
        lockout = (
            stage(
                db(),
                new_event(
                    Action.AUTH_LOCKOUT,
                    object_type="user",
                    object_id=account_id,
                    decision=Decision.DENY,
                ),
            )
            if result.outcome is LoginOutcome.LOCKED_NOW
            else None
        )
        # Failure counters and the lockout persist first, whatever follows: they only restrict,
        # and a refusal that is throttled (429) or cannot be recorded (503) must still count
        # towards the lockout. The lockout's event is staged with it (at least once).
        db().commit()
        if lockout is not None:
            append_staged(db(), [lockout])
        record_refusal(refused, account=account_id)
        form.code.data = ""  # never echo a code back into the page
        flash(_(LOGIN_REFUSED), "error")
        return render_template("auth/login.html", form=form), 200
    if request.method == "POST":
        flash(_(LOGIN_REFUSED), "error")
    return render_template("auth/login.html", form=form)


@bp.route("/deconnexion", methods=["POST"])
def logout() -> Any:
    """End every session of the user (the per-user nonce changes), then this one."""
    if current_user.is_authenticated:
        accounts().end_all_sessions(current_user)
        record(Action.AUTH_LOGOUT, object_type="user", object_id=current_user.public_id)
        db().commit()
    end_session()
    flash(_("Vous êtes déconnecté."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/activation/<token>", methods=["GET", "POST"])
@limiter.limit("30 per minute", methods=["POST"])
def activate(token: str) -> Any:
    """Set a password (invitations) and enrol TOTP from a one-time link."""
    if current_user.is_authenticated:
        end_session()
    service = accounts()
    invitation = service.valid_link(token)
    if invitation is None:
        record_refused(Action.ACCESS_REFUSED, object_type="link", purpose="activation")
        return render_template("auth/link_invalid.html"), 404
    secret = service.pending_secret(invitation)
    db().commit()
    form = ActivationForm()
    needs_password = invitation.purpose == "invite"
    if form.validate_on_submit():
        if needs_password and form.password.data != form.password_again.data:
            flash(_("Les deux mots de passe ne sont pas identiques."), "error")
        else:
            try:
                codes = service.complete_enrolment(
                    invitation,
                    password=form.password.data if needs_password else None,
                    code=form.code.data or "",
                )
            except MessageError as error:
                db().rollback()
                record(
                    Action.AUTH_MFA_ENROL,
                    object_type="user",
                    object_id=invitation.user.public_id,
                    purpose=invitation.purpose,
                    decision=Decision.DENY,
                )
                show_error(error)
            else:
                user = invitation.user
                record(
                    Action.AUTH_MFA_ENROL,
                    object_type="user",
                    object_id=user.public_id,
                    purpose=invitation.purpose,
                    actor=_actor(user),
                )
                db().commit()
                start_session(user)
                return render_template("auth/recovery_codes.html", codes=codes)
    uri = totp.provisioning_uri(secret, invitation.user.email)
    return render_template(
        "auth/activate.html",
        form=form,
        needs_password=needs_password,
        qr_svg=totp.qr_svg(uri),
        secret=" ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
    )


@bp.route("/confirmer-identite", methods=["GET", "POST"])
@limiter.limit("10 per minute", methods=["POST"])
def reauthenticate() -> Any:
    """Password and code again before a sensitive action."""
    form = ReauthForm()
    if form.validate_on_submit():
        ok = accounts().reauthenticate(current_user, form.password.data or "", form.code.data or "")
        record(
            Action.AUTH_REAUTH if ok else Action.AUTH_REAUTH_REFUSED,
            object_type="user",
            object_id=current_user.public_id,
            decision=Decision.ALLOW if ok else Decision.DENY,
        )
        db().commit()
        if ok:
            mark_fresh()
            return redirect(safe_next(request.args.get("next")) or url_for("main.index"))
        if not current_user.is_active or accounts().is_locked(current_user):
            end_session()
            return redirect(url_for("auth.login"))
        flash(_("Mot de passe ou code incorrect."), "error")
    return render_template("auth/reauth.html", form=form)


@bp.route("/compte/mot-de-passe", methods=["GET", "POST"])
@fresh_login_required
def change_password() -> Any:
    """Change one's password; other sessions end, this one continues."""
    form = PasswordChangeForm()
    if form.validate_on_submit():
        if form.new.data != form.new_again.data:
            flash(_("Les deux mots de passe ne sont pas identiques."), "error")
        else:
            try:
                accounts().change_password(
                    current_user, form.current.data or "", form.new.data or ""
                )
            except MessageError as error:
                db().rollback()
                record(
                    Action.AUTH_PASSWORD_CHANGE,
                    object_type="user",
                    object_id=current_user.public_id,
                    decision=Decision.DENY,
                )
                show_error(error)
            else:
                user = current_user._get_current_object()
                record(Action.AUTH_PASSWORD_CHANGE, object_type="user", object_id=user.public_id)
                db().commit()
                start_session(user)  # re-issue this session with the new nonce
                flash(
                    _("Votre mot de passe a été changé. Vos autres sessions sont fermées."),
                    "success",
                )
                return redirect(url_for("main.account"))
    return render_template("auth/password.html", form=form)
