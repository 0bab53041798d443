"""Re-read a published package's graphs in a worker subprocess, under memory and time limits; measure it.

Server side, `check_model(manifest, store, settings)` puts every graph file of every
variant, the files that can be their external data and the self-test's arrays into a
scratch folder under their manifest paths (services/scratch.py: hard links to the store
where possible, each distinct blob at most once, within --validate-scratch bytes) and
hands a worker one job: `{"root": ..., "manifest": the path of its canonical JSON beside
the root, "measure": {"budget": seconds} or null}`. The worker has applied RLIMIT_AS /
RLIMIT_CPU to itself; it reads every graph with `nnpm.format.onnxinfo.read_model(...,
allow_hardlinks=True)` (which also refuses operators that need a custom-op library),
compares them with the manifest (services/graphcheck.py), says `{"checked": true}` (from
then on the server's clock gives it --measure-budget seconds instead of what is left of
--validate-timeout), runs the self-test and measures every variant (services/measure.py)
and answers one JSON line: `{"ok": {"graphs": ..., "measured": ..., "overview": ...}}` or
`{"error": CODE, "detail": ..., "hint": ..., "status": ...}`. `overview` is every graph's
operator counts and largest initializers (nnpm/format/overview.py), read from the graphs
it parsed anyway, with or without measuring. The server compares the graphs again and
returns `measured` and `overview` (each bounded), stored with the version. A worker that
crashes, runs out of memory or out of time is an `invalid_model` error, never a server
failure. Its messages never name the scratch folder. How many workers run at once is
decided by the caller (registry_server.services.limiter, in front of the whole publish).

The worker starts ahead of time (`--serve`) for services/workers.py: it sets its limits,
imports onnx (and, with `--runtime`, numpy and onnxruntime), says `{"ready": true}`, then
answers up to `--jobs` job lines, with a fresh CPU allowance per job. A job may also be
`{"root": ..., "file": ...}`: read that one graph, answer `{"ok": ModelInfo as JSON}`.
`run_worker` starts one for a single job. Tests make a worker fail on purpose with
`NNPM_TEST_VALIDATE_FAULT` (`crash`: SIGKILL itself, `hang`: sleep, `oom`: allocate past
its memory limit), read when it starts, at its first job; nothing else reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from nnpm.errors import ManifestError, ModelError, NnpmError, PackageSafetyError, error_for_code
from nnpm.format.manifest import MANIFEST_NAME, Manifest
from nnpm.format.overview import bounded as bounded_overview
from nnpm.fsutil import remove_tree
from registry_server.services import graphcheck
from registry_server.services.measure import bounded
from registry_server.services.scratch import Scratch, worker_files

_ROOT = Path(__file__).resolve().parent.parent.parent  # the folder holding registry_server/
CHECKED = '{"checked": true}'   # the line a worker sends when its checks passed and its measuring begins
WORKER_NICENESS = 10            # added to a worker's nice value: it yields the cores to the server's requests


class Checked(NamedTuple):
    """What a worker found besides its checks: the measurement (None unless asked) and the graphs' overview."""

    measured: dict | None
    overview: dict | None


