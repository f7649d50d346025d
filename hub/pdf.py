"""Documents the hub hands out as PDF (DPO access reports, consent receipts).

A Jinja template is rendered to HTML and printed by WeasyPrint with ``static/print.css``. The
renderer fetches nothing: the stylesheet is read from the package and any other URL in the
document (an image, a remote font) is refused, so a document cannot leak a request to a third
party nor embed a file from the server. PDFs are tagged (structure for screen readers) and
carry the document's language and title.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flask import Response, render_template

PRINT_CSS = Path(__file__).resolve().parent / "static" / "print.css"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def html_to_pdf(html: str, *, variant: str | None = None) -> bytes:
    """Print ``html`` to PDF bytes (no network or file access beyond print.css).

    ``variant``: a WeasyPrint PDF variant, e.g. ``pdf/ua-1`` (universal accessibility) for
    documents handed to the people followed.
    """
    # Imported here: WeasyPrint takes a second to load and only these downloads need it.
    from weasyprint import CSS, HTML  # noqa: PLC0415
    from weasyprint.urls import URLFetcher  # noqa: PLC0415

    fetcher = URLFetcher(allowed_protocols=("data",), timeout=1)
    document = HTML(string=html, base_url=None, url_fetcher=fetcher)
    pdf: bytes = document.write_pdf(
        stylesheets=[CSS(filename=str(PRINT_CSS), url_fetcher=fetcher)],
        pdf_tags=True,
        pdf_variant=variant,
    )
    return pdf


def render_pdf(template: str, *, variant: str | None = None, **context: Any) -> bytes:
    """Render ``template`` with ``context`` and print it to PDF (``variant``: see above)."""
    return html_to_pdf(render_template(template, **context), variant=variant)


def ascii_filename(*parts: str, extension: str) -> str:
    """A download name from ``parts`` (ids and dates, never names): ASCII letters, digits,
    dots, dashes and underscores only, so no header encoding or path tricks are needed."""
    stem = "-".join(p for p in (_UNSAFE.sub("_", part).strip("._-") for part in parts) if p)
    return f"{stem[:150] or 'document'}.{extension}"


def attachment(body: Any, *, filename: str, mimetype: str) -> Response:
    """A download: attachment disposition, never cached, never sniffed."""
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def pdf_response(data: bytes, *, filename: str) -> Response:
    """``data`` as a PDF download named ``filename`` (see :func:`ascii_filename`)."""
    return attachment(data, filename=filename, mimetype="application/pdf")
