"""What a graph costs to run, read without running it: multiply-accumulates and the dominant precision.

Pure functions over an onnx ModelProto; onnx is imported lazily, so importing this module
stays cheap. Nothing here reads external data: shape inference needs only the dims that
every tensor keeps in the proto.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from nnpm.format.onnxinfo import all_nodes, dtype_name, subgraphs, tensors

Shape = tuple[int | None, ...]
Shapes = dict[str, Shape]
_KEEP_BYTES = 4096   # initializers up to this size keep their values: shape inference may read them

_CONSTANT_LISTS = {"value_float": "float32", "value_floats": "float32", "value_int": "int64",
                   "value_ints": "int64", "value_string": "string", "value_strings": "string"}


def graph_macs(model: Any, input_shapes: dict[str, tuple[int, ...]] | None = None) -> int | None:
    """Multiply-accumulates of Conv, ConvTranspose, MatMul, Gemm (and quantised forms); None when a shape is unknown."""
    import onnx

    fixed = _fixed_inputs(model, input_shapes or {})
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:  # InferenceError, or a C++ error on odd graphs: the cost is unknown, not an error
        return None
    return _graph_macs(inferred.graph, {})


def dominant_precision(model: Any) -> str | None:
    """The element type ('float32', 'int8', ...) holding the most parameter elements; None without parameters."""
    counts: dict[str, int] = {}
    for tensor in tensors(model):
        counts[dtype_name(tensor.data_type)] = counts.get(dtype_name(tensor.data_type), 0) + math.prod(tensor.dims)
    for node in all_nodes(model.graph):   # list-valued Constants are parameters too, but hold no TensorProto
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name in _CONSTANT_LISTS:
                    n = len(attr.floats) + len(attr.ints) + len(attr.strings) or int(not attr.name.endswith("s"))
                    counts[_CONSTANT_LISTS[attr.name]] = counts.get(_CONSTANT_LISTS[attr.name], 0) + n
    counts = {k: v for k, v in counts.items() if v > 0}
    if not counts:
        return None
    return min(counts, key=lambda name: (-counts[name], name))


def _fixed_inputs(model: Any, input_shapes: dict[str, tuple[int, ...]]) -> Any:
    """A copy whose graph inputs have fixed dims (given, else symbolic/unknown = 1) and no stale shapes.

    Exporters' value_info and output shapes keep symbols ("N") that inference would merge
    rather than replace, so they are cleared and inferred again from the fixed inputs."""
    copy = _without_weights(model)
    graph = copy.graph
    inits = {i.name for i in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    for value in graph.input:
        if value.name in inits or value.type.WhichOneof("value") != "tensor_type":
            continue
        tensor_type = value.type.tensor_type
        given = input_shapes.get(value.name)
        if given is not None:
            tensor_type.ClearField("shape")
            for size in given:
                tensor_type.shape.dim.add().dim_value = int(size)
        elif tensor_type.HasField("shape"):
            for dim in tensor_type.shape.dim:
                if not (dim.HasField("dim_value") and dim.dim_value > 0):
                    dim.dim_value = 1
    for sub in subgraphs(graph):
        del sub.value_info[:]
        for value in sub.output:
            if value.type.WhichOneof("value") == "tensor_type":
                value.type.tensor_type.ClearField("shape")
    return copy


def _without_weights(model: Any) -> Any:
    """A copy of `model` whose large top-level initializers are dims only, so a 2 GB graph is not held twice.

    They become external tensors pointing nowhere: inference reads their dims, never their
    bytes, while the small ones (Reshape targets, axes) keep their values for data propagation."""
    from onnx import ModelProto, TensorProto

    copy, graph = ModelProto(ir_version=model.ir_version), model.graph
    copy.opset_import.extend(model.opset_import)
    copy.functions.extend(model.functions)
    copy.graph.name = graph.name
    for name in ("node", "input", "output", "sparse_initializer"):
        getattr(copy.graph, name).extend(getattr(graph, name))
    for tensor in graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL or tensor.ByteSize() <= _KEEP_BYTES:
            copy.graph.initializer.append(tensor)
            continue
        stub = copy.graph.initializer.add()
        stub.name, stub.data_type, stub.data_location = tensor.name, tensor.data_type, TensorProto.EXTERNAL
        stub.dims.extend(tensor.dims)
        entry = stub.external_data.add()
        entry.key, entry.value = "location", "nnpm-cost-never-read"
    return copy


def _shape(type_proto: Any) -> Shape | None:
    if type_proto.WhichOneof("value") != "tensor_type" or not type_proto.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                 for d in type_proto.tensor_type.shape.dim)


def _scope(graph: Any, outer: Shapes) -> Shapes:
    """Shapes visible inside `graph`: the outer scope's, then its own inputs, initializers and inferred values."""
    shapes = dict(outer)
    for value in (*graph.input, *graph.value_info, *graph.output):
        shape = _shape(value.type)
        if shape is not None:
            shapes[value.name] = shape
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(tensor.dims)
    for sparse in graph.sparse_initializer:
        shapes[sparse.values.name] = tuple(sparse.dims)
    return shapes


def _graph_macs(graph: Any, outer: Shapes) -> int | None:
    """MACs of one graph's nodes and, once each, of its subgraphs' (a Loop body counts one iteration)."""
    shapes = _scope(graph, outer)
    total = 0
    for node in graph.node:
        counter = _COUNTERS.get((node.domain if node.domain != "ai.onnx" else "", node.op_type))
        if counter is not None:
            macs = counter(node, shapes)
            if macs is None:
                return None
            total += macs
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                macs = _graph_macs(sub, shapes)
                if macs is None:
                    return None
                total += macs
    return total


