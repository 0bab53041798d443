"""Generated models of any size, with external data: the inputs of the size benchmarks (bench/sizes.py).

A model is a chain of `layers` MatMuls, x[1, D] -> x @ W_1 -> ... -> x @ W_L, every W_i a
D×D float32 initializer stored as ONNX external data in `model.data` beside `model.onnx`,
as exporters write large models. The weights are seeded (numpy's default_rng) and drawn
uniform in [-sqrt(3/D), sqrt(3/D)): zero mean and variance 1/D, so each layer keeps the
activations' scale and a deep chain neither overflows nor vanishes.

Each tensor is drawn and written on its own, straight to the data file, so generating
2.5 GB holds one tensor (64 MiB at D = 4096) in memory at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_FILE = "model.data"
OPSET = 17


@dataclass(frozen=True)
class Shape:
    """A chain of `layers` D×D float32 MatMuls: its weight bytes are layers × 4 × D²."""

    layers: int
    dim: int

    @property
    def tensor_bytes(self) -> int:
        return 4 * self.dim * self.dim

    @property
    def nbytes(self) -> int:
        return self.layers * self.tensor_bytes


def shape_for(target_bytes: int, dim: int) -> Shape:
    """The chain of D×D layers whose weights come closest to `target_bytes` (at least one layer)."""
    return Shape(max(1, round(target_bytes / (4 * dim * dim))), dim)


def write_package(folder: Path, name: str, shape: Shape, seed: int = 0, version: str = "1.0.0") -> Path:
    """A package folder (nnpm.toml, model.onnx, model.data) holding `shape`'s chain; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_weights(folder / DATA_FILE, shape, seed)
    _write_graph(folder / "model.onnx", shape)
    (folder / "nnpm.toml").write_text(f'[package]\nname = "{name}"\nversion = "{version}"\n\n'
                                      '[model]\nfile = "model.onnx"\n')
    return folder


def _write_weights(path: Path, shape: Shape, seed: int) -> None:
    """Every W_i, one after another (W_i at offset i × tensor_bytes), drawn and written one at a time."""
    rng = np.random.default_rng(seed)
    scale = np.float32(np.sqrt(3.0 / shape.dim))
    with open(path, "wb") as f:
        for _ in range(shape.layers):
            w = rng.random((shape.dim, shape.dim), dtype=np.float32)
            # In place, so the tensor exists once: uniform [0, 1) -> [-scale, scale).
            w *= 2 * scale
            w -= scale
            f.write(memoryview(w).cast("B"))


def _write_graph(path: Path, shape: Shape) -> None:
    """The graph: MatMul nodes whose initializers point into the data file (location, offset, length)."""
    from onnx import TensorProto, helper

    inits, nodes = [], []
    for i in range(shape.layers):
        w = TensorProto(name=f"w{i}", data_type=TensorProto.FLOAT, dims=[shape.dim, shape.dim],
                        data_location=TensorProto.EXTERNAL)
        for key, value in (("location", DATA_FILE), ("offset", str(i * shape.tensor_bytes)),
                           ("length", str(shape.tensor_bytes))):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
        inits.append(w)
        nodes.append(helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", f"w{i}"],
                                      ["y" if i == shape.layers - 1 else f"h{i + 1}"]))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, shape.dim])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, shape.dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
    # Serialised directly: onnx.save would try to resolve (and could rewrite) the external data.
    path.write_bytes(model.SerializeToString())