def check_model(manifest: Manifest, store: Any, settings: Any, *, workers: Any = None) -> Checked:
    """Refuse (422) a model package whose graphs do not say what its manifest says; what was measured, if asked,
    and what the graphs are made of.

    `workers`: a services.workers.WorkerPool of pre-started workers; without one, a worker is
    started for this check alone."""
    assert manifest.project.model is not None
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="validate-", dir=settings.tmp_dir))
    root, first = workdir / "package", manifest.project.model.file
    extra = settings.measure_budget if settings.measure else 0.0
    job = {"root": str(root), "manifest": str(workdir / MANIFEST_NAME),
           "measure": {"budget": settings.measure_budget, "time": settings.measure_time}
           if settings.measure else None}
    try:
        (workdir / MANIFEST_NAME).write_bytes(manifest.to_json())   # a file: a job line stays small
        root.mkdir()
        scratch = Scratch(root, store, settings.validate_scratch)
        for f in worker_files(manifest):
            scratch.add(f)
        if workers is not None:
            answer = workers.run_job(job, timeout=settings.validate_timeout, label=first, measuring=extra)
        else:
            answer = run_worker(root, first, timeout=settings.validate_timeout + extra,
                                memory=settings.validate_memory, job=job)
    except PackageSafetyError as exc:
        raise _explained(exc, manifest) from None
    finally:
        try:
            remove_tree(workdir)
        except OSError:  # scratch space; the start-up sweep removes what is left
            pass
    if not isinstance(answer, dict) or not isinstance(answer.get("graphs"), dict):
        raise ModelError(f"{first!r} could not be read within the registry's limits (the worker's answer is not one)")
    try:
        graphcheck.compare(manifest, answer["graphs"])
    except (KeyError, TypeError, AttributeError):
        raise ModelError(f"{first!r} could not be read within the registry's limits (the worker's answer is not one)")
    return Checked(_scrubbed(bounded(answer.get("measured")), root), bounded_overview(answer.get("overview")))


def _scrubbed(value: Any, root: Path) -> Any:
    """`value` with every string in it scrubbed of the scratch folder's path (a measurement's error messages)."""
    if isinstance(value, str):
        return scrub(value, root)
    if isinstance(value, dict):
        return {k: _scrubbed(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, root) for v in value]
    return value


def job_timeout(settings: Any) -> float:
    """Seconds of one publish's job at most: reading the graphs, and measuring them when the registry does."""
    return settings.validate_timeout + (settings.measure_budget if settings.measure else 0.0)


def _explained(exc: PackageSafetyError, manifest: Manifest) -> PackageSafetyError:
    """A graph reaching for a declared file the worker was not given: say which, and why."""
    for path in graphcheck.not_data(manifest):
        if repr(path) in exc.message:
            return PackageSafetyError(f"the graph keeps external data in {path!r}, which the package declares as its "
                                      "README, a labels file or an included file",
                                      hint="save the weights to a data file of their own")
    return exc


def scrub(text: str, root: Path) -> str:
    """`text` without the scratch folder's path: a file in it by its package path, the folder as 'the package'."""
    for form in dict.fromkeys((str(root), str(Path(root).resolve()))):
        text = text.replace(form + os.sep, "").replace(form, "the package")
    return text


