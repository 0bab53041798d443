"""Read an ONNX graph without running it: signature, opsets, parameters, external data, safety.

onnx is imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnpm.errors import ManifestError, ModelError, PackageSafetyError
from nnpm.format.fields import check_printable
from nnpm.format.limits import MAX_PROTO_SIZE
from nnpm.format.manifest import Signature, TensorSpec
from nnpm.format.safety import check_file, check_location

# Operator domains onnxruntime's own builds implement; anything else needs a custom-op library.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "com.microsoft"})

# numpy-style names people know, keyed by TensorProto enum name.
_DTYPES = {
    "FLOAT": "float32", "DOUBLE": "float64", "FLOAT16": "float16", "BFLOAT16": "bfloat16",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "BOOL": "bool", "STRING": "string", "COMPLEX64": "complex64", "COMPLEX128": "complex128",
}


@dataclass(frozen=True)
class ModelInfo:
    """What nnpm reads from one ONNX file."""

    signature: Signature
    opsets: dict[str, int]
    ir_version: int
    params: int
    external_files: tuple[str, ...]   # relative to the package root
    proto: Any = field(default=None, repr=False, compare=False)   # the graph (no weights loaded), when asked for


def dtype_name(elem_type: int) -> str:
    """TensorProto element type → 'float32', 'int64', ..."""
    from onnx import TensorProto

    name = TensorProto.DataType.Name(elem_type)
    return _DTYPES.get(name, name.lower())


def _dim(dim: Any) -> int | str | None:
    """A fixed size, a symbol, or None (unknown). A size that is not a positive integer (-1 from
    PaddlePaddle and some TF converters, 0) means "any size" to onnxruntime: it is unknown here too."""
    if dim.HasField("dim_value"):
        return dim.dim_value if dim.dim_value > 0 else None
    if dim.HasField("dim_param") and dim.dim_param:
        return dim.dim_param
    return None


def _type_spec(type_proto: Any) -> tuple[str, tuple | None]:
    kind = type_proto.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        t = getattr(type_proto, kind)
        shape = None
        if t.HasField("shape"):
            shape = tuple(_dim(d) for d in t.shape.dim)
        return dtype_name(t.elem_type), shape
    if kind == "sequence_type":
        return f"sequence({_type_spec(type_proto.sequence_type.elem_type)[0]})", None
    if kind == "map_type":
        m = type_proto.map_type
        return f"map({dtype_name(m.key_type)},{_type_spec(m.value_type)[0]})", None
    if kind == "optional_type":
        return f"optional({_type_spec(type_proto.optional_type.elem_type)[0]})", None
    return "unknown", None


def signature_of(graph: Any) -> Signature:
    """Inputs (without initializers) and outputs of a GraphProto."""
    inits = {i.name for i in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    def specs(values):
        return tuple(TensorSpec(v.name, *_type_spec(v.type)) for v in values)
    return Signature(inputs=specs(v for v in graph.input if v.name not in inits), outputs=specs(graph.output))


def _graph_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto in a graph and its subgraphs (initializers and attribute tensors)."""
    yield from graph.initializer
    yield from (s.values for s in graph.sparse_initializer)
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    from onnx import AttributeProto

    for attr in node.attribute:
        if attr.type == AttributeProto.TENSOR:
            yield attr.t
        elif attr.type == AttributeProto.TENSORS:
            yield from attr.tensors
        elif attr.type == AttributeProto.SPARSE_TENSOR:
            yield attr.sparse_tensor.values
        elif attr.type == AttributeProto.GRAPH:
            yield from _graph_tensors(attr.g)
        elif attr.type == AttributeProto.GRAPHS:
            for g in attr.graphs:
                yield from _graph_tensors(g)


def tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto a model holds: its graph, its training graphs and its local functions."""
    yield from _graph_tensors(model.graph)
    for info in model.training_info:
        yield from _graph_tensors(info.initialization)
        yield from _graph_tensors(info.algorithm)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def subgraphs(graph: Any) -> Iterator[Any]:
    """A graph and every subgraph inside it (If, Loop, Scan bodies)."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from subgraphs(attr.g)
            for sub in attr.graphs:
                yield from subgraphs(sub)


def all_nodes(graph: Any) -> Iterator[Any]:
    """Every node of a graph and its subgraphs."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from all_nodes(attr.g)
            for sub in attr.graphs:
                yield from all_nodes(sub)


def nbytes(tensor: Any) -> int | None:
    """The size of a tensor's data from its dims and type (None for types without a fixed size)."""
    import numpy as np
    from onnx import helper

    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return None
    return math.prod(tensor.dims) * itemsize


def check_external(tensor: Any, root: Path, model_dir: str, allow_hardlinks: bool) -> str:
    """Check one external-data tensor's location and byte range; return its file relative to root."""
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    check_location(location, what=f"external data location of tensor {tensor.name!r}")
    rel = f"{model_dir}/{location}" if model_dir else location
    path = check_file(root, os.path.normpath(rel), allow_hardlinks=allow_hardlinks,
                      what=f"external data file of tensor {tensor.name!r}")
    size = path.stat().st_size
    try:
        offset = int(entries.get("offset", 0))
        length = int(entries["length"]) if "length" in entries else None
    except ValueError:
        raise PackageSafetyError(f"tensor {tensor.name!r} has a non-integer external data offset/length") from None
    needed = length if length is not None else nbytes(tensor)
    if offset < 0 or (needed is not None and (needed < 0 or offset + needed > size)):
        raise PackageSafetyError(
            f"tensor {tensor.name!r} reads bytes {offset}..{offset + (needed or 0)} of {location!r}, "
            f"which holds only {size} bytes")
    return os.path.normpath(rel).replace(os.sep, "/")


