"""Shared pieces: result rows, medians, timed subprocesses, a real registry server."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


# -- results -------------------------------------------------------------------------------------

@dataclass
class Row:
    """One figure of the table. `ratio` is nnpm/peer (None without a peer); `ok` compares
    `ratio` (or `value` when `absolute`) with `limit` using `op` ("<=" or ">=")."""

    key: str                        # short id, used in notes and results.json
    figure: str
    value: float
    unit: str
    peer: float | None = None
    peer_label: str = ""
    op: str = "<="
    limit: float | None = None
    absolute: bool = False          # the target is on `value` itself, not on the ratio
    runs: list[float] = field(default_factory=list)
    peer_runs: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    check_failed: str = ""          # a correctness check of the measurement failed: never ok
    skipped: bool = False           # not measured (its notes say why): neither met nor missed

    @property
    def ratio(self) -> float | None:
        if self.peer is None or self.peer == 0:
            return None
        return self.value / self.peer

    @property
    def target(self) -> str:
        if self.limit is None:
            return "-"
        if self.absolute:
            return f"{self.op} {fmt(self.limit, self.unit)}"
        return f"{self.op} {self.limit:g}x"

    @property
    def ok(self) -> bool | None:
        if self.skipped:
            return None
        if self.check_failed:
            return False
        if self.limit is None:
            return None
        x = self.value if self.absolute else self.ratio
        if x is None:
            return None
        return x <= self.limit if self.op == "<=" else x >= self.limit

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(ratio=self.ratio, target=self.target, ok=self.ok)
        return d


def fmt(x: float | None, unit: str) -> str:
    """A value with its unit, at a precision that suits it."""
    if x is None:
        return "-"
    if unit == "s":
        return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"
    if unit == "MB":
        return f"{x:.1f} MB"
    if unit in ("req/s", "runs/s", "MB/s"):
        return f"{x:,.0f} {unit}" if x >= 100 else f"{x:.1f} {unit}"
    return f"{x:g} {unit}"


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def log(msg: str) -> None:
    """Progress on stderr, so stdout is just the table."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# -- processes -----------------------------------------------------------------------------------

def child_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: no NNPM_* from the caller, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNPM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def nnpm_cmd() -> list[str]:
    """The `nnpm` console script beside this interpreter (what users run), else `python -m nnpm`."""
    script = Path(PY).parent / "nnpm"
    return [str(script)] if script.is_file() and os.access(script, os.X_OK) else [PY, "-m", "nnpm"]


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command to completion, capturing output; raise with its output when it fails."""
    proc = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


def timed(cmd: Sequence[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of one command (process start to exit), and its result."""
    start = time.perf_counter()
    proc = run(cmd, **kw)
    return time.perf_counter() - start, proc


def repeat(fn: Callable[[int], float], runs: int, warmup: int = 1) -> list[float]:
    """Call fn(i) `warmup` times untimed, then `runs` times; the values fn returned."""
    for i in range(warmup):
        fn(-1 - i)
    return [fn(i) for i in range(runs)]


def interleaved(fns: Sequence[Callable[[int], float]], runs: int, warmup: int = 1,
                swap: bool = False) -> list[list[float]]:
    """Like `repeat` for several measurements, alternating them so drift hits all alike.

    `swap`: every other round runs them in reverse order (A B, B A, A B, ...), so that whatever
    the one before leaves behind (memory to reclaim, a busy disk) falls on each side alike."""
    for i in range(warmup):
        for fn in fns:
            fn(-1 - i)
    out: list[list[float]] = [[] for _ in fns]
    for i in range(runs):
        order = list(enumerate(fns))
        for k, fn in (order[::-1] if swap and i % 2 else order):
            out[k].append(fn(i))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (and friends) of a process in bytes, from /proc."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key.startswith("Vm"):
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0]) * 1024
    return out


