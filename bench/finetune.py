"""Fine-tune figures: publish and install of a fine-tuned resnet18 after its v1, tensor-addressed vs whole files.

The package is resnet18's example (model.onnx, labels.txt, README.md and its nnpm.toml cut
before `[tests]`: no variants, no self-test). v1 is that model; each v2 is the same model
with new random `fc.weight` (1000×512) and `fc.bias` (1000) initializers, as a fine-tune of
the classifier head gives, saved embedded by `onnx.save`. Two packages on one fresh
registry, so the sides never share a package:

- nnpm, `ft-split`: `nnpm publish` (tensor-addressed: every initializer over 64 KiB is its
  own blob), so a v2 uploads only the new graph file (it holds `fc.bias`, under 64 KiB)
  and the new `fc.weight` blob; `nnpm install NAME==V2` into a new env of a home whose
  store holds v1 fetches only those two.
- peer, `ft-whole`: `nnpm publish --no-split-tensors` (the author's layout, one 46.8 MB
  model file), so every v2 uploads the whole model again, and its install downloads it
  again: a full re-upload and re-download of the same version.

v1 of each side is published (and installed in each side's home) once, untimed. Run i then
publishes version 1.1.(i+1) (its fc weights seeded by i, so every run uploads anew; the
warm-up is 1.1.0) on both sides, alternating, and afterwards installs it into a fresh env
of each side's home (whose store holds v1 and the earlier runs' versions, never this one).
Times are wall times of the CLI processes. Bytes come from the registry's access log: the
digests of the `PUT`/`GET /api/v1/blobs/...` lines logged during the command, sized by the
version's manifest (`GET /api/v1/packages/NAME/VERSION`). Checked every run: the CLI says
it published / installed that version, its file and byte counts agree with the log, every
logged digest is the version's, nnpm moved more than 0 bytes and the peer moved the whole
model; in the first timed run, each side's installed model holds that run's fc weights.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.common import Row, child_env, interleaved, log, median, nnpm_cmd, run, timed

# Targets (docs/bench.md, "Fine-tuned versions"). Bytes: 2.2 of 46.8 MB go, the new graph file and
# fc.weight; more would mean an unchanged tensor went again. Times: on 127.0.0.1 the 44.6 MB saved
# cost only ~0.1-0.3 s, and most of each command is the same work on both sides: ~2.9 s of a
# publish (CLI start, pack, the registry validating the graph and measuring the model for up to
# 2 s), ~0.27 s of an install (CLI start, resolve, link). So here publish must never be slower than
# the full re-upload (splitting must cost less than the bytes it saves), and install must show the
# fetch it skipped; each time row's notes give the link speed below which the ratio would reach 0.5.
BYTES_LIMIT = 0.05
PUBLISH_TIME_LIMIT = 1.1   # loopback: the target guards against splitting costing more than noise (docs/bench.md)
INSTALL_TIME_LIMIT = 0.8

SIDES = ("nnpm", "peer")
NAMES = {"nnpm": "ft-split", "peer": "ft-whole"}
PUBLISH_FLAGS = {"nnpm": [], "peer": ["--no-split-tensors"]}
PEER_LABEL = {"publish": "publish --no-split-tensors: full re-upload",
              "install": "install of the whole-file v2: full re-download"}
TUNED = ("fc.weight", "fc.bias")
FILES = ("labels.txt", "README.md")

_BLOB_LINE = re.compile(r'"(PUT|GET) /api/v1/blobs/sha256(?::|%3A)([0-9a-f]{64}) HTTP/1\.1" (\d{3})')
_PUBLISHED = re.compile(r"published (?P<name>\S+) (?P<version>\S+) to \S+ "
                        r"\((?P<summary>(?P<count>\d+) files?, (?P<size>[^,]+) uploaded, \d+ skipped: [^)]*)\)")
_FETCHED = re.compile(r"env (?P<env>\S+): (?P<summary>(?P<count>\d+) blobs? fetched \((?P<size>[^)]*)\), "
                      r"\d+ already in the store \([^)]* not fetched\), \d+ files? linked)")


def _version(i: int) -> str:
    """Run i's v2 (the warm-up, i = -1, is 1.1.0)."""
    return f"1.1.{i + 1}"


