"""Server-rendered HTML: the package list with search, and the model card."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from nnpm.errors import ManifestError
from registry_server.db.tables import iso, version_key
from registry_server.routes.deps import get_session, get_settings, get_store
from registry_server.services import catalog
from registry_server.settings import ServerSettings
from registry_server.storage.base import BlobStore
from registry_server.web.render import human_count, human_size, not_found_page, page, readme_html

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, q: str = Query("", max_length=200), session: Session = Depends(get_session)):
    results = catalog.search(session, q, 500)
    return page(request, "index.html", q=q, results=results)


@router.get("/packages/{name}", response_class=HTMLResponse)
def package_page(name: str, request: Request, session: Session = Depends(get_session),
                 store: BlobStore = Depends(get_store), settings: ServerSettings = Depends(get_settings)) -> Response:
    return _card(request, name, None, session, store, settings)


@router.get("/packages/{name}/{version}", response_class=HTMLResponse)
def version_page(name: str, version: str, request: Request, session: Session = Depends(get_session),
                 store: BlobStore = Depends(get_store), settings: ServerSettings = Depends(get_settings)) -> Response:
    return _card(request, name, version, session, store, settings)


def _card(request: Request, name: str, version: str | None, session: Session, store: BlobStore,
          settings: ServerSettings) -> Response:
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
    manifest = catalog.manifest_of(row)
    project = manifest.project
    pinned = row is not top
    install = f"nnpm install {canonical}" + (f"=={row.version}" if pinned else "")
    load = f'nnpm.load("{canonical}' + (f'=={row.version}' if pinned else "") + '")'
    return page(
        request, "package.html",
        name=canonical, row=row, manifest=manifest, project=project, is_latest=not pinned,
        versions=[{"version": r.version, "yanked": r.yanked, "reason": r.yanked_reason,
                   "published": iso(r.published_at)[:10], "current": r is row} for r in reversed(rows)],
        published=iso(row.published_at), install=install, load=load,
        readme=readme_html(row, manifest, store, settings.max_readme_size),
        owners=catalog.owners_of(session, pkg),
        deps=[(dep, str(spec) or "any") for dep, spec in project.dependencies.items()],
        files=[{"path": f.path, "size": human_size(f.size), "bytes": f.size, "sha256": f.sha256}
               for f in manifest.files],
        total_size=human_size(manifest.total_size),
        params=f"{manifest.params:,}", params_short=human_count(manifest.params),
    )
