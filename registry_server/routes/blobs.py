"""`/api/v1/blobs/sha256:{hex}`: HEAD, GET (streamed, with Range) and PUT (streamed upload); POST `/missing`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from nnpm.errors import ManifestError, NotFoundError, RegistryError, TooLargeError
from nnpm.format.fields import is_digest
from nnpm.format.limits import MAX_FILES
from registry_server.db.tables import User
from registry_server.error_responses import error_response
from registry_server.headers import content_disposition
from registry_server.pathsend import FileAnswer
from registry_server.routes.deps import body_stream, current_user, get_session, get_settings, get_store
from registry_server.services.blobs import record_stored, release, reserve
from registry_server.services.publish import read_body
from registry_server.settings import ServerSettings
from registry_server.storage.base import BlobStore

router = APIRouter(prefix="/api/v1/blobs", tags=["blobs"])

IMMUTABLE = "public, max-age=31536000, immutable"
_RANGE_RE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")
_MISSING_BODY_BYTES = 1024 + 96 * MAX_FILES  # MAX_FILES digests as JSON (75 bytes each), room for whitespace
_DIGEST_SCHEMA = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
_MISSING_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["digests"],
    "properties": {"digests": {"type": "array", "maxItems": MAX_FILES, "items": _DIGEST_SCHEMA}}}}}}}
_MISSING_ANSWER = {"application/json": {"schema": {"type": "object", "required": ["missing"], "properties": {
    "missing": {"type": "array", "items": _DIGEST_SCHEMA}}}}}
Refusal = Callable[[Request, int, dict[str, str]], Response]  # (request, size, headers) → the 416
_BLOB_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def parse_ref(ref: str) -> str:
    """'sha256:<64 lowercase hex>' → the hex digest, or 400 invalid_manifest."""
    algo, _, digest = ref.partition(":")
    if algo != "sha256" or not is_digest(digest):
        raise ManifestError(f"malformed blob digest {ref[:100]!r}",
                            hint="blobs are named 'sha256:' followed by 64 lowercase hex digits")
    return digest


def parse_digest_list(body: bytes) -> list[str]:
    """A `{"digests": ["sha256:<hex>", ...]}` body → the hex digests, each once, in order; else 400 invalid_manifest."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, deep nesting, huge ints
        raise ManifestError(f"the body is not valid JSON: {exc}"[:300],
                            hint='send {"digests": ["sha256:<hex>", ...]}') from None
    if not isinstance(data, dict) or "digests" not in data:
        raise ManifestError('the body must be a JSON object with the key "digests"',
                            hint='send {"digests": ["sha256:<hex>", ...]}')
    refs = data["digests"]
    if not isinstance(refs, list) or len(refs) > MAX_FILES:
        raise ManifestError(f"must be a list of up to {MAX_FILES} blob digests", key="digests",
                            hint=f"ask about at most {MAX_FILES} blobs per request")
    digests: dict[str, None] = {}
    for i, ref in enumerate(refs):
        try:
            if not isinstance(ref, str):
                raise ManifestError(f"must be a string, not {type(ref).__name__}")
            digests[parse_ref(ref)] = None
        except ManifestError as exc:
            raise ManifestError(exc.message, key=f"digests[{i}]",
                                hint="blobs are named 'sha256:' followed by 64 lowercase hex digits") from None
    return list(digests)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """(first, last) inclusive for one satisfiable range; None to send everything; False if unsatisfiable."""
    if not header:
        return None
    m = _RANGE_RE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # multiple or malformed ranges: RFC 9110 lets us ignore the header
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return False
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # an invalid range: ignored, as RFC 9110 says
    if start >= size:
        return False
    return start, end


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def blob_headers(digest: str) -> dict[str, str]:
    """ETag (the digest), immutable caching and Accept-Ranges: the headers of every answer about a stored blob."""
    return {"ETag": f'"sha256:{digest}"', "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes"}


