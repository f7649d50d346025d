"""The hub's side of sealed liaison forms: who the caller is, what the charter, the consent and
the case team allow (the relay's :class:`~exchange.server.relay.Entitlements`), and the
services bound to a request's session.

The exchange package checks envelopes, keeps the key directory and relays ciphertext without
knowing the hub; the decisions it asks for are taken here with the very functions case reads use
(:meth:`hub.cases.Cases.decide_fields`, :meth:`~hub.cases.Cases.send_decision`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from flask import request
from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from audit.checkpoint import NoteSigner
from charter import Reason
from consent import ConsentState
from exchange.directory import module_released, parse_entry
from exchange.envelope import MAX_ENVELOPE_BYTES, Manifest
from exchange.errors import ForbiddenError
from exchange.server.devices import Devices, Owner
from exchange.server.directory import MAX_ENTRIES_PER_PAGE, DirectoryLog
from exchange.server.relay import Entitlements, Refusal, Relay, Sending
from hub import assets
from hub.cases import CaseAccessDeniedError, CaseContext, Cases, charter_ref
from hub.models import ApiClient, Case, Organisation, User
from hub.state import HubState

DIRECTORY_SUFFIX = "/cles"


# The relay's send routes take an envelope of up to MAX_ENVELOPE_BYTES (attachments
# included): the only ones allowed past the hub's usual request size besides consent evidence.
SEND_ENDPOINTS = frozenset({"api.liaison.send_form", "echange.send_form"})


def allow_envelope_uploads() -> None:
    """Before any other hook reads the body: raise the request's size limit on the send routes
    to the envelope's (the relay then refuses anything larger as ``too_large``)."""
    if request.endpoint in SEND_ENDPOINTS:
        request.max_content_length = MAX_ENVELOPE_BYTES + 64 * 1024


def directory_origin(base_url: str) -> str:
    """The name the key directory's checkpoints are signed under: the hub's host and ``/cles``."""
    return base_url.split("://", 1)[-1].rstrip("/") + DIRECTORY_SUFFIX


def directory_signer(hub_state: HubState) -> NoteSigner:
    """The directory's checkpoint signer (the server key, under the directory's own name)."""
    return NoteSigner(directory_origin(hub_state.config.base_url), hub_state.server_key)


def user_owner(user: User) -> Owner:
    """A person as the owner of devices."""
    return Owner("user", user.id, user.public_id, user.organisation_id, user.organisation.public_id)


def client_owner(client: ApiClient) -> Owner:
    """An organisation's API client as the owner of devices."""
    return Owner(
        "client",
        client.id,
        client.client_id,
        client.organisation_id,
        client.organisation.public_id,
    )


def context_of(service: Cases, case: Case, who: User | ApiClient) -> CaseContext:
    """The part ``who`` (a person, or an organisation's system) takes in ``case``;
    :class:`~hub.cases.CaseAccessDeniedError` when none."""
    if isinstance(who, User):
        return service.context(case, who)
    return service.context_for_organisation(case, who.organisation)


def owner_of(who: User | ApiClient) -> Owner:
    """A person or an organisation's system as the owner of devices."""
    return user_owner(who) if isinstance(who, User) else client_owner(who)


def directory_log(session: Session, hub_state: HubState) -> DirectoryLog:
    """The key directory log on ``session``."""
    return DirectoryLog(session, clock=hub_state.clock, signer=directory_signer(hub_state))


def devices(session: Session, hub_state: HubState) -> Devices:
    """Device keys on ``session``."""
    return Devices(session, clock=hub_state.clock, log=directory_log(session, hub_state))


def relay(session: Session, hub_state: HubState, caller: User | ApiClient) -> Relay:
    """The relay on ``session``, deciding for ``caller``."""
    return Relay(
        session,
        clock=hub_state.clock,
        entitlements=HubEntitlements(hub_state.cases(session), caller),
        retention=timedelta(days=hub_state.config.form_retention_days),
    )


def _refusal(reason: Reason, code: str, device: str = "") -> Refusal:
    return Refusal(
        code, reason.message_fr(), field=reason.field, device=device, article=reason.article
    )


