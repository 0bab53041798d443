"""The fixture plugins every test module can use, and the example packages.

Tests run with tests/ on sys.path (there is no __init__.py), so the plugins are plain
module names; each one's docstring says what it provides:

- tests/pgserver.py: ``postgres_server`` (session), ``postgres_url`` (a fresh database);
- tests/s3server.py: ``s3_server`` (session), ``s3_bucket`` (a fresh bucket), ``s3_endpoint``;
- tests/registry_proc.py: ``registry``, ``registry_factory``, ``shared_registry`` (real
  registry subprocesses) and ``registry_backend``, the backend parametrisation
  (``sqlite-dir`` / ``postgres-s3``, narrowed with ``@pytest.mark.registry_backends(...)``);
- tests/inprocess.py: ``api``, ``api_factory``, ``shared_api`` (the registry app in memory);
- tests/packages.py: ``small_package`` (tiny package folders).

Helpers that are not fixtures live in tests/cli.py (the CLI in a subprocess),
tests/protocol.py (registry calls by hand), tests/modelkit.py (ONNX graphs),
tests/concurrency.py, tests/hostile_server.py and tests/migrationkit.py (migration tests).

Here: ``examples_dir`` (session), the example packages of ``examples/``, built once with
``python -m examples.build``; each is a folder ``examples_dir / NAME`` with nnpm.toml.
Tests must not write into it (copy a package first). ``examples_rebuild`` (session): a second,
independent build in a process of its own (this process's environment, threads unpinned), for
the test that builds must be byte-identical. Both builds start in the background as soon as
collection shows a test wants them, so they overlap the tests that run first. Under
pytest-xdist (`make test` runs one worker per core) the workers share one ``examples_dir``
build (the first to claim it builds, the others wait for it; the controller removes it at the
end), and the rebuild starts only when a worker's test asks for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from cli import ROOT, child_env

pytest_plugins = ["pgserver", "s3server", "registry_proc", "inprocess", "packages", "ociregistry", "browser"]


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist, fix the run's id in the controller, so that it can remove what its workers shared."""
    if not hasattr(config, "workerinput") and getattr(config.option, "numprocesses", None):
        config.option.testrunuid = config.option.testrunuid or uuid.uuid4().hex


def _shared_root(name: str, config: pytest.Config | None = None) -> Path | None:
    """The folder the xdist workers of this run share for one build (None outside xdist)."""
    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID") or (config and getattr(config.option, "testrunuid", None))
    return Path(tempfile.gettempdir()) / f"nnpm-examples-{uid}-{name}" if uid else None


class _Shared:
    """A build another xdist worker of this run may have claimed: built once, waited for by all.

    The build process itself leaves `done` (or `failed`) beside its output, so a worker that
    claimed it but never needs it, or finishes first, leaves the others nothing to wait for in vain."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root, self.out = root, root / "examples"
        try:
            root.mkdir()              # atomic: exactly one worker claims the build
        except FileExistsError:
            return
        with open(root / "build.log", "wb") as log:
            subprocess.Popen(["bash", "-c", '"$0" -m examples.build "$1" && : > "$2/done" || : > "$2/failed"',
                              sys.executable, str(self.out), str(root)], cwd=ROOT, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)

    def result(self) -> Path:
        deadline = time.monotonic() + 600
        while not (self.root / "done").exists():
            assert not (self.root / "failed").exists(), \
                f"python -m examples.build failed:\n{(self.root / 'build.log').read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"the shared examples build in {self.root} did not finish"
            time.sleep(0.2)
        return self.out

    def discard(self) -> None:
        """Nothing: other workers may still use the build; the controller removes it at the end."""


class _Build:
    """One `python -m examples.build OUT` in a process of its own, waited for once."""

    def __init__(self, env: dict[str, str]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="nnpm-examples-"))
        self.out, self.log = self.root / "examples", self.root / "build.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "examples.build", str(self.out)], cwd=ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def result(self) -> Path:
        self.proc.wait(timeout=600)
        assert self.proc.returncode == 0, f"python -m examples.build failed:\n{self.log.read_text(errors='replace')}"
        return self.out

    def discard(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


_BUILDS = pytest.StashKey[dict]()
_BUILD_ENVS = {"examples": child_env, "rebuild": lambda: {**os.environ, "PYTHONPATH": str(ROOT)}}


# The longest modules first: with one worker per core, a long module that starts last keeps one
# core busy alone at the end (longest-first is the classic cure for that tail).
LONG_FIRST = ("test_readme.py", "test_s3_registry.py", "test_variant_author.py", "test_replicas.py",
              "test_registry_crash.py", "test_registry_variants.py", "test_install.py", "test_new_user.py",
              "test_registry_api_publish.py", "test_registry_newuser_workers.py", "test_project.py", "test_oci.py",
              "test_tensor_weights.py", "test_registry_oci.py")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """Run the long modules first (stable otherwise)."""
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the builds the collected tests need now, in the background, so they overlap the first tests."""
    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    builds = session.config.stash.setdefault(_BUILDS, {})
    if "examples_dir" in wanted:
        builds["examples"] = _start("examples")
    if "examples_rebuild" in wanted and _shared_root("rebuild") is None:
        builds["rebuild"] = _start("rebuild")


def _start(name: str) -> "_Build | _Shared":
    shared = _shared_root(name) if name == "examples" else None
    return _Shared(shared, _BUILD_ENVS[name]()) if shared else _Build(_BUILD_ENVS[name]())


def pytest_sessionfinish(session: pytest.Session) -> None:
    for build in session.config.stash.get(_BUILDS, {}).values():
        build.discard()
    if not hasattr(session.config, "workerinput"):   # the controller (or a plain run): every worker is done
        shared = _shared_root("examples", session.config)
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)


def _build(config: pytest.Config, name: str) -> Path:
    builds = config.stash.setdefault(_BUILDS, {})
    if name not in builds:  # asked for without being collected (e.g. request.getfixturevalue)
        builds[name] = _start(name)
    return builds[name].result()


@pytest.fixture(scope="session")
def examples_dir(pytestconfig: pytest.Config) -> Path:
    """The example packages, built once per session into a temp folder."""
    return _build(pytestconfig, "examples")


@pytest.fixture(scope="session")
def examples_rebuild(pytestconfig: pytest.Config) -> Path:
    """The examples built a second time, by another process (see the module docstring)."""
    return _build(pytestconfig, "rebuild")
