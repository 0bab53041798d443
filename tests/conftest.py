"""Shared fixtures: the example packages, real registry servers, tiny model packages.

- ``examples_dir`` (session): the example packages (``examples/``), built once with
  ``python -m examples.build``; each is a folder ``examples_dir / NAME`` with nnpm.toml.
- ``registry_backend`` (module, parametrised): where the registry servers below keep their
  state, one of ``BACKENDS``; it shows in test ids (``test_x[sqlite-dir]``, ``test_x[postgres-s3]``):

  - ``sqlite-dir``: SQLite file and blob folder inside the server's ``--data`` folder;
  - ``postgres-s3``: a fresh database on the session's real PostgreSQL (tests/pgserver.py)
    and a fresh bucket on the session's moto S3 server (tests/s3server.py), passed as
    ``--database-url``, ``--storage-url s3://BUCKET/nnpm`` and ``--s3-endpoint``; the fake
    AWS credentials are in the environment the server inherits. Without PostgreSQL
    binaries (or moto) these cases skip; with CI=true they fail.

  Every test that uses ``registry``, ``shared_registry`` or ``registry_factory`` runs once
  per backend, except where a marker narrows it: ``@pytest.mark.registry_backends("sqlite-dir")``
  on a test, class or module (``pytestmark``), or, for modules listed in ``PINNED_MODULES``
  below, that table. ``-k sqlite-dir`` runs one backend only.
- ``registry_factory``: ``start(**settings) -> Registry`` runs ``python -m registry_server``
  as a real subprocess on 127.0.0.1 with a free port and a fresh data folder, on the
  test's backend (a fresh database and bucket per call), waits for ``/api/v1/health``, and
  stops every server it started at teardown. Keyword settings become flags:
  ``start(max_blob_size=1024)`` → ``--max-blob-size 1024``; an explicit ``database_url``
  or ``storage_url`` replaces the backend's. ``start(replica_of=reg)`` starts another
  server over ``reg``'s database and blob store (its own port and scratch folder; on
  ``sqlite-dir``, the same data folder).
- ``registry``: one server with the default settings.
- ``shared_registry`` (module): one server shared by a test module; use distinct package names.
- ``small_package``: ``make(name, version, weights=...) -> Path`` writes a tiny valid
  model package folder (``Y = X + W``) made with onnx.helper.
- ``postgres_server``, ``postgres_url``, ``s3_server``, ``s3_bucket``, ``s3_endpoint``:
  re-exported from tests/pgserver.py and tests/s3server.py, so every module can use them.

A ``Registry`` has ``.url``, ``.data_dir``, ``.proc``, ``.backend``, ``.database_url``,
``.bucket`` (the ``S3Bucket``, or None), ``.add_user(name) -> token``, ``.client(token)``
(an httpx.Client), ``.publish(folder, token)`` (the raw protocol: HEAD, PUT missing blobs,
PUT manifest; returns the manifest's response), ``.query(sql, **params)`` (rows from its
database), ``.stored_blobs()`` (digests in its blob store), ``.uploads_in_flight()``
(temp files, or unfinished multipart uploads), ``.kill()`` (SIGKILL), ``.restart()``
(same data folder, database and bucket and, when free, the same port) and ``.stop()``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pgserver import PostgresServer, postgres_server, postgres_url  # noqa: F401 - fixtures for every module
from s3server import S3Bucket, S3Server, s3_bucket, s3_endpoint, s3_server  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[1]

BACKENDS = ("sqlite-dir", "postgres-s3")
S3_PREFIX = "nnpm"  # --storage-url s3://BUCKET/nnpm: blobs under nnpm/blobs/sha256/...
# Modules (owned elsewhere) whose registry is not their subject: they run on sqlite-dir only.
# A module may instead say so itself: pytestmark = pytest.mark.registry_backends("sqlite-dir").
PINNED_MODULES = {
    "test_registry_web": ("sqlite-dir",),           # HTML in a real browser; slow, backend-blind
    "test_registry_schemathesis": ("sqlite-dir",),  # API fuzzing: ~600 requests per run
    "test_migrations": ("sqlite-dir",),             # adopts a pre-migration SQLite file by hand
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


# -- the example packages ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example packages, built once per session into a temp folder."""
    if not (ROOT / "examples" / "build.py").is_file():
        pytest.skip("examples/build.py is not there yet")
    out = tmp_path_factory.mktemp("examples")
    subprocess.run([sys.executable, "-m", "examples.build", str(out)], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, env=_env())
    return out


# -- real registry servers -----------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flag(flags: list[str], name: str) -> str | None:
    """The value after `name` in a flag list (the last one wins, as with argparse), or None."""
    values = [flags[i + 1] for i, f in enumerate(flags[:-1]) if f == name]
    return values[-1] if values else None