def _known(shapes: Shapes, name: str) -> Shape | None:
    """A shape whose every dim is known, else None."""
    shape = shapes.get(name) if name else None
    return shape if shape is not None and all(d is not None for d in shape) else None


def _attr(node: Any, name: str, default: int = 0) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _conv(x_index: int, w_index: int) -> Callable[[Any, Shapes], int | None]:
    """Conv-like ops: every output element takes (C_in / group) * prod(kernel) MACs, which is W's dims after the first."""
    def count(node: Any, shapes: Shapes) -> int | None:
        w = _known(shapes, node.input[w_index]) if len(node.input) > w_index else None
        if w is None or len(w) < 2:
            return None
        out = _known(shapes, node.output[0]) or _conv_output(node, _known(shapes, node.input[x_index]), w)
        return None if out is None else math.prod(out) * math.prod(w[1:])
    return count


def _ints(node: Any, name: str, default: list[int]) -> list[int]:
    return next((list(a.ints) for a in node.attribute if a.name == name), default)


def _conv_output(node: Any, x: Shape | None, w: Shape) -> Shape | None:
    """The output shape of a Conv whose output onnx cannot infer (com.microsoft FusedConv), from its attributes."""
    if x is None or len(x) != len(w):
        return None
    rank = len(w) - 2
    auto = next((a.s.decode() for a in node.attribute if a.name == "auto_pad"), "NOTSET")
    strides, dilations = _ints(node, "strides", [1] * rank), _ints(node, "dilations", [1] * rank)
    pads = _ints(node, "pads", [0] * 2 * rank) if auto == "NOTSET" else [0] * 2 * rank
    spatial = []
    for i in range(rank):
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            spatial.append(-(-x[2 + i] // strides[i]))
        else:
            span = x[2 + i] + pads[i] + pads[rank + i] - dilations[i] * (w[2 + i] - 1) - 1
            spatial.append(span // strides[i] + 1)
    return (x[0], w[0], *spatial)


def _conv_transpose(node: Any, shapes: Shapes) -> int | None:
    """Every input element feeds (C_out / group) * prod(kernel) outputs: W is [C_in, C_out/group, k...]."""
    x, w = _known(shapes, node.input[0]), _known(shapes, node.input[1])
    if x is None or w is None or len(w) < 2:
        return None
    return math.prod(x) * math.prod(w[1:])


def _broadcast(a: Shape, b: Shape) -> Shape | None:
    """numpy broadcasting of two batch shapes; None when they do not broadcast."""
    out = []
    for x, y in zip((1,) * (len(b) - len(a)) + a, (1,) * (len(a) - len(b)) + b):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y) if 0 not in (x, y) else 0)
    return tuple(out)


def _operand(shape: Shape, trans: int, trans_batch: int) -> Shape:
    """An operand as it is multiplied: FusedMatMul's transBatch moves dim 0 behind the batch, trans swaps the last two."""
    if trans_batch and len(shape) > 2:
        shape = (*shape[1:-1], shape[0], shape[-1])
    return (*shape[:-2], shape[-1], shape[-2]) if trans and len(shape) >= 2 else shape


def _matmul(a_index: int, b_index: int) -> Callable[[Any, Shapes], int | None]:
    """MatMul-like ops: prod(broadcast batch dims) * M * K * N, from the operands' shapes (numpy matmul semantics)."""
    def count(node: Any, shapes: Shapes) -> int | None:
        a, b = (_known(shapes, node.input[i]) if len(node.input) > i else None for i in (a_index, b_index))
        if not a or not b:
            return None
        a = _operand(a, _attr(node, "transA"), _attr(node, "transBatchA")) if len(a) > 1 else (1, *a)
        b = _operand(b, _attr(node, "transB"), _attr(node, "transBatchB")) if len(b) > 1 else (*b, 1)
        batch = _broadcast(a[:-2], b[:-2])
        if batch is None or a[-1] != b[-2]:
            return None
        return math.prod(batch) * a[-2] * a[-1] * b[-1]
    return count


def _gemm(a_index: int, b_index: int) -> Callable[[Any, Shapes], int | None]:
    """Gemm-like ops: M * K * N from A [M, K] and B [K, N] (transposed by transA, transB)."""
    def count(node: Any, shapes: Shapes) -> int | None:
        a, b = (_known(shapes, node.input[i]) if len(node.input) > i else None for i in (a_index, b_index))
        if a is None or b is None or len(a) != 2 or len(b) != 2:
            return None
        (m, k), n = (a[::-1] if _attr(node, "transA") else a), (b[0] if _attr(node, "transB") else b[1])
        return m * k * n
    return count


_MS = "com.microsoft"
_COUNTERS: dict[tuple[str, str], Callable[[Any, Shapes], int | None]] = {
    ("", "Conv"): _conv(0, 1), ("", "ConvInteger"): _conv(0, 1), ("", "QLinearConv"): _conv(0, 3),
    (_MS, "FusedConv"): _conv(0, 1),
    ("", "ConvTranspose"): _conv_transpose,
    ("", "MatMul"): _matmul(0, 1), ("", "MatMulInteger"): _matmul(0, 1), ("", "QLinearMatMul"): _matmul(0, 3),
    (_MS, "MatMulIntegerToFloat"): _matmul(0, 1), (_MS, "DynamicQuantizeMatMul"): _matmul(0, 1),
    (_MS, "FusedMatMul"): _matmul(0, 1), ("", "Gemm"): _gemm(0, 1), (_MS, "QGemm"): _gemm(0, 3),
}
