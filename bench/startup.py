"""Start-up figures: `nnpm --help` against `python -c pass`; nnpm.load + first run against onnxruntime.

Both load figures run in a fresh interpreter each time and time, inside that process, from
before the first import to after the first inference (the interpreter's own start-up is
the same for both and is left out). The input is one random 1x3x224x224 float32 image.
"""

from __future__ import annotations

import subprocess
import time

from bench.common import PY, Row, child_env, interleaved, log, median, nnpm_cmd, run
from bench.world import World

NNPM_LOAD = """\
import time
t0 = time.perf_counter()
import numpy as np
import nnpm
m = nnpm.load("resnet18")
x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
y = m(x)
t1 = time.perf_counter()
assert y.shape == (1, 1000)
print(t1 - t0)
"""

ORT_LOAD = """\
import sys, time
t0 = time.perf_counter()
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
y = s.run(None, {s.get_inputs()[0].name: x})[0]
t1 = time.perf_counter()
assert y.shape == (1, 1000)
print(t1 - t0)
"""


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench(world: World, runs: int) -> list[Row]:
    """The start-up group's rows."""
    log("startup: nnpm --help vs python -c pass")
    env = child_env()
    help_runs = max(runs, 10)   # cheap, so more samples
    nnpm_help, py_pass = interleaved([lambda i: _wall([*nnpm_cmd(), "--help"], env),
                                      lambda i: _wall([PY, "-c", "pass"], env)], help_runs)
    rows = [Row("help", "nnpm --help", median(nnpm_help), "s", peer=median(py_pass),
                peer_label="python -c pass", op="<=", limit=0.25, absolute=True,
                runs=nnpm_help, peer_runs=py_pass)]

    log("startup: nnpm.load + first run vs onnxruntime session + first run (fresh processes)")
    home = world.user_home
    env = child_env(NNPM_HOME=str(home))
    model = home / "envs" / "default" / "pkgs" / "resnet18-1.0.0" / "files" / "model.onnx"

    def inner(code: str, *args: str):
        def once(_i: int) -> float:
            return float(run([PY, "-c", code, *args], env=env).stdout.strip().splitlines()[-1])
        return once

    ours, peer = interleaved([inner(NNPM_LOAD), inner(ORT_LOAD, str(model))], runs)
    rows.append(Row("load-first-run", "nnpm.load(resnet18) + first run",
                    median(ours), "s", peer=median(peer),
                    peer_label="onnxruntime session + first run",
                    op="<=", limit=1.05, runs=ours, peer_runs=peer))
    return rows