# -- the package folders ---------------------------------------------------------------------------------

def _toml(source: Path, name: str, version: str) -> str:
    """resnet18's nnpm.toml cut before [tests] (no self-test, no variants), renamed and re-versioned."""
    text = source.read_text().split("\n[tests]")[0].rstrip() + "\n"
    for old, new in (('name = "resnet18"', f'name = "{name}"'), ('version = "1.0.0"', f'version = "{version}"')):
        if old not in text:
            raise RuntimeError(f"resnet18's nnpm.toml has no {old!r} line to replace")
        text = text.replace(old, new, 1)
    return text


class Versions:
    """The package folders: v1 (resnet18's model) and, per run, a v2 with a new head, one folder per side."""

    def __init__(self, world) -> None:
        import onnx

        self.source = world.examples / "resnet18"
        self.root = world.tmp("finetune-packages")
        self.model = onnx.load(str(self.source / "model.onnx"))
        inits = {t.name: t for t in self.model.graph.initializer}
        if missing := [n for n in TUNED if n not in inits]:
            raise RuntimeError(f"resnet18's graph has no initializer {missing}")
        self.shapes = {n: tuple(inits[n].dims) for n in TUNED}
        self.heads: dict[int, dict[str, np.ndarray]] = {}

    def _folder(self, side: str, version: str) -> Path:
        folder = self.root / f"{NAMES[side]}-{version}"
        folder.mkdir(parents=True)
        for name in FILES:
            shutil.copyfile(self.source / name, folder / name)
        (folder / "nnpm.toml").write_text(_toml(self.source / "nnpm.toml", NAMES[side], version))
        return folder

    def v1(self, side: str) -> Path:
        folder = self._folder(side, "1.0.0")
        shutil.copyfile(self.source / "model.onnx", folder / "model.onnx")
        return folder

    def v2(self, i: int) -> dict[str, Path]:
        """Run i's folders, one per side, holding the same model: fc replaced (seeded by i), saved embedded."""
        import onnx
        from onnx import numpy_helper

        rng = np.random.default_rng(1000 + i)
        head = self.heads[i] = {n: (rng.standard_normal(self.shapes[n]) * 0.01).astype(np.float32) for n in TUNED}
        for init in self.model.graph.initializer:
            if init.name in head:
                init.CopyFrom(numpy_helper.from_array(head[init.name], init.name))
        folders = {side: self._folder(side, _version(i)) for side in SIDES}
        onnx.save(self.model, str(folders["nnpm"] / "model.onnx"))
        shutil.copyfile(folders["nnpm"] / "model.onnx", folders["peer"] / "model.onnx")
        return folders


# -- what went over the wire -----------------------------------------------------------------------------

class AccessLog:
    """The blob requests the registry logged since a mark."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        return self.path.stat().st_size

    def since(self, mark: int, method: str) -> list[str]:
        """Digests of successful `method` (PUT/GET) blob requests logged after `mark`."""
        with open(self.path, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return [m.group(2) for m in _BLOB_LINE.finditer(text) if m.group(1) == method and m.group(3).startswith("2")]


def _files(url: str, name: str, version: str) -> dict[str, dict]:
    """{path: {sha256, size}} of a published version, from the registry's API."""
    r = httpx.get(f"{url}/api/v1/packages/{name}/{version}", timeout=30)
    r.raise_for_status()
    return {f["path"]: f for f in r.json()["manifest"]["files"]}