@dataclass
class HubEntitlements(Entitlements):
    """Charter × consent × case team, for one caller (a person or an organisation's system)."""

    cases: Cases
    caller: User | ApiClient
    # One relay call asks about every recipient device; devices of one owner share the answer,
    # and the rows it needs are kept (the session holds loaded objects only weakly: without
    # this each device reloaded the case and its relationships).
    _decided: dict[tuple[Any, ...], list[Refusal]] = field(default_factory=dict, repr=False)
    _rows: dict[tuple[type, int], Any] = field(default_factory=dict, repr=False)
    _consent: dict[int, ConsentState] = field(default_factory=dict, repr=False)  # by case id

    def _get(self, model: type, row_id: int | None) -> Any:
        if row_id is None:
            return None
        if (model, row_id) not in self._rows:
            self._rows[(model, row_id)] = self.cases.session.get(model, row_id)
        return self._rows[(model, row_id)]

    def sender(self, manifest: Manifest, fields: frozenset[str]) -> tuple[Sending, list[Refusal]]:
        """The caller's part in the case, the purpose at this step, the charter version its
        organisation signed, the consent named, and its right to send every field."""
        case = self.cases.by_reference(manifest.case)
        try:
            if case is None:
                raise CaseAccessDeniedError("", rule="unknown_case", code="not_involved")
            ctx = context_of(self.cases, case, self.caller)
        except CaseAccessDeniedError as error:
            raise ForbiddenError(
                "not_involved", "Vous ne prenez pas part à ce dossier (besoin d'en connaître)."
            ) from error
        refusals: list[Refusal] = []
        if manifest.purpose not in {p.id for p in self.cases.purposes_for(ctx)}:
            refusals.append(
                Refusal("purpose_not_for_step", "Finalité qui ne s'applique pas à cette étape.")
            )
        version = ctx.version
        signed = (version.charter_id, version.version, version.digest)
        stated = (manifest.charter.id, manifest.charter.version, manifest.charter.digest)
        if stated != signed:
            refusals.append(
                Refusal(
                    "charter_stale",
                    "La fiche n'applique pas la version de la charte que votre organisation a "
                    "signée : mettez à jour puis scellez de nouveau.",
                )
            )
        if manifest.consent is not None:
            state = self.cases.consent_state(case)
            if manifest.consent not in {str(c.id) for c in state.consents if c.current}:
                refusals.append(
                    Refusal("consent_stale", "L'accord cité n'est pas un accord en vigueur.")
                )
        decision = self.cases.send_decision(ctx, sorted(fields))
        refusals.extend(_refusal(r, "field_not_publishable") for r in decision.refusals)
        return Sending(case.id, charter_ref(version), ctx.organisation.id), refusals

    def recipient(
        self, sending: Sending, manifest: Manifest, owner: Row[Any], fields: Sequence[str]
    ) -> list[Refusal]:
        """What the owner of the device ``owner`` may not see of ``fields`` now."""
        key = (
            sending.case_id,
            sending.org_id,
            owner.user_id,
            owner.api_client_id,
            manifest.purpose,
            tuple(fields),
        )
        if key not in self._decided:
            self._decided[key] = self._decide(sending, manifest, owner, fields)
        return [replace(r, device=owner.key_id) for r in self._decided[key]]

    def _decide(
        self, sending: Sending, manifest: Manifest, owner: Row[Any], fields: Sequence[str]
    ) -> list[Refusal]:
        case = self._get(Case, sending.case_id)
        sender = self._get(Organisation, sending.org_id)
        assert case is not None and sender is not None  # rows of a stored or checked form
        who: User | ApiClient | None = (
            self._get(User, owner.user_id)
            if owner.user_id is not None
            else self._get(ApiClient, owner.api_client_id)
        )
        active = who is not None and (
            who.is_active if isinstance(who, User) else who.active and who.organisation.active
        )
        if who is None or not active:
            return [Refusal("recipient_inactive", "Destinataire désactivé.")]
        try:
            ctx = context_of(self.cases, case, who)
        except CaseAccessDeniedError:
            return [
                Refusal("recipient_not_involved", "Ce destinataire ne prend pas part au dossier.")
            ]
        # The consent situation is the case's, read once for all its recipients in this call.
        if case.id not in self._consent:
            self._consent[case.id] = self.cases.consent_state(case)
        decision = self.cases.decide_fields(
            ctx, manifest.purpose, fields, sender=sender, state=self._consent[case.id]
        )
        return [_refusal(r, "recipient_not_entitled") for r in decision.refusals]


