"""`/api/v1/health`, `/ready`, `/whoami` and `/search`: the server's state and the catalog's search.

`/health` is a coroutine touching nothing: it answers without a worker thread, however
busy the thread pool is. `/ready` names what is wrong without details (they go to the log).
"""

from __future__ import annotations

import logging
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.orm import Session

from nnpm._version import __version__
from registry_server.db.tables import User
from registry_server.error_responses import error_response
from registry_server.routes.deps import current_user, get_session
from registry_server.services import search as packages_search

router = APIRouter(prefix="/api/v1")
log = logging.getLogger("registry_server")


@router.get("/health", tags=["meta"], summary="Liveness and the server's nnpm version")
async def health() -> dict:
    return {"status": "ok", "version": __version__}


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
    except Exception as exc:  # its message may name a folder or a bucket's internals: the log has it
        log.warning("readiness: the blob store cannot be used: %s", exc)
        problems.append(f"blob store: {type(exc).__name__}")
    if problems:
        return error_response(503, "registry_error", "not ready: " + "; ".join(problems))
    return JSONResponse({"status": "ready", "version": __version__})


@router.get("/whoami", tags=["meta"], summary="The user behind the bearer token")
def whoami(user: User = Depends(current_user)) -> dict:
    return {"user": user.name}


@router.get("/search", tags=["packages"], summary="Search names, descriptions and tags",
            description="`total` counts every match; `results` holds at most `limit` of them, from `offset`.")
def search(q: str = Query("", max_length=200), limit: int = Query(50, ge=1, le=1000),
           offset: int = Query(0, ge=0, le=1_000_000),
           sort: Literal["relevance", "name", "recent"] = Query("relevance"),
           session: Session = Depends(get_session)) -> dict:
    results, total = packages_search.search(session, q, limit, offset, sort)
    return {"results": results, "total": total}
