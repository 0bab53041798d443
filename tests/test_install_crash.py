"""kill -9 of `nnpm install` at every stage: the environment is the old state or the new one, never
half of each, and running the command again finishes the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli import nnpm_command, run_nnpm
from hostile_server import HostileRegistry, assert_store_clean
from modelkit import linear
from packages import write_package

from nnpm.author.pack import build
from nnpm.install.env import LOCK_NAME, Environment

BIG = "crash-big"        # ~3.2 MB, so a slow server keeps the download going long enough to kill it
BASE = "crash-base"      # installed first (1.0.0), upgraded to 2.0.0 by the install under test
OLD = [f"{BASE}==1.0.0"]
NEW = [f"{BASE}==2.0.0", BIG]


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash-packages")
    folders = [write_package(root / "big", BIG, bare=True, model=linear(1000, 800)),
               write_package(root / "base1", BASE, "1.0.0", bare=True, model=linear(4, 3, seed=1)),
               write_package(root / "base2", BASE, "2.0.0", bare=True, model=linear(4, 3, seed=2))]
    return [(b.manifest, b.paths) for b in map(build, folders)]


@pytest.fixture
def server(packages):
    with HostileRegistry(packages) as srv:
        yield srv


def popen_install(home: Path, url: str) -> subprocess.Popen:
    """`nnpm install -q NEW...` against `url`, running in the background (output discarded)."""
    argv, env = nnpm_command(home, "install", "-q", *NEW, registry=url)
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def lock_bytes(home: Path) -> bytes | None:
    path = home / "envs" / "default" / LOCK_NAME
    return path.read_bytes() if path.exists() else None


@pytest.fixture
def states(server, tmp_path) -> tuple[bytes, bytes]:
    """(old lock, new lock) made by an undisturbed run of the same two installs."""
    ref = tmp_path / "reference"
    run_nnpm(ref, "install", "-q", *OLD, registry=server.url)
    old = lock_bytes(ref)
    run_nnpm(ref, "install", "-q", *NEW, registry=server.url)
    new = lock_bytes(ref)
    assert old and new and old != new
    return old, new


def assert_whole_state(home: Path, url: str, states: tuple[bytes, bytes]) -> str:
    """The lock is exactly the old or the new one, every folder it names is complete, `nnpm list` works."""
    current = lock_bytes(home)
    assert current in states, "the lock is neither the old nor the new state"
    which = "old" if current == states[0] else "new"
    env = Environment(home / "envs" / "default", "default")
    for pkg in env.installed().values():
        pkg.verify()
    listed = json.loads(run_nnpm(home, "list", "--json", registry=url).stdout)
    expected = {n: p["version"] for n, p in json.loads(current)["packages"].items()}
    assert {p["name"]: p["version"] for p in listed["packages"]} == expected
    assert_store_clean(home / "store")
    return which


def finish_and_verify(home: Path, url: str, states: tuple[bytes, bytes]) -> None:
    run_nnpm(home, "install", "-q", *NEW, registry=url)
    assert lock_bytes(home) == states[1]
    assert "verified" in run_nnpm(home, "cache", "verify", registry=url).stdout
    pkgs = home / "envs" / "default" / "pkgs"
    assert sorted(p.name for p in pkgs.iterdir()) == [f"{BASE}-2.0.0", f"{BIG}-1.0.0"], "no leftovers"
    assert_whole_state(home, url, states)


@pytest.mark.parametrize("point, expected", [("after-fetch", "old"), ("before-commit", "old"),
                                             ("after-commit", "new")])
def test_kill_at_a_crash_point_leaves_a_whole_state(server, states, tmp_path, point, expected):
    home = tmp_path / "home"
    run_nnpm(home, "install", "-q", *OLD, registry=server.url)
    assert lock_bytes(home) == states[0]
    proc = run_nnpm(home, "install", "-q", *NEW, registry=server.url, env={"NNPM_TEST_CRASH_AT": point},
                    check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert assert_whole_state(home, server.url, states) == expected
    finish_and_verify(home, server.url, states)


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_kill_during_a_slow_download_then_resume(server, states, packages, tmp_path):
    home = tmp_path / "home"
    run_nnpm(home, "install", "-q", *OLD, registry=server.url)
    big = max(packages[0][0].files, key=lambda f: f.size)
    server.mode, server.delay = "slow", 0.05          # ~2.5 s for the big blob
    proc = popen_install(home, server.url)
    partial = home / "store" / "v1" / "partial" / big.sha256
    try:
        _wait_for(lambda: partial.exists() and partial.stat().st_size > 0)
        assert proc.poll() is None, "the install finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert assert_whole_state(home, server.url, states) == "old"
    kept = partial.stat().st_size
    assert 0 < kept < big.size, "what arrived before the kill is kept for resuming"

    server.mode = "ok"
    server.requests.clear()
    finish_and_verify(home, server.url, states)
    assert server.blob_gets(big.sha256)[0].range_start == kept, "the rerun resumes, it does not start over"


def test_repeated_kills_at_random_moments_never_leave_half_a_state(server, states, tmp_path):
    home = tmp_path / "home"
    run_nnpm(home, "install", "-q", *OLD, registry=server.url)
    server.mode, server.delay = "slow", 0.01
    seen = set()
    for delay in (0.3, 0.6, 0.9, 1.2, 1.5):
        proc = popen_install(home, server.url)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        seen.add(assert_whole_state(home, server.url, states))
    server.mode = "ok"
    finish_and_verify(home, server.url, states)