class RssSampler:
    """VmRSS of one process every `every` seconds, from a thread, while `with` blocks run (samples add up)."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid, self.every = pid, every
        self.samples: list[int] = []
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                self.samples.append(read_proc_status(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            self._done.wait(self.every)

    def __enter__(self) -> "RssSampler":
        self._done.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()


def versions() -> dict[str, str]:
    """Versions of what is measured."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in ("nnpm", "onnx", "onnxruntime", "numpy", "httpx", "uvicorn", "fastapi", "starlette", "h11",
                 "pip"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    for tool in ("curl", "sha256sum"):
        path = shutil.which(tool)
        if path:
            first = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.splitlines()
            found = re.search(r"\d+\.\d+(\.\d+)*", first[0]) if first else None
            out[tool] = found.group(0) if found else path
        else:
            out[tool] = "not found (a Python stand-in is used)"
    return out


# -- one process's wall time and peak memory ------------------------------------------------------

# A child's ru_maxrss is not its own peak alone: exec keeps the high-water mark of the memory it
# replaces, and a child forked (or vforked) from the bench starts as a copy of the bench, which by
# then has held whole tensors. So the install is started by this small launcher (a bare
# interpreter, ~10 MB), which forks, execs the command and reports wait4's figures for it.
LAUNCHER = """\
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    except OSError as exc:
        print(f"cannot run {sys.argv[2]}: {exc}", file=sys.stderr)
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    f.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def timed_rss(cmd: Sequence[str], env: dict[str, str], timeout: float = 1800) -> tuple[float, int, str]:
    """Wall time (fork to exit), peak RSS in bytes and output of one command, measured by LAUNCHER."""
    with tempfile.TemporaryDirectory(prefix="nnpm-sizes-") as tmp:
        report, out = Path(tmp) / "report", Path(tmp) / "out"
        with open(out, "wb") as f:
            proc = subprocess.Popen([PY, "-I", "-S", "-c", LAUNCHER, str(report), *cmd], env=env, stdout=f,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)   # the launcher and the command it started
                proc.wait()
                raise RuntimeError(f"{' '.join(cmd)} took more than {timeout:.0f} s") from None
        text = out.read_text(errors="replace")
        if proc.returncode != 0 or not report.is_file():
            raise RuntimeError(f"the launcher of {' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
        seconds, maxrss, code = report.read_text().split()
    if int(code) != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {code}:\n{text[-3000:]}")
    return float(seconds), int(maxrss) * 1024, text   # ru_maxrss is in KiB on Linux


# -- a real registry server --------------------------------------------------------------------------

_BLOB_GET = re.compile(r'"GET /api/v1/blobs/sha256(?::|%3A)[0-9a-f]{64} HTTP/1\.1" 20[06]')


class Registry:
    """`python -m registry_server` as a subprocess on 127.0.0.1, its access log in a file."""

    def __init__(self, data_dir: Path, log_path: Path, flags: Sequence[str] = ()) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.flags = list(flags)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> "Registry":
        for _ in range(3):
            with open(self.log_path, "ab") as logf:
                self.proc = subprocess.Popen(
                    [PY, "-m", "registry_server", "--data", str(self.data_dir), "--host", "127.0.0.1",
                     "--port", str(self.port), *self.flags],
                    cwd=ROOT, env=child_env(), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if answers(self.proc, self.url + "/api/v1/health", timeout):
                return self
            self.stop()
            self.port = free_port()
        raise RuntimeError("the registry did not start; its log:\n"
                           + self.log_path.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        stop_process(self.proc, grace=15)

    def add_user(self, name: str, home: Path) -> str:
        """A new API token, from `nnpm registry user add NAME --data DIR` (its last line)."""
        out = run([*nnpm_cmd(), "registry", "user", "add", name, "--data", str(self.data_dir)],
                  env=child_env(NNPM_HOME=str(home))).stdout
        return out.strip().splitlines()[-1]

    def blob_gets(self) -> int:
        """How many blob GETs (200/206) the server has logged so far."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return len(_BLOB_GET.findall(text))

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def answers(proc: subprocess.Popen, url: str, timeout: float) -> bool:
    """Whether `url` answered 200 before the server `proc` exited or `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    return False


def stop_process(proc: "subprocess.Popen | None", grace: float = 10) -> None:
    """SIGTERM a server the bench started, SIGKILL it if it is still there after `grace` seconds."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

