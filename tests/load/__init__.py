"""Measured reliability (`make load`, not in CI): a locust load against gunicorn + PostgreSQL +
Redis next to a hello-world baseline, and a crash test that kill -9's the web and worker
processes during concurrent case writes. Figures and how to reproduce: ``docs/reliability.md``.
"""
