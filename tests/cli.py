"""Running the real `nnpm` CLI in a subprocess, as tests do.

- ``run_nnpm(home, *args, registry=, env_name=, env=, cwd=, stdin=, check=, timeout=)``: run
  ``python -m nnpm ARGS`` to its end with NNPM_HOME=home and no other NNPM_* variable from
  the outside (``registry`` → NNPM_REGISTRY, ``env_name`` → NNPM_ENV, ``env`` adds or
  overrides variables, ``stdin`` is the text it reads, else it reads nothing); with
  ``check`` (the default) a non-zero exit fails the test.
- ``nnpm_command(home, *args, ...)``: the same command as ``(argv, environ)``, for tests that
  start it with ``subprocess.Popen`` (kill -9, concurrent installs, `nnpm registry serve`).
- ``one_error_line(proc)``: exit 1 and exactly one ``error:`` line on stderr, no traceback.
- ``child_env(**extra)``: the environment of other Python subprocesses (registry servers,
  scripts): this one, with the repository on PYTHONPATH and OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment, the repository first on PYTHONPATH, one OpenMP thread, plus `extra`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra)
    return env


def nnpm_command(home: Path, *args: str | Path, registry: str | None = None, env_name: str | None = None,
                 env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of `python -m nnpm ARGS` with NNPM_HOME=home and no other NNPM_* from the outside."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NNPM_")}
    environ["NNPM_HOME"] = str(home)
    if registry:
        environ["NNPM_REGISTRY"] = registry
    if env_name:
        environ["NNPM_ENV"] = env_name
    environ.update(env or {})
    return [sys.executable, "-m", "nnpm", *map(str, args)], environ


def run_nnpm(home: Path, *args: str | Path, registry: str | None = None, env_name: str | None = None,
             env: dict[str, str] | None = None, cwd: Path | None = None, stdin: str | None = None,
             check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m nnpm ARGS` to its end (see `nnpm_command`); with `check`, exit 0 is asserted."""
    argv, environ = nnpm_command(home, *args, registry=registry, env_name=env_name, env=env)
    proc = subprocess.run(argv, env=environ, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, f"nnpm {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """Exit 1 and exactly one `error:` line on stderr, no traceback anywhere; returns that line."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return lines[0]
