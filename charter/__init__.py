"""Charter policy: the deontological charter on information exchange as explainable rules.

No Flask here: the hub, the CLI and the Celery tasks all use this package directly.

Typical use::

    charter = load_charter(text)            # or default_charter()
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
from charter.defaults import default_charter, default_charter_text
from charter.errors import CharterError, Problem
from charter.lint import Finding, Severity, has_errors, lint
from charter.loader import load_charter
from charter.model import Charter
from charter.versions import CharterDiff, Signature, applicable_version, diff

__all__ = [
    "Charter",
    "CharterDiff",
    "CharterError",
    "CompiledCharter",
    "Decision",
    "Declination",
    "Finding",
    "Problem",
    "Reason",
    "ReasonCode",
    "Recipient",
    "Severity",
    "Signature",
    "applicable_version",
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
