"""The browser code the hub serves, checkable: Subresource Integrity and the module's digest.

A rigged hub could serve other code that reads what the page decrypts. Each page that seals or
opens forms names its script and the module that script imports by their SHA-384 (SRI, in the
script tag and the import map), so the browser runs them only as named; the module's SHA-256 is
also published as a ``module.release`` entry of the key directory log for each release, which
witnesses compare with what the hub serves (``maillon witness``; docs/browser.md). What remains
— the page itself comes from the hub — is written in docs/threat-model.md.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib import metadata
from pathlib import Path

from flask import url_for

from exchange.client import BROWSER_SCRIPTS

STATIC = Path(__file__).resolve().parent / "static"
MODULE = "js/echange.js"
# The scripts witnesses check (exchange.client pins the same list: a witness needs no hub).
SCRIPTS = BROWSER_SCRIPTS


@cache
def _digests(filename: str, mtime_ns: int) -> tuple[str, str]:
    data = (STATIC / filename).read_bytes()
    sri = "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")
    return sri, hashlib.sha256(data).hexdigest()


def _of(filename: str) -> tuple[str, str]:
    if filename not in SCRIPTS:
        raise ValueError(f"{filename} is not one of the checked scripts")
    return _digests(filename, (STATIC / filename).stat().st_mtime_ns)


def static_integrity(filename: str) -> str:
    """The SRI value (``sha384-…``) of a checked static script."""
    return _of(filename)[0]


def sha256_hex(filename: str) -> str:
    """The SHA-256 (hex) of a checked script as served: what the directory log records."""
    return _of(filename)[1]


def release() -> str:
    """This hub's release as the directory names it: the package version and the scripts'
    joint digest (a changed script is a new release even without a new version)."""
    try:
        version = metadata.version("maillon")
    except metadata.PackageNotFoundError:  # run from a checkout without installing
        version = "0"
    joint = hashlib.sha256("".join(sha256_hex(s) for s in SCRIPTS).encode()).hexdigest()
    return f"{version}+{joint[:12]}"


def import_map() -> dict[str, dict[str, str]]:
    """The page's import map: the module's URL pinned to its SRI value."""
    return {"integrity": {url_for("static", filename=MODULE): static_integrity(MODULE)}}