@router.head("/{ref}", summary="Is a blob stored? (Content-Length when it is)",
             responses={200: {"description": "stored"}, 404: {"description": "not stored"}})
def head_blob(ref: str, store: BlobStore = Depends(get_store)) -> Response:
    digest = parse_ref(ref)
    size = store.size(digest)
    if size is None:
        return Response(status_code=404, headers={"X-Error-Code": "not_found"})
    return Response(status_code=200, headers={**blob_headers(digest), "Content-Length": str(size),
                                              "Content-Type": "application/octet-stream"})


@router.post("/missing", summary="Which of these blobs are not stored? (one request instead of a HEAD per blob)",
             openapi_extra=_MISSING_BODY,
             responses={200: {"description": "the digests not stored, in the order asked, each once",
                              "content": _MISSING_ANSWER},
                        400: {"description": f"not a list of at most {MAX_FILES} sha256 digests"},
                        401: {"description": "no valid token: only publishers need to ask"},
                        413: {"description": "the body is over the limit"}})
async def missing_blobs(request: Request, user: User = Depends(current_user), store: BlobStore = Depends(get_store),
                        settings: ServerSettings = Depends(get_settings)) -> dict:
    # A token is asked for, unlike HEAD: one request checks up to MAX_FILES blobs (on S3, as many
    # HEADs to the bucket), an amplification anonymous callers should not have.
    body = await read_body(body_stream(request, settings.body_timeout), request.headers.get("content-length"),
                           _MISSING_BODY_BYTES, "list of digests")
    digests = parse_digest_list(body)
    missing = await run_in_threadpool(lambda: [d for d in digests if not store.exists(d)])
    return {"missing": [f"sha256:{d}" for d in missing]}


@router.get("/{ref}", summary="Download a blob (streamed; Range for resume)", response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}}, 206: {"description": "partial"},
                       304: {"description": "not modified"},
                       307: {"description": "fetch it from the short-lived URL in Location (--redirect-downloads)"},
                       404: {"description": "not stored"}, 416: {"description": "range not satisfiable"}})
def get_blob(ref: str, request: Request, filename: str | None = Query(
                 None, max_length=1000, description="download as an attachment with this name (sanitised)"),
             store: BlobStore = Depends(get_store), settings: ServerSettings = Depends(get_settings)) -> Response:
    digest = parse_ref(ref)
    size = store.size(digest)
    if size is None:
        raise NotFoundError(f"blob sha256:{digest} is not stored")
    disposition = content_disposition(filename, digest) if filename is not None else None
    return stored_blob_answer(request, digest, size, store, settings, disposition=disposition)


def _unsatisfiable(request: Request, size: int, headers: dict[str, str]) -> Response:
    return error_response(416, RegistryError.code, f"range {request.headers.get('range')!r} is outside "
                          f"the blob's {size} bytes", headers)


def stored_blob_answer(request: Request, digest: str, size: int, store: BlobStore, settings: ServerSettings, *,
                       disposition: str | None = None, extra: dict[str, str] | None = None,
                       unsatisfiable: Refusal = _unsatisfiable) -> Response:
    """The GET answer for a blob of the store: `blob_answer`, with the store's URL under --redirect-downloads.

    Shared by `/api/v1/blobs` and the OCI API (`/v2/`, routes/oci.py), which adds headers
    (`extra`) and answers an unsatisfiable Range in its own error shape."""
    url = (lambda: store.download_url(digest, disposition=disposition)) if settings.redirect_downloads else None
    accel = None
    if settings.accel_redirect and (where := store.relative_path(digest)):
        accel = settings.accel_redirect.rstrip("/") + "/" + where
    return blob_answer(request, digest, size, lambda start, length: store.open_range(digest, start, length),
                       download_url=url, accel=accel, path=store.file_path(digest), disposition=disposition,
                       extra=extra, unsatisfiable=unsatisfiable)


