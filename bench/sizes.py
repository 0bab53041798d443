"""Size figures: how install and load cost grow with the model, 47 MB -> 500 MB -> 2.5 GB.

Each size is a generated model (bench/bigmodel.py: a chain of D×D float32 MatMuls, weights
as ONNX external data), published once to a registry of its own started with `--no-measure`
(publishing is not what is measured here, and measuring a 2.5 GB model at publish only adds
set-up time). `nnpm publish` splits it tensor-addressed: the graph plus one blob per weight.

- cold-<size>: a fresh NNPM_HOME per run, `nnpm install NAME --registry URL`, wall time of the
  CLI process; checked: it says every blob was fetched and none was in the store, and the
  server logged one blob GET per blob. Peer: `curl --parallel --parallel-max 4 -o ...` of
  exactly those blobs from the same server, then `sha256sum` of them (digests checked), both
  wall times added. The two alternate (bench.common.interleaved).
- load-<size> (47 MB, 2.5 GB): in a fresh interpreter per run, from before `import numpy,
  nnpm` to after the first inference, `nnpm.load(NAME)` from the home of the last install,
  against a plain onnxruntime CPU session on the installed model.onnx. The first timed
  pair saves both outputs, which must be equal (np.array_equal).
- client-rss-2500mb: the peak RSS of the `nnpm install` process at 2.5 GB: ru_maxrss from
  `os.wait4` on it (that process and any helper it waited for), the highest over the timed
  installs of that size. A small launcher forks it (see LAUNCHER: a child of the bench itself
  would report the bench's own peak).

Big sizes get fewer runs (runs_for); every generated folder, home and registry is removed as
soon as its size is done. A size that does not fit on the disk, or 2.5 GB when `quick`, gives
*skipped rows* (Row.skipped: "SKIPPED" in the table, neither met nor missed), their notes saying
why and what the target would be.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.bigmodel import Shape, shape_for, write_package
from bench.common import (
    PY,
    Registry,
    Row,
    child_env,
    interleaved,
    log,
    median,
    nnpm_cmd,
    run,
    timed_rss,
)
from bench.curlpeer import fetch_and_hash
from bench.world import World

MB = 1e6
COPIES = 4          # source folder (or its split copy), registry store, client store, peer download
RSS_LIMIT = 100.0   # MB, the client's peak RSS installing 2.5 GB
_FETCHED = re.compile(r"(\d+) blobs? fetched \([^)]*\), (\d+) already in the store")


@dataclass(frozen=True)
class Size:
    """One model size: its row-key suffix, target bytes, layer width and cold-install target ratio."""

    tag: str
    target: float
    dim: int
    limit: float
    load: bool = False              # also measure nnpm.load + first run at this size

    @property
    def shape(self) -> Shape:
        return shape_for(int(self.target), self.dim)


SIZES = [Size("47mb", 47e6, 1536, 1.3, load=True), Size("500mb", 500e6, 2048, 1.1),
         Size("2500mb", 2.5e9, 4096, 1.05, load=True)]
ORDER = ["cold-47mb", "cold-500mb", "cold-2500mb", "load-47mb", "load-2500mb", "client-rss-2500mb"]

def runs_for(size: Size, runs: int, quick: bool) -> tuple[int, int]:
    """(timed runs, warm-up runs) at a size: fewer where one run takes seconds."""
    if size.tag == "47mb":
        return runs, 1
    if size.tag == "500mb":
        return max(2, runs // 2), 1
    return (1 if quick else 2), 1


def human(n: float) -> str:
    """Bytes as MB below 1 GB, else GB (decimal, as nnpm prints them)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / MB:.1f} MB"


# -- set-up: a generated package on a registry of its own -------------------------------------------

