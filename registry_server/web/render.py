"""How the registry's pages are drawn: templates, sizes and counts for people, Markdown, the 404 page.

Routes (registry_server/routes/pages.py) decide what to show; this module knows how.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from nnpm._version import __version__
from nnpm.errors import NnpmError
from nnpm.format.manifest import Manifest
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


def render_markdown(text: str) -> Markup:
    """CommonMark (+ tables, strikethrough) to HTML, with raw HTML disabled and unsafe links dropped."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    return Markup(md.render(text))


def readme_html(manifest: Manifest, store: BlobStore, limit: int) -> Markup | None:
    """The package's README rendered for its card (None when it has none or its blob is missing)."""
    path = manifest.project.readme
    if not path:
        return None
    try:
        entry = manifest.file(path)
        raw = store.read(entry.sha256, limit)
    except (KeyError, OSError, NnpmError):  # a missing blob must not break the page
        return None
    text = raw.decode("utf-8", "replace")
    if entry.size > limit:
        text += f"\n\n*README truncated at {human_size(limit)}.*\n"
    return render_markdown(text)


def page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    """Render a template with the context every page has."""
    context.setdefault("q", "")
    return templates.TemplateResponse(request, template, {"nnpm_version": __version__, **context},
                                      status_code=status)


def not_found_page(request: Request, message: str) -> HTMLResponse:
    """The friendly 404 page."""
    return page(request, "not_found.html", status=404, message=message)
