"""Small ONNX graphs for tests, built with onnx.helper (package folders: tests/packages.py).

- models: ``add_constant`` (Y = X + W, the tiny package's graph), ``adder`` (sum = a + b),
  ``linear``, ``identity``, ``multi_io``, ``initializer_as_input``, ``custom_domain`` and
  ``undefined_input`` (fails onnx.checker on purpose);
- pieces for hand-made graphs (the compose tests): ``vi``, ``const``, ``model``, ``unary``
  and ``affine``;
- files: ``save`` (optionally with external data), ``external_tensors``, ``rewrite_external``.

Every model here passes onnx.checker, except ``undefined_input``; tests break them on
purpose afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
F = TensorProto.FLOAT


def _model(graph: onnx.GraphProto, *, opsets: dict[str, int] | None = None,
           ir_version: int = IR_VERSION) -> onnx.ModelProto:
    imports = [helper.make_opsetid(domain, version) for domain, version in (opsets or {"": OPSET}).items()]
    model = helper.make_model(graph, opset_imports=imports, producer_name="nnpm-tests")
    model.ir_version = ir_version
    return model


def linear(in_features: int = 4, out_features: int = 3, *, batch: str | int | None = "N",
           seed: int = 0) -> onnx.ModelProto:
    """y = x @ W + b with x [batch, in] float32; W and b are initializers (in*out + out params)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((in_features, out_features)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal((out_features,)).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, out_features])],
        initializer=[w, b],
    )
    return _model(graph)


def add_constant(weights: Sequence[float] = (1.0, 2.0, 3.0), name: str = "tiny") -> onnx.ModelProto:
    """Y = X + W with X, Y float32 [N, len(weights)]; W is a raw-data initializer (it can go external)."""
    n = len(weights)
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])], name,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", n])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", n])],
        [numpy_helper.from_array(np.asarray(weights, dtype=np.float32), "W")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def adder() -> onnx.ModelProto:
    """Two inputs: sum = a + b, all float32 [N, 3]."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])], "adder",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def identity(dtype: int = TensorProto.FLOAT, shape: list | None = None, name: str = "x") -> onnx.ModelProto:
    """One input, one output of the same type, no parameters."""
    shape = ["N", 3] if shape is None else shape
    graph = helper.make_graph(
        [helper.make_node("Identity", [name], ["out"])], "identity",
        [helper.make_tensor_value_info(name, dtype, shape)],
        [helper.make_tensor_value_info("out", dtype, shape)],
    )
    return _model(graph)


def multi_io() -> onnx.ModelProto:
    """Three inputs (float32 [N, seq, 8], int64 [N, seq], float16 [?, 2]) and three outputs.

    The second dim of `mask` has no value and no name (unknown); so has the first of `half`.
    """
    tokens = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["N", "seq", 8])
    mask = helper.make_tensor_value_info("mask", TensorProto.INT64, ["N", None])
    half = helper.make_tensor_value_info("half", TensorProto.FLOAT16, [None, 2])
    outputs = [
        helper.make_tensor_value_info("summed", TensorProto.FLOAT, ["N", "seq"]),
        helper.make_tensor_value_info("mask_out", TensorProto.INT64, ["N", None]),
        helper.make_tensor_value_info("half_out", TensorProto.FLOAT16, [None, 2]),
    ]
    axes = numpy_helper.from_array(np.array([2], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceSum", ["tokens", "axes"], ["summed"], keepdims=0),
        helper.make_node("Identity", ["mask"], ["mask_out"]),
        helper.make_node("Relu", ["half"], ["half_out"]),
    ]
    graph = helper.make_graph(nodes, "multi_io", [tokens, mask, half], outputs, initializer=[axes])
    return _model(graph)


def initializer_as_input() -> onnx.ModelProto:
    """An old-style graph (IR 3) whose initializer W is also listed as a graph input."""
    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "init_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2]),
         helper.make_tensor_value_info("W", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[w],
    )
    return _model(graph, opsets={"": 9}, ir_version=3)


def custom_domain() -> onnx.ModelProto:
    """Uses an op from a custom domain 'com.example' next to the default domain."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("Gadget", ["r"], ["y"], domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return _model(graph, opsets={"": OPSET, "com.example": 2})


def undefined_input() -> onnx.ModelProto:
    """A graph whose node reads a value nothing defines: fails onnx.checker."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "ghost"], ["y"])], "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return _model(graph)


def save(model: onnx.ModelProto, path: Path, *, location: str | None = None) -> Path:
    """Write `model` to `path`; with `location`, all tensors go to that external-data file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if location is None:
        onnx.save_model(model, str(path))
    else:
        (path.parent / location).parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=location, size_threshold=0)
    return path


def external_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The initializers of `model` stored as external data."""
    return [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]


def rewrite_external(path: Path, **entries: str) -> None:
    """Set external_data entries (location=, offset=, length=) of every external tensor, re-serialise."""
    model = onnx.load(str(path), load_external_data=False)
    tensors = external_tensors(model)
    assert tensors, f"{path} has no external data"
    for tensor in tensors:
        current = {e.key: e.value for e in tensor.external_data} | entries
        del tensor.external_data[:]
        for key, value in current.items():
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    Path(path).write_bytes(model.SerializeToString())


# -- pieces for hand-made graphs ------------------------------------------------------------------

def vi(name: str, dtype: int = F, shape: Sequence | None = ("N", 4)) -> onnx.ValueInfoProto:
    """A tensor value info; `shape` None leaves the shape out."""
    return helper.make_tensor_value_info(name, dtype, list(shape) if shape is not None else None)


def const(name: str, values, dtype=np.float32) -> onnx.TensorProto:
    """An initializer named `name` holding `values`."""
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def model(nodes: list, inputs: list, outputs: list, inits: Sequence = (), *, opset: int = 17,
          ir: int = 8, name: str = "g", check: bool = True) -> onnx.ModelProto:
    """A model of these nodes in the default domain at `opset`, fully checked unless `check` is False."""
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="nnpm-tests")
    m.ir_version = ir
    if check:
        onnx.checker.check_model(m, full_check=True)
    return m


def unary(op: str, inp: str = "x", out: str = "y", shape: Sequence | None = ("N", 4), dtype: int = F,
          **kw) -> onnx.ModelProto:
    """One elementwise node: out = op(inp)."""
    return model([helper.make_node(op, [inp], [out], name=op.lower(), **kw)],
                 [vi(inp, dtype, shape)], [vi(out, dtype, shape)], check=shape is not None)


def affine(scale: float, shift: float, inp: str = "x", out: str = "y", *, opset: int = 17,
           shape: Sequence = ("N", 4)) -> onnx.ModelProto:
    """out = inp * scale + shift, with the usual clash-prone names inside."""
    return model(
        [helper.make_node("Mul", [inp, "c"], ["t"], name="x"),
         helper.make_node("Add", ["t", "d"], [out], name="t")],
        [vi(inp, shape=shape)], [vi(out, shape=shape)],
        [const("c", scale), const("d", shift)], opset=opset)