@dataclass
class Published:
    """A generated package on its registry, and the blobs an install of it fetches."""

    name: str
    registry: Registry
    files: list[tuple[str, int]]    # (sha256, size) of the reference's files
    folders: list[Path] = field(default_factory=list)   # everything to remove when the size is done

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self.files)

    def close(self) -> None:
        """Stop the registry and remove its data, the author's home and any generated folder."""
        self.registry.stop()
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)


def publish_generated(world: World, size: Size) -> Published:
    """Generate `size`'s package, publish it to a new registry, remove the source folder."""
    name = f"gen-{size.tag}"
    reg = world.start_registry(f"reg-{size.tag}", ["--no-measure"])
    author = world.tmp(f"author-{size.tag}")
    pub = Published(name, reg, [], [reg.data_dir.parent, author])
    try:
        source = world.tmp(f"src-{size.tag}")
        pub.folders.append(source)
        start = time.perf_counter()
        write_package(source / name, name, size.shape, seed=len(size.tag))
        made = time.perf_counter() - start
        env = child_env(NNPM_HOME=str(author), NNPM_REGISTRY=reg.url, NNPM_TOKEN=reg.add_user("sizes", author))
        start = time.perf_counter()
        run([*nnpm_cmd(), "publish", "--no-progress", str(source / name)], env=env, timeout=1800)
        log(f"sizes: {name} generated in {made:.1f} s, published in {time.perf_counter() - start:.1f} s")
        shutil.rmtree(source)       # the registry holds it now; the disk needs the room
        pub.files = manifest_files(reg.url, name)
        return pub
    except BaseException:
        pub.close()
        raise


def manifest_files(url: str, name: str, version: str = "1.0.0") -> list[tuple[str, int]]:
    """(sha256, size) of every file an install of NAME's reference fetches, from the registry's manifest."""
    from nnpm.format.manifest import Manifest

    data = httpx.get(f"{url}/api/v1/packages/{name}/{version}", timeout=60).json()
    return [(f.sha256, f.size) for f in Manifest.from_dict(data["manifest"]).files_for("reference")]


# -- cold install --------------------------------------------------------------------------------

