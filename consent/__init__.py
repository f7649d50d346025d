"""Consent: prior information, the young person's (and parents') accord, and adhesion —
recorded as append-only histories and enforced, fail closed, on every read and write of a case.

No Flask here (DESIGN §3): services take a SQLAlchemy ``Session`` and a clock; the hub, the CLI
and Celery tasks use them alike. Typical use::

    records = ConsentRecords(session, clock=clock)
    state = records.state(case_id)                       # once per decision
    decision = may_view(compiled, state, recipient, purpose, field_ids,
                        recipient_org=RecipientOrg(org.id, org.kind), at=now, birth_date=birth, …)
"""

from consent.enforce import (
    ConsentRules,
    ConsentState,
    Summary,
    age_on,
    local_day,
    may_record,
    may_view,
    summarise,
)
from consent.errors import (
    ConsentConflictError,
    ConsentError,
    ConsentForbiddenError,
    ConsentInvalidError,
    ConsentNotFoundError,
    ErrorKind,
)
from consent.receipt import receipt_body
from consent.records import (
    Adhesion,
    Consent,
    Evidence,
    History,
    Information,
    Receipt,
    RecipientOrg,
    Scope,
    StatusEntry,
)
from consent.services import (
    MAX_EVIDENCE_BYTES,
    Actor,
    ConsentRecords,
    Sealer,
    Upload,
    media_type,
    new_receipt_reference,
)
from consent.vocabulary import (
    HOLDERS,
    ConsentStatus,
    EvidenceKind,
    Grantor,
    InformationMethod,
)

__all__ = [
    "HOLDERS",
    "MAX_EVIDENCE_BYTES",
    "Actor",
    "Adhesion",
    "Consent",
    "ConsentConflictError",
    "ConsentError",
    "ConsentForbiddenError",
    "ConsentInvalidError",
    "ConsentNotFoundError",
    "ConsentRecords",
    "ConsentRules",
    "ConsentState",
    "ConsentStatus",
    "ErrorKind",
    "Evidence",
    "EvidenceKind",
    "Grantor",
    "History",
    "Information",
    "InformationMethod",
    "Receipt",
    "RecipientOrg",
    "Scope",
    "Sealer",
    "StatusEntry",
    "Summary",
    "Upload",
    "age_on",
    "local_day",
    "may_record",
    "may_view",
    "media_type",
    "new_receipt_reference",
    "receipt_body",
    "summarise",
]
