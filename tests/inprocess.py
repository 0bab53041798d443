"""The in-process tier (a fixture plugin of tests/conftest.py): the registry app without a server.

``registry_server.app.create_app(ServerSettings(...))`` behind Starlette's TestClient, whose
transport runs each request through the ASGI app in memory: no port, no subprocess, no
uvicorn; the app starts in milliseconds. For tests that only check the registry's answers
(and what it stored); tests where a real process matters use tests/registry_proc.py.

- ``api`` : one fresh ``InProcessRegistry`` with the default settings;
- ``api_factory``: ``make(**settings) -> InProcessRegistry`` with ``ServerSettings`` fields
  (``make(max_blob_size=1024)``), a fresh data folder per call, all closed at teardown;
- ``shared_api`` (module): one for a whole module (tests use distinct package names).

All three run on the test's ``registry_backend`` (tests/registry_proc.py: ``sqlite-dir``,
and ``postgres-s3`` with a fresh database and bucket per registry), parametrised the same
way as the subprocess servers.

An ``InProcessRegistry`` is a tests/protocol.py ``RegistryHandle`` (``.add_user``,
``.publish``, ``.query``, ``.stored_blobs``, ``.uploads_in_flight``, ``.backend``, ...) with
``.url`` (a made-up base URL), ``.settings``, ``.data_dir``, ``.bucket``, ``.app``,
``.client(token)`` (an httpx.Client over the in-memory transport), ``.transport`` (for
``nnpm.client.api.RegistryClient(api.url, transport=api.transport)``), ``.registry_client(token)``
(that RegistryClient) and ``.log_text()`` (every record the app logged under
"registry_server", at any level). Exceptions the app does not turn into an answer are
raised in the test, not hidden behind a 500.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from protocol import RegistryHandle
from registry_proc import Backend, run_cleanups

with warnings.catch_warnings():  # "Using httpx with starlette.testclient is deprecated": httpx is what we test
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE_URL = "http://registry.test"

# One model-reading worker per test registry, reused: on a 2-core machine a fresh worker per
# publish (the served default) costs each test about a second of CPU. tests/test_registry_newuser_workers.py
# checks the served defaults themselves; subprocess registries get the same through the variables below.
TEST_WORKERS = {"validate_workers": 1, "validate_worker_jobs": 1000, "measure_time": 0.1}
os.environ.setdefault("NNPM_REGISTRY_VALIDATE_WORKERS", "1")
os.environ.setdefault("NNPM_REGISTRY_VALIDATE_WORKER_JOBS", "1000")
# Latency figures need a few runs, not two seconds of them, in a test.
os.environ.setdefault("NNPM_REGISTRY_MEASURE_TIME", "0.1")


class _SharedTransport(httpx.BaseTransport):
    """The TestClient's transport for another httpx client; closing that client leaves it open."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(request)

    def close(self) -> None:
        pass  # InProcessRegistry.close() closes the real one


class InProcessRegistry(RegistryHandle):
    """create_app(settings) behind an in-memory transport, its lifespan running until close()."""

    def __init__(self, settings, *, bucket=None) -> None:
        from registry_server.app import create_app

        self.settings = settings
        self.data_dir = settings.data_dir
        self.bucket = bucket
        self.url = BASE_URL
        self.cleanups: list[Callable[[], None]] = []
        self._log = io.StringIO()
        self._handler = logging.StreamHandler(self._log)
        self._handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self._logger = logging.getLogger("registry_server")
        self._old_level = self._logger.level
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.DEBUG)
        self.app = create_app(settings)
        self._http = TestClient(self.app, base_url=self.url)
        self._http.__enter__()

    def _setting(self, name: str) -> str | None:
        return getattr(self.settings, name)

    @property
    def transport(self) -> httpx.BaseTransport:
        """An httpx transport into the app, for any httpx client (RegistryClient(transport=...))."""
        return _SharedTransport(self._http._transport)

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        """An httpx client on the app, with the bearer token when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, transport=self.transport,
                            timeout=kwargs.pop("timeout", 60), **kwargs)

    def registry_client(self, token: str | None = None, **kwargs):
        """nnpm's own RegistryClient on the app."""
        from nnpm.client.api import RegistryClient

        return RegistryClient(self.url, token=token, transport=self.transport, **kwargs)

    def log_text(self) -> str:
        """Every record logged under "registry_server" since the app was made."""
        return self._log.getvalue()

    def close(self) -> None:
        """End the app's lifespan (its database engine goes), then stop capturing its log."""
        try:
            self._http.__exit__(None, None, None)
        finally:
            self._logger.removeHandler(self._handler)
            self._logger.setLevel(self._old_level)


def make_inprocess(data_dir: Path, made: list[InProcessRegistry], *, backend: Backend | None = None,
                   **settings) -> InProcessRegistry:
    """An InProcessRegistry over `data_dir`, on `backend` (a fresh database and bucket) unless `settings` name them."""
    from registry_server.settings import ServerSettings

    bucket, cleanups = None, []
    for key, value in TEST_WORKERS.items():
        settings.setdefault(key, value)
    if backend is not None:
        settings, bucket, cleanups = backend.provision(settings)
    try:
        reg = InProcessRegistry(ServerSettings(data_dir=data_dir, **settings), bucket=bucket)
    except BaseException:
        run_cleanups(cleanups, str(data_dir))
        raise
    reg.cleanups += cleanups
    made.append(reg)
    return reg


def close_inprocess(made: list[InProcessRegistry]) -> None:
    """Close every app, then drop the databases and buckets made for them."""
    for reg in made:
        reg.close()
    for reg in made:
        run_cleanups(reg.cleanups, str(reg.data_dir))


@pytest.fixture
def api_factory(tmp_path_factory: pytest.TempPathFactory,
                registry_backend: Backend) -> Iterator[Callable[..., InProcessRegistry]]:
    """`make(**settings) -> InProcessRegistry`: a fresh app per call on the test's backend, closed at teardown."""
    made: list[InProcessRegistry] = []

    def make(**settings) -> InProcessRegistry:
        return make_inprocess(tmp_path_factory.mktemp("api") / "data", made, backend=registry_backend, **settings)

    try:
        yield make
    finally:
        close_inprocess(made)


@pytest.fixture
def api(api_factory: Callable[..., InProcessRegistry]) -> InProcessRegistry:
    """One in-process registry with the default settings."""
    return api_factory()


@pytest.fixture(scope="module")
def shared_api(tmp_path_factory: pytest.TempPathFactory, registry_backend: Backend) -> Iterator[InProcessRegistry]:
    """One in-process registry for a whole module: tests must use their own package names."""
    made: list[InProcessRegistry] = []
    try:
        yield make_inprocess(tmp_path_factory.mktemp("api") / "data", made, backend=registry_backend)
    finally:
        close_inprocess(made)
