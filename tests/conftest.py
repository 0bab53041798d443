"""Shared fixtures: the example packages, real registry servers, tiny model packages.

- ``examples_dir`` (session): the example packages (``examples/``), built once with
  ``python -m examples.build``; each is a folder ``examples_dir / NAME`` with nnpm.toml.
- ``registry_factory``: ``start(**settings) -> Registry`` runs ``python -m registry_server``
  as a real subprocess on 127.0.0.1 with a free port and a fresh data folder (real SQLite),
  waits for ``/api/v1/health``, and stops every server it started at teardown. Keyword
  settings become flags: ``start(max_blob_size=1024)`` → ``--max-blob-size 1024``.
- ``registry``: one server with the default settings.
- ``shared_registry`` (module): one server shared by a test module; use distinct package names.
- ``small_package``: ``make(name, version, weights=...) -> Path`` writes a tiny valid
  model package folder (``Y = X + W``) made with onnx.helper.

A ``Registry`` has ``.url``, ``.data_dir``, ``.proc``, ``.add_user(name) -> token``,
``.client(token)`` (an httpx.Client), ``.publish(folder, token)`` (the raw protocol:
HEAD, PUT missing blobs, PUT manifest; returns the manifest's response), ``.kill()``
(SIGKILL), ``.restart()`` (same data folder and, when free, the same port) and ``.stop()``.
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

ROOT = Path(__file__).resolve().parents[1]


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


class Registry:
    """One `python -m registry_server` subprocess over one data folder."""

    def __init__(self, data_dir: Path, log_path: Path, flags: list[str]) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.flags = flags
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL the server uses."""
        return f"sqlite:///{self.data_dir / 'registry.db'}"

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
        """Kill and start again over the same data folder."""
        self.kill()
        self.start()

    def add_user(self, name: str) -> str:
        """Create `name` if needed and return a new API token for it (same database as the server)."""
        from registry_server.auth import add_user

        return add_user(self.database_url, name)

    def client(self, token: str | None = None, **kwargs) -> httpx.Client:
        """An httpx client on this registry, with the bearer token when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 60), **kwargs)

    def publish(self, folder: Path, token: str) -> httpx.Response:
        """Publish a package folder with raw protocol calls; the manifest PUT's response."""
        from nnpm.pack import build

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


def start_registry(tmp_path_factory: pytest.TempPathFactory, started: list[Registry], **settings) -> Registry:
    """Start a server over a fresh data folder; `settings` become flags (max_blob_size → --max-blob-size)."""
    flags = []
    for key, value in settings.items():
        flags += ["--" + key.replace("_", "-"), str(value)]
    base = tmp_path_factory.mktemp("registry")
    reg = Registry(base / "data", base / "server.log", flags)
    started.append(reg)
    reg.start()
    return reg


@pytest.fixture
def registry_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Registry]]:
    """`start(**settings) -> Registry`: a fresh server per call, all stopped at teardown."""
    started: list[Registry] = []
    yield lambda **settings: start_registry(tmp_path_factory, started, **settings)
    for reg in started:
        reg.stop()


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One default server for a whole test module: cheaper, so tests must use their own package names."""
    started: list[Registry] = []
    yield start_registry(tmp_path_factory, started)
    for reg in started:
        reg.stop()


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
