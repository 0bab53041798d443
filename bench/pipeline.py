"""Pipeline figure: imagenet-classifier fused into one session vs its steps as separate sessions.

One child process loads `nnpm.load("imagenet-classifier")` (fused, one onnxruntime session)
and `nnpm.load("imagenet-classifier", fuse=False)` (imagenet-preprocess, resnet18 and topk as
three sessions, outputs fed to inputs in Python), checks they agree, warms both up, then
alternates rounds of CALLS calls on one 224x224x3 uint8 image; throughput per round is
CALLS / seconds, and the figure is the median round.
"""

from __future__ import annotations

import json

from bench.common import PY, Row, child_env, log, median, run
from bench.world import World

CALLS = 20
WARMUP = 5

SCRIPT = """\
import json, sys, time
import numpy as np
import nnpm
rounds, calls, warmup = map(int, sys.argv[1:4])
fused = nnpm.load("imagenet-classifier")
steps = nnpm.load("imagenet-classifier", fuse=False)
image = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
a, b = fused(image=image), steps(image=image)
for key in a:
    assert np.allclose(a[key], b[key], atol=1e-5) if a[key].dtype.kind == "f" else (a[key] == b[key]).all(), key
for _ in range(warmup):
    fused(image=image); steps(image=image)
out = {"fused": [], "steps": []}
for _ in range(rounds):
    for name, model in (("fused", fused), ("steps", steps)):
        t = time.perf_counter()
        for _ in range(calls):
            model(image=image)
        out[name].append(calls / (time.perf_counter() - t))
print(json.dumps(out))
"""


def bench(world: World, runs: int) -> list[Row]:
    """The pipeline group's row."""
    log("pipeline: imagenet-classifier fused vs separate sessions")
    out = run([PY, "-c", SCRIPT, str(max(runs, 5)), str(CALLS), str(WARMUP)],
              env=child_env(NNPM_HOME=str(world.user_home))).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return [Row("pipeline-fused", "imagenet-classifier fused, throughput",
                median(data["fused"]), "runs/s", peer=median(data["steps"]),
                peer_label="3 separate sessions, fuse=False", op=">=", limit=1.0,
                runs=data["fused"], peer_runs=data["steps"],
                notes=[f"{CALLS} calls per round, {WARMUP} warm-up calls each"])]
