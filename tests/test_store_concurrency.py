"""Several processes sharing one store: one writer per blob, and `cache clean` waits for installs (issue 13)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from cli import nnpm_command
from hostile_server import HostileRegistry

from nnpm.author.pack import build
from nnpm.install.env import open_env
from nnpm.install.store import Store


def _popen(home: Path, url: str, env_name: str, *args: str) -> subprocess.Popen:
    argv, env = nnpm_command(home, *args, registry=url, env_name=env_name)
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def slow_registry(small_package):
    built = build(small_package("big", "1.0.0", weights=tuple(float(i % 97) for i in range(600_000))))
    with HostileRegistry([(built.manifest, built.paths)], mode="slow", delay=0.02) as server:
        yield server, built.manifest


def test_two_installs_of_one_blob_share_one_download(tmp_path: Path, slow_registry) -> None:
    server, manifest = slow_registry
    home = tmp_path / "home"
    procs = [_popen(home, server.url, env, "install", "-q", "big") for env in ("a", "b")]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert [rc for _, _, rc in results] == [0, 0], results
    model = manifest.file("model.onnx")
    full_gets = [g for g in server.blob_gets(model.sha256) if g.range_start is None]
    assert len(full_gets) == 1, server.blob_gets(model.sha256)
    assert Store(home / "store").verify() == []
    for env_name in ("a", "b"):
        open_env(env_name, _settings(home)).get("big").verify()


def test_cache_clean_waits_for_a_running_install_and_removes_nothing_it_needs(tmp_path: Path, slow_registry) -> None:
    server, manifest = slow_registry
    home = tmp_path / "home"
    install = _popen(home, server.url, "default", "install", "-q", "big")
    partial = Store(home / "store").partial_path(manifest.file("model.onnx").sha256)
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert partial.exists(), "the install never started downloading"
    clean = _popen(home, server.url, "default", "cache", "clean")
    clean_out, clean_err, = clean.communicate(timeout=120)
    out, err = install.communicate(timeout=120)
    assert install.returncode == 0, err
    assert clean.returncode == 0 and "waiting for running installs" in clean_out, clean_out + clean_err
    open_env("default", _settings(home)).get("big").verify()
    assert Store(home / "store").verify() == []


def _settings(home: Path):
    from nnpm.config import Settings

    return Settings(home=home, env="default", registry=None, token=None)
