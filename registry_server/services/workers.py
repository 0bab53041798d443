"""A pool of pre-started model-reading workers, so a publish does not wait for Python to start and import onnx.

Each worker is the sandbox of services/validate.py started ahead of time (`--serve`): its
own process, RLIMIT_AS and RLIMIT_CPU set before onnx is imported, reading job lines on
stdin and answering one JSON line each. The pool keeps `size` of them started (the
server's `--validate-workers`, the number of checks that may run at once) and hands the
readiest to a check: one that has said it is ready, else the one that has been starting
longest, else (none left) a new one, as before the pool existed. The check's wall-clock
limit runs from the moment the job is sent, so whatever start-up is left counts, as it
always did.

A worker serves at most `max_jobs` jobs (1 by default: no worker ever reads a second
untrusted graph after a first one may have corrupted it) and is replaced in the
background as soon as it is taken, so the next check finds a warm one. A worker that
misses its deadline is killed (SIGKILL); one that crashes, runs out of memory or answers
an error is retired; its check gets the same `invalid_model` error as before. Retired
workers are reaped in the background: none is left as a zombie.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import threading
import time
from pathlib import Path

from registry_server.services.validate import (
    CHECKED,
    cpu_seconds,
    interpret,
    job_timeout,
    timed_out,
    worker_command,
    worker_env,
)

log = logging.getLogger("registry_server")
MAX_ANSWER = 16 * 1024 * 1024  # bytes of one answer line; a longer one is a broken worker
READY = b'{"ready": true}'
CHECKED_LINE = CHECKED.encode()


class Worker:
    """One `python -m registry_server.services.validate --serve` process and the lines it has sent."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        cwd.mkdir(parents=True, exist_ok=True)  # scratch space, outside any package's folder
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=cwd, env=worker_env())
        self.jobs = 0
        self.ready = False
        self.measuring = False   # its job's checks passed: it is measuring
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_some(self, timeout: float) -> bool:
        """Read what the worker has written within `timeout` s; False at end of file."""
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], max(0.0, timeout))[0]:
            return True
        data = os.read(fd, 1 << 16)
        self._buffer += data
        return bool(data)

    def _line(self, deadline: float | None) -> bytes | None:
        """The next line (None at end of file); TimeoutError after `deadline`; with no deadline, only what is there."""
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_ANSWER:
                return None
            remaining = 0.0 if deadline is None else deadline - time.monotonic()
            if deadline is not None and remaining <= 0:
                raise TimeoutError
            open_ = self._read_some(remaining)
            if not open_:
                return None
            if deadline is None and b"\n" not in self._buffer:
                raise TimeoutError
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def is_ready(self) -> bool:
        """True once the worker has said it is ready (never blocks)."""
        if not self.ready:
            try:
                line = self._line(None)
            except TimeoutError:
                return False
            self.ready = line == READY
        return self.ready

    def ask(self, job: dict, deadline: float, measuring: float = 0.0) -> bytes | None:
        """Send one job and wait for its answer line; None when the worker ended without one.

        When the worker says its checks passed, the deadline becomes `measuring` s from then
        (and `self.measuring` is set)."""
        self.measuring = False
        try:
            self.proc.stdin.write(json.dumps(job).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:  # it is gone already (died while starting): its exit status says why
            return None
        while True:
            line = self._line(deadline)
            if line == CHECKED_LINE:
                deadline, self.measuring = (time.monotonic() + measuring if measuring else deadline), True
            elif line == READY:
                self.ready = True
            else:
                return line

    def end(self, wait: float = 5.0) -> int:
        """Close its stdin (it exits by itself), killing it after `wait` s; its exit status."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass
        return self.kill()

    def kill(self) -> int:
        """SIGKILL and reap it; its exit status."""
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        return code


class WorkerPool:
    """`size` pre-started workers under `memory` bytes and `cpu` CPU seconds per job, each used `max_jobs` times."""

    def __init__(self, size: int, *, memory: int, cpu: int, cwd: Path, max_jobs: int = 1,
                 runtime: bool = False) -> None:
        self.size, self.max_jobs = max(1, size), max(1, max_jobs)
        self.cwd = Path(cwd)
        self.argv = worker_command("--serve", "--memory", str(int(memory)), "--cpu", str(int(cpu)),
                                   "--jobs", str(self.max_jobs), *(["--runtime"] if runtime else []))
        self._lock = threading.Lock()
        self._idle: list[Worker] = []          # started and unused: ready, or still starting
        self._busy: dict[Worker, bool] = {}    # running a job → whether it comes back to the pool after
        self._closed = False

    @classmethod
    def for_settings(cls, settings) -> "WorkerPool":
        """The pool a server with these ServerSettings uses (workers that measure import onnxruntime at start)."""
        return cls(settings.validate_workers, memory=settings.validate_memory,
                   cpu=cpu_seconds(job_timeout(settings)), cwd=settings.tmp_dir,
                   max_jobs=settings.validate_worker_jobs, runtime=settings.measure)

    def start(self) -> None:
        """Start the workers (they get ready in the background)."""
        self._fill()

    def _fill(self) -> None:
        """Start workers until `size` are idle or coming back."""
        with self._lock:
            while not self._closed and len(self._idle) + sum(self._busy.values()) < self.size:
                try:
                    self._idle.append(Worker(self.argv, self.cwd))
                except OSError:  # out of processes or memory: the next check starts one for itself
                    log.exception("could not start a model-reading worker")
                    return

    def _fill_soon(self) -> None:
        threading.Thread(target=self._fill, name="nnpm-validate-pool", daemon=True).start()

    def _take(self) -> Worker:
        """The readiest idle worker (ready, else starting longest), else a new one; it is busy from now on."""
        with self._lock:
            for dead in [w for w in self._idle if not w.alive()]:
                self._idle.remove(dead)
                log.warning("a model-reading worker ended before its first job (exit status %s); "
                            "is --validate-memory too small to import onnx?", dead.kill())
            worker = next((w for w in self._idle if w.is_ready()), self._idle[0] if self._idle else None)
            if worker is not None:
                self._idle.remove(worker)
            else:
                worker = Worker(self.argv, self.cwd)
            self._busy[worker] = worker.jobs + 1 < self.max_jobs and not self._closed
        self._fill_soon()
        return worker

    def _give_back(self, worker: Worker, reusable: bool) -> None:
        with self._lock:
            self._busy.pop(worker, None)
            if reusable and not self._closed and worker.alive() and len(self._idle) < self.size:
                self._idle.append(worker)
                return
        _retire(worker)
        self._fill_soon()

    def run(self, root: Path, model_file: str, *, timeout: float) -> dict:
        """Check `root/model_file` in a worker within `timeout` s: its ModelInfo as JSON, or the error it means."""
        return self.run_job({"root": str(root), "file": model_file}, timeout=timeout, label=model_file)

    def run_job(self, job: dict, *, timeout: float, label: str, measuring: float = 0.0) -> dict:
        """One job (services/validate.py) in a worker within `timeout` s, and `measuring` s more once its checks
        passed: its answer, or the error it means. `label`: the file named in errors about the worker itself."""
        root, model_file = Path(job["root"]), label
        worker = self._take()
        reusable = False
        try:
            line = worker.ask(job, time.monotonic() + timeout, measuring)
        except TimeoutError:
            worker.kill()
            raise timed_out(model_file, measuring if worker.measuring else timeout,
                            measuring=worker.measuring) from None
        except BaseException:
            worker.kill()
            raise
        else:
            if line is None:  # it crashed or ran out of memory: how it ended is the message
                info = interpret("", worker.kill(), root, model_file)
            else:
                worker.jobs += 1
                info = interpret(line.decode("utf-8", "replace"), None, root, model_file)  # raises for an error
                reusable = worker.jobs < self.max_jobs
            return info
        finally:
            self._give_back(worker, reusable)

    def wait_warm(self, timeout: float) -> bool:
        """Wait until `size` idle workers are ready; False after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._idle) >= self.size and all(w.is_ready() for w in self._idle):
                    return True
            time.sleep(0.02)
        return False

    def pids(self) -> list[int]:
        """Process ids of the pool's live workers, idle or busy (not those being retired)."""
        with self._lock:
            return [w.pid for w in [*self._idle, *self._busy] if w.alive()]

    def close(self) -> None:
        """Kill every worker, idle or busy (a busy one's check fails as if it had crashed)."""
        with self._lock:
            self._closed = True
            workers, self._idle = [*self._idle, *self._busy], []
        for worker in workers:
            worker.kill()


def _retire(worker: Worker) -> None:
    """End a worker in the background (it exits when its stdin closes; killed if it does not) and reap it."""
    if worker.proc.returncode is not None:
        worker.kill()  # reaped already; closes its pipes
        return
    threading.Thread(target=worker.end, name="nnpm-validate-reaper", daemon=True).start()
