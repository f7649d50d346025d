"""The hub's side of the exchange: its tables, the key directory log, devices, the relay.

These modules need SQLAlchemy and take a ``Session`` and a clock (no Flask); the client side
(:mod:`exchange.envelope`, :mod:`exchange.directory`, the client) never imports them, so a
partner's installation does without the server's dependencies.
"""
