"""Who takes part in an operational group, and who decides it (separation of duties).

An administrator creates a group and names its first coordinator; from then on the group's
composition — its members, and handing the coordination over — is the coordinator's act, never
an administrator's: administrators onboard people, they do not decide who sees what. Members are
people who may follow cases (never an administrator or the DPO). Every change is recorded by the
caller and listed for the DPO.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from charter.vocabulary import OVERSIGHT_ROLES, Role
from hub.i18n import N_, MessageError
from hub.models import GroupMembership, OperationalGroup, User


class GroupRefusedError(MessageError):
    """A change to a group's composition refused; the French message says why."""


class Groups:
    """The composition of operational groups."""

    def __init__(self, session: Session, *, clock: Callable[[], datetime]) -> None:
        self.session = session
        self.clock = clock

    def eligible(self) -> list[User]:
        """People who may sit in a group: active, holding no oversight role."""
        people = self.session.scalars(select(User).where(User.active.is_(True)).order_by(User.name))
        return [u for u in people if not u.roles & OVERSIGHT_ROLES]

    def name_first_coordinator(self, group: OperationalGroup, coordinator: User) -> None:
        """An administrator names the coordinator of a group that has none yet."""
        if group.coordinator_id is not None:
            raise GroupRefusedError(
                N_(
                    "Le groupe a déjà un coordinateur : lui seul transmet la coordination et "
                    "décide de la composition du groupe."
                )
            )
        self._check_coordinator(coordinator)
        group.coordinator_id = coordinator.id
        self._sit(group, coordinator)
        self.session.flush()

    def set_members(self, group: OperationalGroup, by: User, member_ids: Iterable[int]) -> None:
        """The coordinator decides who sits in the group (the coordinator always does)."""
        self._check_coordinator_act(group, by)
        wanted = set(member_ids) | {by.id}
        eligible = {u.id: u for u in self.eligible()}
        if wanted - eligible.keys():
            raise GroupRefusedError(
                N_(
                    "Un membre du groupe est une personne active qui suit des dossiers : ni "
                    "administrateur, ni délégué à la protection des données."
                )
            )
        group.memberships = [m for m in group.memberships if m.user_id in wanted]
        for user_id in sorted(wanted - {m.user_id for m in group.memberships}):
            group.memberships.append(GroupMembership(user_id=user_id, added_at=self.clock()))
        self.session.flush()

    def hand_over(self, group: OperationalGroup, by: User, successor: User) -> None:
        """The coordinator hands the coordination over to another coordinator."""
        self._check_coordinator_act(group, by)
        self._check_coordinator(successor)
        group.coordinator_id = successor.id
        self._sit(group, successor)
        self.session.flush()

    def _check_coordinator_act(self, group: OperationalGroup, by: User) -> None:
        if group.coordinator_id != by.id:
            raise GroupRefusedError(N_("Seul le coordinateur du groupe décide de sa composition."))

    def _check_coordinator(self, user: User) -> None:
        if (
            not user.is_active
            or not user.has_role(Role.COORDINATOR)
            or user.roles & OVERSIGHT_ROLES
        ):
            raise GroupRefusedError(
                N_(
                    "Le coordinateur est une personne active qui a le rôle de coordinateur, "
                    "ni administrateur ni délégué à la protection des données."
                )
            )

    def _sit(self, group: OperationalGroup, user: User) -> None:
        if all(m.user_id != user.id for m in group.memberships):
            group.memberships.append(GroupMembership(user_id=user.id, added_at=self.clock()))
