"""Issue 14, item 10: publishes are checked by pre-started workers, still sandboxed.

`registry_server.services.workers.WorkerPool` keeps `--validate-workers` worker processes
that have imported onnx already and wait for a job line on stdin (each under RLIMIT_AS /
RLIMIT_CPU, with a wall-clock timeout); each serves at most `max_jobs` jobs (1 by default)
and is replaced in the background. A worker that crashes, hangs or runs out of memory is
killed and replaced, and its publish gets the same 422 as before. Faults are injected
with `NNPM_TEST_VALIDATE_FAULT` (read by a worker when it starts), so they hit only the
workers started while it is set. Timings are printed, never asserted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from protocol import assert_error

from nnpm.errors import ModelError
from nnpm.format.limits import GIB

pytestmark = pytest.mark.registry_backends("sqlite-dir")  # the workers, not the backend, are the subject


def gone(pid: int, within: float = 10.0) -> bool:
    """True once `pid` no longer exists (killed and reaped: no zombie left)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def warm(pool, n: int | None = None) -> set[int]:
    pool.start()   # an app in a test starts its workers on the first publish; a served one at start-up
    assert pool.wait_warm(timeout=60), "the workers did not start"
    pids = set(pool.pids())
    assert len(pids) == (n if n is not None else pool.size)
    return pids


@pytest.fixture
def pool_factory(tmp_path: Path):
    from registry_server.services.workers import WorkerPool

    made = []

    def make(size: int = 1, **options) -> WorkerPool:
        options.setdefault("memory", 2 * GIB)
        options.setdefault("cpu", 60)
        pool = WorkerPool(size, cwd=tmp_path, **options)
        made.append(pool)
        pool.start()
        return pool

    yield make
    for pool in made:
        pool.close()


def test_a_warm_worker_answers_and_is_replaced_after_its_job(pool_factory, small_package) -> None:
    folder = small_package("warm")
    (folder / "broken.onnx").write_bytes(b"not a graph")
    pool = pool_factory(1)
    (first,) = warm(pool)
    info = pool.run(folder, "model.onnx", timeout=30)
    assert info["signature"]["inputs"][0]["name"] == "X" and info["params"] == 3
    assert gone(first)  # used once, then retired and reaped
    (second,) = warm(pool)
    assert second != first
    with pytest.raises(ModelError):  # the worker's own refusal comes back as the same error class
        pool.run(folder, "broken.onnx", timeout=30)
    assert pool.run(folder, "model.onnx", timeout=30)["params"] == 3
    pids = warm(pool)
    pool.close()
    assert all(gone(pid) for pid in pids) and pool.pids() == []


def test_workers_yield_the_cores_to_the_server(pool_factory) -> None:
    # A burst of publishes keeps every worker busy; requests to the server must still come first.
    from registry_server.services.validate import WORKER_NICENESS

    pool = pool_factory(1)
    (pid,) = warm(pool)
    with open(f"/proc/{pid}/stat") as f:
        worker_nice = int(f.read().rpartition(")")[2].split()[16])
    assert worker_nice == min(19, os.nice(0) + WORKER_NICENESS)


def test_a_worker_may_serve_several_jobs_when_asked(pool_factory, small_package) -> None:
    folder = small_package("reused")
    pool = pool_factory(1, max_jobs=2)
    (first,) = warm(pool)
    pool.run(folder, "model.onnx", timeout=30)
    assert set(pool.pids()) == {first}
    pool.run(folder, "model.onnx", timeout=30)
    assert gone(first) and warm(pool) != {first}


def test_the_pool_follows_validate_workers_and_stops_with_the_app(api_factory) -> None:
    api = api_factory(validate_workers=3)
    pids = warm(api.app.state.validators, 3)
    api.close()
    assert all(gone(pid) for pid in pids)


@pytest.mark.parametrize("fault,words", [("crash", "could not be read"), ("hang", "longer than"),
                                         ("oom", "memory")])
def test_a_failing_worker_is_a_422_and_is_replaced(api_factory, small_package, monkeypatch: pytest.MonkeyPatch,
                                                   fault: str, words: str) -> None:
    monkeypatch.setenv("NNPM_TEST_VALIDATE_FAULT", fault)
    api = api_factory(validate_workers=1, validate_timeout=3)
    (faulty,) = warm(api.app.state.validators)
    monkeypatch.delenv("NNPM_TEST_VALIDATE_FAULT")  # its replacement starts without the fault
    token = api.add_user("alice")
    r = api.publish(small_package("victim"), token)
    assert_error(r, 422, "invalid_model", words)
    assert "/" not in r.json()["detail"]  # no server path
    assert gone(faulty)  # killed (or exited) and reaped
    assert api.publish(small_package("victim"), token).status_code == 201
    assert api.publish(small_package("victim", "1.1.0"), token).status_code == 201
    assert list((api.data_dir / "tmp").glob("validate-*")) == []
