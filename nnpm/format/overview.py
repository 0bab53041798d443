"""What a graph is made of, read without running it: operator counts and the largest initializers.

`graph_overview(model)` works on an onnx ModelProto loaded without its external data
(`onnxinfo.read_model(..., keep_proto=True)`): every node of the graph and of its subgraphs
counted by operator (`Conv`; outside the default domain qualified, `com.microsoft:QGemm`),
every initializer (sparse ones and those of subgraphs too) counted and summed, and the
MAX_LARGEST biggest listed with name, dtype, shape and bytes. An external-data tensor
counts by its declared size (its `length`, else dims × item size): no data file is opened.

    {"nodes": 62, "ops": [["Conv", 20], ["Relu", 17], ...], "other": 0,
     "initializers": 102, "initializer_bytes": 46_758_912, "external_bytes": 0,
     "largest": [{"name": "fc.weight", "dtype": "float32", "shape": [1000, 512], "bytes": 2_048_000,
                  "external": false}, ...]}

A version's overview is `{"variants": {variant: {graph: that}}}`, computed once at publish
by the registry's validation worker and stored with the version (`versions.overview_json`).
`bounded(value)` rebuilds such a value from what a worker answered, keeping only the keys
and types above, within MAX_OVERVIEW_BYTES. onnx is imported lazily.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from typing import Any

from nnpm.format.limits import KIB
from nnpm.format.onnxinfo import all_nodes, dtype_name, nbytes, subgraphs

MAX_OPS = 100            # operators listed per graph, most used first; the rest are counted in "other"
MAX_LARGEST = 10         # initializers listed per graph
MAX_TEXT = 200           # characters of a name or an operator kept
MAX_DIMS = 16            # dims of a shape kept
MAX_OVERVIEW_BYTES = 256 * KIB
_DEFAULT_DOMAINS = ("", "ai.onnx")
_TRIMMED = ((MAX_OPS, MAX_LARGEST, MAX_TEXT), (20, 5, 60), (0, 0, 0))   # what `bounded` tries, in turn


def op_name(domain: str, op_type: str) -> str:
    """`Conv` in the default domain, `com.microsoft:QGemm` outside it (each part cut to MAX_TEXT // 2)."""
    half = MAX_TEXT // 2
    return op_type[:half] if domain in _DEFAULT_DOMAINS else f"{domain[:half]}:{op_type[:half]}"


def tensor_bytes(tensor: Any) -> int:
    """A tensor's size as declared: an external one's `length` (else dims × item size); strings by their bytes."""
    from onnx import TensorProto

    if tensor.data_location == TensorProto.EXTERNAL:
        length = {e.key: e.value for e in tensor.external_data}.get("length", "")
        if length.isdigit():
            return int(length)
    size = nbytes(tensor)
    if size is None:
        return sum(len(s) for s in tensor.string_data)
    return size


def _initializers(model: Any) -> list[tuple[Any, tuple[int, ...], int, bool]]:
    """(values tensor, shape, bytes, external) of every initializer of the graph and its subgraphs."""
    from onnx import TensorProto

    out = []
    for graph in subgraphs(model.graph):
        for t in graph.initializer:
            out.append((t, tuple(t.dims), tensor_bytes(t), t.data_location == TensorProto.EXTERNAL))
        for s in graph.sparse_initializer:
            external = TensorProto.EXTERNAL in (s.values.data_location, s.indices.data_location)
            out.append((s.values, tuple(s.dims), tensor_bytes(s.values) + tensor_bytes(s.indices), external))
    return out


def graph_overview(model: Any, *, largest: int = MAX_LARGEST, max_ops: int = MAX_OPS) -> dict:
    """Operator counts and the largest initializers of one graph (see the module docstring)."""
    counts = Counter(op_name(n.domain, n.op_type) for n in all_nodes(model.graph))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    inits = _initializers(model)
    biggest = heapq.nsmallest(largest, inits, key=lambda i: (-i[2], i[0].name))
    return {
        "nodes": sum(counts.values()),
        "ops": [[op, n] for op, n in ranked[:max_ops]],
        "other": sum(n for _, n in ranked[max_ops:]),
        "initializers": len(inits),
        "initializer_bytes": sum(i[2] for i in inits),
        "external_bytes": sum(i[2] for i in inits if i[3]),
        "largest": [{"name": t.name[:MAX_TEXT], "dtype": dtype_name(t.data_type), "shape": list(shape[:MAX_DIMS]),
                     "rank": len(shape), "bytes": size, "external": external}
                    for t, shape, size, external in biggest],
    }


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _text(value: Any, limit: int) -> str | None:
    """A string cut to `limit` characters, lone surrogates (never in a graph, possible in JSON) replaced."""
    return value[:limit].encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else None


def _tensor(value: Any, limit: int) -> dict | None:
    """One `largest` entry rebuilt from untrusted JSON, or None."""
    if not isinstance(value, dict) or _text(value.get("name"), limit) is None or _count(value.get("bytes")) is None:
        return None
    shape = value.get("shape")
    dims = [d for d in shape[:MAX_DIMS] if _count(d) is not None] if isinstance(shape, list) else []
    return {"name": _text(value["name"], limit), "dtype": _text(value.get("dtype"), 40), "shape": dims,
            "rank": _count(value.get("rank")) if _count(value.get("rank")) is not None else len(dims),
            "bytes": value["bytes"], "external": value.get("external") is True}


def _graph(value: Any, max_ops: int, largest: int, limit: int) -> dict | None:
    """One graph's overview rebuilt from untrusted JSON: known keys of the right types only."""
    if not isinstance(value, dict):
        return None
    ops = value.get("ops") if isinstance(value.get("ops"), list) else []
    pairs = [(_text(op[0], limit), op[1]) for op in ops
             if isinstance(op, list) and len(op) == 2 and isinstance(op[0], str) and _count(op[1]) is not None]
    other = (_count(value.get("other")) or 0) + sum(n for _, n in pairs[max_ops:])
    tensors = value.get("largest") if isinstance(value.get("largest"), list) else []
    out = {key: _count(value.get(key)) for key in ("nodes", "initializers", "initializer_bytes", "external_bytes")}
    out.update(ops=[[op, n] for op, n in pairs[:max_ops]], other=other,
               largest=[t for t in (_tensor(v, limit) for v in tensors[:largest]) if t is not None])
    return out


def _rebuilt(value: dict, max_ops: int, largest: int, limit: int) -> dict:
    variants: dict[str, dict] = {}
    for variant, graphs in value["variants"].items():
        if isinstance(variant, str) and isinstance(graphs, dict):
            kept = {g: _graph(v, max_ops, largest, limit) for g, v in graphs.items() if isinstance(g, str)}
            variants[_text(variant, MAX_TEXT)] = {_text(g, MAX_TEXT): v for g, v in kept.items() if v is not None}
    return {"variants": variants}


def bounded(value: Any) -> dict | None:
    """An overview as it may be stored: rebuilt from `value` (untrusted JSON), trimmed to MAX_OVERVIEW_BYTES.

    Past the limit fewer operators and initializers are listed, with shorter names, then
    none (the counts stay); a value that is not a dict with a `variants` dict is None."""
    if not isinstance(value, dict) or not isinstance(value.get("variants"), dict):
        return None
    for max_ops, largest, limit in _TRIMMED:
        out = _rebuilt(value, max_ops, largest, limit)
        if len(json.dumps(out)) <= MAX_OVERVIEW_BYTES:
            return out
    return None
