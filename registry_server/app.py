"""`create_app(settings)`: one independent registry app (tests build as many as they like)."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from nnpm._version import __version__
from nnpm.fsutil import remove_tree
from registry_server import error_responses
from registry_server.db.engine import make_engine, session_factory
from registry_server.headers import SecurityHeaders, docs_csp
from registry_server.routes import blobs, keys, meta, oci, packages, pages, tokens, tuf
from registry_server.services import index
from registry_server.services.limiter import PublishLimiter
from registry_server.services.workers import WorkerPool
from registry_server.settings import ServerSettings
from registry_server.storage import storage_from_settings
from registry_server.web.render import WEB

log = logging.getLogger("registry_server")
STALE_TMP_AFTER = 3600  # seconds; an upload in flight writes its temp file continuously

DESCRIPTION = """\
The nnpm registry protocol (v1): packuments, manifests and sha256-addressed blobs.
Writes need `Authorization: Bearer <token>`; errors are `{"error": CODE, "detail": ...}`
with an `X-Error-Code` header. See docs/protocol.md.
"""


def sweep_tmp(tmp_dir: Path, older_than: float = STALE_TMP_AFTER) -> int:
    """Remove scratch files and folders left by a killed process; returns how many went."""
    removed = 0
    cutoff = time.time() - older_than
    for entry in tmp_dir.iterdir() if tmp_dir.is_dir() else ():
        try:
            if entry.lstat().st_mtime >= cutoff:
                continue
            remove_tree(entry)
            removed += 1
        except OSError:  # gone meanwhile, or not ours to remove: the next start tries again
            continue
    return removed


def create_app(settings: ServerSettings) -> FastAPI:
    """Build the FastAPI app over `settings`: database, blob store, routes and error handlers."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = storage_from_settings(settings)
    store.check()  # a missing bucket or bad credentials stop the server now, not at the first upload
    swept = sweep_tmp(settings.tmp_dir)
    if swept:
        log.info("removed %d stale temp entries from %s", swept, settings.tmp_dir)
    try:
        swept = store.sweep(STALE_TMP_AFTER)
    except Exception:  # left-overs are never served; the next start tries again
        log.warning("could not clean up stale uploads in %r", store, exc_info=True)
    else:
        if swept:
            log.info("dropped %d stale uploads from %r", swept, store)
    engine = make_engine(settings.database_url)
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)  # the workers' working folder
    validators = WorkerPool.for_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.prestart_validators:  # a served registry: they import onnx while it starts serving
            validators.start()
        try:
            yield
        finally:
            validators.close()
            engine.dispose()

    # redirect_slashes=False: Starlette would answer "/x/" with a redirect to an absolute URL
    # built from the Host header; every redirect the registry sends is a relative one.
    app = FastAPI(title="nnpm registry", version=__version__, description=DESCRIPTION, redirect_slashes=False,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json", lifespan=lifespan)
    app.state.settings = settings
    app.state.prestart_validators = False   # an app in a test starts them on its first publish
    app.state.store = store
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.tuf_key = index.configure(app.state.sessions, settings)   # publishes re-sign the signed index
    app.state.publish_limiter = PublishLimiter(settings.validate_workers, settings.publish_queue)
    app.state.validators = validators
    error_responses.install(app)
    app.include_router(meta.router)
    app.include_router(keys.router)   # before packages: its /packages/{name}/{version} would take 'keys'
    app.include_router(packages.router)
    app.include_router(blobs.router)
    app.include_router(tokens.router)
    app.include_router(tuf.router)
    app.include_router(pages.router)
    oci.install(app)  # /v2/: the OCI pull API
    app.mount("/static", StaticFiles(directory=str(WEB / "static")), name="static")
    app.add_middleware(SecurityHeaders, docs_policy=_mount_api_docs(app))
    return app


def _mount_api_docs(app: FastAPI) -> str:
    """Swagger UI at /docs from the swagger-ui-bundle package, so it renders without a CDN; its CSP."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse

    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # fall back to FastAPI's CDN-hosted assets
        swagger_ui_path = None
    if swagger_ui_path:
        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    assets = {"swagger_js_url": "/docs-assets/swagger-ui-bundle.js",
              "swagger_css_url": "/docs-assets/swagger-ui.css",
              "swagger_favicon_url": "/docs-assets/favicon-32x32.png"} if swagger_ui_path else {}

    page = get_swagger_ui_html(openapi_url="/openapi.json", title="nnpm registry API", **assets)

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(page.body)

    return docs_csp(page.body.decode(), None if swagger_ui_path else "https://cdn.jsdelivr.net")
