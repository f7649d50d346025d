"""The charter-type shipped with Maillon (package data), drafted from the national framework.

Two versions ship: version 1 (format 1, ``charte-type-v1.toml``, the text partners signed
first: its digest must never change) and version 2 (format 2, ``charte-type.toml``: lawful
basis and the young person's accord stated apart, consent settings, a grace period for
signatures). ``default_charter()`` is version 2: new groups start under it, while a group
that signed version 1 keeps it until its partners sign the next one.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Final

from charter.loader import load_charter
from charter.model import Charter

CHARTER_TYPE_FILES: Final = {1: "charte-type-v1.toml", 2: "charte-type.toml"}
CHARTER_TYPE_VERSIONS: Final = tuple(sorted(CHARTER_TYPE_FILES))
DEFAULT_CHARTER_VERSION: Final = 2
DEFAULT_CHARTER_FILE: Final = CHARTER_TYPE_FILES[DEFAULT_CHARTER_VERSION]


def _file(version: int) -> str:
    try:
        return CHARTER_TYPE_FILES[version]
    except KeyError:
        shipped = ", ".join(str(v) for v in CHARTER_TYPE_VERSIONS)
        raise ValueError(
            f"version {version} de la charte-type inconnue (versions livrées : {shipped})"
        ) from None


def charter_type_text(version: int) -> str:
    """The TOML text of version ``version`` of the charter-type, as shipped.

    Raises ``ValueError`` for a version that is not shipped (see ``CHARTER_TYPE_VERSIONS``).
    """
    name = _file(version)
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@cache
def charter_type(version: int) -> Charter:
    """Version ``version`` of the charter-type, loaded and validated (cached: immutable)."""
    name = _file(version)
    return load_charter(charter_type_text(version), source=f"charter/defaults/{name}")


def default_charter_text() -> str:
    """The TOML text of the default charter-type (version ``DEFAULT_CHARTER_VERSION``)."""
    return charter_type_text(DEFAULT_CHARTER_VERSION)


def default_charter() -> Charter:
    """The default charter-type, loaded and validated (version ``DEFAULT_CHARTER_VERSION``)."""
    return charter_type(DEFAULT_CHARTER_VERSION)
