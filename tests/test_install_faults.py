"""Installs from a registry that lies about blobs: each fault ends in a clear error or a correct
install, and never leaves a corrupt blob in the store or a changed lock in the environment."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from cli import run_nnpm
from hostile_server import HostileRegistry, assert_store_clean
from modelkit import linear
from packages import write_package

from nnpm.author.pack import build
from nnpm.config import Settings
from nnpm.errors import IntegrityError, RegistryError
from nnpm.install.env import LOCK_NAME, Environment
from nnpm.install.fetch import ATTEMPTS
from nnpm.install.store import Store
from nnpm.install.transaction import Installer

BIG = "hostile-net"      # ~3.2 MB model: large enough to be cut mid-file after a 1 MB chunk
BASE = "hostile-base"    # a few hundred bytes, installed honestly before the faulty install


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-packages")
    big = write_package(root / BIG, BIG, bare=True, model=linear(1000, 800), readme="# big\n" * 50)
    base = write_package(root / BASE, BASE, bare=True, model=linear(4, 3))
    return [(b.manifest, b.paths) for b in (build(big), build(base))]


@pytest.fixture
def server(packages):
    with HostileRegistry(packages) as srv:
        yield srv


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "home"


def _settings(home: Path, url: str) -> Settings:
    return Settings(home=home, env="default", registry=url, token=None)


def _install(home: Path, url: str, *specs: str, client=None):
    settings = _settings(home, url)
    env = Environment(settings.envs_dir / "default", "default")
    return Installer(settings, env, client=client, progress=False).install(list(specs))


def _lock_bytes(home: Path) -> bytes | None:
    path = home / "envs" / "default" / LOCK_NAME
    return path.read_bytes() if path.exists() else None


def _big(packages):
    manifest = packages[0][0]
    return max(manifest.files, key=lambda f: f.size)


def _assert_env_consistent(home: Path) -> None:
    """Every package the lock names has a complete, verified folder; nothing else is there."""
    env = Environment(home / "envs" / "default", "default")
    installed = env.installed()
    for pkg in installed.values():
        pkg.verify()
    pkgs = env.root / "pkgs"
    if pkgs.is_dir():
        assert sorted(p.name for p in pkgs.iterdir()) == sorted(f"{n}-{p.version}" for n, p in installed.items())


def _with_base(home: Path, server: HostileRegistry) -> bytes:
    """Install the small package honestly; returns the lock bytes that must survive a failure."""
    _install(home, server.url, BASE)
    before = _lock_bytes(home)
    assert before is not None and BASE.encode() in before
    server.requests.clear()
    return before


def test_honest_registry_installs_once_per_blob(packages, server, home):
    result = _install(home, server.url, BIG)
    assert result.installed == [(BIG, "1.0.0")]
    big = _big(packages)
    gets = server.blob_gets()
    assert sorted(r.digest for r in gets) == sorted(f.sha256 for f in packages[0][0].files)
    assert all(r.range_start is None for r in gets)
    assert assert_store_clean(home / "store") == len(packages[0][0].files) + 1   # + the manifest
    folder = home / "envs" / "default" / "pkgs" / f"{BIG}-1.0.0" / "files"
    assert os.stat(folder / big.path).st_ino == Store(home / "store").path(big.sha256).stat().st_ino
    _assert_env_consistent(home)


@pytest.mark.parametrize("mode, error, words", [
    ("truncate", RegistryError, "complete message body"),
    ("slow-cut", RegistryError, "complete message body"),
    ("extra", IntegrityError, "more than"),
    ("wrong", IntegrityError, "corrupt"),
    ("error500", RegistryError, "500"),
])
def test_faulty_blob_answers_fail_cleanly_and_leave_the_old_state(packages, server, home, mode, error, words):
    before = _with_base(home, server)
    # slow-cut: each answer stops after ~1 MB, so three attempts make progress but cannot finish
    server.mode, server.cut_at, server.delay = mode, 1_050_000, 0.002
    with pytest.raises(error) as info:
        _install(home, server.url, BIG)
    assert words in str(info.value)
    assert _lock_bytes(home) == before
    assert not (home / "envs" / "default" / "pkgs" / f"{BIG}-1.0.0").exists()
    _assert_env_consistent(home)
    assert_store_clean(home / "store")
    big = _big(packages)
    assert not Store(home / "store").has(big.sha256)
    gets = server.blob_gets(big.sha256)
    if mode == "error500":
        assert len(gets) == 1, "a server error is an answer, not a broken connection: no retry"
    elif mode in ("truncate", "slow-cut"):
        assert len(gets) == ATTEMPTS
        assert gets[0].range_start is None
        assert gets[-1].range_start and gets[-1].range_start > 0, "retries resume what arrived"
    elif mode in ("extra", "wrong"):
        assert len(gets) == 1, "bad bytes are not retried into the same partial file"
        assert not (home / "store" / "v1" / "partial" / big.sha256).exists(), "bad bytes are thrown away"


def test_cut_connection_resumes_with_range_and_finishes(packages, server, home):
    big = _big(packages)
    server.mode, server.cut_at = "cut-once", 1_500_000
    _install(home, server.url, BIG)
    gets = server.blob_gets(big.sha256)
    assert len(gets) == 2
    assert gets[0].range_start is None
    resumed = gets[1].range_start
    assert resumed is not None and 0 < resumed <= server.cut_at
    assert gets[1].headers.get("if-range") == f'"sha256:{big.sha256}"'
    assert server.served[big.sha256] == server.cut_at + big.size - resumed, "only the missing tail is sent again"
    assert assert_store_clean(home / "store") == len(packages[0][0].files) + 1
    _assert_env_consistent(home)


def test_server_ignoring_range_restarts_the_file_from_zero(packages, server, home):
    big = _big(packages)
    server.mode = "cut-then-ignore-range"
    _install(home, server.url, BIG)
    gets = server.blob_gets(big.sha256)
    assert len(gets) == 2 and gets[1].range_start and gets[1].range_start > 0
    assert server.served[big.sha256] == server.cut_at + big.size       # the 200 sent everything again
    assert assert_store_clean(home / "store") == len(packages[0][0].files) + 1
    _assert_env_consistent(home)


def test_stale_partial_of_wrong_bytes_is_overwritten_when_range_is_ignored(packages, server, home):
    big = _big(packages)
    part = Store(home / "store").partial_path(big.sha256)
    part.write_bytes(b"\xff" * 1_048_576)
    server.mode = "ignore-range"
    _install(home, server.url, BIG)
    assert server.blob_gets(big.sha256)[0].range_start == 1_048_576
    assert not part.exists()
    assert assert_store_clean(home / "store") == len(packages[0][0].files) + 1
    _assert_env_consistent(home)


def test_corrupt_partial_never_reaches_the_store(packages, server, home):
    """A damaged partial file resumed against an honest server fails verification, is thrown away,
    and the next attempt starts from zero."""
    big = _big(packages)
    store = Store(home / "store")
    store.partial_path(big.sha256).write_bytes(b"\xff" * 1_048_576)
    try:
        _install(home, server.url, BIG)
    except IntegrityError:
        assert _lock_bytes(home) is None
        assert not store.has(big.sha256)
        assert not store.partial_path(big.sha256).exists()
        _install(home, server.url, BIG)
        assert server.blob_gets(big.sha256)[-1].range_start is None
    assert assert_store_clean(home / "store") == len(packages[0][0].files) + 1
    _assert_env_consistent(home)


def test_stalled_registry_times_out_with_a_registry_error(packages, server, home):
    from nnpm.client.api import RegistryClient

    before = _with_base(home, server)
    server.mode = "stall"
    client = RegistryClient(server.url, timeout=httpx.Timeout(0.3, connect=2.0))
    with pytest.raises(RegistryError, match="no answer in time"):
        _install(home, server.url, BIG, client=client)
    assert _lock_bytes(home) == before
    assert_store_clean(home / "store")


def test_failed_download_resumes_on_the_next_run(packages, server, home):
    big = _big(packages)
    server.mode = "truncate"
    with pytest.raises(RegistryError):
        _install(home, server.url, BIG)
    kept = Store(home / "store").partial_path(big.sha256).stat().st_size
    assert kept > 0, "a truncated download keeps what arrived"
    server.mode = "ok"
    server.requests.clear()
    _install(home, server.url, BIG)
    assert server.blob_gets(big.sha256)[0].range_start == kept
    assert assert_store_clean(home / "store") == len(packages[0][0].files) + 1
    _assert_env_consistent(home)


@pytest.mark.parametrize("mode", ["truncate", "wrong", "extra"])
def test_cli_reports_a_faulty_registry_in_one_line(packages, server, home, mode):
    before = _with_base(home, server)
    server.mode = mode
    proc = run_nnpm(home, "install", "-q", BIG, registry=server.url, check=False)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert _lock_bytes(home) == before
    assert_store_clean(home / "store")
    listed = run_nnpm(home, "list", "--json", registry=server.url, check=False)
    assert listed.returncode == 0 and BIG not in listed.stdout


def test_cli_install_survives_a_cut_connection(packages, server, home):
    server.mode = "cut-once"
    proc = run_nnpm(home, "install", "-q", BIG, registry=server.url, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"installed {BIG} 1.0.0" in proc.stdout
    assert assert_store_clean(home / "store") == len(packages[0][0].files) + 1
    verify = run_nnpm(home, "cache", "verify", registry=server.url, check=False)
    assert verify.returncode == 0, verify.stderr
    files = {f.path: f.sha256 for f in packages[0][0].files}
    folder = home / "envs" / "default" / "pkgs" / f"{BIG}-1.0.0" / "files"
    for rel, digest in files.items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest
