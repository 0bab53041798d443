"""Pipeline wiring: how steps connect, checked against their signatures. Pure; no onnx.

`plan` takes a pipeline section and each step's signature and returns the wiring (edges,
exposed inputs and outputs, a topological order) or a PipelineError naming both ports.
`check_pipeline` plans a pipeline whose steps a lookup function finds (installed
packages at pack, published versions at publish), nested pipelines included. Client and
registry both check with this module; fusing the graphs is `nnpm.runtime.compose`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet

from nnpm.errors import PipelineError
from nnpm.format.fields import normal_name
from nnpm.format.manifest import Manifest, Signature, TensorSpec
from nnpm.format.project import PipelineSection, Project, step_graph, step_package

MAX_NESTING = 20


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
        package, colon, graph = step.partition(":")
        return cls(normal_name(package) + colon + graph, name)


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
        if isinstance(x, int) and isinstance(y, int) and x > 0 and y > 0 and x != y:
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


def graph_signature(manifest: Manifest, graph: str | None, step: str, variant: str = "reference") -> Signature:
    """The signature of the graph a step names (the package's only graph when `graph` is None)."""
    names = manifest.graph_names()
    if graph is None and len(names) > 1:
        raise PipelineError(f"step {step!r}: {manifest.name} has several graphs; name one as "
                            f"'{manifest.name}:GRAPH'", hint="its graphs: " + ", ".join(names))
    if graph is not None and graph not in names:
        raise PipelineError(f"step {step!r}: {manifest.name} has no graph {graph!r}", hint="its graphs: " + ", ".join(names))
    return manifest.graph(variant, graph).signature


def check_pipeline(project: Project, lookup: Callable[[str, SpecifierSet], Manifest | None], *,
                   _depth: int = 0) -> Signature | None:
    """Check a pipeline's wiring against the step manifests `lookup(name, specifier)` finds.

    Returns the pipeline's signature, or None when `lookup` has no manifest for some step
    (the caller decides whether that is an error). Nested pipelines are planned recursively.
    """
    if _depth > MAX_NESTING:
        raise PipelineError(f"{project.name}: pipelines nest more than {MAX_NESTING} levels deep (a cycle?)")
    sigs = {}
    for step in project.pipeline.steps:
        package, graph = step_package(step), step_graph(step)
        manifest = lookup(package, project.dependencies[package])
        if manifest is None:
            return None
        if manifest.project.pipeline is not None:
            if graph is not None:
                raise PipelineError(f"step {step!r}: {package} is a pipeline, it has no graph {graph!r}")
            sig = check_pipeline(manifest.project, lookup, _depth=_depth + 1)
            if sig is None:
                return None
        else:
            sig = graph_signature(manifest, graph, step)
        sigs[step] = sig
    return signature(plan(project.pipeline, sigs), sigs)
