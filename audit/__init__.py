"""Maillon audit log: a tamper-evident, append-only record of every access (DESIGN §8).

No Flask here, and nothing imported from ``hub``, ``consent`` or ``exchange``. Modules:

- :mod:`audit.events` — the action vocabulary, :class:`~audit.events.NewEvent` /
  :class:`~audit.events.Event`, their canonical encoding, :func:`~audit.events.hash_ip`;
- :mod:`audit.merkle` — RFC 6962 tree, inclusion and consistency proofs;
- :mod:`audit.store` — :func:`~audit.store.make_audit_engine`, :class:`~audit.store.AuditLog`;
- :mod:`audit.checkpoint` — signed checkpoints (C2SP signed notes) and cosignatures;
- :mod:`audit.export` / :mod:`audit.verify` — export directory, offline verifier CLI;
- :mod:`audit.witness` — a witness that cosigns only consistent checkpoints, with CLI;
- :mod:`audit.queries`, :mod:`audit.anomalies`, :mod:`audit.retention` — DPO tools.

Nothing is re-exported here on purpose: ``python -m audit.verify`` must not pull in the store
(SQLAlchemy) just by importing the package. Every error is an :class:`audit.errors.AuditError`.
"""
