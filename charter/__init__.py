"""Charter policy: the deontological charter on information exchange as explainable rules.

No Flask here: the hub, the CLI and the Celery tasks all use this package directly.
"""
