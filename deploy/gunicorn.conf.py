"""Gunicorn settings for production: ``gunicorn -c deploy/gunicorn.conf.py 'hub:create_app()'``.

Web nodes are stateless (sessions are signed cookies checked against the database, rate limits
live in Redis), so more nodes behind nginx scale horizontally.
"""

import multiprocessing
import os

bind = os.environ.get("MAILLON_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("MAILLON_WEB_WORKERS", str(multiprocessing.cpu_count() * 2 + 1)))
worker_class = "sync"
timeout = 30
graceful_timeout = 20
keepalive = 5
max_requests = 2000  # recycle workers now and then: bounds any slow leak
max_requests_jitter = 200
# Only nginx on this host talks to gunicorn; it sets X-Forwarded-For/Proto
# (MAILLON_TRUSTED_PROXIES=1).
forwarded_allow_ips = "127.0.0.1"
# No access log here: nginx keeps one, and URLs must not end up in two places.
accesslog = None
errorlog = "-"
loglevel = "info"
limit_request_line = 8190
limit_request_fields = 100