class Registry:
    """One `python -m registry_server` subprocess over one data folder (and maybe a database and bucket)."""

    def __init__(self, data_dir: Path, log_path: Path, flags: list[str], *, bucket: S3Bucket | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.flags = flags
        self.bucket = bucket
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.cleanups: list[Callable[[], None]] = []  # run by close_all() after every server stopped

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL the server uses (--database-url, else the SQLite file in the data folder)."""
        return _flag(self.flags, "--database-url") or f"sqlite:///{self.data_dir / 'registry.db'}"

    @property
    def storage_url(self) -> str:
        """--storage-url, or "" for the blob folder inside the data folder."""
        return _flag(self.flags, "--storage-url") or ""

    @property
    def backend(self) -> str:
        """'sqlite-dir', 'postgres-s3', or 'custom' for other combinations."""
        pg, s3 = self.database_url.startswith("postgres"), self.storage_url.startswith("s3://")
        return "sqlite-dir" if not (pg or s3 or self.storage_url) else "postgres-s3" if pg and s3 else "custom"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and wait until /api/v1/health answers (a taken port → another one)."""
        for attempt in range(3):
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "registry_server", "--data", str(self.data_dir),
                 "--host", "127.0.0.1", "--port", str(self.port), *self.flags],
                cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
            self.stop()
            self.port = free_port()
        raise RuntimeError(f"registry did not start; log:\n{self.log_path.read_text(errors='replace')[-3000:]}")

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

    def add_user(self, name: str) -> str:
        """Create `name` if needed and return a new API token for it (same database as the server)."""
        from registry_server.services.auth import add_user

        return add_user(self.database_url, name)

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        """An httpx client on this registry, with the bearer token when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)

    def publish(self, folder: Path, token: str) -> httpx.Response:
        """Publish a package folder with raw protocol calls; the manifest PUT's response."""
        from nnpm.author.pack import build

        built = build(folder)
        manifest = built.manifest
        with self.client(token) as c:
            for f in manifest.files:
                if c.head(f"/api/v1/blobs/sha256:{f.sha256}").status_code == 404:
                    with open(built.paths[f.path], "rb") as fh:
                        r = c.put(f"/api/v1/blobs/sha256:{f.sha256}", content=fh,
                                  headers={"Content-Length": str(f.size)})
                    assert r.status_code in (200, 201), r.text
            return c.put(f"/api/v1/packages/{manifest.name}/{manifest.version}", content=manifest.to_json(),
                         headers={"Content-Type": "application/json"})

    # -- looking behind the server's back ----------------------------------------------------------
    def query(self, sql: str, **params) -> list[tuple]:
        """Rows of one SQL statement on the server's database (SQLite or PostgreSQL), in its own connection."""
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        from registry_server.db.engine import engine_url

        engine = create_engine(engine_url(self.database_url), poolclass=NullPool)
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def _s3(self) -> tuple[S3Bucket, str]:
        if self.bucket is None:
            raise RuntimeError(f"this Registry was made without its S3Bucket ({self.storage_url})")
        prefix = self.storage_url.removeprefix(f"s3://{self.bucket.name}").strip("/")
        return self.bucket, (prefix + "/" if prefix else "") + "blobs/"

    def stored_blobs(self) -> set[str]:
        """The digests of every blob in the server's blob store."""
        if self.storage_url.startswith("s3://"):
            bucket, prefix = self._s3()
            return {key.rpartition("/")[2] for key in bucket.keys(prefix)}
        folder = Path(self.storage_url.removeprefix("file://")) if self.storage_url else self.data_dir
        return {p.name for p in (folder / "blobs").rglob("*") if p.is_file()}

    def uploads_in_flight(self) -> list[str]:
        """Uploads begun and never finished: temp files in the folder store, or open multipart uploads in S3."""
        if self.storage_url.startswith("s3://"):
            bucket, prefix = self._s3()
            return [key for key, _ in bucket.open_uploads(prefix)]
        folder = Path(self.storage_url.removeprefix("file://")) if self.storage_url else self.data_dir
        return sorted(str(p) for p in (folder / "tmp").glob("upload-*.part"))


class Backend:
    """How to give a new registry server its state: nothing to do (sqlite-dir), or a fresh database and bucket."""

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
        for cleanup in reg.cleanups:
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - a leftover in a throw-away server is harmless
                print(f"cleanup of {reg.url} failed: {exc!r}", file=sys.stderr)


@pytest.fixture(scope="module")
def registry_backend(request: pytest.FixtureRequest) -> Backend:
    """The backend of this module's registry servers (parametrised by `pytest_generate_tests`)."""
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
    """One registry server with default settings."""
    return registry_factory()


# -- tiny packages ---------------------------------------------------------------------------------

def write_small_package(folder: Path, name: str = "tiny", version: str = "1.0.0",
                        weights: tuple[float, ...] | list[float] = (1.0, 2.0, 3.0), *,
                        description: str = "A tiny test model", tags: tuple[str, ...] = ("test",),
                        readme: str | None = "# tiny\n\nAdds a constant to its input.\n",
                        external_data: bool = False, extra_toml: str = "") -> Path:
    """Write a valid package folder holding `Y = X + W` (W = weights) and return it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = len(weights)
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])], "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", n])],
        [numpy_helper.from_array(np.asarray(weights, dtype=np.float32), "W")])  # raw_data: can go external
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    folder.mkdir(parents=True, exist_ok=True)
    if external_data:
        (folder / "weights.bin").unlink(missing_ok=True)  # onnx appends to an existing file
        onnx.save_model(model, folder / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
    else:
        onnx.save_model(model, folder / "model.onnx")
    lines = ["[package]", f'name = "{name}"', f'version = "{version}"', f'description = "{description}"',
             'license = "MIT"', "tags = [" + ", ".join(f'"{t}"' for t in tags) + "]"]
    if readme is not None:
        (folder / "README.md").write_text(readme, encoding="utf-8")
        lines.append('readme = "README.md"')
    lines += ["", "[model]", 'file = "model.onnx"', ""]
    (folder / "nnpm.toml").write_text("\n".join(lines) + extra_toml, encoding="utf-8")
    return folder


@pytest.fixture
def small_package(tmp_path: Path) -> Callable[..., Path]:
    """`make(name="tiny", version="1.0.0", weights=(1, 2, 3), **options) -> folder` under tmp_path."""
    def make(name: str = "tiny", version: str = "1.0.0", weights=(1.0, 2.0, 3.0), **options) -> Path:
        return write_small_package(tmp_path / "packages" / f"{name}-{version}", name, version, weights, **options)

    return make
