"""Concurrency figures: 100 installs at once against nginx serving the same files, RSS meanwhile,
and /api/v1/health latency while 80 publishes are in flight.

- Installs: world.registry (one uvicorn worker, folder blob store, resnet18 published) and
  nginx (bench/nginx.py: one worker, sendfile, the registry's own blob files and a copy of
  the packument under the same URLs) each get `python -m bench.installload` from a separate
  process: 100 virtual clients at once, each one install = the packument, then resnet18's
  blobs over 4 keep-alive connections (as nnpm/install/fetch.py). Figure: bytes / wall time,
  median of alternating rounds (nnpm, nginx, nnpm, nginx, ...).
- RSS: a thread reads /proc/<registry pid>/status every 20 ms during the nnpm rounds; the
  figure is the highest VmRSS sampled.
- Health: a fresh registry; 4 connections send GET /api/v1/health back to back
  (bench/loadgen.py --latencies) for a fixed window, p99 of every request sent in it. Peer:
  the same window with nothing else going on; nnpm: the same window right after 80 publishes
  of distinct 1 MB packages were released at once (bench/publishload.py, 80 threads, one
  process), then every publish is waited for and checked through its packument.

quick=True: 2 install rounds instead of 3, and 24 publishes with 4 s windows instead of 80
with 8 s (80 publishes take 30-60 s to drain on 2 cores: each one starts a fresh validation
worker process, registry_server/services/workers.py).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from contextlib import nullcontext
from pathlib import Path

import httpx

from bench.common import PY, Registry, Row, RssSampler, child_env, log, median, read_proc_status, run, stop_process
from bench.nginx import StaticNginx, nginx_binary, nginx_version
from bench.publish import _package
from bench.world import World

MB = 1e6
CLIENTS = 100
CONNECTIONS = 4               # per install, as nnpm/install/fetch.py's WORKERS
INSTALL_TIMEOUT = 120.0       # seconds one install may take before it counts as an error
SAMPLE_EVERY = 0.02           # seconds between RSS samples
PUBLISHES, QUICK_PUBLISHES = 80, 24
WINDOW, QUICK_WINDOW = 8.0, 4.0     # seconds of health probing, each side
PROBE_CONNECTIONS = 4
PROBE_WARMUP = 0.2
PUBLISH_TIMEOUT = 180.0       # seconds for every publish to finish


# -- installs ------------------------------------------------------------------------------------

def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads) so far, from /proc/PID/stat."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])   # utime, stime: fields 14 and 15 of proc(5)
    return total / os.sysconf("SC_CLK_TCK")


def install_load(url: str, blobs_file: Path, expected: int, server_pids: list[int]) -> dict:
    """One round of CLIENTS concurrent installs against url; the load generator's totals, the server's CPU
    seconds meanwhile, and a check."""
    cpu0 = cpu_seconds(server_pids)
    out = run([PY, "-m", "bench.installload", url, "--package", "resnet18", "--blobs", str(blobs_file),
               "--clients", str(CLIENTS), "--connections", str(CONNECTIONS), "--timeout", str(INSTALL_TIMEOUT)],
              env=child_env(), timeout=INSTALL_TIMEOUT + 60).stdout
    data = json.loads(out.strip().splitlines()[-1])
    data["server_cpu"] = cpu_seconds(server_pids) - cpu0
    problems = []
    if data["errors"] or data["mismatches"] or data["installs_done"] != CLIENTS:
        problems.append(f"{data['errors']} errors {data['error_samples'][:2]}, {data['mismatches']} sha256 "
                        f"mismatches, {data['installs_done']}/{CLIENTS} installs done")
    if data["bytes"] != expected:
        problems.append(f"{data['bytes']:,} bytes read, {expected:,} expected")
    data["problem"] = "; ".join(problems)
    return data


def _nginx_or_note(notes: list[str]) -> str | None:
    """The nginx binary, or None with a note (an error under CI=true, where the peer must be there)."""
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("CI") == "true":
            raise RuntimeError("nginx is not installed (CI=true: the 100-install peer is required)")
        notes.append("nginx not found: no peer measured (apt-get install nginx)")
        return None
    notes.append(f"peer {nginx_version(binary)}: 1 worker process (as the registry's one uvicorn worker; "
                 "the load generator needs the other core), sendfile on, tcp_nopush, access log on, "
                 "serving the registry's blob files in place and a copy of the packument")
    return binary


def _rounds(world: World, reg: Registry, rounds: int, notes: list[str]) -> tuple[list[dict], list[dict], RssSampler]:
    """Alternate nnpm and nginx rounds; (nnpm totals, nginx totals, the RSS samples of the nnpm rounds)."""
    folder = world.tmp("concurrent")
    blobs_file, packument = folder / "blobs.json", folder / "resnet18.json"
    blobs_file.write_text(json.dumps(world.model_files))
    body = httpx.get(reg.url + "/api/v1/packages/resnet18", timeout=30).content
    packument.write_bytes(body)
    expected = CLIENTS * (len(body) + sum(size for _, size in world.model_files))
    binary = _nginx_or_note(notes)
    sampler = RssSampler(reg.pid, SAMPLE_EVERY)
    nnpm_runs: list[dict] = []
    peer_runs: list[dict] = []
    server = StaticNginx(binary, reg.data_dir / "blobs", {"resnet18": packument}, folder / "nginx") if binary else None
    with server if server is not None else nullcontext():
        for i in range(rounds):   # alternate, so a noisy neighbour hurts both alike
            log(f"concurrency: round {i + 1}/{rounds}, {CLIENTS} installs at once from the registry"
                + (" and from nginx" if server else ""))
            with sampler:
                nnpm_runs.append(install_load(reg.url, blobs_file, expected, [reg.pid]))
            if server is not None:
                peer_runs.append(install_load(server.url, blobs_file, expected, server.pids()))
    return nnpm_runs, peer_runs, sampler


def installs(world: World, rounds: int) -> list[Row]:
    """The installs-100 row (aggregate MB/s against nginx) and the registry-rss-100 row."""
    reg = world.registry
    notes: list[str] = []
    before = read_proc_status(reg.pid)
    nnpm_runs, peer_runs, sampler = _rounds(world, reg, rounds, notes)
    after = read_proc_status(reg.pid)
    files = world.model_files
    notes[:0] = [f"{CLIENTS} clients at once, 1 install each = GET packument + {len(files)} blob GETs "
                 f"({sum(size for _, size in files):,} bytes of blobs), over {CONNECTIONS} keep-alive connections "
                 f"per install ({CLIENTS * CONNECTIONS} at once); one asyncio process (bench/installload.py), "
                 "bodies counted, every size checked, one install per round sha256-verified (hashing all would "
                 "make the client the bottleneck)",
                 f"{rounds} alternating rounds, no warm-up round: " + _round_summary("nnpm", nnpm_runs) + "; "
                 + _round_summary("nginx", peer_runs)]
    problems = [f"{label} round {i + 1}: {r['problem']}" for label, runs in (("nnpm", nnpm_runs), ("nginx", peer_runs))
                for i, r in enumerate(runs) if r["problem"]]
    mbps = [r["mbps"] for r in nnpm_runs]
    peer = [r["mbps"] for r in peer_runs]
    throughput = Row("installs-100", f"{CLIENTS} concurrent installs of resnet18, aggregate", median(mbps), "MB/s",
                     peer=median(peer) if peer else None, peer_label="nginx, static files" if peer else "",
                     op=">=", limit=0.5, runs=mbps, peer_runs=peer, notes=notes, check_failed="; ".join(problems))
    peak = max(sampler.samples, default=0)
    rss = Row("registry-rss-100", f"registry peak RSS, {CLIENTS} installs streaming", peak / MB, "MB",
              op="<=", limit=200, absolute=True, runs=[peak / MB],
              notes=[f"highest of {len(sampler.samples)} VmRSS samples (every {SAMPLE_EVERY * 1000:.0f} ms) during "
                     f"the nnpm rounds; before them VmRSS {before['VmRSS'] / MB:.1f} MB, VmHWM "
                     f"{before['VmHWM'] / MB:.1f} MB; after them VmRSS {after['VmRSS'] / MB:.1f} MB, VmHWM "
                     f"{after['VmHWM'] / MB:.1f} MB (world.registry: it served the other groups before)",
                     f"{(peak - before['VmRSS']) / MB / (CLIENTS * CONNECTIONS) * 1000:.0f} kB more per open "
                     f"blob connection ({CLIENTS * CONNECTIONS}) at the peak"])
    return [throughput, rss]


def _round_summary(label: str, runs: list[dict]) -> str:
    """Each round's MB/s and seconds, and how busy the server and the load generator were (share of one core)."""
    if not runs:
        return f"{label}: none"
    mbps = ", ".join(f"{r['mbps']:.0f}" for r in runs)
    secs = ", ".join(f"{r['seconds']:.1f}" for r in runs)
    server = ", ".join(f"{r['server_cpu'] / r['seconds']:.0%}" for r in runs)
    client = ", ".join(f"{r['client_cpu'] / r['seconds']:.0%}" for r in runs)
    return (f"{label} {mbps} MB/s ({secs} s; CPU of one core: server {server}, load generator {client}; "
            f"statuses {runs[0]['statuses']} per round)")


# -- health while publishing ---------------------------------------------------------------------

def _packages(folder: Path, n: int) -> list[Path]:
    """n distinct 1 MB packages (own name, own weights), as bench/publish.py makes them."""
    out = []
    for i in range(n):
        pkg = folder / f"burst-{i}"
        _package(pkg, "1.0.0", seed=5000 + i)
        toml = pkg / "nnpm.toml"
        toml.write_text(toml.read_text().replace('name = "onemb"', f'name = "burst-{i}"'))
        out.append(pkg)
    return out


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all cores so far, from /proc/stat: how busy the machine was, whoever ran."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]   # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def probe(url: str, window: float) -> dict:
    """`window` seconds of GET /api/v1/health back to back over PROBE_CONNECTIONS connections; the loadgen's
    answer, plus the share of the machine's CPU that was busy meanwhile."""
    busy0, total0 = machine_cpu()
    out = run([PY, "-m", "bench.loadgen", url, "/api/v1/health", "--seconds", str(window), "--connections",
               str(PROBE_CONNECTIONS), "--warmup", str(PROBE_WARMUP), "--latencies", "--timeout", "30"],
              env=child_env(), timeout=window + 60).stdout
    busy1, total1 = machine_cpu()
    data = json.loads(out.strip().splitlines()[-1])
    data["machine_busy"] = (busy1 - busy0) / max(1, total1 - total0)
    if "p99" not in data:
        raise RuntimeError(f"the health probe got no answer in its window: {data}")
    return data


