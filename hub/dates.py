"""Calendar days as people type them: bounded where they enter, so no arithmetic on a day can
overflow later (a meeting on 0001-01-01 once made every case page of its group fail).

One range for everything a partner records or searches (2000–2100), one for dates of birth
(1900–today, checked in :mod:`hub.cases`). Forms use :class:`DayInRange`; code that parses
query strings uses :func:`parse_day`.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from wtforms import Field
from wtforms.validators import ValidationError

from hub.i18n import N_, MessageError

EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 12, 31)
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class DayError(MessageError):
    """A day that is not a day, or out of the range Maillon handles."""


def out_of_range_message() -> str:
    """The French sentence for a day out of range (translated where it is shown)."""
    return N_("Saisissez une date entre le 01/01/2000 et le 31/12/2100.")


def in_range(day: date, earliest: date = EARLIEST, latest: date = LATEST) -> bool:
    """Whether ``day`` is one Maillon handles."""
    return earliest <= day <= latest


def parse_day(value: str | None) -> date | None:
    """``AAAA-MM-JJ`` within the range, ``None`` for an empty value; :class:`DayError` else."""
    if not value:
        return None
    if _DAY.fullmatch(value) is None:
        raise DayError(N_("Saisissez une date au format AAAA-MM-JJ."))
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise DayError(N_("Saisissez une date au format AAAA-MM-JJ.")) from None
    if not in_range(day):
        raise DayError(out_of_range_message())
    return day


class DayInRange:
    """WTForms validator: a ``DateField``'s day within the range (2000–2100 by default)."""

    def __init__(self, earliest: date = EARLIEST, latest: date = LATEST) -> None:
        self.earliest = earliest
        self.latest = latest

    def __call__(self, _form: Any, field: Field) -> None:
        day = field.data
        if isinstance(day, date) and not in_range(day, self.earliest, self.latest):
            from flask_babel import gettext as _  # noqa: PLC0415 - only in a request

            raise ValidationError(_(out_of_range_message()))
