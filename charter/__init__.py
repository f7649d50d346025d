"""Charter policy: the deontological charter on information exchange as explainable rules.

No Flask here: the hub, the CLI and the Celery tasks all use this package directly.

Typical use::

    charter = load_charter(text)            # or charter_type(2), default_charter()
    findings = lint(charter)
    compiled = compile_charter(charter)     # once per version
    decision = compiled.view(recipient, "suivi_parcours", field_ids, sender_org_kind=…)
"""

from charter.canonical import digest, to_toml
from charter.decide import (
    CompiledCharter,
    Decision,
    Declination,
    Reason,
    ReasonCode,
    Recipient,
    compile_charter,
    interpret,
)
from charter.defaults import (
    CHARTER_TYPE_VERSIONS,
    charter_type,
    charter_type_text,
    default_charter,
    default_charter_text,
)
from charter.errors import CharterError, Problem
from charter.lint import Finding, Severity, has_errors, lint
from charter.loader import load_charter
from charter.model import (
    CHARTER_FORMATS,
    Charter,
    ConsentCategory,
    ConsentSettings,
    FieldDef,
    IsoDuration,
)
from charter.versions import CharterDiff, Signature, applicable_version, diff

__all__ = [
    "CHARTER_FORMATS",
    "CHARTER_TYPE_VERSIONS",
    "Charter",
    "CharterDiff",
    "CharterError",
    "CompiledCharter",
    "ConsentCategory",
    "ConsentSettings",
    "Decision",
    "Declination",
    "FieldDef",
    "Finding",
    "IsoDuration",
    "Problem",
    "Reason",
    "ReasonCode",
    "Recipient",
    "Severity",
    "Signature",
    "applicable_version",
    "charter_type",
    "charter_type_text",
    "compile_charter",
    "default_charter",
    "default_charter_text",
    "diff",
    "digest",
    "has_errors",
    "interpret",
    "lint",
    "load_charter",
    "to_toml",
]
