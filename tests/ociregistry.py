"""A real OCI registry for tests: the CNCF distribution server, `docker-registry` (a fixture plugin).

- ``oci_registry`` (session): ``docker-registry serve CONFIG`` on 127.0.0.1 at a free port,
  filesystem storage in a temp folder, deletes enabled, no auth. Tests use distinct
  repository names.
- ``oci_registry_auth`` (session): the same with htpasswd basic auth (realm ``nnpm-test``,
  user ``.username``, password ``.password``, bcrypt ``$2b$`` in the htpasswd file).

Each is an ``OciRegistry`` with ``.host`` ("127.0.0.1:PORT", what oci:// references and
oras-py's ``hostname`` take), ``.url`` (http://HOST), ``.username``/``.password`` (None
without auth), ``.log_text()`` and ``.docker_config(folder)``: a Docker config folder
(``config.json`` with this registry's credentials), for ``DOCKER_CONFIG=folder``.
Both wait for ``GET /v2/`` to answer (200, or 401 with auth) and are stopped (SIGTERM,
then SIGKILL) and removed at the end of the session.

The server is Debian's ``docker-registry`` package (distribution 2.8). Without it the tests
skip, except with CI=true, where they fail: CI must run them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BINARY = "/usr/bin/docker-registry"
MISSING = f"{BINARY} not found; apt-get install docker-registry"
REALM = "nnpm-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OciRegistry:
    """One throw-away distribution server in a temp folder."""

    def __init__(self, binary: str, *, username: str | None = None, password: str | None = None) -> None:
        self.binary, self.username, self.password = binary, username, password
        self.root = Path(tempfile.mkdtemp(prefix="nnpm-oci-registry-"))
        self.log_path = self.root / "registry.log"
        self.host = ""
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _config(self, port: int) -> Path:
        """The server's config (JSON is YAML): filesystem storage, deletes on, htpasswd when asked."""
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}, "delete": {"enabled": True},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": "nnpm-test-secret"},
        }
        if self.username is not None:
            import bcrypt

            hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4, prefix=b"2b")).decode()
            (self.root / "htpasswd").write_text(f"{self.username}:{hashed}\n")
            config["auth"] = {"htpasswd": {"realm": REALM, "path": str(self.root / "htpasswd")}}
        path = self.root / "config.yml"
        path.write_text(json.dumps(config, indent=1))
        return path

    def start(self) -> None:
        """Start on a free port (another one if that was taken meanwhile); wait for /v2/."""
        for _ in range(3):
            port = _free_port()
            self.host = f"127.0.0.1:{port}"
            config = self._config(port)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([self.binary, "serve", str(config)], cwd=self.root,
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_ready():
                return
            self._terminate()
        raise RuntimeError(f"docker-registry did not start:\n{self.log_text()[-3000:]}")

    def _wait_ready(self, timeout: float = 20) -> bool:
        ready = (401,) if self.username is not None else (200,)
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    if client.get(f"{self.url}/v2/").status_code in ready:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self._terminate()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def docker_config(self, folder: Path) -> Path:
        """`folder`/config.json as `docker login HOST` writes it (folder is what DOCKER_CONFIG names)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        auth = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        (folder / "config.json").write_text(json.dumps({"auths": {self.host: {"auth": auth}}}))
        return folder


def _started(**credentials: str) -> Iterator[OciRegistry]:
    if not Path(BINARY).is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    server = OciRegistry(BINARY, **credentials)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oci_registry() -> Iterator[OciRegistry]:
    """A distribution server without auth, for the whole session."""
    yield from _started()


@pytest.fixture(scope="session")
def oci_registry_auth() -> Iterator[OciRegistry]:
    """A distribution server with htpasswd basic auth (`.username`, `.password`), for the whole session."""
    yield from _started(username="nnpm-tester", password="s3cret-pass")


@pytest.fixture
def oras_(oci_registry, tmp_path: Path):
    """oras-py on the no-auth registry, writing blobs it pushes under tmp_path/blobs."""
    from ocikit import Oras

    return Oras(oci_registry, tmp_path / "blobs")

