"""Variant figures: what `nnpm install resnet18 --prefer speed` chose, and how much faster it runs here.

The registry measured every variant of resnet18 at publish (median latency, one thread);
the installer chose from those figures. This group installs the chosen variant in its own
environment, then times it and the reference on this machine in one process, interleaved,
single-threaded like the registry, and sets the local speed-up beside the registry's
recorded one: a resolver that chose from figures the machine cannot reproduce shows here.
"""

from __future__ import annotations

import json

from bench.common import PY, Row, child_env, log, nnpm_cmd, run

MAX_DRIFT = "0.05"   # random-weight ResNet drifts more than a trained one under int8 (docs/bench.md)

_TIMING = """
import json, statistics, sys, time
import numpy as np, onnxruntime as ort, nnpm
opts = ort.SessionOptions(); opts.intra_op_num_threads = opts.inter_op_num_threads = 1
models = {env: nnpm.load("resnet18", env=env, session_options=opts) for env in ("default", "fast")}
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
times = {env: [] for env in models}
for env, m in models.items():
    m(x)                                   # warm-up
for _ in range(int(sys.argv[1])):
    for env, m in models.items():          # interleaved, so drift hits both alike
        start = time.perf_counter(); m(x); times[env].append(time.perf_counter() - start)
print(json.dumps({env: statistics.median(t) * 1000 for env, t in times.items()}
                 | {"variant": models["fast"].variant}))
"""


def bench(world, runs: int) -> list[Row]:
    """Local speed-up of the --prefer speed variant of resnet18, beside the registry's recorded speed-up."""
    reg = world.registry
    home = world.tmp("variants-home")
    env = child_env(NNPM_HOME=str(home), NNPM_REGISTRY=reg.url)
    run([*nnpm_cmd(), "install", "-q", "resnet18", "--variant", "reference"], env=env)
    chosen = run([*nnpm_cmd(), "install", "-q", "--env", "fast", "resnet18", "--prefer", "speed",
                  "--max-drift", MAX_DRIFT], env=env).stdout
    log("variants: " + " ".join(chosen.split()))
    info = json.loads(run([*nnpm_cmd(), "info", "resnet18", "--json", "--env", "fast"], env=env).stdout)
    variant = info["installed_variant"]
    row = next(r for r in info["variants"] if r["variant"] == variant)
    recorded = row.get("speedup") or 1.0     # the reference against itself
    timing = json.loads(run([PY, "-c", _TIMING, str(max(runs * 4, 12))], env=env).stdout)
    local = timing["default"] / timing["fast"]
    note = (f"chose {variant!r} ({row.get('precision')}, drift rel L2 {row.get('rel_l2')}); "
            f"reference {timing['default']:.1f} ms, {variant} {timing['fast']:.1f} ms here, one thread")
    return [Row("variant-speedup", f"resnet18 --prefer speed: speed-up of {variant} here", local, "x",
                peer=recorded, peer_label="the registry's recorded speed-up", op=">=", limit=0.67,
                notes=[note])]