def blob_answer(request: Request, digest: str, size: int, open_range: Callable[[int, int | None], Iterable[bytes]],
                *, download_url: Callable[[], str | None] | None = None, accel: str | None = None,
                path: Path | None = None, disposition: str | None = None, extra: dict[str, str] | None = None,
                unsatisfiable: Refusal = _unsatisfiable) -> Response:
    """GET of `size` bytes named `digest`: 304 (If-None-Match), 307 (to `download_url()`), 206 (Range), 416, or 200.

    `open_range(start, length)` yields the bytes (length None: to the end). A Range is
    ignored when `If-Range` names other bytes, or when it is malformed (RFC 9110).
    `accel`: hand a whole-blob answer to the front proxy (X-Accel-Redirect to that path).
    `path`: the blob's file, which a whole-blob answer sends with sendfile (registry_server/pathsend.py)."""
    headers = {**blob_headers(digest), **(extra or {})}
    if _etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
        return Response(status_code=304, headers=headers)
    if disposition:
        headers["Content-Disposition"] = disposition
    if download_url is not None and (url := download_url()):
        # The bytes come from the store itself; the client re-sends Range there and checks the sha256.
        return Response(status_code=307, headers={**(extra or {}), "Location": url, "Cache-Control": "no-store"})
    if accel is not None and not request.headers.get("range"):
        # The proxy sends the file (sendfile, no copy through Python) with these headers. A Range
        # (a resumed download) is answered here: the proxy would check If-Range against its own ETag.
        return Response(status_code=200, media_type="application/octet-stream",
                        headers={**headers, "X-Accel-Redirect": accel})
    rng = parse_range(request.headers.get("range"), size)
    if_range = request.headers.get("if-range")
    if rng is not None and if_range and if_range.strip() != headers["ETag"]:
        rng = None  # the client's partial copy is of other bytes: send them all
    if rng is False:
        return unsatisfiable(request, size, {**headers, "Content-Range": f"bytes */{size}"})
    if rng is None:
        if path is not None:
            return FileAnswer(path, size, headers, lambda: open_range(0, None))
        return StreamingResponse(open_range(0, None), media_type="application/octet-stream",
                                 headers={**headers, "Content-Length": str(size)})
    start, end = rng
    return StreamingResponse(open_range(start, end - start + 1), status_code=206,
                             media_type="application/octet-stream",
                             headers={**headers, "Content-Length": str(end - start + 1),
                                      "Content-Range": f"bytes {start}-{end}/{size}"})


@router.put("/{ref}", summary="Upload a blob (streamed; hashed while written)", openapi_extra=_BLOB_BODY,
            status_code=201, responses={200: {"description": "already stored"}, 201: {"description": "stored"}})
async def put_blob(ref: str, request: Request, user: User = Depends(current_user),
                   session: Session = Depends(get_session), store: BlobStore = Depends(get_store),
                   settings: ServerSettings = Depends(get_settings)) -> Response:
    digest = parse_ref(ref)
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise RegistryError("a blob upload needs a Content-Length header", status=411,
                            hint="send the file with its size; chunked uploads are not accepted")
    size = int(length)
    if size > settings.max_blob_size:
        raise TooLargeError(f"the blob is {size} bytes; this registry takes at most {settings.max_blob_size}",
                            status=413)
    reserved = False
    if settings.upload_quota and not await run_in_threadpool(store.exists, digest):
        reserved = await run_in_threadpool(reserve, session, user, digest, size, settings.upload_quota)
    try:  # a client that goes away or stalls: error_responses.py; the store keeps nothing either way
        created = await store.put(digest, body_stream(request, settings.body_timeout), size=size)
    except Exception:
        if reserved and not await run_in_threadpool(store.exists, digest):
            await run_in_threadpool(release, session, user, digest)
        raise
    await run_in_threadpool(record_stored, session, user, digest, size)
    return JSONResponse({"digest": f"sha256:{digest}", "size": size}, status_code=201 if created else 200)
