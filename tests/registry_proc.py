"""Real registry servers in subprocesses (a fixture plugin of tests/conftest.py).

For tests where a real process matters: kill -9, restarts, replicas, the browser, the CLI
against a listening port, uvicorn itself. Tests that only check answers use the in-process
tier of tests/inprocess.py instead.

- ``registry_backend`` (module, parametrised): where registry servers keep their state, one
  of ``BACKENDS``; it shows in test ids (``test_x[sqlite-dir]``, ``test_x[postgres-s3]``):

  - ``sqlite-dir``: SQLite file and blob folder inside the server's data folder;
  - ``postgres-s3``: a fresh database on the session's real PostgreSQL (tests/pgserver.py)
    and a fresh bucket on the session's moto S3 server (tests/s3server.py), given as
    ``--database-url``, ``--storage-url s3://BUCKET/nnpm`` and ``--s3-endpoint``; the fake
    AWS credentials are in the environment the server inherits. Without PostgreSQL
    binaries (or moto) these cases skip; with CI=true they fail.

  Every test using a fixture that depends on ``registry_backend`` (``registry``,
  ``shared_registry``, ``registry_factory``, and tests/inprocess.py's ``api``, ``api_factory``
  and ``shared_api``) runs once per backend, except where a marker narrows it:
  ``@pytest.mark.registry_backends("sqlite-dir")`` on a test, class or module
  (``pytestmark``), or, for modules listed in ``PINNED_MODULES``, that table.
  ``-k sqlite-dir`` runs one backend only.
- ``registry_factory``: ``start(**settings) -> Registry`` runs ``python -m registry_server``
  on 127.0.0.1 with a free port and a fresh data folder, on the test's backend (a fresh
  database and bucket per call), waits for ``/api/v1/health``, and stops every server it
  started at teardown. Keyword settings become flags: ``start(max_blob_size=1024)`` →
  ``--max-blob-size 1024``; an explicit ``database_url`` or ``storage_url`` replaces the
  backend's. ``start(replica_of=reg)`` starts another server over ``reg``'s database and
  blob store (its own port and scratch folder; on ``sqlite-dir``, the same data folder).
- ``registry``: one server with the default settings; ``shared_registry`` (module): one
  server for a whole module (tests use distinct package names).
- ``start_registry(tmp_path_factory, started, backend=, replica_of=, **settings)`` and
  ``close_all(started)``: the same for module fixtures of their own; ``free_port()``;
  ``run_server_once(*args)``: ``python -m registry_server ARGS`` to its exit.

A ``Registry`` is a tests/protocol.py ``RegistryHandle`` (``.add_user``, ``.publish``,
``.query``, ``.stored_blobs``, ``.uploads_in_flight``, ``.backend``, ...) with ``.url``,
``.data_dir``, ``.log_path``, ``.log_text()``, ``.proc``, ``.bucket`` (the ``S3Bucket``, or
None), ``.client(token)`` (an httpx.Client), ``.start()``, ``.kill()`` (SIGKILL),
``.restart()`` (same data folder, database and bucket and, when free, the same port) and
``.stop()``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cli import ROOT, child_env
from pgserver import PostgresServer
from protocol import RegistryHandle
from s3server import S3Bucket, S3Server

BACKENDS = ("sqlite-dir", "postgres-s3")
S3_PREFIX = "nnpm"  # --storage-url s3://BUCKET/nnpm: blobs under nnpm/blobs/sha256/...
# Modules whose registry is not their subject: they run on sqlite-dir only.
# A module may instead say so itself: pytestmark = pytest.mark.registry_backends("sqlite-dir").
PINNED_MODULES = {
    "test_registry_web": ("sqlite-dir",),           # HTML in a real browser; slow, backend-blind
    "test_registry_schemathesis": ("sqlite-dir",),  # API fuzzing: ~600 requests per run
    "test_migrations": ("sqlite-dir",),             # adopts a pre-migration SQLite file by hand
    # Backend-blind subjects (HTML of the card, a pipeline's wiring, the worker's measurement, manifest
    # validation): PostgreSQL and S3 keep their own modules (api_publish, api_reads, downloads, search,
    # accounts, oci, crash, replicas, postgres, s3_registry).
    "test_registry_newuser_card": ("sqlite-dir",),
    "test_pipeline_publish": ("sqlite-dir",),
    "test_registry_variants": ("sqlite-dir",),
    "test_registry_api_manifests": ("sqlite-dir",),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "registry_backends(*names): run the registry fixtures of this test, class or "
                                       f"module only on these backends (of {', '.join(BACKENDS)})")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise `registry_backend` (and so every registry fixture) over the backends the test may use."""
    if "registry_backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("registry_backends")
    if marker is not None:
        names = tuple(marker.args)
    else:
        names = PINNED_MODULES.get(metafunc.module.__name__.rpartition(".")[2], BACKENDS)
    unknown = set(names) - set(BACKENDS)
    if not names or unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: registry_backends{names!r}: "
                                f"name one or more of {BACKENDS}")
    metafunc.parametrize("registry_backend", names, indirect=True, scope="module", ids=list(names))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flag(flags: list[str], name: str) -> str | None:
    """The value after `name` in a flag list (the last one wins, as with argparse), or None."""
    values = [flags[i + 1] for i, f in enumerate(flags[:-1]) if f == name]
    return values[-1] if values else None


