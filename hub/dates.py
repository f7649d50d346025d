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
_FRENCH_DAY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
# As people type a day in France (JJ/MM/AAAA), and as a date picker sends it (AAAA-MM-JJ).
DAY_FORMATS = ["%Y-%m-%d", "%d/%m/%Y"]


def day_format_message() -> str:
    """The French sentence for a day that is not one (translated where it is shown)."""
    return N_("Saisissez une date au format JJ/MM/AAAA.")


def read_day(value: str) -> date:
    """``JJ/MM/AAAA`` or ``AAAA-MM-JJ`` as a date; :class:`ValueError` for anything else."""
    value = value.strip()
    french = _FRENCH_DAY.fullmatch(value)
    if french is not None:
        day, month, year = (int(part) for part in french.groups())
        return date(year, month, day)
    if _DAY.fullmatch(value) is None:
        raise ValueError(value)
    return date.fromisoformat(value)


class DayError(MessageError):
    """A day that is not a day, or out of the range Maillon handles."""


def out_of_range_message() -> str:
    """The French sentence for a day out of range (translated where it is shown)."""
    return N_("Saisissez une date entre le 01/01/2000 et le 31/12/2100.")


def in_range(day: date, earliest: date = EARLIEST, latest: date = LATEST) -> bool:
    """Whether ``day`` is one Maillon handles."""
    return earliest <= day <= latest


def parse_day(value: str | None) -> date | None:
    """``JJ/MM/AAAA`` or ``AAAA-MM-JJ`` within the range, ``None`` for an empty value;
    :class:`DayError` else."""
    if not value:
        return None
    try:
        day = read_day(value)
    except ValueError:
        raise DayError(day_format_message()) from None
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
