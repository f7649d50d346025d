"""The browser module's speed in headless Chromium (DESIGN §11, issue 11): sealing a form for
10 recipients and opening one, each next to the raw WebCrypto operations it cannot do without,
measured in the same page and the same rounds.

- seal: one view of two fields sealed to 10 X25519 devices, signed, parsed back and verified;
  its baseline: 10 × (ephemeral X25519 key pair, public key import, deriveBits), one AES-GCM
  encryption of the view and one Ed25519 signature. Target ≤ 50 ms.
- open: a received form verified and decrypted; its baseline: one Ed25519 verification, one
  deriveBits, two AES-GCM decryptions. Target ≤ 20 ms.

What is above the baseline is HPKE's key schedule (HKDF through HMAC, one key import per HMAC)
and the format's checks.
"""

from __future__ import annotations

import statistics

from tests.benchmarks.common import Result


def run(*, quick: bool = False) -> list[Result]:
    """Both figures, medians of alternating rounds in one page."""
    from tests.browser.conftest import Module, serve_static, start_chromium

    rounds = 5 if quick else 31
    driver = start_chromium()
    try:
        with serve_static() as origin:
            module = Module(driver, origin)
            module("timings", 3)  # warm-up: JIT, key imports
            measured = module("timings", rounds)
    finally:
        driver.quit()
    return [
        _result("browser: seal a form for 10 recipients", measured["seal"], measured["raw"],
                "raw WebCrypto ops of a seal", "≤ 50 ms", 50.0),
        _result("browser: open a received form", measured["open"], measured["rawOpen"],
                "raw WebCrypto ops of an open", "≤ 20 ms", 20.0),
    ]  # fmt: skip


def _result(
    name: str, values: list[float], base: list[float], base_name: str, target: str, bound: float
) -> Result:
    return Result(
        name=name,
        value=statistics.median(values),
        unit="ms",
        baseline_name=base_name,
        baseline_value=statistics.median(base),
        target=target,
        higher_is_better=False,
        max_value=bound,
        rounds=tuple(values),
        baseline_rounds=tuple(base),
    )
