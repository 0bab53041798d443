"""`/api/v1/packages/...`, search, health and whoami: thin shells over catalog/publish/owners."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

import nnpm
from registry_server import catalog
from registry_server.db import User
from registry_server.errors import error_response
from registry_server.deps import current_user, get_session, get_settings, get_store
from registry_server.owners import add_owner, require_owner, set_yanked
from registry_server.publish import publish, read_body
from registry_server.settings import Settings
from registry_server.storage import BlobStore

router = APIRouter(prefix="/api/v1")

_MANIFEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "description": "manifest.json, as `nnpm pack` writes it"}}}}}


class YankRequest(BaseModel):
    """Why a version is yanked (shown to people who pinned it)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=1000)


@router.get("/health", tags=["meta"], summary="Liveness and the server's nnpm version")
def health() -> dict:
    return {"status": "ok", "version": nnpm.__version__}


@router.get("/ready", tags=["meta"], summary="Readiness: the database and the blob store answer",
            responses={503: {"description": "the database or the blob store cannot be used"}})
def ready(request: Request) -> Response:
    problems = []
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # the URL may hold a password: name only the error class
        problems.append(f"database: {type(exc).__name__}")
    try:
        request.app.state.store.check()
    except Exception as exc:
        problems.append(f"blob store: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if problems:
        return error_response(503, "registry_error", "not ready: " + "; ".join(problems))
    return JSONResponse({"status": "ready", "version": nnpm.__version__})


@router.get("/whoami", tags=["meta"], summary="The user behind the bearer token")
def whoami(user: User = Depends(current_user)) -> dict:
    return {"user": user.name}


@router.get("/search", tags=["packages"], summary="Search names, descriptions and tags")
def search(q: str = Query("", max_length=200), limit: int = Query(50, ge=1, le=1000),
           session: Session = Depends(get_session)) -> dict:
    return {"results": catalog.search(session, q, limit)}


def _packument(engine, name: str) -> tuple[bytes, str]:
    with engine.connect() as conn:
        return catalog.packument(conn, name)


@router.get("/packages/{name}", tags=["packages"], summary="The packument: every version of a package",
            responses={304: {"description": "not modified"}})
async def get_packument(name: str, request: Request) -> Response:
    # One worker-thread hop for connection and query, instead of three (a generator dependency
    # is entered and left on the thread pool, and a sync endpoint runs there too).
    body, etag = await run_in_threadpool(_packument, request.app.state.engine, catalog.url_name(name))
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    inm = request.headers.get("if-none-match")
    if inm and (etag in [t.strip().removeprefix("W/") for t in inm.split(",")] or inm.strip() == "*"):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get("/packages/{name}/owners", tags=["owners"], summary="Who may publish and yank")
def get_owners(name: str, session: Session = Depends(get_session)) -> dict:
    pkg = catalog.require_package(session, catalog.url_name(name))
    return {"owners": catalog.owners_of(session, pkg)}


@router.put("/packages/{name}/owners/{user_name}", tags=["owners"], summary="Add an owner (owners only)")
def put_owner(name: str, user_name: str, user: User = Depends(current_user),
              session: Session = Depends(get_session)) -> dict:
    pkg = catalog.require_package(session, catalog.url_name(name))
    require_owner(session, pkg, user)
    add_owner(session, pkg, user_name)
    return {"owners": catalog.owners_of(session, pkg)}


@router.get("/packages/{name}/{version}", tags=["packages"], summary="One version's full manifest")
def get_version(name: str, version: str, session: Session = Depends(get_session)) -> dict:
    name = catalog.url_name(name)
    return catalog.version_view(catalog.require_version(session, name, catalog.url_version(version)), name)


@router.put("/packages/{name}/{version}", tags=["packages"], openapi_extra=_MANIFEST_BODY, status_code=201,
            summary="Publish a version whose blobs are all uploaded",
            responses={200: {"description": "identical retry"}, 201: {"description": "published"},
                       409: {"description": "this version exists with other content"}})
async def put_version(name: str, version: str, request: Request, user: User = Depends(current_user),
                      session: Session = Depends(get_session), store: BlobStore = Depends(get_store),
                      settings: Settings = Depends(get_settings)) -> Response:
    name, version = catalog.url_name(name), catalog.url_version(version)
    body = await read_body(request.stream(), request.headers.get("content-length"),
                           settings.max_manifest_size, "manifest")
    status, row = await run_in_threadpool(publish, session, store, settings, user, name, version, body)
    return JSONResponse(catalog.version_view(row, name), status_code=status)


def _yank(name: str, version: str, yanked: bool, reason: str, user: User, session: Session) -> dict:
    name = catalog.url_name(name)
    row = catalog.require_version(session, name, catalog.url_version(version))
    require_owner(session, row.package, user)
    return catalog.version_view(set_yanked(session, row, yanked, reason), name)


@router.post("/packages/{name}/{version}/yank", tags=["packages"], summary="Yank a version (PEP 592)")
def yank(name: str, version: str, body: YankRequest | None = None, user: User = Depends(current_user),
         session: Session = Depends(get_session)) -> dict:
    return _yank(name, version, True, body.reason if body else "", user, session)


@router.delete("/packages/{name}/{version}/yank", tags=["packages"], summary="Un-yank a version")
def unyank(name: str, version: str, user: User = Depends(current_user),
           session: Session = Depends(get_session)) -> dict:
    return _yank(name, version, False, "", user, session)
