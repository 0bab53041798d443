"""Running the real `nnpm` CLI in a subprocess, as tests do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_nnpm(home: Path, *args: str, registry: str | None = None, env_name: str | None = None,
             check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m nnpm ARGS` with NNPM_HOME=home (and no other NNPM_* from the outside)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNPM_")}
    env["NNPM_HOME"] = str(home)
    if registry:
        env["NNPM_REGISTRY"] = registry
    if env_name:
        env["NNPM_ENV"] = env_name
    proc = subprocess.run([sys.executable, "-m", "nnpm", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, f"nnpm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """Exit 1 and exactly one `error:` line on stderr, no traceback; returns that line."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]