def worker_env() -> dict[str, str]:
    """The environment of a worker: this one, with the server's code importable and one OpenMP thread."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def worker_command(*args: str) -> list[str]:
    """`python -P -m registry_server.services.validate ARGS`.

    -P: never put the working folder on sys.path; workers also run outside the package's
    folder, so a package file named like a module (onnx.py, nnpm/...) can never be imported."""
    return [sys.executable, "-P", "-m", "registry_server.services.validate", *args]


def cpu_seconds(timeout: float) -> int:
    """The RLIMIT_CPU of one check: a second more than its wall-clock limit."""
    return max(1, int(timeout) + 1)


def timed_out(model_file: str, timeout: float, *, measuring: bool = False) -> ModelError:
    """The error of a worker killed at its wall-clock limit (while reading, or while measuring)."""
    if measuring:
        return ModelError(f"running {model_file!r} to measure it took longer than the registry's {timeout:g} s "
                          "budget", hint="the graph may be too slow for this registry; ask its operator")
    return ModelError(f"reading {model_file!r} took longer than the registry's {timeout:g} s limit",
                      hint="the graph may be too large for this registry; ask its operator")


def run_worker(root: Path, model_file: str, *, timeout: float, memory: int, job: dict | None = None) -> dict:
    """Run a worker for this one job (by default: read `root/model_file`); its answer, or the error it reported."""
    cmd = worker_command("--serve", "--jobs", "1", "--memory", str(int(memory)), "--cpu", str(cpu_seconds(timeout)),
                         *(["--runtime"] if job and job.get("measure") else []))
    line = json.dumps(job or {"root": str(root), "file": model_file}).encode() + b"\n"
    try:
        proc = subprocess.run(cmd, input=line, capture_output=True, timeout=timeout, env=worker_env(), cwd=root.parent)
    except subprocess.TimeoutExpired:
        raise timed_out(model_file, timeout) from None
    last = proc.stdout.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return interpret(last[0], proc.returncode, root, model_file)


def interpret(line: str, returncode: int | None, root: Path, model_file: str) -> dict:
    """A worker's answer line (and how it ended: None while it runs on) → its ModelInfo, or the error to raise."""
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or ("error" not in answer and "ok" not in answer) or \
            returncode and "error" not in answer:
        raise ModelError(f"{model_file!r} could not be read within the registry's limits "
                         f"({_exit_text(returncode or 0)})",
                         hint="the graph may be too large or malformed")
    if "error" in answer:
        cls = error_for_code(str(answer.get("error")))
        if cls is None or not issubclass(cls, (ModelError, PackageSafetyError, ManifestError)):
            cls = ModelError
        hint = answer.get("hint")
        err = cls(scrub(str(answer.get("detail", "the model was refused")), root)[:1000],
                  hint=scrub(hint, root)[:1000] if isinstance(hint, str) else None)
        if answer.get("status") == 422:   # a well-formed manifest that its files contradict
            err.status = 422
        raise err
    return answer["ok"]


def _exit_text(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with status {code}"


def _limit_self(memory: int, cpu: int, cpu_hard: int | None = None) -> None:
    import resource

    # Checking and measuring a publish is background work: requests to the server come first
    # (80 publishes at once kept both cores busy, and /health's p99 went from 1 ms to 25 ms).
    os.nice(WORKER_NICENESS)
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu_hard if cpu_hard is not None else cpu + 1))


def _fault(memory: int) -> None:
    """Tests only (NNPM_TEST_VALIDATE_FAULT, read at start): fail this job the way asked."""
    fault = _FAULT
    if fault == "crash":
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    elif fault == "hang":
        import time

        time.sleep(3600)
    elif fault == "oom":
        bytearray(2 * memory)


_FAULT = os.environ.get("NNPM_TEST_VALIDATE_FAULT")


def _error(exc: NnpmError) -> dict:
    return {"error": exc.code, "detail": exc.message, "hint": exc.hint, "status": exc.status}


def _info(info: Any) -> dict:
    return {"signature": info.signature.to_dict(), "opsets": info.opsets, "ir_version": info.ir_version,
            "params": info.params, "external_files": list(info.external_files)}


def read(root: Path, model_file: str, memory: int) -> dict:
    """One graph read inside a worker: `{"ok": ModelInfo as JSON}` or `{"error", "detail", "hint"}`."""
    try:
        _fault(memory)
        from nnpm.format.onnxinfo import read_model

        info = read_model(root, model_file, allow_hardlinks=True)   # also refuses custom-op domains
    except NnpmError as exc:
        return _error(exc)
    except MemoryError:
        return {"error": ModelError.code, "detail": "the model needs more memory than the registry allows"}
    return {"ok": _info(info)}


