"""nnpm.fsutil: writes are all-or-nothing, and trees of read-only files can be removed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nnpm.fsutil import atomic_path, atomic_write, remove_tree


def test_atomic_write_replaces_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text("old")
    atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    atomic_write(target, b"newer", durable=True)
    assert target.read_bytes() == b"newer"
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "lock"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed halfway")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["lock"]


def test_atomic_write_never_writes_through_a_planted_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nnpm import fsutil

    victim = tmp_path / "victim"
    victim.write_text("precious")
    planted = tmp_path / ".out.tmp"
    planted.symlink_to(victim)
    monkeypatch.setattr(fsutil, "temp_name", lambda path: planted)
    with pytest.raises(OSError):
        atomic_write(tmp_path / "out", b"overwritten?")
    assert victim.read_text() == "precious" and not (tmp_path / "out").exists()


def test_remove_tree_removes_read_only_files_and_folders(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "blob").write_text("x")
    os.chmod(root / "sub" / "blob", 0o444)
    os.chmod(root / "sub", 0o555)
    remove_tree(root)
    assert not root.exists()
    remove_tree(root)  # gone already: fine


def test_remove_tree_of_a_link_removes_the_link_only(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "keep").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(real)
    remove_tree(link)
    assert not link.exists() and (real / "keep").exists()
