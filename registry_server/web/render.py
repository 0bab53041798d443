"""How the registry's pages are drawn: templates, sizes and counts for people, READMEs, the 404 page.

Routes (registry_server/routes/pages.py) decide what to show; this module knows how. A
page never renders Markdown: READMEs were rendered once at publish
(registry_server/services/readme.py) and are shown from the database.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from nnpm._version import __version__
from nnpm.format.manifest import Manifest
from registry_server.db.tables import Release
from registry_server.services.readme import plain_html, readme_text
from registry_server.storage.base import BlobStore

WEB = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(WEB / "templates"))


def human_size(n: int) -> str:
    """1234567 → '1.2 MB'."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def human_count(n: int) -> str:
    """11689512 → '11.7M'."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def readme_html(row: Release, manifest: Manifest, store: BlobStore, limit: int) -> Markup | None:
    """The README for a card: the HTML stored at publish, else (a version published before that) escaped text."""
    if row.readme_html is not None:
        return Markup(row.readme_html) if row.readme_html else None
    text = readme_text(manifest, store, limit)
    return Markup(plain_html(text)) if text is not None else None


def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    """Render a template with the context every page has."""
    context.setdefault("q", "")
    return templates.TemplateResponse(request, template, {"nnpm_version": __version__, **context},
                                      status_code=status)


def not_found_page(request: Request, message: str) -> HTMLResponse:
    """The friendly 404 page."""
    return page(request, "not_found.html", status=404, message=message)
