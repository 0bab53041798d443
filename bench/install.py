"""Install figures: cold install of resnet18 against curl + sha256sum, pip and uv; warm install against uv.

- cold: a fresh NNPM_HOME per run, `nnpm install resnet18 --registry URL`, wall time of the CLI
  process (resolve, fetch the reference's files = 46.8 MB: the graph, labels, README, the
  self-test and one file per large tensor, 4 at a time; verify, link, write the lock).
- peer 1, the physical limit: `curl --parallel --parallel-max 4 -o FILE URL/api/v1/blobs/sha256:X ...`
  of the same files from the same server, then `sha256sum` of them (a Python stand-in,
  labelled as such, when either is missing).
- peer 2, what people do today: the same files in a wheel on a PEP 503 `/simple/` index served
  by `python -m http.server`, `pip install --no-deps --no-cache-dir --target TMP`.
- peer 3, the fastest installer people use: `uv pip install --no-deps --no-cache --target TMP` of
  the same wheel from the same index (bench/uvpeer.py).
- warm: a home whose store already holds resnet18; `nnpm install --env NEW resnet18`; checks
  that the server logged no blob GET, the CLI reports 0 blobs fetched, and every installed file
  is a hard link of its store blob (same inode, st_nlink > 1). Its peer: `uv pip install` of the
  wheel into a new venv (made before the clock starts) with a cache that already holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench import uvpeer
from bench.common import (
    PY,
    Row,
    child_env,
    free_port,
    interleaved,
    log,
    median,
    nnpm_cmd,
    repeat,
    stop_process,
    timed,
)
from bench.curlpeer import fetch_and_hash, peer_label
from bench.wheels import write_wheel
from bench.world import World

WHEEL_NAME = "nnpm-model-resnet18"
WHEEL_MODULE = "nnpm_model_resnet18"
WHEEL_VERSION = "1.0.0"
_FETCHED = re.compile(r"(\d+) blobs? fetched \(([^)]*)\), (\d+) already in the store[^,]*, (\d+) files? linked")


def _rm(path: Path) -> None:
    # Store blobs are read-only files, but their folders are writable: rmtree can unlink them.
    shutil.rmtree(path, ignore_errors=True)


# -- nnpm ----------------------------------------------------------------------------------------

def nnpm_install(world: World, home: Path, *args: str) -> tuple[float, str]:
    """Wall time of `nnpm install ... resnet18` with NNPM_HOME=home, and its output."""
    seconds, proc = timed([*nnpm_cmd(), "install", *args, "resnet18", "--registry", world.registry.url],
                          env=child_env(NNPM_HOME=str(home)))
    return seconds, proc.stdout + proc.stderr


def cold_install(world: World) -> float:
    home = world.tmp("cold-home")
    try:
        seconds, out = nnpm_install(world, home)
        m = _FETCHED.search(out)
        if not m or m.group(1) == "0" or m.group(3) != "0":
            raise RuntimeError(f"a cold install should fetch every blob; it said:\n{out}")
        return seconds
    finally:
        _rm(home)


# -- curl + sha256sum ----------------------------------------------------------------------------

def curl_peer(world: World) -> tuple[Callable[[int], float], str]:
    """(run(i) -> seconds, label) for downloading resnet18's files (4 at a time, as nnpm) and hashing them."""

    def once(_i: int) -> float:
        folder = world.tmp("curl")
        try:
            download, digest, _ = fetch_and_hash(world.registry.url, world.model_files, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return download + digest
    return once, peer_label()


# -- pip and a wheel on a local PEP 503 index ----------------------------------------------------------

def build_wheel(package: Path, out: Path) -> Path:
    """A wheel (PEP 427) holding resnet18's files (model.onnx, labels.txt, README.md), made with zipfile."""
    files = {
        f"{WHEEL_MODULE}/__init__.py": (b'"""resnet18 weights as a Python package."""\n'
                                        b"from pathlib import Path\n"
                                        b'MODEL = Path(__file__).with_name("model.onnx")\n'
                                        b'LABELS = Path(__file__).with_name("labels.txt")\n'),
        **{f"{WHEEL_MODULE}/{n}": (package / n).read_bytes() for n in ("model.onnx", "labels.txt", "README.md")},
    }
    return write_wheel(out, WHEEL_NAME, WHEEL_VERSION, "ResNet-18 weights (nnpm bench)", files)


def make_index(root: Path, wheel: Path) -> None:
    """root/simple/ (PEP 503) with one project linking to root/files/<wheel>#sha256=..."""
    files = root / "files"
    files.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(wheel, files / wheel.name)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    project = root / "simple" / WHEEL_NAME
    project.mkdir(parents=True, exist_ok=True)
    (root / "simple" / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="{WHEEL_NAME}/">{WHEEL_NAME}</a></body></html>\n')
    (project / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a>'
        "</body></html>\n")


class StaticServer:
    """`python -m http.server` over a folder, on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([PY, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root),
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(self.url + "/simple/", timeout=1)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("python -m http.server did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)


def pip_peer(world: World, index_url: str) -> Callable[[int], float]:
    env = child_env(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")

    def install(_i: int) -> float:
        target = world.tmp("pip-target")
        try:
            seconds, _ = timed([PY, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "--index-url", index_url,
                                "--target", str(target), "--quiet", WHEEL_NAME], env=env)
            if not (target / WHEEL_MODULE / "model.onnx").is_file():
                raise RuntimeError("pip did not install model.onnx")
            return seconds
        finally:
            _rm(target)
    return install


# -- warm install ------------------------------------------------------------------------------

def _check_links(home: Path, env: str) -> list[str]:
    """Problems with the env's files: each must share its inode with the store's blob."""
    problems = []
    pkg = home / "envs" / env / "pkgs" / "resnet18-1.0.0"
    lock = json.loads((home / "envs" / env / "nnpm.lock").read_text())
    for f in lock["packages"]["resnet18"]["files"]:
        installed = os.stat(pkg / "files" / f["path"])   # the package's own files; nnpm's records beside
        blob = os.stat(home / "store" / "v1" / "sha256" / f["sha256"][:2] / f["sha256"])
        if installed.st_ino != blob.st_ino or installed.st_nlink < 2:
            problems.append(f"{f['path']} is not a hard link of its store blob")
    return problems


def warm_install(world: World, runs: int, peer: Callable[[int], float] | None) -> tuple[Row, list[float]]:
    """The warm-install row (absolute target, checks below) and the peer's times, interleaved with it."""
    home = world.tmp("warm-home")
    nnpm_install(world, home)                       # fills the store (env "default")
    problems: list[str] = []
    gets, fetched = [], []

    def once(i: int) -> float:
        before = world.registry.blob_gets()
        env = f"warm{i + 10}"
        seconds, out = nnpm_install(world, home, "--env", env)
        gets.append(world.registry.blob_gets() - before)
        m = _FETCHED.search(out)
        fetched.append(f"{m.group(1)} blobs ({m.group(2)})" if m else f"? ({out.strip()[-200:]})")
        problems.extend(_check_links(home, env))
        return seconds

    if peer is None:
        times, peer_times = repeat(once, runs), []
    else:
        times, peer_times = interleaved([once, peer], runs)
    notes = [f"blob GETs on the server per run: {gets}",
             f"CLI says fetched: {sorted(set(fetched))}",
             "hard links: " + ("every file shares its inode with the store (st_nlink > 1)" if not problems
                               else "; ".join(sorted(set(problems))))]
    row = Row("warm-install", "warm install resnet18 into a new env", median(times), "s",
              op="<=", limit=0.2, absolute=True, runs=times, notes=notes)
    if any(gets) or any(not f.startswith("0 blobs") for f in fetched) or problems:
        row.check_failed = "the warm install fetched or copied bytes"
    return row, peer_times


def bench(world: World, runs: int) -> list[Row]:
    """The install group's rows."""
    log("install: cold install vs curl + sha256sum")
    curl, curl_label = curl_peer(world)
    cold, peer = interleaved([lambda i: cold_install(world), curl], runs)
    size = sum(size for _, size in world.model_files)   # what the install fetches: the reference's files
    rows = [Row("cold-vs-curl", f"cold install resnet18 ({size / 1e6:.1f} MB)", median(cold), "s",
                peer=median(peer), peer_label=curl_label, op="<=", limit=1.3, runs=cold, peer_runs=peer)]

    log("install: cold install vs pip and vs uv, each installing a wheel from a local /simple/ index")
    site = world.tmp("pypi")
    wheel = build_wheel(world.examples / "resnet18", world.tmp("wheel"))
    make_index(site, wheel)
    uv = uvpeer.uv_binary()
    server = StaticServer(site)
    try:
        index = server.url + "/simple/"
        pip = pip_peer(world, index)
        cold2, pip_times = interleaved([lambda i: cold_install(world), pip], runs)
        wheel_note = (f"wheel {wheel.stat().st_size / 1e6:.1f} MB, deflated like bdist_wheel, "
                      "served by python -m http.server")
        rows.append(Row("cold-vs-pip", "cold install resnet18 (again, vs pip)", median(cold2), "s",
                        peer=median(pip_times), peer_label="pip install of a wheel, local /simple/",
                        op="<=", limit=0.5, runs=cold2, peer_runs=pip_times, notes=[wheel_note]))
        installed = f"{WHEEL_MODULE}/model.onnx"
        if uv is None:
            log("install: no uv beside the interpreter or on PATH: the uv rows are skipped ('pip install uv')")
            rows.append(warm_install(world, runs, None)[0])
            return rows
        cold3, uv_cold = interleaved([lambda i: cold_install(world),
                                      uvpeer.cold(uv, world.tmp, index, WHEEL_NAME, installed)], runs)
        rows.append(Row("cold-vs-uv", "cold install resnet18 (again, vs uv)", median(cold3), "s",
                        peer=median(uv_cold), peer_label="uv pip install --no-cache of the wheel",
                        op="<=", limit=1.0, runs=cold3, peer_runs=uv_cold,
                        notes=[wheel_note, f"{uvpeer.uv_version(uv)}, --no-deps --no-cache --target NEW"]))
        log("install: warm install into a new environment, vs uv with a warm cache into a new venv")
        uv_warm, _cache = uvpeer.warm(uv, world.tmp, index, WHEEL_NAME, installed)
        warm, uv_times = warm_install(world, runs, uv_warm)
    finally:
        server.stop()
    rows.append(warm)
    rows.append(Row("warm-vs-uv", "warm install resnet18 into a new env, vs uv", warm.value, "s",
                    peer=median(uv_times), peer_label="uv pip install, warm cache, new venv",
                    op="<=", limit=2.0, runs=warm.runs, peer_runs=uv_times,
                    notes=["the same nnpm runs as the row above; uv's venv is made before its clock starts"]))
    return rows
