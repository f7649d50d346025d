"""TOTP (RFC 6238) helpers around pyotp: provisioning, QR code, and step matching.

Replay protection is not here: :mod:`hub.accounts` accepts a matched step only through an atomic
conditional UPDATE, so the same code cannot be used twice, even by two concurrent requests.
"""

from __future__ import annotations

import io
from datetime import datetime

import pyotp
import qrcode
import qrcode.image.svg

ISSUER = "Maillon"
INTERVAL = 30
DIGITS = 6
# One step either side tolerates small clock drift between the phone and the server.
DRIFT_STEPS = 1


def new_secret() -> str:
    """A random base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as inline SVG markup (no image request, CSP-friendly)."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    svg = buffer.getvalue().decode("utf-8")
    # Drop the XML declaration so the markup can sit inside HTML.
    return svg[svg.index("<svg") :]


def step_at(when: datetime) -> int:
    """The TOTP time step containing ``when``."""
    return int(when.timestamp()) // INTERVAL


def matching_step(secret: str, code: str, when: datetime) -> int | None:
    """The time step (within the drift window) whose code equals ``code``, else ``None``."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL)
    current = step_at(when)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if pyotp.utils.strings_equal(totp.generate_otp(step), code):
            return step
    return None


def code_at(secret: str, when: datetime) -> str:
    """The code valid at ``when`` (demo tooling and tests)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).at(when)
