"""Celery wired the Flask way: tasks run inside the app context, enqueued after commit.

Embedded default: a SQLite-backed broker (kombu's SQLAlchemy transport), so ``make run`` needs
no server; production: Redis. Tasks ignore results, acknowledge late and must be idempotent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery, Task
from celery.signals import beat_init
from flask import Flask, current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hub.db import after_commit


def celery_init_app(app: Flask) -> Celery[Any]:
    """Create the Celery app bound to ``app`` and store it in ``app.extensions["celery"]``."""

    class FlaskTask(Task[Any, Any]):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    config = app.extensions["maillon"].config
    celery_app: Celery[Any] = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(
        broker_url=config.broker_url,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        # A task lost with its worker (kill -9) is redelivered rather than dropped.
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="maillon",
        task_serializer="json",
        accept_content=["json"],
        timezone="Europe/Paris",
        enable_utc=True,
        # The SQLAlchemy transport hands these options to create_engine(): Redis only.
        broker_transport_options=(
            {"visibility_timeout": 3600} if config.broker_url.startswith("redis") else {}
        ),
        beat_schedule={
            "purge-expired": {
                "task": "hub.tasks.purge_expired",
                "schedule": timedelta(hours=1),
            },
            "destroy-expired-forms": {
                "task": "hub.tasks.destroy_expired_forms",
                "schedule": timedelta(hours=1),
            },
            "sign-checkpoint": {
                "task": "hub.tasks.sign_checkpoint",
                "schedule": timedelta(minutes=1),
            },
            "prune-audit-log": {
                "task": "hub.tasks.prune_audit_log",
                "schedule": timedelta(days=1),
            },
            "flush-audit-outbox": {
                "task": "hub.tasks.flush_audit_outbox",
                "schedule": timedelta(minutes=1),
            },
            "record-refusal-bursts": {
                "task": "hub.tasks.record_refusal_bursts",
                "schedule": timedelta(minutes=1),
            },
            "consent-sweep": {
                "task": "hub.tasks.consent_sweep",
                "schedule": timedelta(hours=6),
            },
            "alert-sweep": {
                "task": "hub.tasks.alert_sweep",
                "schedule": timedelta(hours=1),
            },
            "detect-anomalies": {
                "task": "hub.dpo_tasks.detect_anomalies",
                "schedule": timedelta(hours=1),
            },
        },
        include=["hub.tasks", "hub.dpo_tasks"],
    )
    celery_app.conf.beat_schedule_filename = str(config.var_dir / "celerybeat-schedule")
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


# Sweeps whose work is due by the calendar: a beat that starts (after downtime, or `make run`)
# sends them at once rather than an interval later. They are idempotent (once per person and
# milestone), so an extra run adds nothing.
CATCH_UP_AT_START = ("hub.tasks.alert_sweep", "hub.tasks.consent_sweep")


@beat_init.connect
def _catch_up(sender: Any, **_kwargs: Any) -> None:
    """When a beat starts, send the calendar sweeps once."""
    for name in CATCH_UP_AT_START:
        sender.app.send_task(name)


def enqueue(session: Session, task: Any, *args: Any) -> None:
    """Send ``task(*args)`` to the broker once ``session`` commits (never on rollback).

    It goes through this Flask app's own Celery app (not Celery's process-wide default), so
    several apps in one process (tests, tools) never send to each other's broker.
    """
    celery: Celery[Any] = current_app.extensions["celery"]

    def send() -> None:
        try:
            celery.send_task(task.name, args=args)
        except IntegrityError:
            # The embedded broker (kombu's SQLAlchemy transport) creates its queue row on the
            # first publish: two web workers publishing first at once race on it and one gets
            # an IntegrityError after the request's own data committed (a 500, a lost task).
            # The row exists by then: once more succeeds.
            celery.send_task(task.name, args=args)

    after_commit(session, send)
