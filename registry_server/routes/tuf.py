"""`/tuf/`: the signed index (TUF metadata and the packuments as signed), anonymous and read-only.

A registry without its online key answers 404 here. Versioned files and targets never
change, so they are cached for good; `timestamp.json` and `root.json` (the newest) are not.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from nnpm.errors import NotFoundError
from nnpm.format.tufverify import target_path
from registry_server.routes.deps import get_session
from registry_server.services import tuf_repo
from registry_server.services.tuf_keys import OnlineKey
from registry_server.services.tuf_sign import timestamp_body

router = APIRouter(prefix="/tuf", tags=["tuf"])
_VERSIONED = re.compile(r"([1-9][0-9]{0,11})\.(root|targets|snapshot|bins-[0-9a-f]{2})\.json")
_TARGET = re.compile(r"([0-9a-f]{64})\.([a-z0-9][a-z0-9._-]{0,199})\.json")
IMMUTABLE = "public, max-age=31536000, immutable"


def _key(request: Request) -> OnlineKey:
    key: OnlineKey | None = getattr(request.app.state, "tuf_key", None)
    if key is None or not key.path.is_file():
        raise NotFoundError("this registry does not sign its index (it has no TUF online key)")
    return key


def _json(body: str | None, what: str, cache: str) -> Response:
    if body is None:
        raise NotFoundError(f"no TUF file {what!r} on this registry")
    return Response(body.encode(), media_type="application/json", headers={"Cache-Control": cache})


@router.get("/metadata/{file}", summary="TUF metadata: N.root.json, root.json, timestamp.json, "
            "V.snapshot.json, V.targets.json, V.bins-XX.json")
def metadata(file: str, request: Request, session: Session = Depends(get_session)) -> Response:
    key = _key(request)
    if file == "timestamp.json":
        return _json(timestamp_body(request.app.state.sessions, key), file, "no-cache")
    if file == "root.json":
        row = tuf_repo.newest(session, "root")
        return _json(row.body if row else None, file, "no-cache")
    match = _VERSIONED.fullmatch(file)
    row = tuf_repo.stored(session, match[2], int(match[1])) if match else None
    return _json(row.body if row else None, file[:100], IMMUTABLE)


@router.get("/targets/packuments/{file}", summary="A packument as signed: {sha256}.{name}.json")
def target(file: str, request: Request, session: Session = Depends(get_session)) -> Response:
    _key(request)
    match = _TARGET.fullmatch(file)
    body = tuf_repo.target_body(session, match[1], target_path(match[2])) if match else None
    return _json(body, file[:100], IMMUTABLE)