def _read_line(proc: subprocess.Popen, timeout: float) -> bytes:
    """One line from a child's stdout within `timeout` seconds (os.read, so communicate() later loses nothing)."""
    fd, got, deadline = proc.stdout.fileno(), b"", time.monotonic() + timeout
    while not got.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise RuntimeError(f"no line from {proc.args[:3]} within {timeout:g} s")
        chunk = os.read(fd, 1)  # byte by byte: nothing past the line may be taken from the pipe
        if not chunk:
            raise RuntimeError(f"{proc.args[:3]} exited: {proc.wait()}")
        got += chunk
    return got


def publish_burst(world: World, reg: Registry, token: str, folders: list[Path], window: float) -> tuple[list, dict]:
    """Release every publish at once, probe health meanwhile, wait for them all; (publishes, probe)."""
    scratch = world.tmp("publish-scratch")
    (scratch / "token").write_text(token)
    with open(scratch / "stderr.log", "wb") as err:
        proc = subprocess.Popen([PY, "-m", "bench.publishload", reg.url, "--token-file", str(scratch / "token"),
                                 "--scratch", str(scratch), "--timeout", str(PUBLISH_TIMEOUT), *map(str, folders)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=child_env())
    try:
        if _read_line(proc, 120).strip() != b"ready":
            raise RuntimeError("bench.publishload did not say ready")
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        loaded = probe(reg.url, window)
        out, _ = proc.communicate(timeout=PUBLISH_TIMEOUT + 30)
    finally:
        stop_process(proc)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.publishload exited {proc.returncode}:\n"
                           + (scratch / "stderr.log").read_text(errors="replace")[-3000:])
    return json.loads(out.strip().splitlines()[-1]), loaded


