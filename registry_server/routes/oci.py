"""`/v2/`: the OCI distribution API, pull category only: every version as the ModelPack artifact `nnpm push` writes.

Read-only and anonymous, like the packument and blob GETs (a bearer token is ignored).
Manifests are `nnpm.format.oci.build_artifact`'s exact bytes (services/oci.py), layers
are the registry's blobs, streamed by the same code as `/api/v1/blobs` (Range, ETag,
`--redirect-downloads`). Errors are the distribution spec's `{"errors": [...]}`. Push
methods are `405 UNSUPPORTED`: nnpm publishes through `/api/v1`. See docs/protocol.md.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from nnpm.format.oci import IMAGE_MANIFEST
from registry_server.routes.blobs import IMMUTABLE, blob_answer, blob_headers, stored_blob_answer
from registry_server.services import oci
from registry_server.services.oci import OciError

router = APIRouter(prefix="/v2", tags=["oci"])

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
PUSH = ("PUT", "POST", "PATCH", "DELETE")
_NUMBER = re.compile(r"^[0-9]{1,18}\Z")
_MANIFEST_ANSWER = {200: {"content": {IMAGE_MANIFEST: {}}, "description": "the image manifest (HEAD: headers only)"},
                    400: {"description": "NAME_INVALID, TAG_INVALID or DIGEST_INVALID"},
                    404: {"description": "NAME_UNKNOWN or MANIFEST_UNKNOWN"}}
_BLOB_ANSWER = {200: {"content": {"application/octet-stream": {}}}, 206: {"description": "partial (Range)"},
                304: {"description": "not modified"}, 307: {"description": "fetch it from Location "
                                                                           "(--redirect-downloads)"},
                400: {"description": "NAME_INVALID or DIGEST_INVALID"},
                404: {"description": "NAME_UNKNOWN or BLOB_UNKNOWN"}, 416: {"description": "range not satisfiable"}}


async def oci_error(request: Request, exc: OciError) -> Response:
    """An OciError as the spec's error answer."""
    headers = {**API_VERSION, **({"Allow": "GET, HEAD"} if exc.status == 405 else {})}
    return JSONResponse(exc.to_wire(), status_code=exc.status, headers=headers)


def install(app: FastAPI) -> None:
    """Serve `/v2/` on `app`, with the OCI error shape for its errors."""
    app.include_router(router)
    app.add_exception_handler(OciError, oci_error)


@router.get("/", summary="OCI distribution API: the version check", responses={200: {"content": {
    "application/json": {"example": {}}}}})
@router.get("", include_in_schema=False)
def version_check() -> Response:
    return JSONResponse({}, headers=API_VERSION)


@router.get("/{name:path}/manifests/{reference}", response_class=Response,
            summary="An image manifest by tag (1.0.0, 1.0.0-int8) or by sha256 digest", responses=_MANIFEST_ANSWER)
@router.head("/{name:path}/manifests/{reference}", response_class=Response, include_in_schema=False)
def get_manifest(name: str, reference: str, request: Request) -> Response:
    canonical = oci.repository_name(name)
    with request.app.state.engine.connect() as conn:
        artifact = oci.resolve(conn, oci.index_of(conn, canonical), reference)
    body = artifact.manifest_bytes
    headers = {**API_VERSION, "Docker-Content-Digest": f"sha256:{artifact.digest}",
               "ETag": f'"sha256:{artifact.digest}"', "Content-Length": str(len(body)),
               # a tag names one published version for good, but a later nnpm may write its artifact otherwise
               "Cache-Control": IMMUTABLE if reference.startswith("sha256:") else "no-cache"}
    return Response(b"" if request.method == "HEAD" else body, media_type=IMAGE_MANIFEST, headers=headers)


def _unsatisfiable(request: Request, size: int, headers: dict[str, str]) -> Response:
    exc = OciError(416, "RANGE_INVALID", f"range {request.headers.get('range', '')[:100]!r} is outside the "
                   f"blob's {size} bytes", {"size": size})
    return JSONResponse(exc.to_wire(), status_code=416, headers={**headers, **API_VERSION})


@router.get("/{name:path}/blobs/{digest}", response_class=Response,
            summary="A blob of the repository: a layer (a package file), the config or nnpm's manifest",
            responses=_BLOB_ANSWER)
@router.head("/{name:path}/blobs/{digest}", response_class=Response, include_in_schema=False)
def get_blob(name: str, digest: str, request: Request) -> Response:
    canonical = oci.repository_name(name)
    hex_digest = oci.parse_digest(digest)
    with request.app.state.engine.connect() as conn:
        small = oci.small_blob(conn, oci.index_of(conn, canonical), hex_digest)
    store, settings = request.app.state.store, request.app.state.settings
    size = len(small) if small is not None else store.size(hex_digest)
    if size is None:
        raise OciError(404, "BLOB_UNKNOWN", f"blob sha256:{hex_digest} is not stored", {"digest": digest})
    extra = {**API_VERSION, "Docker-Content-Digest": f"sha256:{hex_digest}"}
    if request.method == "HEAD":
        return Response(status_code=200, media_type="application/octet-stream",
                        headers={**blob_headers(hex_digest), **extra, "Content-Length": str(size)})
    if small is None:
        return stored_blob_answer(request, hex_digest, size, store, settings, extra=extra,
                                  unsatisfiable=_unsatisfiable)
    return blob_answer(request, hex_digest, size,
                       lambda start, length: iter([small[start:None if length is None else start + length]]),
                       extra=extra, unsatisfiable=_unsatisfiable)


@router.get("/{name:path}/tags/list", summary="The repository's tags, sorted; `n` and `last` page them",
            responses={200: {"content": {"application/json": {"example": {"name": "resnet18", "tags": ["1.0.0"]}}}},
                       404: {"description": "NAME_UNKNOWN"}})
def list_tags(name: str, request: Request, n: str | None = Query(None, description="at most this many tags"),
              last: str | None = Query(None, description="only tags after this one (lexically)")) -> Response:
    canonical = oci.repository_name(name)
    if n is not None and not _NUMBER.match(n):
        raise OciError(400, "PAGINATION_NUMBER_INVALID", f"n must be a whole number, not {n[:40]!r}", {"n": n[:40]})
    limit = int(n) if n is not None else None
    with request.app.state.engine.connect() as conn:
        index = oci.index_of(conn, canonical)
    tags, more = oci.tags_page(index, limit, last)
    headers = dict(API_VERSION)
    if more:
        headers["Link"] = f'</v2/{canonical}/tags/list?n={limit}&last={quote(tags[-1], safe="")}>; rel="next"'
    return JSONResponse({"name": canonical, "tags": tags}, headers=headers)


@router.api_route("/{rest:path}", methods=["GET", "HEAD", *PUSH], include_in_schema=False)
def other(rest: str, request: Request) -> Response:
    if request.method in PUSH:
        raise OciError(405, "UNSUPPORTED", f"{request.method} is not supported: this registry's OCI API is "
                       "read-only (publish with 'nnpm publish', which uses /api/v1)", {"method": request.method})
    raise OciError(404, "UNSUPPORTED", f"/v2/{rest[:200]} is not part of this registry's OCI API (pull only: "
                   "manifests, blobs, tags/list)", {"path": f"/v2/{rest[:200]}"})