def _without_external_data(model: Any) -> Any:
    """A copy of `model` in which no tensor points at a data file, so the checker reads none.

    The checker refuses hard-linked data files (as installed and validated packages have), and
    resolves locations against the working directory when given a proto. Every location was
    checked by `_check_external` already; here each external tensor becomes an empty tensor of
    the same rank (a scalar: zeros), which the checker accepts without reading anything.
    """
    from onnx import ModelProto, TensorProto

    copy = ModelProto()
    copy.CopyFrom(model)
    for tensor in tensors(copy):
        if tensor.data_location == TensorProto.EXTERNAL:
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT
            if len(tensor.dims):
                tensor.dims[:] = [0] * len(tensor.dims)
            else:
                tensor.raw_data = b"\0" * (nbytes(tensor) or 0)
    return copy


def _check_domains(model: Any, rel: str) -> None:
    """Refuse operators that need a custom-op library: nnpm never loads native code a package asks for."""
    functions = {(f.domain, f.name) for f in model.functions}
    nodes = [*all_nodes(model.graph), *(n for f in model.functions for n in f.node)]
    for info in model.training_info:
        nodes += [*all_nodes(info.initialization), *all_nodes(info.algorithm)]
    for node in nodes:   # a node may call one of the model's own functions, in that function's domain
        if node.domain not in STANDARD_DOMAINS and (node.domain, node.op_type) not in functions:
            raise ModelError(f"{rel!r} uses operator {node.op_type[:100]!r} from domain {node.domain[:100]!r}, which needs a "
                             "custom-op library", hint="nnpm runs standard ONNX, ONNX-ML and onnxruntime's "
                             "com.microsoft operators only; export the model without custom operators")


def _check_port_names(signature: Signature, rel: str) -> None:
    for spec in (*signature.inputs, *signature.outputs):
        try:
            check_printable(spec.name, key="name")
        except ManifestError:
            raise ModelError(f"{rel!r} names an input or output {spec.name!r} with control characters",
                             hint="rename it when exporting the model") from None


def count_params(model: Any) -> int:
    """Elements of every weight: initializers (sparse ones too) and Constant nodes, in every graph and subgraph."""
    from onnx import AttributeProto

    def graph_params(graph: Any) -> int:
        total = sum(math.prod(t.dims) for t in graph.initializer)
        total += sum(math.prod(s.values.dims) for s in graph.sparse_initializer)
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == AttributeProto.GRAPH:
                    total += graph_params(attr.g)
                elif attr.type == AttributeProto.GRAPHS:
                    total += sum(graph_params(g) for g in attr.graphs)
                elif node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                    total += _constant_size(attr)
        return total

    return graph_params(model.graph)


def _constant_size(attr: Any) -> int:
    from onnx import AttributeProto

    if attr.type == AttributeProto.TENSOR:
        return math.prod(attr.t.dims)
    if attr.type == AttributeProto.SPARSE_TENSOR:
        return math.prod(attr.sparse_tensor.values.dims)
    return len(attr.floats) + len(attr.ints) + len(attr.strings) or (1 if attr.type in (
        AttributeProto.FLOAT, AttributeProto.INT, AttributeProto.STRING) else 0)


def read_model(root: Path, rel: str, *, allow_hardlinks: bool = False, keep_proto: bool = False) -> ModelInfo:
    """Check the model file `rel` inside package folder `root` and read what nnpm records of it.

    `keep_proto` hands back the parsed graph too (external data not loaded), for the cost reader."""
    import onnx

    root = Path(root)
    path = check_file(root, rel, allow_hardlinks=allow_hardlinks, what="model file")
    if path.stat().st_size > MAX_PROTO_SIZE:
        raise PackageSafetyError(f"model file {rel!r} is over 2 GB",
                                 hint="save the weights as external data (onnx.save(..., save_as_external_data=True))")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeWarning or plain Exception
        raise ModelError(f"{rel!r} is not a readable ONNX model ({type(exc).__name__})",
                         hint="export the model again; the file may be truncated or not ONNX at all") from None
    if not model.HasField("graph") or not model.opset_import:
        raise ModelError(f"{rel!r} is not an ONNX model (no graph or no opset imports)",
                         hint="the file may be truncated or not ONNX at all")
    _check_domains(model, rel)
    model_dir = os.path.dirname(rel)
    external = []
    from onnx import TensorProto
    for tensor in tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL:
            external.append(check_external(tensor, root, model_dir, allow_hardlinks))
    try:
        if external:
            onnx.checker.check_model(_without_external_data(model))
        else:
            onnx.checker.check_model(str(path))
    except Exception as exc:  # ValidationError, or a C++ error for odd files
        first = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelError(f"{rel!r} fails the ONNX checker: {first}") from None
    params = count_params(model)
    signature = signature_of(model.graph)
    _check_port_names(signature, rel)
    return ModelInfo(
        signature=signature,
        opsets={o.domain or "": o.version for o in model.opset_import},
        ir_version=model.ir_version,
        params=params,
        external_files=tuple(dict.fromkeys(external)),
        proto=model if keep_proto else None,
    )
