"""uv as a peer: `uv pip install` of a wheel from a local PEP 503 index, cold and with a warm cache.

uv is the fastest Python installer people use (a Rust binary: no interpreter start-up, no
imports), so it is the bar for "installing a file of weights from an index". The dev extra
installs it from PyPI; its binary sits beside this interpreter.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import PY, child_env, run


def uv_binary() -> Path | None:
    """The `uv` beside this interpreter (the dev extra's), else one on PATH, else None."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file():
        return beside
    found = shutil.which("uv")
    return Path(found) if found else None


def uv_env(cache: Path) -> dict[str, str]:
    """The environment for uv: none of the caller's UV_* settings or VIRTUAL_ENV; our cache; no downloads."""
    env = {k: v for k, v in child_env().items() if not k.startswith("UV_") and k != "VIRTUAL_ENV"}
    env.update(UV_CACHE_DIR=str(cache), UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    return env


def uv_version(uv: Path) -> str:
    """`uv --version`, e.g. 'uv 0.13.9 (x86_64-unknown-linux-gnu)'."""
    return run([str(uv), "--version"]).stdout.strip()


def _pip_install(uv: Path, env: dict[str, str], index_url: str, project: str, *where: str) -> float:
    start = time.perf_counter()
    run([str(uv), "pip", "install", "--quiet", "--no-deps", "--index-url", index_url, *where, project], env=env)
    return time.perf_counter() - start


def cold(uv: Path, scratch: Callable[[str], Path], index_url: str, project: str,
         installed: str) -> Callable[[int], float]:
    """run(i) -> seconds of `uv pip install --no-deps --no-cache --target NEW` (no cache at all: every byte
    fetched and unpacked); checks that `installed` (a path inside the target) exists."""

    def once(_i: int) -> float:
        target, cache = scratch("uv-target"), scratch("uv-cache")
        try:
            seconds = _pip_install(uv, uv_env(cache), index_url, project, "--no-cache", "--target", str(target),
                                   "--python", PY)
            if not (target / installed).is_file():
                raise RuntimeError(f"uv did not install {installed}")
            return seconds
        finally:
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
    return once


def warm(uv: Path, scratch: Callable[[str], Path], index_url: str, project: str,
         installed: str) -> tuple[Callable[[int], float], Path]:
    """(run(i) -> seconds, cache): `uv pip install --no-deps` into a new venv (made untimed) with a cache
    that already holds the wheel (filled once here); uv links the files from its cache, as nnpm does
    from its store. The index is still asked, as nnpm asks its registry."""
    cache = scratch("uv-warm-cache")
    env = uv_env(cache)
    first = scratch("uv-first")
    _pip_install(uv, env, index_url, project, "--target", str(first), "--python", PY)   # fills the cache
    shutil.rmtree(first, ignore_errors=True)

    def once(_i: int) -> float:
        venv = scratch("uv-venv")
        try:
            subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
            seconds = _pip_install(uv, env, index_url, project, "--python", str(venv / "bin" / "python"))
            site = list(venv.glob("lib/python*/site-packages"))
            if len(site) != 1 or not (site[0] / installed).is_file():
                raise RuntimeError(f"uv did not install {installed} into the new venv")
            return seconds
        finally:
            shutil.rmtree(venv, ignore_errors=True)
    return once, cache
