"""Maillon exchange: end-to-end encrypted *fiches de liaison* (DESIGN §6, docs/envelope.md).

No Flask here. Modules:

- :mod:`exchange.hpke` — the HPKE suites view keys are sealed with (RFC 9180; X25519 and the
  MLKEM768-X25519 hybrid);
- :mod:`exchange.keys` — device keys, key ids, the *numéro de sécurité*;
- :mod:`exchange.envelope` — envelope v1: ``seal``, ``verify``, ``open_form``;
- :mod:`exchange.keystore` — private keys at rest under a passphrase (keystore, recovery);
- :mod:`exchange.encoding`, :mod:`exchange.errors` — strict encodings, the error family.

These modules need only ``cryptography`` (a partner's client installs without the hub's server
dependencies). Nothing is re-exported here: importing the package pulls in nothing.
"""
