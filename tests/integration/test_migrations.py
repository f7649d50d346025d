"""Migrations: upgrade and downgrade on data, and the migrated schema equals the models."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from hub.db import Base
from hub.migrate import current_revision, downgrade, head_revision, upgrade

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _seed_people(engine: Engine) -> None:
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO organisations (id, public_id, name, kind, active, created_at) VALUES (1, 'o1', 'SPIP', 'spip', true, :t)"
            ),
            {"t": NOW},
        )
        c.execute(
            text(
                "INSERT INTO users (id, public_id, name, email, organisation_id, session_nonce, active, failed_logins, locked_by_failures, created_at) "
                "VALUES (1, 'u1', 'Paul', 'paul@spip.example', 1, 'n', true, 0, false, :t)"
            ),
            {"t": NOW},
        )
        c.execute(text("INSERT INTO user_roles (user_id, role) VALUES (1, 'agent')"))
        c.execute(
            text(
                "INSERT INTO operational_groups (id, public_id, name, territory, coordinator_id, created_at) VALUES (1, 'g1', 'GO', 'T', 1, :t)"
            ),
            {"t": NOW},
        )
        c.execute(
            text("INSERT INTO group_members (group_id, user_id, added_at) VALUES (1, 1, :t)"),
            {"t": NOW},
        )


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as c:
        return int(c.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_upgrade_and_downgrade_keep_data(empty_engine: Engine) -> None:
    # Given data at the first revision
    upgrade(empty_engine, "0001")
    _seed_people(empty_engine)
    # When upgrading to head, the people stay and the new tables work
    upgrade(empty_engine, "head")
    assert current_revision(empty_engine) == head_revision()
    assert _count(empty_engine, "users") == 1 and _count(empty_engine, "group_members") == 1
    with empty_engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO invitations (user_id, purpose, created_at, expires_at) VALUES (1, 'invite', :t, :t)"
            ),
            {"t": NOW},
        )
        c.execute(text("INSERT INTO recovery_codes (user_id, code_hash) VALUES (1, 'h')"))
    # When downgrading one step, the login tables go and the people remain
    downgrade(empty_engine, "0001")
    assert "invitations" not in inspect(empty_engine).get_table_names()
    assert _count(empty_engine, "users") == 1 and _count(empty_engine, "user_roles") == 1
    # And upgrading again works on the same data
    upgrade(empty_engine, "head")
    assert _count(empty_engine, "invitations") == 0 and _count(empty_engine, "organisations") == 1
    downgrade(empty_engine, "base")
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}


def test_the_migrated_schema_matches_the_models(empty_engine: Engine) -> None:
    upgrade(empty_engine, "head")
    with empty_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_constraints_reject_bad_vocabulary(empty_engine: Engine) -> None:
    upgrade(empty_engine, "head")
    with pytest.raises(Exception), empty_engine.begin() as c:  # noqa: B017 - driver-specific error types
        c.execute(
            text(
                "INSERT INTO organisations (public_id, name, kind, active, created_at) VALUES ('x', 'X', 'pirates', true, :t)"
            ),
            {"t": NOW},
        )


def test_cases_migration_up_and_down_on_data(empty_engine: Engine) -> None:
    # Given people at revision 0004
    upgrade(empty_engine, "0004")
    _seed_people(empty_engine)
    # When the cases revision is applied, a case with a sealed value and a meeting can be stored
    upgrade(empty_engine, "0005")
    with empty_engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO cases (id, reference, group_id, opened_by_org_id, status, opened_at, wrapped_key) "
                "VALUES (1, 'C-0000-0001', 1, 1, 'reperage', :t, :k)"
            ),
            {"t": NOW, "k": b"\x01key"},
        )
        c.execute(
            text(
                "INSERT INTO case_partners (case_id, organisation_id, added_at) VALUES (1, 1, :t)"
            ),
            {"t": NOW},
        )
        c.execute(
            text(
                "INSERT INTO case_fields (case_id, field_id, ciphertext, published_by_org_id, published_at, charter_version) "
                "VALUES (1, 'justice.date_sortie', :b, 1, :t, 1)"
            ),
            {"t": NOW, "b": b"\x01sealed"},
        )
        c.execute(
            text("INSERT INTO group_meetings (group_id, meets_on, created_at) VALUES (1, :d, :t)"),
            {"d": NOW.date(), "t": NOW},
        )
    # An unknown step is refused by the database itself
    with pytest.raises(Exception), empty_engine.begin() as c:  # noqa: B017 - driver-specific
        c.execute(
            text(
                "INSERT INTO cases (reference, group_id, opened_by_org_id, status, opened_at, wrapped_key) "
                "VALUES ('C-0000-0002', 1, 1, 'archive', :t, :k)"
            ),
            {"t": NOW, "k": b"k"},
        )
    # Then downgrading removes the case tables and keeps the people
    downgrade(empty_engine, "0004")
    assert "cases" not in inspect(empty_engine).get_table_names()
    assert _count(empty_engine, "users") == 1 and _count(empty_engine, "group_members") == 1


def test_the_consent_migration_keeps_who_followed_a_case_and_refuses_changes_to_records(
    empty_engine: Engine,
) -> None:
    # Given, before case teams existed, a case opened by a SPIP agent and oriented to a Mission
    # Locale whose two agents were all entitled to it, and a référent of that Mission Locale
    upgrade(empty_engine, "0005")
    _seed_people(empty_engine)
    with empty_engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO organisations (id, public_id, name, kind, active, created_at) VALUES "
                "(2, 'o2', 'ML', 'mission_locale', true, :t), (3, 'o3', 'PJJ', 'pjj', true, :t)"
            ),
            {"t": NOW},
        )
        for uid, org, role in ((2, 2, "agent"), (3, 2, "agent"), (4, 3, "agent"), (5, 3, "agent")):
            c.execute(
                text(
                    "INSERT INTO users (id, public_id, name, email, organisation_id, session_nonce, "
                    "active, failed_logins, locked_by_failures, created_at) "
                    "VALUES (:id, :pid, 'X', :email, :org, 'n', true, 0, false, :t)"
                ),
                {"id": uid, "pid": f"u{uid}", "email": f"u{uid}@x.example", "org": org, "t": NOW},
            )
            c.execute(
                text("INSERT INTO user_roles (user_id, role) VALUES (:id, :role)"),
                {"id": uid, "role": role},
            )
        c.execute(text("INSERT INTO user_roles (user_id, role) VALUES (2, 'referent')"))
        c.execute(
            text(
                "INSERT INTO cases (id, reference, group_id, opened_by_org_id, opened_by_id, "
                "referent_id, status, opened_at, wrapped_key) "
                "VALUES (1, 'C-0000-0001', 1, 1, 1, 2, 'suivi', :t, :k)"
            ),
            {"t": NOW, "k": b"k"},
        )
        for org in (1, 2, 3):
            c.execute(
                text(
                    "INSERT INTO case_partners (case_id, organisation_id, added_at) "
                    "VALUES (1, :org, :t)"
                ),
                {"org": org, "t": NOW},
            )
    # When consent and case teams arrive
    upgrade(empty_engine, "0006")
    with empty_engine.connect() as c:
        team = {
            tuple(r) for r in c.execute(text("SELECT user_id, organisation_id FROM case_members"))
        }
    # Then the opener keeps the case, the PJJ (oriented, nobody named) keeps its agents, and the
    # référent's own organisation adds nobody (the référent is its person)
    assert team == {(1, 1), (4, 3), (5, 3)}
    # And the consent records are append-only from the start
    with empty_engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO consent_information (case_id, subject, exception, recorded_by_org_id, "
                "recorded_at) VALUES (1, 'jeune', false, 1, :t)"
            ),
            {"t": NOW},
        )
    with pytest.raises(Exception, match="append-only"), empty_engine.begin() as c:
        c.execute(text("UPDATE consent_information SET subject = 'parent_1'"))
    # Downgrading removes them and keeps the cases
    downgrade(empty_engine, "0005")
    assert "consents" not in inspect(empty_engine).get_table_names()
    assert _count(empty_engine, "case_partners") == 3
