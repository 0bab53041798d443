"""Pipelines: check how steps wire together, and fuse them into one ONNX graph.

`plan` is pure: it takes the pipeline section and each step's signature and returns the
wiring (edges, exposed inputs and outputs, a topological order) or a PipelineError
naming both ports. `fuse` builds one graph with onnx.compose: every step's names get a
`step/` prefix so they cannot collide, opsets are aligned with onnx.version_converter,
and exposed ports get their plain names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from nnpm.errors import PipelineError
from nnpm.manifest import PipelineSection, Signature, TensorSpec

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True, order=True)
class Port:
    """One input or output of one step."""

    step: str
    name: str

    def __str__(self) -> str:
        return f"{self.step}.{self.name}"

    @classmethod
    def parse(cls, text: str) -> "Port":
        """'resnet18.input' → Port('resnet18', 'input'); canonical step names hold no dots."""
        step, _, name = text.partition(".")
        return cls(canonicalize_name(step), name)


@dataclass(frozen=True)
class Wiring:
    """How a pipeline's steps connect, in an order where every producer comes first."""

    order: tuple[str, ...]
    edges: tuple[tuple[Port, Port], ...]          # (producer output, consumer input)
    inputs: dict[str, Port]                       # exposed name → step input
    outputs: dict[str, Port]                      # exposed name → step output


def _spec(sigs: Mapping[str, Signature], port: Port, side: str) -> TensorSpec:
    if port.step not in sigs:
        raise PipelineError(f"{port} names step {port.step!r}, which is not in the pipeline",
                            hint="steps are: " + ", ".join(sigs))
    specs = getattr(sigs[port.step], side)
    for spec in specs:
        if spec.name == port.name:
            return spec
    kind = "input" if side == "inputs" else "output"
    raise PipelineError(f"{port} is not an {kind} of {port.step}",
                        hint=f"{port.step} {side}: " + ", ".join(s.name for s in specs))


def _check_edge(src: Port, dst: Port, a: TensorSpec, b: TensorSpec) -> None:
    if a.dtype != b.dtype:
        raise PipelineError(f"{src} gives {a.dtype} but {dst} expects {b.dtype}",
                            hint="add a step that casts, or wire another port")
    if a.shape is None or b.shape is None:
        return
    if len(a.shape) != len(b.shape):
        raise PipelineError(f"{src} has shape {a.shape_text()} (rank {len(a.shape)}) but {dst} expects "
                            f"{b.shape_text()} (rank {len(b.shape)})")
    for i, (x, y) in enumerate(zip(a.shape, b.shape)):
        if isinstance(x, int) and isinstance(y, int) and x != y:
            raise PipelineError(f"{src} has shape {a.shape_text()} but {dst} expects {b.shape_text()} "
                                f"(dimension {i}: {x} vs {y})")


def _chain_edges(steps: tuple[str, ...], sigs: Mapping[str, Signature]) -> list[tuple[Port, Port]]:
    edges = []
    for a, b in zip(steps, steps[1:]):
        outs, ins = sigs[a].outputs, sigs[b].inputs
        if len(outs) == len(ins):
            pairs = list(zip(outs, ins))
        else:
            by_name = {o.name: o for o in outs}
            pairs = [(by_name[i.name], i) for i in ins if i.name in by_name]
            if not pairs:
                raise PipelineError(
                    f"cannot chain {a} -> {b}: {a} has {len(outs)} output(s) ({', '.join(o.name for o in outs)}), "
                    f"{b} has {len(ins)} input(s) ({', '.join(i.name for i in ins)}) and no names match",
                    hint="wire them explicitly in [pipeline.connect]")
        edges += [(Port(a, o.name), Port(b, i.name)) for o, i in pairs]
    return edges


def _order(steps: tuple[str, ...], edges: list[tuple[Port, Port]]) -> tuple[str, ...]:
    """Kahn's algorithm, ties broken by the declared step order; a cycle is an error."""
    preds = {s: {src.step for src, dst in edges if dst.step == s} for s in steps}
    order: list[str] = []
    while len(order) < len(steps):
        ready = [s for s in steps if s not in order and preds[s] <= set(order)]
        if not ready:
            stuck = [s for s in steps if s not in order]
            raise PipelineError("the pipeline's connections form a cycle through " + " -> ".join(stuck + stuck[:1]),
                                hint="every step must come after the steps it reads from")
        order.append(ready[0])
    return tuple(order)


def _expose(table: Mapping[str, str], defaults: list[Port], side: str,
            sigs: Mapping[str, Signature]) -> dict[str, Port]:
    if table:
        out = {}
        for name, text in table.items():
            port = Port.parse(text)
            _spec(sigs, port, side)
            out[name] = port
        return out
    counts: dict[str, int] = {}
    for p in defaults:
        counts[p.name] = counts.get(p.name, 0) + 1
    return {(p.name if counts[p.name] == 1 else f"{p.step}.{p.name}"): p for p in defaults}