class ColdInstall:
    """Both sides of one size's cold install, as run(i) -> seconds callables; keeps the last nnpm home."""

    def __init__(self, world: World, pub: Published) -> None:
        self.world, self.pub = world, pub
        self.home: Path | None = None           # the last install's home: what the load figure loads from
        self.rss: list[int] = []                # bytes, one per timed install
        self.problems: list[str] = []
        self.peer_parts: list[tuple[float, float]] = []    # (download, hash) seconds of each timed peer run
        self.peer_label = ""

    def nnpm(self, i: int) -> float:
        """One cold install into a fresh home (the previous home removed first, for the disk)."""
        self.drop_home()
        self.home = self.world.tmp(f"home-{self.pub.name}")
        before = self.pub.registry.blob_gets()
        seconds, rss, out = timed_rss([*nnpm_cmd(), "install", self.pub.name, "--registry", self.pub.registry.url],
                                      child_env(NNPM_HOME=str(self.home)))
        gets = self.pub.registry.blob_gets() - before
        found, blobs = _FETCHED.search(out), len(self.pub.files)
        if not found or int(found.group(1)) != blobs or found.group(2) != "0" or gets != blobs:
            self.problems.append(f"run {i}: expected {blobs} blobs fetched and GETs, got {gets} GETs; "
                                 f"it said: {out.strip()[-300:]}")
        if i >= 0:      # the warm-up's RSS is not a timed run's
            self.rss.append(rss)
        return seconds

    def peer(self, i: int) -> float:
        """curl + sha256sum of the same blobs into a fresh folder, removed after."""
        folder = self.world.tmp(f"peer-{self.pub.name}")
        try:
            download, digest, self.peer_label = fetch_and_hash(self.pub.registry.url, self.pub.files, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if i >= 0:
            self.peer_parts.append((download, digest))
        return download + digest

    def drop_home(self) -> None:
        """Remove the kept home (store blobs are read-only files in writable folders: rmtree unlinks them)."""
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None


def cold_row(size: Size, cold: ColdInstall, ours: list[float], peer: list[float]) -> Row:
    """The cold-<size> row, with sizes, speeds and per-pair ratios in its notes."""
    nbytes, blobs = cold.pub.nbytes, len(cold.pub.files)
    shape = size.shape
    row = Row(f"cold-{size.tag}", f"cold install, generated {human(nbytes)} model ({blobs} blobs)",
              median(ours), "s", peer=median(peer), peer_label=cold.peer_label, op="<=", limit=size.limit,
              runs=ours, peer_runs=peer)
    row.notes += [f"{nbytes:,} bytes in {blobs} files/blobs (graph + {shape.layers} weights of "
                  f"{shape.dim}x{shape.dim} float32, {shape.tensor_bytes:,} bytes each)",
                  f"nnpm {nbytes / row.value / MB:.0f} MB/s, peer {nbytes / row.peer / MB:.0f} MB/s (medians)",
                  "per-pair ratios: " + ", ".join(f"{a / b:.2f}" for a, b in zip(ours, peer)),
                  f"peer's parts (medians): download {median([d for d, _ in cold.peer_parts]):.2f} s, "
                  f"hash {median([h for _, h in cold.peer_parts]):.2f} s",
                  "client peak RSS per install: " + ", ".join(f"{r / MB:.0f} MB" for r in cold.rss)]
    if cold.problems:
        row.check_failed = "a cold install did not fetch every blob: " + cold.problems[0]
    return row


# -- nnpm.load + first run -----------------------------------------------------------------------

NNPM_LOAD = """\
import sys, time
t0 = time.perf_counter()
import numpy as np
import nnpm
m = nnpm.load(sys.argv[1])
x = np.random.default_rng(0).random((1, int(sys.argv[2])), dtype=np.float32)
y = m(x)
t1 = time.perf_counter()
if len(sys.argv) > 3:
    np.save(sys.argv[3], y)
print(t1 - t0)
"""

ORT_LOAD = """\
import sys, time
t0 = time.perf_counter()
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random((1, int(sys.argv[2])), dtype=np.float32)
y = s.run(None, {s.get_inputs()[0].name: x})[0]
t1 = time.perf_counter()
if len(sys.argv) > 3:
    np.save(sys.argv[3], y)
print(t1 - t0)
"""


def load_row(world: World, size: Size, cold: ColdInstall, runs: int, warmup: int) -> Row:
    """nnpm.load + first run against a plain onnxruntime session on the installed model.onnx."""
    import numpy as np

    assert cold.home is not None
    name, dim = cold.pub.name, str(size.shape.dim)
    model = cold.home / "envs" / "default" / "pkgs" / f"{name}-1.0.0" / "files" / "model.onnx"
    env = child_env(NNPM_HOME=str(cold.home))
    outs = world.tmp(f"outputs-{size.tag}")

    def inner(code: str, arg: str, side: str) -> Callable[[int], float]:
        def once(i: int) -> float:
            save = [str(outs / f"{side}.npy")] if i == 0 else []   # the first timed pair: outputs compared
            return float(run([PY, "-c", code, arg, dim, *save], env=env, timeout=600).stdout.split()[-1])
        return once

    os.sync()   # the installs' writeback must not land on one side's timed loads
    try:
        # Each side in turn goes first: a 2.5 GB process leaves memory for the next one to reclaim.
        ours, peer = interleaved([inner(NNPM_LOAD, name, "nnpm"), inner(ORT_LOAD, str(model), "ort")], runs, warmup,
                                 swap=True)
        same = np.array_equal(np.load(outs / "nnpm.npy"), np.load(outs / "ort.npy"))
    finally:
        shutil.rmtree(outs, ignore_errors=True)
    row = Row(f"load-{size.tag}", f"nnpm.load + first run, generated {human(cold.pub.nbytes)} model",
              median(ours), "s", peer=median(peer), peer_label="onnxruntime session + first run",
              op="<=", limit=1.05, runs=ours, peer_runs=peer,
              notes=["per-pair ratios: " + ", ".join(f"{a / b:.2f}" for a, b in zip(ours, peer)),
                     f"outputs of the first timed pair {'equal' if same else 'DIFFER'} (np.array_equal)"])
    if not same:
        row.check_failed = "nnpm.load and onnxruntime gave different outputs"
    return row


def rss_row(cold: ColdInstall) -> Row:
    """The client's peak RSS installing the 2.5 GB model: the highest of its timed installs."""
    peak = max(cold.rss) / MB
    return Row("client-rss-2500mb", f"nnpm install peak RSS, generated {human(cold.pub.nbytes)} model", peak, "MB",
               op="<=", limit=RSS_LIMIT, absolute=True, runs=[r / MB for r in cold.rss],
               notes=["ru_maxrss from os.wait4 on the install process, highest of the timed installs: "
                      + ", ".join(f"{r / MB:.1f} MB" for r in cold.rss)])


# -- the group -----------------------------------------------------------------------------------

def skipped_rows(size: Size, why: str) -> list[Row]:
    """Rows for a size not measured: skipped, so neither met nor missed."""
    specs = [(f"cold-{size.tag}", "cold install", "s", f"<= {size.limit:g}x curl + sha256sum")]
    if size.load:
        specs.append((f"load-{size.tag}", "nnpm.load + first run", "s", "<= 1.05x an onnxruntime session"))
    if size.tag == "2500mb":
        specs.append(("client-rss-2500mb", "nnpm install peak RSS", "MB", f"<= {RSS_LIMIT:g} MB"))
    return [Row(key, f"{what}, generated {human(size.shape.nbytes)} model", 0.0, unit, skipped=True,
                notes=[f"skipped: {why}", f"target when measured: {target}"]) for key, what, unit, target in specs]


def measure_size(world: World, size: Size, runs: int, quick: bool) -> list[Row]:
    """Every row of one size, or its skipped rows when the disk lacks room for it twice over."""
    need, free = 2 * COPIES * size.shape.nbytes, shutil.disk_usage(world.root).free
    if free < need:
        return skipped_rows(size, f"needs {need / 1e9:.1f} GB free ({COPIES} copies of {human(size.shape.nbytes)}, "
                                  f"twice over), {free / 1e9:.1f} GB free")
    timed_runs, warmup = runs_for(size, runs, quick)
    started = time.perf_counter()
    log(f"sizes: {size.tag}: generating and publishing {human(size.shape.nbytes)}, "
        f"then {timed_runs} timed runs after {warmup} warm-up")
    pub = publish_generated(world, size)
    cold = ColdInstall(world, pub)
    try:
        ours, peer = interleaved([cold.nnpm, cold.peer], timed_runs, warmup)
        rows = [cold_row(size, cold, ours, peer)]
        if size.load:
            # A load is cheap beside an install, and at 2.5 GB one pair can differ 2x either way (the VM's
            # page cache and disk): more pairs than the installs get.
            rows.append(load_row(world, size, cold, max(timed_runs, 3 if quick else 5), warmup))
        if size.tag == "2500mb":
            rows.append(rss_row(cold))
        return rows
    finally:
        cold.drop_home()
        pub.close()
        log(f"sizes: {size.tag} done in {time.perf_counter() - started:.0f} s")


def bench(world: World, runs: int, quick: bool = False) -> list[Row]:
    """The size group's rows: cold install at 47 MB, 500 MB and 2.5 GB, load at 47 MB and 2.5 GB, RSS at 2.5 GB."""
    rows: list[Row] = []
    for size in SIZES:
        if quick and size.tag == "2500mb":
            rows += skipped_rows(size, "quick run: 2.5 GB is left out")
            continue
        rows += measure_size(world, size, runs, quick)
    return sorted(rows, key=lambda r: ORDER.index(r.key))