@dataclass
class Moved:
    """Per side: bytes and blobs moved by each timed run, what the CLI said, problems found."""

    bytes: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in SIDES})
    blobs: dict[str, list[int]] = field(default_factory=lambda: {s: [] for s in SIDES})
    said: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SIDES})
    problems: list[str] = field(default_factory=list)

    def check(self, side: str, i: int, what: str, digests: list[str], files: dict[str, dict],
              said: re.Match | None) -> None:
        """Record one run's log digests against the version's files and the CLI's own report (`said`:
        a match of _PUBLISHED or _FETCHED, None when it did not report this version)."""
        from nnpm.cli.output import human_size

        sizes = {f["sha256"]: f["size"] for f in files.values()}
        if strange := sorted(set(digests) - set(sizes)):
            self.problems.append(f"{what}: the log shows blobs not in the version: {strange[:3]}")
        if len(set(digests)) != len(digests):
            self.problems.append(f"{what}: a blob went over the wire twice")
        moved = sum(sizes.get(d, 0) for d in set(digests))
        if said is None:
            self.problems.append(f"{what}: the CLI did not report a new version")
        elif int(said["count"]) != len(digests) or said["size"] != human_size(moved):
            self.problems.append(f"{what}: the CLI says {said['summary']}; the log shows {len(digests)} "
                                 f"blobs, {human_size(moved)}")
        if side == "nnpm" and moved <= 0:
            self.problems.append(f"{what}: nnpm moved 0 bytes")
        if side == "peer" and files["model.onnx"]["sha256"] not in digests:
            self.problems.append(f"{what}: the peer did not move the whole model.onnx")
        if i >= 0:
            self.bytes[side].append(moved)
            self.blobs[side].append(len(digests))
            if said is not None:
                self.said[side].append(said["summary"])

    def mb(self, side: str) -> list[float]:
        return [b / 1e6 for b in self.bytes[side]]

    def notes(self, verb: str) -> list[str]:
        return [f"{side}: {verb} {sorted(set(self.bytes[side]))} bytes in {sorted(set(self.blobs[side]))} blobs "
                f"per run; the CLI said {sorted(set(self.said[side]))}" for side in SIDES]


def _fixed_cost(times: dict[str, float], moved: dict[str, float]) -> str:
    """What the two medians say when time = fixed + bytes × per-byte: the fixed part, and the link
    speed below which the ratio would reach 0.5 (the bytes' share grows as the link slows)."""
    dt, db = times["peer"] - times["nnpm"], moved["peer"] - moved["nnpm"]
    if dt <= 0 or db <= 0:
        return "the peer was not slower here: no per-byte cost can be told apart from the noise"
    per_byte = dt / db
    fixed = times["nnpm"] - moved["nnpm"] * per_byte
    spare = moved["peer"] - 2 * moved["nnpm"]
    if fixed <= 0 or spare <= 0:
        return f"{db / 1e6:.1f} MB fewer saved {dt:.2f} s ({db / dt / 1e6:.0f} MB/s here)"
    need = fixed / spare - per_byte      # seconds per byte the link itself must add for a 0.5 ratio
    where = f"slower than {1 / need / 1e6:.0f} MB/s ({8 / need / 1e6:.0f} Mbit/s)" if need > 0 else "of any speed"
    return (f"{db / 1e6:.1f} MB fewer saved {dt:.2f} s ({db / dt / 1e6:.0f} MB/s here); the other "
            f"{fixed:.2f} s are the same work on both sides; 0.5x would hold over a link {where}")


def _paired(times: dict[str, list[float]]) -> str:
    """The ratio of each back-to-back pair of runs: drift that hits one run hits its pair too."""
    ratios = [n / p for n, p in zip(times["nnpm"], times["peer"])]
    return f"ratio per pair of runs {[round(r, 2) for r in ratios]}, median {median(ratios):.2f}"


def _check_head(home: Path, env: str, name: str, version: str, head: dict[str, np.ndarray]) -> list[str]:
    """Problems with an installed v2: its model must hold that run's fc weights."""
    import onnx
    from onnx import numpy_helper

    path = home / "envs" / env / "pkgs" / f"{name}-{version}" / "files" / "model.onnx"
    if not path.is_file():
        return [f"{name} {version}: no {path.relative_to(home)} after the install"]
    # onnx.load refuses external data files with several hard links (the env's are links of the
    # store), so a tensor-addressed graph's weights/ files are read here.
    model = onnx.load(str(path), load_external_data=False)
    got = {}
    for t in model.graph.initializer:
        if t.name in head:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                info = {e.key: e.value for e in t.external_data}
                with open(path.parent / info["location"], "rb") as f:
                    f.seek(int(info.get("offset", 0)))
                    t.raw_data = f.read(int(info["length"])) if "length" in info else f.read()
                del t.external_data[:]
                t.data_location = onnx.TensorProto.DEFAULT
            got[t.name] = numpy_helper.to_array(t)
    if sorted(got) != sorted(head) or not all(np.array_equal(got[n], head[n]) for n in head):
        return [f"{name} {version}: the installed model does not hold that version's fc weights"]
    return []


