"""Server-rendered HTML: the package list with search, and the model card."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlalchemy.orm import Session

import nnpm
from nnpm.errors import ManifestError, NnpmError
from nnpm.manifest import Manifest
from registry_server import catalog
from registry_server.db import iso, version_key
from registry_server.deps import get_session, get_settings, get_store
from registry_server.settings import Settings
from registry_server.storage import BlobStore

WEB = Path(__file__).resolve().parent.parent / "web"
templates = Jinja2Templates(directory=str(WEB / "templates"))
router = APIRouter(include_in_schema=False)


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


def _readme(manifest: Manifest, store: BlobStore, limit: int) -> Markup | None:
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


def _page(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    context.setdefault("q", "")
    return templates.TemplateResponse(request, template, {"nnpm_version": nnpm.__version__, **context},
                                      status_code=status)


def not_found_page(request: Request, message: str) -> HTMLResponse:
    """The friendly 404 page."""
    return _page(request, "not_found.html", status=404, message=message)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, q: str = Query("", max_length=200), session: Session = Depends(get_session)):
    results = catalog.search(session, q, 500)
    return _page(request, "index.html", q=q, results=results)


@router.get("/packages/{name}", response_class=HTMLResponse)
def package_page(name: str, request: Request, session: Session = Depends(get_session),
                 store: BlobStore = Depends(get_store), settings: Settings = Depends(get_settings)) -> Response:
    return _card(request, name, None, session, store, settings)


@router.get("/packages/{name}/{version}", response_class=HTMLResponse)
def version_page(name: str, version: str, request: Request, session: Session = Depends(get_session),
                 store: BlobStore = Depends(get_store), settings: Settings = Depends(get_settings)) -> Response:
    return _card(request, name, version, session, store, settings)


def _card(request: Request, name: str, version: str | None, session: Session, store: BlobStore,
          settings: Settings) -> Response:
    try:
        canonical = catalog.url_name(name)
        version = catalog.url_version(version) if version is not None else None
    except ManifestError:
        return not_found_page(request, f"There is no package called “{name}” here.")
    if canonical != name:
        return RedirectResponse(f"/packages/{canonical}" + (f"/{version}" if version else ""), status_code=301)
    pkg = catalog.find_package(session, canonical)
    rows = catalog.versions_of(session, pkg) if pkg else []
    if not rows:
        return not_found_page(request, f"There is no package called “{canonical}” here.")
    top = catalog.latest(rows)
    row = next((r for r in rows if r.version_key == version_key(version)), None) if version else top
    if row is None:
        return not_found_page(request, f"{canonical} has no version {version}.")
    manifest = Manifest.from_json(row.manifest_json)
    project = manifest.project
    pinned = row is not top
    install = f"nnpm install {canonical}" + (f"=={row.version}" if pinned else "")
    load = f'nnpm.load("{canonical}' + (f'=={row.version}' if pinned else "") + '")'
    return _page(
        request, "package.html",
        name=canonical, row=row, manifest=manifest, project=project, is_latest=not pinned,
        versions=[{"version": r.version, "yanked": r.yanked, "reason": r.yanked_reason,
                   "published": iso(r.published_at)[:10], "current": r is row} for r in reversed(rows)],
        published=iso(row.published_at), install=install, load=load,
        readme=_readme(manifest, store, settings.max_readme_size),
        owners=catalog.owners_of(session, pkg),
        deps=[(dep, str(spec) or "any") for dep, spec in project.dependencies.items()],
        files=[{"path": f.path, "size": human_size(f.size), "bytes": f.size, "sha256": f.sha256}
               for f in manifest.files],
        total_size=human_size(manifest.total_size),
        params=f"{manifest.params:,}", params_short=human_count(manifest.params),
    )
