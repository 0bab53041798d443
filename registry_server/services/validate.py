"""Re-read a published model in a worker subprocess, under memory and time limits, and compare.

Server side, `check_model(manifest, store, settings)` puts the graph file and the files
that can be its external data into a scratch folder under their manifest paths
(services/scratch.py: hard links to the store where possible, each distinct blob at most
once, within --validate-scratch bytes) and runs

    python -m registry_server.services.validate ROOT MODEL_FILE --memory BYTES --cpu SECONDS

which applies RLIMIT_AS / RLIMIT_CPU to itself, calls `nnpm.format.onnxinfo.read_model(...,
allow_hardlinks=True)` (which also refuses operators that need a custom-op library) and prints one
JSON line: `{"ok": {...}}` or `{"error": CODE, "detail": ...}`. A worker that crashes,
runs out of memory or out of time is an `invalid_model` error, never a server failure.
Its messages never name the scratch folder. How many workers run at once is decided by
the caller (registry_server.services.limiter, in front of the whole publish).

With `--serve`, the same worker starts ahead of time for services/workers.py: it sets its
limits, imports onnx, says `{"ready": true}`, then answers up to `--jobs` job lines
(`{"root": ..., "file": ...}` on stdin, one JSON answer each on stdout), with a fresh CPU
allowance per job. Tests make a worker fail on purpose with `NNPM_TEST_VALIDATE_FAULT`
(`crash`: SIGKILL itself, `hang`: sleep, `oom`: allocate past its memory limit), read
when it starts, at its first job; nothing else reads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from nnpm.errors import ManifestError, ModelError, NnpmError, PackageSafetyError, error_for_code
from nnpm.format.manifest import Manifest
from nnpm.fsutil import remove_tree
from registry_server.services.scratch import Scratch, worker_files

_ROOT = Path(__file__).resolve().parent.parent.parent  # the folder holding registry_server/


def check_model(manifest: Manifest, store: Any, settings: Any, *, workers: Any = None) -> None:
    """Refuse (422) a model package whose graph does not say what its manifest says.

    `workers`: a services.workers.WorkerPool of pre-started workers; without one, a worker is
    started for this check alone."""
    assert manifest.project.model is not None
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="validate-", dir=settings.tmp_dir))
    try:
        scratch = Scratch(workdir, store, settings.validate_scratch)
        for f in worker_files(manifest):
            scratch.add(f)
        if workers is not None:
            info = workers.run(workdir, manifest.project.model.file, timeout=settings.validate_timeout)
        else:
            info = run_worker(workdir, manifest.project.model.file,
                              timeout=settings.validate_timeout, memory=settings.validate_memory)
    except PackageSafetyError as exc:
        raise _explained(exc, manifest) from None
    finally:
        try:
            remove_tree(workdir)
        except OSError:  # scratch space; the start-up sweep removes what is left
            pass
    compare(manifest, info)


def _explained(exc: PackageSafetyError, manifest: Manifest) -> PackageSafetyError:
    """A graph reaching for a declared file the worker was not given: say which, and why."""
    assert manifest.project.model is not None
    for path in set(manifest.project.declared_files()) - {manifest.project.model.file}:
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


def timed_out(model_file: str, timeout: float) -> ModelError:
    """The error of a worker killed at its wall-clock limit."""
    return ModelError(f"reading {model_file!r} took longer than the registry's {timeout:g} s limit",
                      hint="the graph may be too large for this registry; ask its operator")


def run_worker(root: Path, model_file: str, *, timeout: float, memory: int) -> dict:
    """Run a worker for this one check on `root/model_file`; its ModelInfo as JSON, or the error it reported."""
    cmd = worker_command(str(root), model_file, "--memory", str(int(memory)), "--cpu", str(cpu_seconds(timeout)))
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              env=worker_env(), cwd=root.parent)
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
        raise cls(scrub(str(answer.get("detail", "the model was refused")), root)[:1000],
                  hint=scrub(hint, root)[:1000] if isinstance(hint, str) else None)
    return answer["ok"]


def _exit_text(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"worker killed by signal {-code}"
    return f"worker exited with status {code}"


def compare(manifest: Manifest, info: dict) -> None:
    """Raise ManifestError (422) naming the first field where manifest and graph disagree."""
    def refuse(what: str, claimed: Any, actual: Any) -> None:
        raise _unprocessable(ManifestError(
            f"the manifest says {_short(claimed)} but the graph says {_short(actual)}",
            key=what, hint="run 'nnpm pack' again to recompute the manifest"))

    claimed_sig = manifest.signature.to_dict() if manifest.signature else None
    if claimed_sig != info["signature"]:
        for side in ("inputs", "outputs"):
            a, b = (claimed_sig or {}).get(side, []), info["signature"][side]
            if a != b:
                refuse(f"signature.{side}", a, b)
    if dict(manifest.opsets) != info["opsets"]:
        refuse("opsets", dict(manifest.opsets), info["opsets"])
    if manifest.ir_version != info["ir_version"]:
        refuse("ir_version", manifest.ir_version, info["ir_version"])
    if manifest.params != info["params"]:
        refuse("params", manifest.params, info["params"])
    listed = {f.path for f in manifest.files}
    for ext in info["external_files"]:
        if ext not in listed:
            raise PackageSafetyError(f"external data file {ext!r} is not in the manifest's file list")
    outputs = {o["name"] for o in info["signature"]["outputs"]}
    assert manifest.project.model is not None
    for out in manifest.project.model.outputs:
        if out not in outputs:
            raise _unprocessable(ManifestError(f"the graph has no output {out!r}", key=f"model.outputs.{out}"))


def _unprocessable(err: ManifestError) -> ManifestError:
    """A well-formed manifest that contradicts its graph is 422, not 400 (see registry_server.error_responses)."""
    err.status = 422
    return err


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "…"


def _limit_self(memory: int, cpu: int, cpu_hard: int | None = None) -> None:
    import resource

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


def read(root: Path, model_file: str, memory: int) -> dict:
    """One check inside a worker: `{"ok": ModelInfo as JSON}` or `{"error", "detail", "hint"}`."""
    try:
        _fault(memory)
        from nnpm.format.onnxinfo import read_model

        info = read_model(root, model_file, allow_hardlinks=True)   # also refuses custom-op domains
    except NnpmError as exc:
        return {"error": exc.code, "detail": exc.message, "hint": exc.hint}
    except MemoryError:
        return {"error": ModelError.code, "detail": "the model needs more memory than the registry allows"}
    return {"ok": {
        "signature": info.signature.to_dict(),
        "opsets": info.opsets,
        "ir_version": info.ir_version,
        "params": info.params,
        "external_files": list(info.external_files),
    }}


def serve(memory: int, cpu: int, jobs: int) -> int:
    """A pre-started worker: limits, onnx imported, `{"ready": true}`, then up to `jobs` job lines answered."""
    import resource

    answers = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)  # whatever else writes to stdout (a library, a warning) cannot garble the answers
    hard = cpu * (jobs + 1) + 1
    _limit_self(memory, cpu, hard)  # the start-up (importing onnx) gets one job's CPU time too
    import onnx  # noqa: F401 - the point of starting early

    from nnpm.format import onnxinfo  # noqa: F401

    answers.write('{"ready": true}\n')
    for _ in range(jobs):
        line = sys.stdin.readline()
        if not line:
            return 0
        job = json.loads(line)
        used = resource.getrusage(resource.RUSAGE_SELF)
        soft = min(hard, int(used.ru_utime + used.ru_stime) + 1 + cpu)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        answers.write(json.dumps(read(Path(job["root"]), job["file"], memory)) + "\n")
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
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.memory, args.cpu, max(1, args.jobs))
    if args.root is None or args.model_file is None:
        parser.error("ROOT and MODEL_FILE are needed without --serve")
    _limit_self(args.memory, args.cpu)
    answer = read(args.root, args.model_file, args.memory)
    print(json.dumps(answer))
    return 1 if "error" in answer else 0


if __name__ == "__main__":
    sys.exit(main())
