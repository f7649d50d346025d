"""Internationalisation: French first, English complete.

User-facing strings are written in French in templates and code (the product's first language)
and translated to English through ``translations/en``. Domain errors carry a French message id
plus parameters so the hub can translate them when it shows them.
"""

from __future__ import annotations

from typing import Any

from flask import request, session

LANGUAGES = ("fr", "en")
DEFAULT_LANGUAGE = "fr"


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    """Mark ``message`` for extraction without translating it now."""
    return message


class MessageError(Exception):
    """Base of errors shown to people: a French message id and its parameters."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = params


def page_is_english() -> bool:
    """Whether the current page is rendered in English (labels, date formats)."""
    from flask_babel import get_locale  # noqa: PLC0415 - only meaningful in a request

    locale = get_locale()
    return locale is not None and locale.language == "en"


def select_locale() -> str:
    """The language chosen by the person, else French (English only when asked for)."""
    chosen = session.get("lang")
    if chosen in LANGUAGES:
        return str(chosen)
    best = request.accept_languages.best_match(LANGUAGES, default=DEFAULT_LANGUAGE)
    # French stays the default unless the browser prefers English over French.
    return best or DEFAULT_LANGUAGE
