"""One seam from exceptions to HTTP answers: `{"error", "detail", "hint", "fields"}` + `X-Error-Code`.

An `nnpm.errors` class carries its own code and HTTP status (`NnpmError.to_wire`), so
the client rebuilds the class the server meant. FastAPI's own validation errors and
HTTPExceptions come out in the same shape. A BusyError (429) carries `Retry-After`; a
408 (a stalled upload) closes the connection. No answer names a path of the server: the
detail, hint and fields of every error are scrubbed of the data folder, the blob folder,
the server's own code and its Python (`private_paths`); unexpected errors say only
"internal server error".
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from nnpm import errors as E

log = logging.getLogger("registry_server")
_ENCODED_SEP = re.compile(rb"%(2f|5c)", re.IGNORECASE)

# HTTP status → code, for errors raised by FastAPI/Starlette themselves.
_HTTP_CODES = {401: E.AuthError.code, 403: E.AuthError.code, 404: E.NotFoundError.code,
               409: E.ConflictError.code, 413: E.TooLargeError.code}


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
                   *, hint: str | None = None, fields: dict | None = None) -> JSONResponse:
    """The one error shape: `{"error", "detail", "hint", "fields"}` and an X-Error-Code header."""
    headers = {**(headers or {}), "X-Error-Code": code}
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse({"error": code, "detail": detail, "hint": hint, "fields": fields or {}},
                        status_code=status, headers=headers)


def private_paths(settings) -> list[str]:
    """Folders whose paths no answer may show: data, scratch, blobs (file://), this code, Python's prefix."""
    roots = [settings.data_dir, settings.tmp_dir, Path(__file__).resolve().parent.parent, Path(sys.prefix)]
    if settings.storage_url.startswith("file:"):
        roots.append(Path(unquote(urlsplit(settings.storage_url).path)))
    forms = {str(p) for root in roots for p in (Path(root), Path(root).resolve()) if len(str(p)) > 1}
    return sorted(forms, key=len, reverse=True)


def scrub(text, roots: list[str]):
    """`text` with every path under `roots` replaced by '<server path>' (other values are returned as they are)."""
    if not isinstance(text, str):
        return text
    for root in roots:
        if root in text:
            text = re.sub(re.escape(root) + r"(?:/[^\s'\"]*)?", "<server path>", text)
    return text


async def _nnpm_error(request: Request, exc: E.NnpmError) -> Response:
    wire = exc.to_wire()
    roots = getattr(request.app.state, "private_paths", [])
    status, headers = exc.response_status(), {}
    if isinstance(exc, E.BusyError):
        headers["Retry-After"] = str(getattr(exc, "retry_after", 1))
    if status == 408:  # the client stopped sending: nothing more will come on this connection
        headers["Connection"] = "close"
    fields = {k: scrub(v, roots) for k, v in wire["fields"].items()}
    return error_response(status, wire["error"], scrub(wire["detail"], roots), headers,
                          hint=scrub(wire["hint"], roots), fields=fields)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(400, E.ManifestError.code, "; ".join(parts) or "invalid request")


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code == 404 and not request.url.path.startswith("/api/") \
            and "text/html" in request.headers.get("accept", ""):
        from registry_server.web.render import not_found_page

        return not_found_page(request, "This page does not exist.")
    code = _HTTP_CODES.get(exc.status_code, E.RegistryError.code)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such endpoint: {request.method} {request.url.path}"
    if exc.status_code == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, detail, dict(exc.headers or {}))


async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
    log.info("%s %s stopped: the client went away", request.method, request.url.path)
    return Response(status_code=400)  # nobody is listening; nothing was stored


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, E.RegistryError.code, "internal server error")


class EncodedSlashGuard:
    """ASGI middleware: a package name with an encoded '/' or '\\' is a 400, not a misrouted path."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = (scope.get("raw_path") or b"").split(b"?", 1)[0]
            if path.startswith(b"/api/v1/packages/") and _ENCODED_SEP.search(path):
                segments = path.split(b"/")
                bad = next(i for i, seg in enumerate(segments) if _ENCODED_SEP.search(seg))
                what = "name: invalid package name" if bad == 4 else "invalid path segment"
                text = unquote(segments[bad].decode("latin-1"))
                response = error_response(400, E.ManifestError.code, f"{what} {text[:200]!r}")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install(app: FastAPI) -> None:
    """Register the handlers on `app` (after `app.state.settings` is set)."""
    app.state.private_paths = private_paths(app.state.settings)
    app.add_exception_handler(E.NnpmError, _nnpm_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(EncodedSlashGuard)
