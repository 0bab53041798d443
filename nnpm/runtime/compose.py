"""Fuse a pipeline's step graphs into one ONNX graph, wired as `nnpm.format.wiring.plan` says.

Every step's names get a `step/` prefix so they cannot collide, opsets are aligned with
onnx.version_converter, and exposed ports get their plain names through Identity nodes.
onnx is imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from nnpm.errors import PipelineError
from nnpm.format.wiring import Wiring

if TYPE_CHECKING:
    import onnx


def _align(models: dict[str, "onnx.ModelProto"]) -> dict[str, "onnx.ModelProto"]:
    """Bring every step to the same opset per domain and the same IR version."""
    import onnx
    from onnx import version_converter

    target: dict[str, int] = {}
    for m in models.values():
        for o in m.opset_import:
            target[o.domain or ""] = max(target.get(o.domain or "", 0), o.version)
    ir = max(m.ir_version for m in models.values())
    out = {}
    for step, m in models.items():
        have = {o.domain or "": o.version for o in m.opset_import}
        if have.get("", target.get("", 0)) < target.get("", 0):
            try:
                m = version_converter.convert_version(m, target[""])
            except Exception as exc:  # the converter raises plain RuntimeError/ValidationError
                raise PipelineError(f"cannot convert {step} from opset {have['']} to {target['']}: "
                                    f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        del m.opset_import[:]
        m.opset_import.extend(_opset(d, v) for d, v in sorted(target.items()) if d in have or d == "")
        m.ir_version = ir
        raised = [d for d in have if d and have[d] != target[d]]
        if raised:  # the version converter knows only the default domain: the step must check as is
            try:
                onnx.checker.check_model(checkable(m))
            except onnx.checker.ValidationError as exc:
                d = raised[0]
                raise PipelineError(f"{step} uses {d} opset {have[d]}, another step uses {target[d]}, and {step} "
                                    f"is not valid at {d} {target[d]}: {str(exc).strip().splitlines()[0]}",
                                    hint="rebuild one of the steps for the same opset") from None
        out[step] = m
    return out


def checkable(model: "onnx.ModelProto") -> "onnx.ModelProto":
    """`model` itself, or a copy whose external initializers are graph inputs of the same type and shape.

    The checker would read external data files relative to the working directory, and refuses
    hard-linked ones (installed files are hard links to the store). Their bytes were verified
    against the manifest already; as inputs, they keep their types and shapes for inference.
    Only top-level initializers may be external here: the pipeline loader inlines the rest.
    """
    from onnx import ModelProto, TensorProto, helper

    external = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return model
    copy = ModelProto()
    copy.CopyFrom(model)
    kept = [t for t in copy.graph.initializer if t.data_location != TensorProto.EXTERNAL]
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(kept)
    declared = {i.name for i in copy.graph.input}
    copy.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                            for t in external if t.name not in declared)
    return copy


def _opset(domain: str, version: int):
    from onnx import helper

    return helper.make_opsetid(domain, version)


def _prefix_graph(graph: "onnx.GraphProto", prefix: str) -> None:
    """Prefix every name in a graph and its subgraphs, in place.

    onnx.compose.add_prefix misses outer-scope initializers read inside subgraphs (it walks
    If/Loop/Scan bodies before it records the initializers), so it is not used for graphs.
    Renaming every name the same way in every scope keeps the scoping rules intact.
    """
    def p(name: str) -> str:
        return prefix + name if name else name

    for node in graph.node:
        node.name = p(node.name)
        ins, outs = [p(n) for n in node.input], [p(n) for n in node.output]
        del node.input[:]
        node.input.extend(ins)
        del node.output[:]
        node.output.extend(outs)
        for attr in node.attribute:
            if attr.HasField("g"):
                _prefix_graph(attr.g, prefix)
            for sub in attr.graphs:
                _prefix_graph(sub, prefix)
    for value in (*graph.input, *graph.output, *graph.value_info):
        value.name = p(value.name)
    for tensor in graph.initializer:
        tensor.name = p(tensor.name)
    for sparse in graph.sparse_initializer:
        sparse.values.name = p(sparse.values.name)
        sparse.indices.name = p(sparse.indices.name)


def _prefixed(model: "onnx.ModelProto", prefix: str) -> "onnx.ModelProto":
    from onnx import compose

    # add_prefix only for the model-local functions; the graph is renamed by _prefix_graph.
    out = compose.add_prefix(model, prefix, rename_nodes=False, rename_edges=False, rename_inputs=False,
                             rename_outputs=False, rename_initializers=False, rename_value_infos=False)
    _prefix_graph(out.graph, prefix)
    return out


def _names(graph: "onnx.GraphProto") -> set[str]:
    out = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    out |= {t.name for t in graph.initializer}
    for node in graph.node:
        out.update(node.input)
        out.update(node.output)
    return out


def fuse(models: Mapping[str, "onnx.ModelProto"], wiring: Wiring, *, name: str = "pipeline") -> "onnx.ModelProto":
    """One model from the steps' models, wired as planned; checked with onnx.checker.

    Initializers kept in external data stay there: they travel through the merge as empty
    placeholders (onnx.compose's own checker would look for their files) and get their
    shapes and locations back in the fused graph.
    """
    import onnx

    steps, stashed = {}, {}
    for step in wiring.order:
        copy = onnx.ModelProto()
        copy.CopyFrom(models[step])
        stashed.update({f"{step}/{k}": v for k, v in _stash_external(copy).items()})
        steps[step] = copy
    prefixed = {s: _prefixed(m, f"{s}/") for s, m in _align(steps).items()}
    fused = _merge(prefixed, wiring, name)
    _expose(fused.graph, wiring)
    _restore_external(fused.graph, stashed)
    fused.graph.name = name
    fused.producer_name = "nnpm"
    try:
        onnx.checker.check_model(checkable(fused), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise PipelineError(f"the fused graph of {name} does not pass the ONNX checker: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    return fused


def _merge(prefixed: dict[str, "onnx.ModelProto"], wiring: Wiring, name: str) -> "onnx.ModelProto":
    from onnx import compose

    for m in prefixed.values():  # merge_models needs every domain in both models
        have = {o.domain for o in m.opset_import}
        for other in prefixed.values():
            for o in other.opset_import:
                if o.domain not in have:
                    m.opset_import.append(o)
                    have.add(o.domain)
    fused = prefixed[wiring.order[0]]
    for step in wiring.order[1:]:
        io_map = [(f"{src.step}/{src.name}", f"{dst.step}/{dst.name}") for src, dst in wiring.edges if dst.step == step]
        keep = [o.name for o in fused.graph.output] + [o.name for o in prefixed[step].graph.output]
        fused = compose.merge_models(fused, prefixed[step], io_map=io_map, outputs=keep,
                                     name=name, producer_name="nnpm")
    return fused


def _expose(graph: "onnx.GraphProto", wiring: Wiring) -> None:
    """Give exposed ports their plain names through Identity nodes (which onnxruntime removes),
    so names used inside subgraphs never need rewriting."""
    import onnx
    from onnx import helper

    inner_names = _names(graph)
    for exposed in (*wiring.inputs, *wiring.outputs):
        if exposed in inner_names:
            raise PipelineError(f"the exposed name {exposed!r} is also the name of a tensor inside the fused graph",
                                hint="choose another name in [pipeline.inputs] or [pipeline.outputs]")
    head = []
    for exposed, port in wiring.inputs.items():
        inner = f"{port.step}/{port.name}"
        for value in graph.input:
            if value.name == inner:
                value.name = exposed
        head.append(helper.make_node("Identity", [exposed], [inner], name=f"nnpm/input/{exposed}"))
    nodes = head + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    outputs = {o.name: o for o in graph.output}
    new_outputs = []
    for exposed, port in wiring.outputs.items():
        inner = outputs[f"{port.step}/{port.name}"]
        graph.node.append(helper.make_node("Identity", [inner.name], [exposed], name=f"nnpm/output/{exposed}"))
        out = onnx.ValueInfoProto()
        out.CopyFrom(inner)
        out.name = exposed
        new_outputs.append(out)
    del graph.output[:]
    graph.output.extend(new_outputs)


_Stash = dict[str, tuple[list[int], list[tuple[str, str]]]]


def _stash_external(model: "onnx.ModelProto") -> _Stash:
    """Turn external initializers into empty placeholders; returns what they were, by name."""
    from onnx import TensorProto

    stash = {}
    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            stash[tensor.name] = (list(tensor.dims), [(e.key, e.value) for e in tensor.external_data])
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT
            if tensor.dims:
                tensor.dims[:] = [0] * len(tensor.dims)
            else:   # a scalar cannot be empty: one zero element, dropped again on restore
                tensor.raw_data = b"\0" * _itemsize(tensor.data_type)
    return stash


def _itemsize(data_type: int) -> int:
    import numpy as np
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize


def _restore_external(graph: "onnx.GraphProto", stash: _Stash) -> None:
    from onnx import TensorProto

    for tensor in graph.initializer:
        if tensor.name in stash:
            dims, entries = stash[tensor.name]
            tensor.dims[:] = dims
            tensor.ClearField("raw_data")
            del tensor.external_data[:]
            for key, value in entries:
                tensor.external_data.add(key=key, value=value)
            tensor.data_location = TensorProto.EXTERNAL
