"""The baseline of the HTTP benchmarks: a bare Flask endpoint under the same gunicorn settings."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    """Nothing but a response."""
    return "bonjour"
