"""Destruction of relayed forms past their retention (DESIGN §2.6).

The relay sets each form's ``expires_at`` when it accepts it and stops serving it then; this
removes the ciphertext and its routing rows for good. No Flask: the hub's beat task calls it and
records the destruction in the audit log first.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from exchange.server.tables import form_recipients, forms

BATCH = 1000


def expired_forms(session: Session, now: datetime, *, limit: int = BATCH) -> list[int]:
    """Row ids of forms whose retention ended at ``now``, oldest first (at most ``limit``)."""
    return list(
        session.execute(
            select(forms.c.id).where(forms.c.expires_at <= now).order_by(forms.c.id).limit(limit)
        ).scalars()
    )


def destroy_forms(session: Session, row_ids: list[int]) -> int:
    """Delete these forms and their recipient rows, in the caller's transaction; how many."""
    if not row_ids:
        return 0
    session.execute(delete(form_recipients).where(form_recipients.c.form_row_id.in_(row_ids)))
    session.execute(delete(forms).where(forms.c.id.in_(row_ids)))
    return len(row_ids)