def read_package(root: Path, job: dict, memory: int, checked: Callable[[], Any] = lambda: None) -> dict:
    """One publish inside a worker: every graph read and compared (then `checked()` is called: the caller's clock
    gives the measuring its own budget from there), then the self-test and the measurements."""
    try:
        _fault(memory)
        from nnpm.format.onnxinfo import read_model

        manifest = Manifest.from_json(Path(job["manifest"]).read_bytes())
        infos: dict[str, dict[str, dict]] = {}
        overview: dict[str, dict[str, dict | None]] = {}
        for variant, graph, file in graphcheck.graph_jobs(manifest):
            info = read_model(root, file, allow_hardlinks=True, keep_proto=True)
            infos.setdefault(variant, {})[graph] = _info(info)
            overview.setdefault(variant, {})[graph] = _overview(info.proto)
            del info
        graphcheck.compare(manifest, infos)
        if job.get("measure"):
            checked()
        measured = _measured(root, manifest, job.get("measure"))
    except NnpmError as exc:
        return _error(exc)
    except MemoryError:
        return {"error": ModelError.code, "detail": "the model needs more memory than the registry allows"}
    return {"ok": {"graphs": infos, "measured": measured, "overview": bounded_overview({"variants": overview})}}


def _overview(model: Any) -> dict | None:
    """nnpm.format.overview.graph_overview of one parsed graph; None when reading it fails (the package is fine)."""
    from nnpm.format.overview import graph_overview

    try:
        return graph_overview(model)
    except MemoryError:
        raise
    except Exception:  # a bug or an odd graph: its overview is not known, the publish goes on
        return None


def _measured(root: Path, manifest: Manifest, options: Any) -> dict | None:
    """services.measure.measure_package, when asked; a failure of the measuring itself is recorded, not raised."""
    if not isinstance(options, dict):
        return None
    from registry_server.services.measure import PER_VARIANT_S, machine, measure_package

    try:
        return measure_package(root, manifest, budget=float(options["budget"]),
                               per_variant=float(options.get("time", PER_VARIANT_S)))
    except (NnpmError, MemoryError):
        raise
    except Exception as exc:  # a bug or an onnxruntime surprise: the package is fine, its numbers are not known
        return {"machine": machine(), "error": f"the registry could not measure this package ({type(exc).__name__})"}


def serve(memory: int, cpu: int, jobs: int, runtime: bool = False) -> int:
    """A pre-started worker: limits, onnx (numpy, onnxruntime) imported, `{"ready": true}`, then up to `jobs` jobs."""
    import resource

    answers = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # whatever else writes to stdout (a library, a warning) cannot garble the answers
    hard = cpu * (jobs + 1) + 1
    _limit_self(memory, cpu, hard)  # the start-up (importing onnx) gets one job's CPU time too
    import onnx  # noqa: F401 - the point of starting early

    from nnpm.format import onnxinfo  # noqa: F401

    if runtime:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401

    answers.write('{"ready": true}\n')
    for _ in range(jobs):
        line = sys.stdin.readline()
        if not line:
            return 0
        job = json.loads(line)
        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = min(hard, int(used.ru_utime + used.ru_stime) + 1 + cpu)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        root = Path(job["root"])
        if "manifest" in job:
            answer = read_package(root, job, memory, lambda: answers.write(CHECKED + "\n"))
        else:
            answer = read(root, job["file"], memory)
        answers.write(json.dumps(answer) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: limits first, then read the model, print one JSON line (or, with --serve, many)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m registry_server.services.validate")
    parser.add_argument("root", type=Path, nargs="?")
    parser.add_argument("model_file", nargs="?")
    parser.add_argument("--memory", type=int, required=True)
    parser.add_argument("--cpu", type=int, required=True)
    parser.add_argument("--serve", action="store_true", help="start now, then answer job lines from stdin")
    parser.add_argument("--jobs", type=int, default=1, help="with --serve: answer at most this many, then exit")
    parser.add_argument("--runtime", action="store_true", help="with --serve: import numpy and onnxruntime at start")
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.memory, args.cpu, max(1, args.jobs), args.runtime)
    if args.root is None or args.model_file is None:
        parser.error("ROOT and MODEL_FILE are needed without --serve")
    _limit_self(args.memory, args.cpu)
    answer = read(args.root, args.model_file, args.memory)
    print(json.dumps(answer))
    return 1 if "error" in answer else 0


if __name__ == "__main__":
    sys.exit(main())