# -- the group ----------------------------------------------------------------------------------------

@dataclass
class _Context:
    """What every timed run needs: the registry, its log, the homes and environments, the versions."""

    reg: Any
    access: "AccessLog"
    pub_env: dict[str, str]
    homes: dict[str, Path]
    inst_env: dict[str, dict[str, str]]
    versions: "Versions"
    folders: dict = field(default_factory=dict)
    v1_files: dict = field(default_factory=dict)


def _prepare(world, runs: int) -> _Context:
    """A registry with v1 of both sides published, and installed once into each side's home."""
    reg = world.start_registry("finetune-registry")
    author = world.tmp("finetune-author")
    pub_env = child_env(NNPM_HOME=str(author), NNPM_REGISTRY=reg.url, NNPM_TOKEN=reg.add_user("finetuner", author))
    homes = {side: world.tmp(f"finetune-home-{side}") for side in SIDES}
    ctx = _Context(reg, AccessLog(reg.log_path), pub_env, homes,
                   {side: child_env(NNPM_HOME=str(homes[side]), NNPM_REGISTRY=reg.url) for side in SIDES},
                   Versions(world))
    log(f"finetune: v1 of {NAMES['nnpm']} (tensor-addressed) and {NAMES['peer']} (--no-split-tensors), "
        "published and installed once")
    for side in SIDES:
        run([*nnpm_cmd(), "publish", "--no-progress", *PUBLISH_FLAGS[side], str(ctx.versions.v1(side))], env=pub_env)
        run([*nnpm_cmd(), "install", "-q", f"{NAMES[side]}==1.0.0"], env=ctx.inst_env[side])
    ctx.v1_files = {side: len(_files(reg.url, NAMES[side], "1.0.0")) for side in SIDES}
    ctx.folders = {i: ctx.versions.v2(i) for i in range(-1, runs)}   # made before anything is timed
    return ctx


def _time_publishes(ctx: _Context, runs: int) -> tuple[dict[str, list[float]], "Moved"]:
    uploaded = Moved()

    def publisher(side: str):
        def once(i: int) -> float:
            name, version = NAMES[side], _version(i)
            mark = ctx.access.mark()
            seconds, proc = timed([*nnpm_cmd(), "publish", "--no-progress", *PUBLISH_FLAGS[side],
                                   str(ctx.folders[i][side])], env=ctx.pub_env)
            said = _PUBLISHED.search(proc.stdout + proc.stderr)
            if said and (said["name"], said["version"]) != (name, version):
                said = None
            uploaded.check(side, i, f"publish {name} {version}", ctx.access.since(mark, "PUT"),
                           _files(ctx.reg.url, name, version), said)
            return seconds
        return once

    log(f"finetune: publish of {runs + 1} fine-tuned versions (1.1.0 warms up), "
        "tensor-addressed vs --no-split-tensors, alternating")
    pub = dict(zip(SIDES, interleaved([publisher(side) for side in SIDES], runs)))
    for pair in ctx.folders.values():
        for folder in pair.values():
            shutil.rmtree(folder, ignore_errors=True)
    return pub, uploaded


