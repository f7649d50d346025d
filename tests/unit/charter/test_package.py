"""The charter package stays a pure library (DESIGN §3: imports flow one way)."""

from __future__ import annotations

import subprocess
import sys


def test_charter_imports_no_flask_and_no_other_maillon_package() -> None:
    code = (
        "import sys, charter, charter.lint, charter.versions, charter.defaults;"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'flask_login', 'celery', 'sqlalchemy', 'hub', 'audit', 'consent', 'exchange'}];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
