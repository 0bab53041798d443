"""The content-addressed store, environments and the cache/env commands."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cli import nnpm_command, one_error_line, run_nnpm
from hostile_server import HostileRegistry, assert_store_clean
from modelkit import linear
from packages import write_package

from nnpm.author.pack import build
from nnpm.config import Settings
from nnpm.errors import IntegrityError
from nnpm.install.env import LOCK_NAME, Environment
from nnpm.install.store import Store
from nnpm.install.transaction import Installer


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- Store --------------------------------------------------------------------------------------------

def test_commit_moves_verified_bytes_into_place_read_only(tmp_path):
    store = Store(tmp_path / "store")
    src = tmp_path / "blob"
    src.write_bytes(b"hello")
    dest = store.commit(src, sha(b"hello"), 5)
    assert dest == store.path(sha(b"hello")) and dest.read_bytes() == b"hello"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o444
    assert not src.exists()
    assert store.has(sha(b"hello")) and store.has(sha(b"hello"), 5) and not store.has(sha(b"hello"), 6)


@pytest.mark.parametrize("data, size", [(b"hellO", 5), (b"hello!", 5), (b"hell", 5)])
def test_commit_refuses_wrong_bytes_and_leaves_nothing(tmp_path, data, size):
    store = Store(tmp_path / "store")
    src = tmp_path / "blob"
    src.write_bytes(data)
    with pytest.raises(IntegrityError, match="corrupt"):
        store.commit(src, sha(b"hello"), size)
    assert not src.exists()
    assert not store.has(sha(b"hello"))
    assert list(store.blobs()) == []


def test_commit_checks_the_bytes_when_the_size_does_not_match_the_claimed_hash(tmp_path):
    store = Store(tmp_path / "store")
    src = tmp_path / "blob"
    src.write_bytes(b"hello world")
    with pytest.raises(IntegrityError):
        store.commit(src, sha(b"hello"), 5, verified_digest=sha(b"hello"))
    assert not src.exists() and not store.has(sha(b"hello"))


def test_add_file_verifies_and_cleans_its_temp_copy(tmp_path):
    store = Store(tmp_path / "store")
    src = tmp_path / "file"
    src.write_bytes(b"payload")
    with pytest.raises(IntegrityError):
        store.add_file(src, sha(b"other"), 7)
    assert not store.has(sha(b"other"))
    assert list((store.root / "tmp").iterdir()) == []
    assert store.add_file(src, sha(b"payload"), 7).read_bytes() == b"payload"
    assert src.read_bytes() == b"payload", "the source is copied, not moved"


def test_add_bytes_is_idempotent(tmp_path):
    store = Store(tmp_path / "store")
    assert store.add_bytes(b"{}") == store.add_bytes(b"{}") == sha(b"{}")
    assert [d for d, _ in store.blobs()] == [sha(b"{}")]


@pytest.mark.parametrize("digest", ["../../../etc/passwd", "ab" * 31, "A" * 64, "sha256:" + "a" * 64])
def test_paths_are_only_made_from_digests(tmp_path, digest):
    with pytest.raises(IntegrityError):
        Store(tmp_path / "store").path(digest)


def test_link_into_hard_links(tmp_path):
    store = Store(tmp_path / "store")
    digest = store.add_bytes(b"weights")
    dest = tmp_path / "env" / "model.onnx"
    assert store.link_into(digest, dest) is True
    assert dest.stat().st_ino == store.path(digest).stat().st_ino


@pytest.mark.parametrize("code", [errno.EXDEV, errno.EPERM, errno.EMLINK])
def test_link_into_copies_when_the_filesystem_refuses_links(tmp_path, monkeypatch, code):
    store = Store(tmp_path / "store")
    digest = store.add_bytes(b"weights" * 1000)

    def refuse(src, dst, *a, **k):
        raise OSError(code, os.strerror(code), str(src), None, str(dst))

    monkeypatch.setattr(os, "link", refuse)
    dest = tmp_path / "env" / "model.onnx"
    assert store.link_into(digest, dest) is False
    assert dest.read_bytes() == b"weights" * 1000
    assert dest.stat().st_ino != store.path(digest).stat().st_ino
    assert stat.S_IMODE(dest.stat().st_mode) == 0o444


def test_link_into_does_not_hide_other_errors(tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    digest = store.add_bytes(b"weights")

    def full(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(OSError):
        store.link_into(digest, tmp_path / "env" / "x")


def test_install_across_filesystems_copies_and_verifies(tmp_path, monkeypatch, small_package):
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    home = tmp_path / "home"
    settings = Settings(home=home, env="default", registry=None, token=None)
    env = Environment(home / "envs" / "default", "default")
    result = Installer(settings, env, progress=False).install([str(small_package("tiny"))])
    assert result.installed == [("tiny", "1.0.0")] and result.linked == 0
    pkg = env.get("tiny")
    pkg.verify()
    store = Store(home / "store")
    for f in pkg.manifest.files:
        st = (pkg.path / f.path).stat()
        assert st.st_nlink == 1 and st.st_ino != store.path(f.sha256).stat().st_ino


def test_verify_and_prune(tmp_path):
    store = Store(tmp_path / "store")
    good, bad = store.add_bytes(b"good"), store.add_bytes(b"bad!")
    path = store.path(bad)
    os.chmod(path, 0o644)
    path.write_bytes(b"BAD!")
    assert store.verify() == [bad]
    (store.partial_path(sha(b"x"))).write_bytes(b"half")
    count, freed = store.prune({good})
    assert (count, freed) == (2, 8)
    assert [d for d, _ in store.blobs()] == [good]
    assert list((store.root / "partial").iterdir()) == []


# -- cache commands -------------------------------------------------------------------------------------

def _flip_a_byte(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.chmod(path, 0o444)


def test_cache_verify_finds_a_flipped_byte(tmp_path, small_package):
    home = tmp_path / "home"
    folder = small_package("tiny", weights=tuple(float(i) for i in range(64)))
    run_nnpm(home, "install", "-q", str(folder))
    assert "verified" in run_nnpm(home, "cache", "verify").stdout
    digest = sha((folder / "model.onnx").read_bytes())
    blob = Store(home / "store").path(digest)
    size = blob.stat().st_size
    _flip_a_byte(blob)
    assert blob.stat().st_size == size
    line = one_error_line(run_nnpm(home, "cache", "verify", check=False))
    assert digest[:12] in line and "1 corrupt" in line
    run_nnpm(home, "cache", "clean", "--corrupt")
    assert not Store(home / "store").has(digest)
    # The environment still holds the damaged file (a link to the blob that was edited): verify says so.
    line = one_error_line(run_nnpm(home, "cache", "verify", check=False))
    assert "tiny 1.0.0 in env default" in line and "nnpm install --force tiny==1.0.0" in line
    run_nnpm(home, "install", "-q", "--force", str(folder))
    assert "verified" in run_nnpm(home, "cache", "verify").stdout


def test_cache_clean_removes_only_blobs_no_environment_uses(tmp_path, small_package):
    home = tmp_path / "home"
    kept = small_package("kept", weights=(1.0, 2.0))
    dropped = small_package("dropped", weights=(3.0, 4.0, 5.0))
    run_nnpm(home, "install", "-q", "--env", "a", str(kept))
    run_nnpm(home, "install", "-q", "--env", "b", str(dropped))
    store = Store(home / "store")
    lock_a = Environment(home / "envs" / "a", "a").lock()
    used = {p.manifest_sha256 for p in lock_a.packages.values()} | {
        d for p in lock_a.packages.values() for _, _, d in p.files}
    dropped_model = sha((dropped / "model.onnx").read_bytes())
    assert store.has(dropped_model)

    run_nnpm(home, "env", "remove", "--yes", "b")
    store.partial_path("f" * 64).write_bytes(b"unfinished download")
    run_nnpm(home, "cache", "clean")
    assert {d for d, _ in store.blobs()} == used
    assert not store.has(dropped_model)
    assert list((store.root / "partial").iterdir()) == []
    assert json.loads(run_nnpm(home, "list", "--json", "--env", "a").stdout)["packages"][0]["name"] == "kept"
    Environment(home / "envs" / "a", "a").get("kept").verify()
    run_nnpm(home, "cache", "verify")
    assert "blobs: " in run_nnpm(home, "cache", "info").stdout


def test_cache_clean_removes_the_leftovers_of_a_killed_archive_install(tmp_path, small_package):
    """A `.nnpm` install unpacks into a temp folder under store/v1/tmp; kill -9 leaves it behind."""
    home = tmp_path / "home"
    run_nnpm(home, "install", "-q", str(small_package("tiny")))
    leftover = home / "store" / "v1" / "tmp" / "tmpk1ll3d" / "x"
    leftover.mkdir(parents=True)
    (leftover / "model.onnx").write_bytes(b"half an archive")
    (home / "store" / "v1" / "tmp" / ("e" * 64 + ".123")).write_bytes(b"half a copy")
    run_nnpm(home, "cache", "clean")
    assert list((home / "store" / "v1" / "tmp").iterdir()) == []
    run_nnpm(home, "cache", "verify")
    Environment(home / "envs" / "default", "default").get("tiny").verify()


def test_a_half_removed_environment_does_not_break_env_list_or_the_cache(tmp_path, small_package):
    """`nnpm env remove` renames the folder to .NAME.removing, then deletes it; kill -9 in between
    leaves that folder, which is not an environment."""
    home = tmp_path / "home"
    run_nnpm(home, "install", "-q", "--env", "work", str(small_package("tiny")))
    (home / "envs" / ".gone.removing" / "pkgs").mkdir(parents=True)
    assert "work  (1 packages)" in run_nnpm(home, "env", "list").stdout
    assert "removing" not in run_nnpm(home, "env", "list").stdout
    run_nnpm(home, "cache", "info")
    run_nnpm(home, "cache", "clean")
    Environment(home / "envs" / "work", "work").get("tiny").verify()


# -- environments ---------------------------------------------------------------------------------------

def test_env_create_list_remove(tmp_path, small_package):
    home = tmp_path / "home"
    assert "created environment work" in run_nnpm(home, "env", "create", "work").stdout
    assert (home / "envs" / "work" / LOCK_NAME).exists()
    assert "work  (0 packages)" in run_nnpm(home, "env", "list").stdout
    assert "exists already" in one_error_line(run_nnpm(home, "env", "create", "work", check=False))

    run_nnpm(home, "install", "-q", "--env", "work", str(small_package("tiny")))
    listing = run_nnpm(home, "env", "list", env_name="work").stdout
    assert "* work  (1 packages)" in listing

    run_nnpm(home, "env", "remove", "--yes", "work")
    assert not (home / "envs" / "work").exists()
    assert "work" not in run_nnpm(home, "env", "list").stdout
    assert Store(home / "store").usage()[0] > 0, "the store keeps the blobs until 'cache clean'"
    one_error_line(run_nnpm(home, "env", "remove", "--yes", "work", check=False))


@pytest.mark.parametrize("name", ["../evil", ".hidden", "a/b"])
def test_env_names_cannot_leave_the_envs_folder(tmp_path, name):
    home = tmp_path / "home"
    one_error_line(run_nnpm(home, "env", "create", name, check=False))
    assert not (tmp_path / "evil").exists()
    assert not (home / "envs").exists() or list((home / "envs").iterdir()) == []


def test_concurrent_installs_into_one_environment_are_serialised(tmp_path):
    """Two installs at once: the slow one must not overwrite what the fast one recorded."""
    big = build(write_package(tmp_path / "pkgs" / "slow-big", "slow-big", bare=True, model=linear(1000, 800)))
    small = build(write_package(tmp_path / "pkgs" / "quick-small", "quick-small", bare=True, model=linear(4, 3)))
    home = tmp_path / "home"
    with HostileRegistry([(big.manifest, big.paths), (small.manifest, small.paths)], mode="slow",
                         delay=0.02) as server:
        commands = [nnpm_command(home, "install", "-q", name, registry=server.url)
                    for name in ("slow-big", "quick-small")]
        procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for argv, env in commands]
        outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
    lock = json.loads((home / "envs" / "default" / LOCK_NAME).read_bytes())
    assert sorted(lock["packages"]) == ["quick-small", "slow-big"], (outs, lock)
    installed = Environment(home / "envs" / "default", "default").installed()
    for pkg in installed.values():
        pkg.verify()
    assert_store_clean(home / "store")