@dataclass(frozen=True)
class Candidate:
    """Someone a form on the case could go to: what they may see of the fields asked (and
    each field they may not, with the article), and their device keys in force (none: they
    cannot receive sealed forms yet)."""

    owner: str
    organisation: str
    fields: tuple[str, ...]
    devices: tuple[str, ...]
    refused: tuple[Refusal, ...] = ()
    label: str = ""  # a person's name or a system's, and the organisation's (for the page)


def candidates(
    service: Cases,
    hub_state: HubState,
    case: Case,
    caller: User | ApiClient,
    *,
    purpose: str,
    fields: Sequence[str],
) -> list[Candidate]:
    """Who may receive which of ``fields`` on ``case`` for ``purpose`` from ``caller`` now:
    the people with a part in the case (référent, group, coordinator, team) and the systems of
    the organisations following it — decided as the relay will decide, so a sender that seals to
    exactly this is accepted. The sender checks every key against its verified directory."""
    session = service.session
    sender = caller.organisation
    people: dict[int, User] = {}
    group = case.group
    for user in [case.referent, group.coordinator, *group.members]:
        if user is not None:
            people[user.id] = user
    team = service.team_of(case)
    for member in team.members:
        user = session.get(User, member.id)
        if user is not None:
            people[user.id] = user
    systems = session.scalars(
        select(ApiClient).where(
            ApiClient.organisation_id.in_(team.partner_org_ids),
            ApiClient.active.is_(True),
        )
    ).all()
    index = devices(session, hub_state)
    found: list[Candidate] = []
    state = service.consent_state(case)  # the case's: one read for every candidate
    everyone: list[User | ApiClient] = [*people.values(), *systems]
    for who in everyone:
        if who is caller or (isinstance(who, User) and not who.is_active):
            continue
        try:
            ctx = context_of(service, case, who)
        except CaseAccessDeniedError:
            continue
        decision = service.decide_fields(ctx, purpose, fields, sender=sender, state=state)
        allowed = tuple(f for f in fields if f in decision.allowed_fields)
        owner = owner_of(who)
        keys = tuple(d.key.key_id for d in index.of(owner))
        refused = tuple(_refusal(r, "recipient_not_entitled") for r in decision.refusals)
        label = f"{who.name} ({who.organisation.name})"
        found.append(
            Candidate(owner.name, who.organisation.public_id, allowed, keys, refused, label)
        )
    return sorted(found, key=lambda c: c.owner)


def publish_code(session: Session, hub_state: HubState) -> list[str]:
    """Log a ``module.release`` entry in the key directory for each browser script whose served
    SHA-256 is not the last one logged (run at every deployment by ``init-db``): witnesses
    compare what the hub serves with what it logged. The scripts newly logged."""
    log = directory_log(session, hub_state)
    logged: dict[str, str] = {}
    size = log.size()
    for start in range(0, size, MAX_ENTRIES_PER_PAGE):
        for data in log.entries(start, min(size, start + MAX_ENTRIES_PER_PAGE)):
            if b'"module.release"' in data:  # the others need not be parsed (keys, checks)
                entry = parse_entry(data)
                logged[entry.module] = entry.sha256
    published = []
    for script in assets.SCRIPTS:
        digest = assets.sha256_hex(script)
        if logged.get(script) != digest:
            log.append(
                module_released(script, digest, release=assets.release(), now=hub_state.clock())
            )
            published.append(script)
    return published


def forget_backups_if_no_device(session: Session, hub_state: HubState, user: User) -> None:
    """Delete a person's recovery backups once none of their devices is in force: they restore
    only revoked keys, and would stay open to offline guessing for nothing."""
    service = devices(session, hub_state)
    if not service.of(user_owner(user)):
        service.forget_backups(user.id)


def revoke_devices_of(
    session: Session,
    hub_state: HubState,
    *,
    users: Sequence[User] = (),
    clients: Sequence[ApiClient] = (),
) -> list[str]:
    """Revoke the directory keys of people and API clients an administrator disabled (or
    whose organisation was suspended): the directory must stop vouching for them at once.
    The key ids revoked; the caller records each (``key.revoke``, rule ``admin``)."""
    service = devices(session, hub_state)
    revoked = service.revoke_all(
        user_ids=[u.id for u in users], client_ids=[c.id for c in clients], reason="admin"
    )
    for user in users:
        service.forget_backups(user.id)  # they would restore only revoked keys
    return revoked
