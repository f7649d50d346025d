"""The charter-type shipped with Maillon (package data), drafted from the national framework."""

from __future__ import annotations

from functools import cache
from importlib import resources

from charter.loader import load_charter
from charter.model import Charter

DEFAULT_CHARTER_FILE = "charte-type.toml"


def default_charter_text() -> str:
    """The TOML text of the charter-type, as shipped."""
    return resources.files(__package__).joinpath(DEFAULT_CHARTER_FILE).read_text(encoding="utf-8")


@cache
def default_charter() -> Charter:
    """The charter-type, loaded and validated (cached: charters are immutable)."""
    return load_charter(default_charter_text(), source=f"charter/defaults/{DEFAULT_CHARTER_FILE}")
