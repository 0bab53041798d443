"""A real PostgreSQL server for tests, started from the machine's own binaries (a fixture plugin).

- ``postgres_server`` (session): ``initdb`` + ``pg_ctl start`` into a temp folder,
  listening on 127.0.0.1 at a free port (the Unix socket stays inside the folder), trust
  auth, fsync off. Run as root, the server runs as the unprivileged ``postgres`` user
  (``nobody`` when there is none). Stopped (``pg_ctl stop -m immediate``) and removed
  at the end of the session.
- ``postgres_url``: a fresh, empty database per test, as a SQLAlchemy URL
  ``postgresql+psycopg://postgres@127.0.0.1:PORT/test_N``.
- ``database_url``: an empty database, the test run once per backend (a SQLite file, or
  ``postgres_url``): for migration tests.

The binaries are found on PATH or under /usr/lib/postgresql/*/bin (Debian, Ubuntu).
Without them the tests skip, except with CI=true, where they fail: CI must run them.

tests/conftest.py loads this module as a plugin (``pytest_plugins``), so every test module
can ask for these fixtures without importing them; one server serves the whole session.
Tests import only the class (``from pgserver import PostgresServer``) when they need it.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

MISSING = "PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql"
SUPERUSER = "postgres"


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found:  # often a link from /usr/local/bin: the folder it points into also holds pg_dump & co.
        folder = Path(found).resolve().parent
        if (folder / "pg_ctl").is_file():
            return folder
    candidates = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")
                  if (Path(p) / "initdb").is_file() and (Path(p) / "pg_ctl").is_file()]

    def major(path: Path) -> tuple[int, str]:
        v = path.parent.name
        return (int(v.split(".")[0]) if v.split(".")[0].isdigit() else -1, v)

    return max(candidates, key=major) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One throw-away PostgreSQL cluster in a temp folder."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="nnpm-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self.port = 0
        self._counter = itertools.count(1)
        self._run_as: str | None = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            self._run_as = "postgres" if _user_exists("postgres") else "nobody"
            account = pwd.getpwnam(self._run_as)
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        kwargs = {}
        if self._run_as is not None:
            account = pwd.getpwnam(self._run_as)
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
        return subprocess.run([str(self.bin_dir / args[0]), *args[1:]], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=timeout, check=False, **kwargs)

    def start(self) -> None:
        """initdb, then start on a free port (another port if that one was taken meanwhile)."""
        init = self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "--no-sync",
                         "-E", "UTF8", "--locale=C")
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        for _ in range(3):
            self.port = _free_port()
            options = " ".join([
                "-c listen_addresses=127.0.0.1", f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}", "-c fsync=off", "-c synchronous_commit=off",
                "-c full_page_writes=off", "-c max_connections=300", "-c shared_buffers=32MB",
            ])
            started = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w", "-t", "60",
                                "-o", options, "start", timeout=90)
            if started.returncode == 0:
                return
        log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start:\n{started.stdout}\n{started.stderr}\n{log}")

    def stop(self) -> None:
        """Stop at once (nothing here is worth a clean shutdown) and remove the folder."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of one database on this server."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"test_{next(self._counter)}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session; without the binaries a skip, or a failure under CI=true."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database for this test, as a SQLAlchemy URL."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty database, once per backend: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("postgres_url")
