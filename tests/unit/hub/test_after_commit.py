"""Celery tasks are enqueued only once the transaction commits, never when it rolls back."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from hub.db import after_commit, make_engine, make_session_factory


def test_hooks_run_after_commit_and_are_dropped_on_rollback(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (v INTEGER)"))
    sessions = make_session_factory(engine)
    sent: list[str] = []
    seen_committed: list[int] = []

    def check_row_visible() -> None:
        # A worker reading from another connection must already see the row.
        with engine.connect() as other:
            seen_committed.append(int(other.execute(text("SELECT count(*) FROM t")).scalar_one()))
        sent.append("committed")

    with sessions() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        after_commit(session, check_row_visible)
        assert sent == []
        session.commit()
    assert sent == ["committed"] and seen_committed == [1]

    with sessions() as session:
        session.execute(text("INSERT INTO t VALUES (2)"))
        after_commit(session, lambda: sent.append("rolled back"))
        session.rollback()
        session.commit()  # a later commit must not resurrect the dropped hook
    assert sent == ["committed"]
    engine.dispose()
