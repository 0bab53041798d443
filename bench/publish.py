"""Publish figures: `nnpm publish` of a 1 MB model beside `nnpm pack` of the same folder alone.

Each timed run publishes a new version whose weights differ (seeded by the run), so the
1 MB blob really goes up and the registry's validation worker really reads the graph; the
peer packs the same folder (validate, hash, write the archive) without any network. Both
are whole CLI processes, interleaved so drift hits both alike.
"""

from __future__ import annotations

import numpy as np

from bench.common import Row, child_env, interleaved, log, median, nnpm_cmd, run
from bench.world import World

FLOATS = 250_000            # 1 MB of float32 weights


def _package(folder, version: str, seed: int) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weights = np.random.default_rng(seed).standard_normal(FLOATS).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "onemb",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [FLOATS])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [FLOATS])],
                              [numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              folder / "model.onnx")
    (folder / "nnpm.toml").write_text(f'[package]\nname = "onemb"\nversion = "{version}"\n\n'
                                      '[model]\nfile = "model.onnx"\n')


def bench(world: World, runs: int) -> list[Row]:
    """Median wall time of publish (1 MB, new version) against pack of the same folder."""
    from bench.common import timed

    reg = world.start_registry("publish-registry")
    home = world.tmp("publisher-home")
    token = reg.add_user("publisher", home)
    env = child_env(NNPM_HOME=str(home), NNPM_REGISTRY=reg.url, NNPM_TOKEN=token)
    log(f"publish: {runs} publishes of a 1 MB model to {reg.url}, beside nnpm pack of the same folder")

    def folder_for(i: int):
        folder = world.root / "onemb" / f"v{i + 10}"
        if not folder.exists():
            _package(folder, f"1.0.{i + 10}", seed=i + 10)
        return folder

    def publish(i: int) -> float:
        return timed([*nnpm_cmd(), "publish", "--no-progress", str(folder_for(i))], env=env)[0]

    def pack(i: int) -> float:
        folder = folder_for(i)
        return timed([*nnpm_cmd(), "pack", str(folder), "-o", str(folder.parent / f"pack-{i}.nnpm")], env=env)[0]

    for i in range(-1, runs):   # make the folders before anything is timed
        folder_for(i)
    pub, packed = interleaved([publish, pack], runs)
    run([*nnpm_cmd(), "info", "onemb", "--registry", reg.url], env=env)   # the last publish landed
    value, peer = median(pub), median(packed)
    return [
        Row("publish-1mb", "publish of a 1 MB model (new version)", value, "s", peer=peer,
            peer_label="nnpm pack of the same folder", op="<=", limit=2.0, runs=pub, peer_runs=packed),
        Row("publish-1mb-abs", "publish of a 1 MB model, absolute", value, "s", op="<=", limit=0.5,
            absolute=True, runs=pub),
    ]