def _check_publishes(reg: Registry, pubs: list[dict], loaded: dict) -> tuple[list[str], str]:
    """(notes, problem): were the publishes in flight all through the window, did every one land."""
    w0, w1 = loaded["started"], loaded["ended"]
    errors = [p["error"] for p in pubs if "error" in p]
    started = min((p["start"] for p in pubs if "start" in p), default=w0)
    ended = max(p.get("end", w1) for p in pubs)
    at_start = sum(p.get("start", w1) <= w0 < p.get("end", w1) for p in pubs)
    at_end = sum(p.get("start", w1) <= w1 < p.get("end", w1 + 1) for p in pubs)
    missing = [p["name"] for p in pubs if httpx.get(f"{reg.url}/api/v1/packages/{p['name']}", timeout=30)
               .json().get("latest") != p["version"]]
    problems = []
    if errors or missing or not all(p.get("created") for p in pubs):
        problems.append(f"{len(errors)} publishes failed {errors[:2]}, {len(missing)} packuments lack their version")
    if at_end == 0:
        problems.append("the window outlasted the publishes")
    notes = [f"{len(pubs)} publishes released at once {w0 - started:.2f} s before the window; in flight at its "
             f"start {at_start}, at its end {at_end}; all {len(pubs)} done {ended - started:.1f} s after the release, "
             f"{sum(bool(p.get('created')) for p in pubs)} created (201), {len(errors)} errors, "
             f"{len(pubs) - len(missing)} packuments checked"]
    return notes, "; ".join(problems)


def _probe_note(label: str, d: dict) -> str:
    """One probe's request count, latency percentiles and statuses."""
    return (f"{label}: {d['requests']} requests in {d['seconds']:.1f} s over {PROBE_CONNECTIONS} keep-alive "
            f"connections, p50 {d['p50'] * 1000:.1f} ms, p99 {d['p99'] * 1000:.1f} ms, max {d['max'] * 1000:.1f} ms, "
            f"statuses {d['statuses']}; the machine's {os.cpu_count()} cores {d['machine_busy']:.0%} busy "
            "meanwhile (the probe and the server it keeps busy included)")


def health_under_publishes(world: World, quick: bool) -> list[Row]:
    """health p99 with publishes in flight, against the same probe on the idle server."""
    n, window = (QUICK_PUBLISHES, QUICK_WINDOW) if quick else (PUBLISHES, WINDOW)
    # Room in the queue for all n: each one is then in flight on the server, none told 429 to come back.
    reg = world.start_registry("publish-burst", ["--publish-queue", str(n)])
    try:
        token = reg.add_user("burst", world.tmp("burst-home"))
        folders = _packages(world.tmp("burst-packages"), n)
        log(f"concurrency: {window:g} s of /api/v1/health alone, then while {n} publishes are in flight")
        idle = probe(reg.url, window)
        pubs, loaded = publish_burst(world, reg, token, folders, window)
        notes, problem = _check_publishes(reg, pubs, loaded)
    finally:
        reg.stop()
    probes = {"with publishes": loaded, "idle": idle}
    bad = [f"{label}: {d['errors']} errors, statuses {d['statuses']}" for label, d in probes.items()
           if d["errors"] or not d["requests"]]
    problem = "; ".join(filter(None, [problem, *bad]))
    notes += [_probe_note(label, d) for label, d in probes.items()]
    notes.append(f"registry started with --publish-queue {n} (default 16: the rest would be told 429 and wait "
                 f"client-side); {n} distinct packages of 1 MB (bench/publish.py's model, own names), packed "
                 f"before the window, published by {n} threads of one process (bench/publishload.py)")
    figure = f"/api/v1/health p99 while {n} publishes are in flight"
    value, peer = loaded["p99"], idle["p99"]
    return [Row("health-p99-publishes", figure, value, "s", peer=peer, peer_label="the same probe, server idle",
                op="<=", limit=10, runs=[value], peer_runs=[peer], notes=notes, check_failed=problem),
            Row("health-p99-publishes-abs", figure + ", absolute", value, "s", op="<=", limit=1.0,
                absolute=True, runs=[value], check_failed=problem)]


def bench(world: World, runs: int, quick: bool = False) -> list[Row]:
    """The concurrency group's rows: 100 installs vs nginx, registry RSS meanwhile, health under publishes."""
    rounds = 2 if quick else max(2, min(runs, 3))
    return [*installs(world, rounds), *health_under_publishes(world, quick)]
