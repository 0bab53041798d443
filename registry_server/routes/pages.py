"""Server-rendered HTML: the package list (search, pages of 50, sorted by name or recent publish) and the model card."""

from __future__ import annotations

import math
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from nnpm.errors import ManifestError
from nnpm.format.manifest import Manifest
from registry_server.db.tables import iso, version_key
from registry_server.routes.deps import get_session, get_settings, get_store
from registry_server.services import catalog, pipelines
from registry_server.services.search import search
from registry_server.settings import ServerSettings
from registry_server.storage.base import BlobStore
from registry_server.web.chart import variant_chart
from registry_server.web.diagram import pipeline_diagram, registry_lookup
from registry_server.web.overview import graph_overview
from registry_server.web.render import human_count, human_size, not_found_page, page, readme_html
from registry_server.web.variants import variant_table

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
PAGE_SORTS = {"name": "Name", "recent": "Recently published"}


def _page_number(text: str) -> int:
    """A hand-typed `?page=`, read leniently: anything but a positive number is the first page."""
    return int(text) if text.isdigit() and 0 < int(text) < 1_000_000 else 1


def index_url(q: str, sort: str, number: int | None = None) -> str:
    """A link to the list: `/?q=..&sort=..&page=..`, leaving out what is empty."""
    params = {k: v for k, v in (("q", q), ("sort", sort), ("page", number)) if v}
    return "/?" + urlencode(params) if params else "/"


@router.get("/", response_class=HTMLResponse)
def index(request: Request, q: str = Query("", max_length=200), page_text: str = Query("1", alias="page",
          max_length=20), sort: str = Query("", max_length=20), session: Session = Depends(get_session)):
    sort = sort if sort in PAGE_SORTS else ""
    number = _page_number(page_text)
    order = sort or ("relevance" if q.strip() else "name")
    results, total = search(session, q, PAGE_SIZE, (number - 1) * PAGE_SIZE, order)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    sorts = ([{"label": "Best match", "href": index_url(q, ""), "current": not sort}] if q.strip() else []) + [
        {"label": label, "href": index_url(q, key), "current": order == key} for key, label in PAGE_SORTS.items()]
    return page(request, "index.html", q=q, results=results, total=total, number=number, pages=pages,
                first_shown=(number - 1) * PAGE_SIZE + 1, last_shown=(number - 1) * PAGE_SIZE + len(results),
                previous=index_url(q, sort, number - 1) if 1 < number <= pages else None,
                next=index_url(q, sort, number + 1) if number < pages else None,
                first_page=index_url(q, sort, 1), sorts=sorts)


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
    steps = pipelines.card_steps(session, manifest)
    return page(
        request, "package.html",
        name=canonical, row=row, manifest=manifest, project=project, is_latest=not pinned,
        versions=[{"version": r.version, "yanked": r.yanked, "reason": r.yanked_reason,
                   "published": iso(r.published_at)[:10], "current": r is row} for r in reversed(rows)],
        published=iso(row.published_at), install=install, load=load,
        readme=readme_html(row, manifest, store, settings.max_readme_size),
        owners=catalog.owners_of(session, pkg),
        signature=pipelines.card_signature(session, row, manifest),
        deps=[{"name": d.name, "spec": d.spec, "version": d.version,
               "size": human_size(d.size) if d.size is not None else None} for d in steps.dependencies],
        files=_files(manifest), archive=f"/api/v1/packages/{canonical}/{row.version}/archive",
        archive_name=f"{canonical}-{row.version}.nnpm", **_sizes(manifest, steps),
        params=f"{manifest.params:,}", params_short=human_count(manifest.params),
        variants=variant_table(manifest, row.measured_json),
        chart=variant_chart(manifest, row.measured_json),
        diagram=pipeline_diagram(manifest, registry_lookup(session)),
        overview=graph_overview(manifest, row.overview_json),
    )


def _files(manifest: Manifest) -> list[dict]:
    """The files table: each file with its size and a download link naming it."""
    return [{"path": f.path, "size": human_size(f.size), "bytes": f.size, "sha256": f.sha256,
             "href": f"/api/v1/blobs/sha256:{f.sha256}?filename={quote(f.path.rpartition('/')[2], safe='')}"}
            for f in manifest.files]


def _sizes(manifest: Manifest, steps: pipelines.CardSteps) -> dict:
    """A model's size; a pipeline's own files plus what its steps bring, and which steps could not be counted."""
    own = manifest.total_size
    if manifest.project.pipeline is None:
        return {"total_size": human_size(own), "pipeline_sizes": None}
    return {"total_size": human_size(own + steps.steps_size),
            "pipeline_sizes": {"own": human_size(own), "steps": human_size(steps.steps_size),
                               "unresolved": steps.unresolved}}