def plan(pipeline: PipelineSection, sigs: Mapping[str, Signature]) -> Wiring:
    """Check a pipeline's wiring against its steps' signatures and return it."""
    steps = pipeline.steps
    missing = [s for s in steps if s not in sigs]
    if missing:
        raise PipelineError(f"no signature for step(s) {', '.join(missing)}")
    if pipeline.connect:
        edges = [(Port.parse(src), Port.parse(dst)) for dst, src in pipeline.connect.items()]
    else:
        edges = _chain_edges(steps, sigs)
    fed: dict[Port, Port] = {}
    for src, dst in edges:
        _check_edge(src, dst, _spec(sigs, src, "outputs"), _spec(sigs, dst, "inputs"))
        if src.step == dst.step:
            raise PipelineError(f"{src} feeds its own step ({dst})", hint="a step cannot read its own output")
        fed[dst] = src
    order = _order(steps, edges)
    open_inputs = [Port(s, i.name) for s in order for i in sigs[s].inputs if Port(s, i.name) not in fed]
    consumed = {src for src, _ in edges}
    if pipeline.connect:
        sinks = [Port(s, o.name) for s in order for o in sigs[s].outputs if Port(s, o.name) not in consumed]
    else:
        sinks = [Port(order[-1], o.name) for o in sigs[order[-1]].outputs]
    inputs = _expose(pipeline.inputs, open_inputs, "inputs", sigs)
    unexposed = [p for p in open_inputs if p not in inputs.values()]
    if unexposed:
        raise PipelineError(f"input {unexposed[0]} is neither connected nor exposed",
                            hint="connect it in [pipeline.connect] or name it in [pipeline.inputs]")
    seen: dict[Port, str] = {}
    for name, port in inputs.items():
        if port in seen:
            raise PipelineError(f"[pipeline.inputs] {seen[port]} and {name} both expose {port}",
                                hint="one port takes one pipeline input; remove one of them")
        seen[port] = name
    for name, port in inputs.items():
        if port in fed:
            raise PipelineError(f"[pipeline.inputs] {name} = {port}, but {port} is already fed by {fed[port]}")
    outputs = _expose(pipeline.outputs, sinks, "outputs", sigs)
    for name in inputs:
        if name in outputs:
            raise PipelineError(f"{inputs[name]} and {outputs[name]} would both be exposed as {name!r}",
                                hint="give them different names in [pipeline.inputs] and [pipeline.outputs]")
    return Wiring(order=order, edges=tuple(edges), inputs=inputs, outputs=outputs)


def signature(wiring: Wiring, sigs: Mapping[str, Signature]) -> Signature:
    """The pipeline's own signature: its exposed ports with their steps' dtypes and shapes."""
    def specs(table: dict[str, Port], side: str) -> tuple[TensorSpec, ...]:
        out = []
        for name, port in table.items():
            spec = _spec(sigs, port, side)
            out.append(TensorSpec(name, spec.dtype, spec.shape))
        return tuple(out)
    return Signature(inputs=specs(wiring.inputs, "inputs"), outputs=specs(wiring.outputs, "outputs"))


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
                onnx.checker.check_model(m)
            except onnx.checker.ValidationError as exc:
                d = raised[0]
                raise PipelineError(f"{step} uses {d} opset {have[d]}, another step uses {target[d]}, and {step} "
                                    f"is not valid at {d} {target[d]}: {str(exc).strip().splitlines()[0]}",
                                    hint="rebuild one of the steps for the same opset") from None
        out[step] = m
    return out


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
    """One model from the steps' models, wired as planned; checked with onnx.checker."""
    import onnx
    from onnx import compose, helper

    aligned = _align({s: models[s] for s in wiring.order})
    prefixed = {s: _prefixed(m, f"{s}/") for s, m in aligned.items()}
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
    graph = fused.graph
    inner_names = _names(graph)
    for exposed in (*wiring.inputs, *wiring.outputs):
        if exposed in inner_names:
            raise PipelineError(f"the exposed name {exposed!r} is also the name of a tensor inside the fused graph",
                                hint="choose another name in [pipeline.inputs] or [pipeline.outputs]")
    # Exposed ports get plain names through Identity nodes (which onnxruntime removes),
    # so names used inside subgraphs never need rewriting.
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
    graph.name = name
    fused.producer_name = "nnpm"
    try:
        onnx.checker.check_model(fused, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise PipelineError(f"the fused graph of {name} does not pass the ONNX checker: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    return fused


def load_pipeline(pkg: Any, env: Any, **kw: Any) -> Any:
    """Entry point the runtime calls for pipeline packages (see nnpm.pipeline)."""
    from nnpm.pipeline import load_pipeline as _load

    return _load(pkg, env, **kw)


def check_pipeline(project: Any, lookup: Any, *, _depth: int = 0) -> Signature | None:
    """Check a pipeline's wiring against the step manifests `lookup(name, specifier)` finds.

    Returns the pipeline's signature, or None when `lookup` has no manifest for some step
    (the caller decides whether that is an error). Nested pipelines are planned recursively.
    """
    if _depth > 20:
        raise PipelineError(f"{project.name}: pipelines nest more than 20 levels deep (a cycle?)")
    sigs = {}
    for step in project.pipeline.steps:
        manifest = lookup(step, project.dependencies[step])
        if manifest is None:
            return None
        if manifest.project.pipeline is not None:
            sig = check_pipeline(manifest.project, lookup, _depth=_depth + 1)
            if sig is None:
                return None
        else:
            sig = manifest.signature
        sigs[step] = sig
    return signature(plan(project.pipeline, sigs), sigs)
