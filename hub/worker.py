"""Entry point for Celery: ``celery -A hub.worker worker`` and ``celery -A hub.worker beat``."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from hub import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]


@worker_process_init.connect
def _fresh_connections(**_kwargs: Any) -> None:
    # Prefork children must not reuse the parent's pooled database connections.
    state = flask_app.extensions["maillon"]
    state.engine.dispose(close=False)
    state.audit_engine.dispose(close=False)
