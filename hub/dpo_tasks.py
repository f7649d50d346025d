"""Celery tasks of the DPO console. Idempotent: ``acks_late`` may deliver a task twice."""

from __future__ import annotations

from celery import shared_task
from sqlalchemy.exc import IntegrityError

from hub.anomaly_review import scan_all
from hub.state import state


@shared_task(name="hub.dpo_tasks.detect_anomalies", ignore_result=True, acks_late=True)
def detect_anomalies() -> int:
    """Beat, hourly (and on the DPO's request): run the anomaly rules over the events logged
    since the last scan and store new findings; returns how many were created or extended."""
    hub_state = state()
    with hub_state.session_factory() as session:
        try:
            results = scan_all(session, hub_state.audit_log, now=hub_state.clock())
        except IntegrityError:
            # Another scan from the same watermark committed first: its findings are stored.
            session.rollback()
            return 0
        return sum(r.created + r.extended for r in results)
