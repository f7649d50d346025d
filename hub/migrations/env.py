"""Alembic environment: the URL and connection come from :mod:`hub.migrate`, never from a file."""

from __future__ import annotations

from alembic import context

from hub import anomaly_review, models  # noqa: F401 - registers the tables on Base.metadata
from hub.db import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    """Run migrations on the connection handed over by hub.migrate (online mode only)."""
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("use hub.migrate (flask --app hub init-db) to run migrations")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite needs batch mode to alter tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
