"""`/api/v1/packages/...`: packuments, versions, archives, publish, yank and owners; thin shells over the services."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from registry_server.db.tables import User
from registry_server.headers import content_disposition
from registry_server.routes.deps import body_stream, current_user, get_session, get_settings, get_store
from registry_server.services import archive, catalog, keys
from registry_server.services.owners import add_owner, remove_owner, require_owner, set_yanked
from registry_server.services.publish import publish_version, read_body
from registry_server.services.workers import WorkerPool
from registry_server.settings import ServerSettings
from registry_server.storage.base import BlobStore

router = APIRouter(prefix="/api/v1")

_MANIFEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "description": "manifest.json, as `nnpm pack` writes it"}}}}}


class YankRequest(BaseModel):
    """Why a version is yanked (shown to people who pinned it)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=1000)


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


@router.delete("/packages/{name}/owners/{user_name}", tags=["owners"],
               summary="Remove an owner (owners only; never the last one)",
               responses={404: {"description": "no such package or user, or the user is not an owner"},
                          409: {"description": "the user is the package's last owner"}})
def delete_owner(name: str, user_name: str, user: User = Depends(current_user),
                 session: Session = Depends(get_session)) -> dict:
    pkg = catalog.require_package(session, catalog.url_name(name))
    require_owner(session, pkg, user)
    remove_owner(session, pkg, user_name)
    return {"owners": catalog.owners_of(session, pkg)}


@router.get("/packages/{name}/{version}", tags=["packages"], summary="One version's full manifest")
def get_version(name: str, version: str, session: Session = Depends(get_session)) -> dict:
    name = catalog.url_name(name)
    return catalog.version_view(catalog.require_version(session, name, catalog.url_version(version)), name)


@router.get("/packages/{name}/{version}/archive", tags=["packages"], response_class=Response,
            summary="The version as a .nnpm archive: the bytes `nnpm pack` writes, streamed from the blob store",
            responses={200: {"content": {"application/x-tar": {}}}, 404: {"description": "no such version"}})
def get_archive(name: str, version: str, session: Session = Depends(get_session),
                store: BlobStore = Depends(get_store)) -> Response:
    name = catalog.url_name(name)
    row = catalog.require_version(session, name, catalog.url_version(version))
    length, chunks = archive.stream(catalog.manifest_of(row), store)
    file = f"{name}-{row.version}.nnpm"
    return StreamingResponse(chunks, media_type="application/x-tar", headers={
        "Content-Length": str(length), "Content-Disposition": content_disposition(file, file)})


@router.put("/packages/{name}/{version}", tags=["packages"], openapi_extra=_MANIFEST_BODY, status_code=201,
            summary="Publish a version whose blobs are all uploaded",
            responses={200: {"description": "identical retry"}, 201: {"description": "published"},
                       409: {"description": "this version exists with other content"}})
async def put_version(name: str, version: str, request: Request, user: User = Depends(current_user),
                      session: Session = Depends(get_session), store: BlobStore = Depends(get_store),
                      settings: ServerSettings = Depends(get_settings)) -> Response:
    name, version = catalog.url_name(name), catalog.url_version(version)
    signed = keys.from_headers(request.headers)   # a malformed signature is refused before the body is read
    limiter = request.app.state.publish_limiter
    async with limiter.admit():  # 429 at once when too many publishes are waiting; bounds the bodies held too
        body = await read_body(body_stream(request, settings.body_timeout), request.headers.get("content-length"),
                               settings.max_manifest_size, "manifest")
        async with limiter.worker():  # waits on the event loop: no thread is held while queued
            status, view = await run_in_threadpool(_publish, session, store, settings, user, name, version, body,
                                                   request.app.state.validators, signed)
    return JSONResponse(view, status_code=status)


def _publish(session: Session, store: BlobStore, settings: ServerSettings, user: User, name: str, version: str,
             body: bytes, workers: WorkerPool, signed: keys.SignedPublish | None) -> tuple[int, dict]:
    status, row = publish_version(session, store, settings, user, name, version, body, workers=workers,
                                  signed=signed)
    return status, catalog.version_view(row, name)


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
