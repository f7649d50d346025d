"""Field-id globs used by publish and view rules.

A glob is a field id in which ``*`` stands for any run of characters, dots included
(``justice.*``, ``*.date_*``, ``*``). Nothing else is special: brackets and ``?`` are refused
so that a rule reads the same to a lawyer as to the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

FIELD_ID_RE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
_GLOB_RE = re.compile(r"^[a-z0-9_*]+(?:\.[a-z0-9_*]+)*$")


def is_valid_field_id(value: str) -> bool:
    """Whether ``value`` is a well-formed field id (``category.name``)."""
    return FIELD_ID_RE.match(value) is not None


def is_valid_glob(value: str) -> bool:
    """Whether ``value`` is a well-formed field glob."""
    return _GLOB_RE.match(value) is not None


def is_pattern(value: str) -> bool:
    """Whether the glob contains a wildcard (else it names one field exactly)."""
    return "*" in value


@lru_cache(maxsize=4096)
def _compile(glob: str) -> re.Pattern[str]:
    return re.compile("^" + ".*".join(re.escape(part) for part in glob.split("*")) + "$")


def matches(glob: str, field_id: str) -> bool:
    """Whether ``field_id`` matches ``glob``."""
    if "*" not in glob:
        return glob == field_id
    return _compile(glob).match(field_id) is not None


def expand(globs: Iterable[str], field_ids: Iterable[str]) -> frozenset[str]:
    """The field ids among ``field_ids`` matched by any of ``globs``."""
    pats = tuple(globs)
    return frozenset(f for f in field_ids if any(matches(g, f) for g in pats))