def answers(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    """Whether `url` answered 200 before the server `proc` exited or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


def run_server_once(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m registry_server ARGS` until it exits (for option errors), output captured."""
    return subprocess.run([sys.executable, "-m", "registry_server", *args], capture_output=True, text=True,
                          check=False, env=child_env(), cwd=ROOT, timeout=timeout)


class Registry(RegistryHandle):
    """One `python -m registry_server` subprocess over one data folder (and maybe a database and bucket)."""

    def __init__(self, data_dir: Path, log_path: Path, flags: list[str], *, bucket: S3Bucket | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.flags = flags
        self.bucket = bucket
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.cleanups: list[Callable[[], None]] = []  # run by close_all() after every server stopped

    def _setting(self, name: str) -> str | None:
        return _flag(self.flags, "--" + name.replace("_", "-"))

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until /api/v1/health answers (a taken port → another one)."""
        for _ in range(3):
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "registry_server", "--data", str(self.data_dir),
                 "--host", "127.0.0.1", "--port", str(self.port), *self.flags],
                cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            if answers(self.proc, self.url + "/api/v1/health", timeout):
                return
            self.stop()
            self.port = free_port()
        raise RuntimeError(f"registry did not start; log:\n{self.log_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        """Kill and start again over the same data folder, database and blob store."""
        self.kill()
        self.start()

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        """An httpx client on this registry, with the bearer token when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)


class Backend:
    """How to give a new registry its state: nothing to do (sqlite-dir), or a fresh database and bucket."""

    def __init__(self, name: str, postgres: PostgresServer | None = None, s3: S3Server | None = None) -> None:
        self.name, self.postgres, self.s3 = name, postgres, s3

    def __repr__(self) -> str:
        return f"Backend({self.name!r})"

    def provision(self, reg_settings: dict) -> tuple[dict, S3Bucket | None, list[Callable[[], None]]]:
        """(settings with this backend's database and storage filled in where not given, bucket, clean-ups)."""
        if self.name == "sqlite-dir":
            return reg_settings, None, []
        assert self.postgres is not None and self.s3 is not None
        reg_settings, bucket, cleanups = dict(reg_settings), None, []
        if "database_url" not in reg_settings:
            url = reg_settings["database_url"] = self.postgres.create_database()
            cleanups.append(lambda: drop_database(self.postgres, url))
        if "storage_url" not in reg_settings:
            bucket = self.s3.new_bucket()
            reg_settings["storage_url"] = bucket.storage_url(S3_PREFIX)
            reg_settings.setdefault("s3_endpoint", bucket.endpoint)
            cleanups.append(bucket.remove)
        return reg_settings, bucket, cleanups


def drop_database(server: PostgresServer, url: str) -> None:
    """Drop a test database (its server is stopped by now; FORCE ends any connection left)."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')


def run_cleanups(cleanups: list[Callable[[], None]], what: str) -> None:
    """Run clean-ups, reporting (not raising) what fails: a leftover in a throw-away server is harmless."""
    for cleanup in cleanups:
        try:
            cleanup()
        except Exception as exc:  # noqa: BLE001
            print(f"cleanup of {what} failed: {exc!r}", file=sys.stderr)


def start_registry(tmp_path_factory: pytest.TempPathFactory, started: list[Registry], *,
                   backend: Backend | None = None, replica_of: Registry | None = None, **settings) -> Registry:
    """Start a server over a fresh data folder; `settings` become flags (max_blob_size → --max-blob-size).

    `backend` fills in a fresh database and bucket (unless `settings` name them);
    `replica_of` starts another server over that one's flags, database and blob store.
    """
    bucket, cleanups, base_flags = None, [], []
    base = tmp_path_factory.mktemp("registry")
    data_dir = base / "data"
    if replica_of is not None:
        base_flags, bucket = list(replica_of.flags), replica_of.bucket
        if replica_of.backend == "sqlite-dir":
            data_dir = replica_of.data_dir  # SQLite and the blob folder live there
    elif backend is not None:
        settings, bucket, cleanups = backend.provision(settings)
    flags = base_flags
    for key, value in settings.items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    reg = Registry(data_dir, base / "server.log", flags, bucket=bucket)
    reg.cleanups += cleanups
    started.append(reg)
    reg.start()
    return reg


def close_all(started: list[Registry]) -> None:
    """Stop every server, then drop the databases and buckets made for them."""
    for reg in started:
        reg.stop()
    for reg in started:
        run_cleanups(reg.cleanups, reg.url)


@pytest.fixture(scope="module")
def registry_backend(request: pytest.FixtureRequest) -> Backend:
    """The backend of this module's registries (parametrised by `pytest_generate_tests`)."""
    name = getattr(request, "param", "sqlite-dir")
    if name == "postgres-s3":
        return Backend(name, request.getfixturevalue("postgres_server"), request.getfixturevalue("s3_server"))
    return Backend(name)


@pytest.fixture
def registry_factory(tmp_path_factory: pytest.TempPathFactory,
                     registry_backend: Backend) -> Iterator[Callable[..., Registry]]:
    """`start(**settings) -> Registry`: a fresh server per call on the test's backend, all stopped at teardown."""
    started: list[Registry] = []

    def start(*, replica_of: Registry | None = None, **settings) -> Registry:
        return start_registry(tmp_path_factory, started, backend=registry_backend, replica_of=replica_of, **settings)

    try:
        yield start
    finally:
        close_all(started)


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory: pytest.TempPathFactory, registry_backend: Backend) -> Iterator[Registry]:
    """One default server for a whole test module: cheaper, so tests must use their own package names."""
    started: list[Registry] = []
    try:
        yield start_registry(tmp_path_factory, started, backend=registry_backend)
    finally:
        close_all(started)


@pytest.fixture
def registry(registry_factory: Callable[..., Registry]) -> Registry:
    """One registry server with the default settings."""
    return registry_factory()