def _time_installs(ctx: _Context, runs: int) -> tuple[dict[str, list[float]], "Moved"]:
    fetched = Moved()

    def installer(side: str):
        def once(i: int) -> float:
            name, version, env = NAMES[side], _version(i), f"tuned{i + 1}"
            mark = ctx.access.mark()
            seconds, proc = timed([*nnpm_cmd(), "install", "-q", "--env", env, f"{name}=={version}"],
                                  env=ctx.inst_env[side])
            out = proc.stdout + proc.stderr
            said = _FETCHED.search(out)
            if f"installed {name} {version}" not in out or (said and said["env"] != env):
                said = None
            fetched.check(side, i, f"install {name} {version}", ctx.access.since(mark, "GET"),
                          _files(ctx.reg.url, name, version), said)
            if i == 0:
                fetched.problems.extend(_check_head(ctx.homes[side], env, name, version, ctx.versions.heads[i]))
            return seconds
        return once

    log("finetune: install of each into a new env of a home whose store holds v1, alternating")
    return dict(zip(SIDES, interleaved([installer(side) for side in SIDES], runs))), fetched


def bench(world, runs: int) -> list[Row]:
    """Publish and install of fine-tuned resnet18 versions after v1: tensor-addressed vs whole-file."""
    ctx = _prepare(world, runs)
    pub, uploaded = _time_publishes(ctx, runs)
    v2 = {side: _files(ctx.reg.url, NAMES[side], _version(0)) for side in SIDES}
    inst, fetched = _time_installs(ctx, runs)
    model = (ctx.versions.source / "model.onnx").stat().st_size
    what = (f"v2 = resnet18 ({model / 1e6:.1f} MB model.onnx) with new fc.weight (1000x512, 2.0 MB) and fc.bias "
            f"(1000); {NAMES['nnpm']}: {ctx.v1_files['nnpm']} files in v1, {len(v2['nnpm'])} in v2 "
            f"({sum(f['size'] for f in v2['nnpm'].values()):,} bytes); {NAMES['peer']}: {len(v2['peer'])} files "
            f"({sum(f['size'] for f in v2['peer'].values()):,} bytes)")
    return _rows(what, pub, uploaded, inst, fetched)


def _rows(what: str, pub, uploaded: "Moved", inst, fetched: "Moved") -> list[Row]:
    def medians(d: dict[str, list[float]]) -> dict[str, float]:
        return {side: median(d[side]) for side in SIDES}

    pub_t, inst_t = medians(pub), medians(inst)
    up_b = medians({s: uploaded.bytes[s] for s in SIDES})
    got_b = medians({s: fetched.bytes[s] for s in SIDES})
    rows = [
        Row("finetune-publish-bytes", "fine-tuned resnet18 v2 after v1: bytes uploaded", median(uploaded.mb("nnpm")),
            "MB", peer=median(uploaded.mb("peer")), peer_label=PEER_LABEL["publish"], op="<=", limit=BYTES_LIMIT,
            runs=uploaded.mb("nnpm"), peer_runs=uploaded.mb("peer"), notes=[what, *uploaded.notes("uploaded")]),
        Row("finetune-publish-time", "fine-tuned resnet18 v2 after v1: publish", pub_t["nnpm"], "s",
            peer=pub_t["peer"], peer_label=PEER_LABEL["publish"], op="<=", limit=PUBLISH_TIME_LIMIT,
            runs=pub["nnpm"], peer_runs=pub["peer"], notes=[_paired(pub), _fixed_cost(pub_t, up_b)]),
        Row("finetune-install-bytes", "fine-tuned resnet18 v2 after v1: bytes fetched", median(fetched.mb("nnpm")),
            "MB", peer=median(fetched.mb("peer")), peer_label=PEER_LABEL["install"], op="<=", limit=BYTES_LIMIT,
            runs=fetched.mb("nnpm"), peer_runs=fetched.mb("peer"), notes=fetched.notes("fetched")),
        Row("finetune-install-time", "fine-tuned resnet18 v2 after v1: install", inst_t["nnpm"], "s",
            peer=inst_t["peer"], peer_label=PEER_LABEL["install"], op="<=", limit=INSTALL_TIME_LIMIT,
            runs=inst["nnpm"], peer_runs=inst["peer"], notes=[_paired(inst), _fixed_cost(inst_t, got_b)]),
    ]
    for row in rows:
        problems = uploaded.problems if "publish" in row.key else fetched.problems
        if problems:
            row.check_failed = "; ".join(dict.fromkeys(problems))
    return rows
