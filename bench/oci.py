"""OCI figure: install of resnet18 from a local OCI registry, nnpm against `oras pull` of the same artifact.

The registry is the CNCF distribution server (Debian's `docker-registry`, 2.8), started here
on 127.0.0.1 at a free port with filesystem storage under the bench's temp folder, and
stopped at the end of the group. The world's built resnet18 example is pushed once,
untimed, with `nnpm push oci://127.0.0.1:PORT/bench/resnet18 FOLDER` (one ModelPack
artifact per variant; tags `1.0.0`, `1.0.0-VARIANT`).

- nnpm: each run, a fresh NNPM_HOME (an empty store) and `nnpm install -q
  oci://127.0.0.1:PORT/bench/resnet18:1.0.0` (the CLI process): read the manifest, check the
  config against the ModelPack schema and nnpm's manifest against its layer, fetch every
  layer into the store verifying its sha256, link the files into env `default`.
- peer: each run, `oras pull` of the same reference into a fresh folder. With an `oras`
  binary on PATH that is `oras pull --plain-http`; otherwise (no `oras` CLI here) oras-py's
  `OrasClient.pull` in a Python subprocess, so both sides pay an interpreter start. oras-py
  writes each layer under its `org.opencontainers.image.title` and checks nothing: no digest,
  no size, no config.

Both sides' Docker config is an empty folder (DOCKER_CONFIG), so no caller credentials are
read, and 127.0.0.1 is in NO_PROXY. Checked: every nnpm run says `installed resnet18 1.0.0`
and fetched over 40 MB; in the first timed run the peer's folder holds exactly the artifact's
layers (path, size, sha256) and nnpm's env holds every file layer (same bytes).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import httpx

from bench.common import PY, Row, child_env, free_port, interleaved, log, median, nnpm_cmd, run, stop_process, timed

BINARY = "/usr/bin/docker-registry"
REPO = "bench/resnet18"
TAG = "1.0.0"
# Target (docs/bench.md, "Install from an OCI registry"): nnpm does strictly more than the peer (verifies
# every layer's sha256, checks the config against the ModelPack schema and its manifest against its layer,
# records the install and links the files into an env); oras-py only writes the bytes. Both move the same
# 47 MB over the same library (requests), so nnpm may cost at most half as much again.
LIMIT = 1.5
MIN_BYTES = 40e6
LOOPBACK = "127.0.0.1,localhost"
MANIFEST_ACCEPT = "application/vnd.oci.image.manifest.v1+json"
TITLE = "org.opencontainers.image.title"
NNPM_MANIFEST = "org.nnpm.manifest"   # the layer holding nnpm's manifest.json: metadata, not a package file
FILEPATH = "org.cncf.model.filepath"
ORAS_PY = ("import oras.client, sys; "
           "oras.client.OrasClient(hostname=sys.argv[1], insecure=True).pull(target=sys.argv[2], outdir=sys.argv[3])")

_FETCHED = re.compile(r"env (?P<env>\S+): (?P<summary>(?P<count>\d+) blobs? fetched "
                      r"\((?P<size>[\d.]+) (?P<unit>[kMGT]?B)\), "
                      r"(?P<present>\d+) already in the store \([^)]* not fetched\), (?P<linked>\d+) files? linked)")
_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def _rm(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)   # store blobs are read-only, their folders are not


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# -- the distribution server ----------------------------------------------------------------------------

class DockerRegistry:
    """`docker-registry serve CONFIG` on 127.0.0.1, storage and log in `base` (as tests/ociregistry.py)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.log_path = base / "registry.log"
        self.host = ""
        self.proc: subprocess.Popen | None = None

    def _config(self, port: int) -> Path:
        config = {   # JSON is YAML
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.base / "data")},
                        "maintenance": {"uploadpurging": {"enabled": False}}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": "nnpm-bench-secret"},
        }
        path = self.base / "config.yml"
        path.write_text(json.dumps(config, indent=1))
        return path

    def start(self, timeout: float = 20) -> "DockerRegistry":
        for _ in range(3):
            port = free_port()
            self.host = f"127.0.0.1:{port}"
            config = self._config(port)
            with open(self.log_path, "ab") as logf:
                self.proc = subprocess.Popen([BINARY, "serve", str(config)], cwd=self.base, stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            with httpx.Client(trust_env=False, timeout=2) as client:
                while time.monotonic() < deadline and self.proc.poll() is None:
                    try:
                        if client.get(f"http://{self.host}/v2/").status_code == 200:
                            return self
                    except httpx.TransportError:
                        pass
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError("docker-registry did not start; its log:\n"
                           + self.log_path.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        stop_process(self.proc)

    def layers(self, repo: str, tag: str) -> list[dict]:
        """The image manifest's layers (digest, size, annotations) of repo:tag."""
        r = httpx.get(f"http://{self.host}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT},
                      timeout=30, trust_env=False)
        r.raise_for_status()
        return r.json()["layers"]


# -- the two sides --------------------------------------------------------------------------------------

def _peer_cmd(oras: str | None, host: str, ref: str, outdir: Path) -> list[str]:
    if oras:
        return [oras, "pull", "--plain-http", "--no-tty", "-o", str(outdir), ref]
    return [PY, "-c", ORAS_PY, host, ref, str(outdir)]


def _expected(layers: list[dict], files_only: bool = False) -> dict[str, tuple[int, str]]:
    """{title: (size, sha256 hex)} of the artifact's layers: what a pull must write (with `files_only`,
    without nnpm's manifest layer: what an install links into the env)."""
    out = {}
    for layer in layers:
        notes = layer.get("annotations") or {}
        if not (files_only and notes.get(NNPM_MANIFEST)):
            out[notes.get(TITLE, layer["digest"])] = (layer["size"], layer["digest"].split(":", 1)[1])
    return out


def _summary(found: dict[str, tuple[int, str]]) -> str:
    return f"{len(found)} files, {sum(size for size, _ in found.values()):,} bytes"


def _found(folder: Path) -> dict[str, tuple[int, str]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, _sha256(p))
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _compare(what: str, found: dict[str, tuple[int, str]], expected: dict[str, tuple[int, str]]) -> list[str]:
    problems = []
    if missing := sorted(set(expected) - set(found)):
        problems.append(f"{what} lacks {missing[:5]}")
    if extra := sorted(set(found) - set(expected)):
        problems.append(f"{what} holds files that are no layers: {extra[:5]}")
    if wrong := sorted(p for p in set(found) & set(expected) if found[p] != expected[p]):
        problems.append(f"{what}: size or sha256 differ from the layer for {wrong[:5]}")
    return problems


def nnpm_install_run(world, ref: str, env: dict[str, str], expected: dict[str, tuple[int, str]],
                     problems: list[str], said: list[str], seen: list[str]) -> Callable[[int], float]:
    """run(i) -> seconds of `nnpm install -q oci://...` into a fresh home; checks go to problems."""
    def once(i: int) -> float:
        home = world.tmp("oci-nnpm-home")
        try:
            seconds, proc = timed([*nnpm_cmd(), "install", "-q", ref], env={**env, "NNPM_HOME": str(home)})
            out = proc.stdout + proc.stderr
            m = _FETCHED.search(out)
            size = float(m["size"]) * _UNITS[m["unit"]] if m else 0.0
            if i >= 0:
                said.append(m["summary"] if m else f"? ({out.strip()[-200:]})")
            if f"installed resnet18 {TAG}" not in out or not m or size <= MIN_BYTES:
                problems.append(f"nnpm install said: {out.strip()[-300:]}")
            if i == 0:
                files = home / "envs" / "default" / "pkgs" / f"resnet18-{TAG}" / "files"
                found = _found(files)
                problems.extend(_compare(f"nnpm's env ({files.relative_to(home)})", found, expected))
                seen.append(f"nnpm's env held {_summary(found)}, each a file layer's bytes")
            return seconds
        finally:
            _rm(home)
    return once


def peer_pull_run(world, oras: str | None, host: str, ref: str, env: dict[str, str],
                  expected: dict[str, tuple[int, str]], problems: list[str], seen: list[str]) -> Callable[[int], float]:
    """run(i) -> seconds of `oras pull` into a fresh folder; checks go to problems."""
    def once(i: int) -> float:
        outdir = world.tmp("oci-oras-pull")
        try:
            seconds, _ = timed(_peer_cmd(oras, host, ref, outdir), env=env)
            if i == 0:
                found = _found(outdir)
                problems.extend(_compare("the peer's folder", found, expected))
                seen.append(f"the peer's folder held {_summary(found)}, each a layer's bytes")
            return seconds
        finally:
            _rm(outdir)
    return once


def _versions(oras: str | None) -> str:
    out = []
    for dist in ("nnpm", "oras"):
        try:
            out.append(f"{dist}{'-py' if dist == 'oras' else ''} {version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist} not installed")
    if oras:
        out.append(run([oras, "version"]).stdout.splitlines()[0].strip())
    server = subprocess.run([BINARY, "--version"], capture_output=True, text=True).stdout.split()
    out.append("docker-registry " + (server[-1] if server else "?"))
    return ", ".join(out)


def bench(world, runs: int) -> list[Row]:
    """`nnpm install oci://...` of resnet18 into a fresh home vs `oras pull` of the same artifact."""
    if not Path(BINARY).is_file():
        log(f"oci: SKIPPED, no OCI registry to measure against: {BINARY} is missing; "
            "'apt-get install docker-registry' to measure this row")
        return []
    oras = shutil.which("oras")
    if not oras:
        try:
            version("oras")
        except PackageNotFoundError:
            log("oci: SKIPPED, the peer is missing: no oras binary on PATH and no oras-py in this interpreter; "
                "'pip install oras' into the venv to measure this row")
            return []
    folder = world.examples / "resnet18"
    server = DockerRegistry(world.tmp("oci-registry")).start()
    try:
        host = server.host
        ref = f"{host}/{REPO}:{TAG}"
        docker_config = world.tmp("oci-docker-config")   # empty: no caller credentials on either side
        env = child_env(DOCKER_CONFIG=str(docker_config), NO_PROXY=LOOPBACK, no_proxy=LOOPBACK)
        log(f"oci: docker-registry on {host}; nnpm push oci://{host}/{REPO} {folder.name}")
        pushed = run([*nnpm_cmd(), "push", f"oci://{host}/{REPO}", str(folder)],
                     env={**env, "NNPM_HOME": str(world.tmp("oci-author-home"))})
        tags = re.findall(r":([^:\s]+) \(sha256:", pushed.stdout + pushed.stderr)
        layers = server.layers(REPO, TAG)
        expected = _expected(layers)
        total = sum(layer["size"] for layer in layers)
        problems: list[str] = []
        if len(expected) != len(layers):
            problems.append("two layers of the artifact share a title")
        said: list[str] = []
        seen: list[str] = []
        peer_name = "oras pull --plain-http" if oras else "oras-py OrasClient.pull in a python subprocess"
        log(f"oci: nnpm install oci://{ref} (fresh home) vs {peer_name} (fresh folder), alternating")
        nnpm_times, peer_times = interleaved(
            [nnpm_install_run(world, f"oci://{ref}", env, _expected(layers, files_only=True), problems, said, seen),
             peer_pull_run(world, oras, host, ref, env, expected, problems, seen)], runs)
    finally:
        server.stop()
    ratios = [n / p for n, p in zip(nnpm_times, peer_times)]
    notes = [f"artifact oci://{ref}: {len(layers)} layers, {total:,} bytes ({total / 1e6:.1f} MB); "
             f"nnpm push wrote tags {tags}",
             f"nnpm: fresh NNPM_HOME each run; said {sorted(set(said))}",
             "first timed run: " + "; ".join(seen),
             f"peer: {peer_name}; it writes each layer under its title and verifies nothing "
             "(no digest, size or config check), nnpm verifies every layer's sha256, the ModelPack config "
             "and its manifest, and links the files into an env",
             f"ratio per pair of runs {[round(r, 2) for r in ratios]}, median {median(ratios):.2f}",
             f"versions: {_versions(oras)}"]
    row = Row("oci-install", "install resnet18 from a local OCI registry (docker-registry), cold store",
              median(nnpm_times), "s", peer=median(peer_times),
              peer_label="oras pull (oras CLI) of the same artifact" if oras
              else "oras pull (oras-py) of the same artifact",
              op="<=", limit=LIMIT, runs=nnpm_times, peer_runs=peer_times, notes=notes)
    if problems:
        row.check_failed = "; ".join(dict.fromkeys(problems))
    return [row]
