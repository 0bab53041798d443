"""The pipeline diagram on a pipeline's card: its steps top to bottom, each wire labelled, as a layout for SVG.

The wiring is the one the registry checks at publish (`nnpm.format.wiring.plan`), over the
newest published steps the pipeline's ranges allow now. Steps are boxes in the wiring's
order; above each box, a band names what flows into it: the producer's port and the
consumer's, the dtype and the shape. A wire from a step further up runs down a lane at the
left. The pipeline's exposed inputs come from an "inputs" box at the top, its outputs go to
an "outputs" box at the bottom; a step that is itself a pipeline is a group holding its own
steps (three levels deep, then a plain box). A step missing here, or wiring that no longer
checks, draws the steps in order without labels and says why. The template
(templates/_diagram.html) writes the SVG; long text is cut to fit (web/svg.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from sqlalchemy.orm import Session

from nnpm.errors import NnpmError
from nnpm.format.manifest import Manifest, Signature
from nnpm.format.project import Project, step_graph, step_package
from nnpm.format.wiring import Port, check_pipeline, graph_signature, plan
from registry_server.services.catalog import manifest_of
from registry_server.services.pipelines import newest_step
from registry_server.web.svg import label

Lookup = Callable[[str, SpecifierSet], "Manifest | None"]

WIDTH = 360          # the viewBox's width: about a phone's card, so text stays readable at 390 px
PAD, LANE, MAX_LANES = 4, 8, 3
BOX_H, TERM_H, HEAD_H, INDENT = 42, 24, 40, 10
EDGE_H, BAND_PAD = 30, 7
NAME, SMALL = 13, 11  # font sizes
GROUP_DEPTH = 3


@dataclass
class _Edge:
    src: int          # node index: 0 is the flow's inputs, len(nodes) + 1 its outputs
    dst: int
    ports: str = ""   # "pixels → input"
    kind: str = ""    # "float32 [1, 3, 224, 224]"


@dataclass
class _Node:
    name: str
    sub: str
    group: "_Flow | None" = None


@dataclass
class _Flow:
    nodes: list[_Node]
    edges: list[_Edge]
    note: str | None = None
    words: list[str] = field(default_factory=list)   # the accessible description, sentence by sentence


def registry_lookup(session: Session) -> Lookup:
    """A step lookup over this registry: the newest published version a range allows (what installs pick)."""
    def lookup(name: str, spec: SpecifierSet) -> Manifest | None:
        row = newest_step(session, name, spec)
        return manifest_of(row) if row is not None else None
    return lookup


def _step_node(step: str, project: Project, lookup: Lookup, depth: int) -> tuple[_Node, Signature | None, str | None]:
    """A step's box, its signature (None when unknown) and, when unknown, why."""
    package, graph = step_package(step), step_graph(step)
    spec = project.dependencies[package]
    found = lookup(package, spec)
    if found is None:
        return _Node(step, "not on this registry"), None, f"{package}{spec or ''} has no published version here"
    nested = found.project.pipeline is not None
    try:
        sig = check_pipeline(found.project, lookup) if nested else graph_signature(found, graph, step)
    except NnpmError as e:
        return _Node(step, f"{found.version}"), None, f"{step}: {e}"
    group = _flow(found.project, lookup, depth + 1) if nested and depth < GROUP_DEPTH else None
    kind = "pipeline" if nested else ("graph " + graph if graph else "model")
    return _Node(step, f"{found.version} · {kind}", group), sig, None if sig else f"{step}'s steps are not all here"


def _spec_text(sig: Signature, port: Port, side: str) -> str:
    spec = next(s for s in getattr(sig, side) if s.name == port.name)
    return f"{spec.dtype} {spec.shape_text()}"


def _arrow(a: str, b: str) -> str:
    return a if a == b else f"{a} → {b}"


def _flow(project: Project, lookup: Lookup, depth: int = 0) -> _Flow:
    """A pipeline's steps and labelled wires (or, when they cannot be planned, its steps in order and why)."""
    steps = project.pipeline.steps
    made = {step: _step_node(step, project, lookup, depth) for step in steps}
    problems = [why for _, _, why in made.values() if why]
    sigs = {step: sig for step, (_, sig, _) in made.items() if sig is not None}
    wiring = None
    if not problems:
        try:
            wiring = plan(project.pipeline, sigs)
        except NnpmError as e:
            problems.append(str(e))
    if wiring is None:
        nodes = [made[s][0] for s in steps]
        return _Flow(nodes, [_Edge(i, i + 1) for i in range(len(nodes) + 1)],
                     "The wiring is not drawn: " + problems[0] + ".",
                     ["Steps in order: " + ", ".join(f"{n.name} ({n.sub})" for n in nodes) + "."])
    at = {step: i + 1 for i, step in enumerate(wiring.order)}
    out = len(steps) + 1
    edges = [_Edge(0, at[p.step], _arrow(name, p.name), _spec_text(sigs[p.step], p, "inputs"))
             for name, p in wiring.inputs.items()]
    for src, dst in wiring.edges:
        near = at[src.step] == at[dst.step] - 1
        edges.append(_Edge(at[src.step], at[dst.step], _arrow(src.name if near else str(src), dst.name),
                           _spec_text(sigs[src.step], src, "outputs")))
    edges += [_Edge(at[p.step], out, _arrow(p.name, name), _spec_text(sigs[p.step], p, "outputs"))
              for name, p in wiring.outputs.items()]
    nodes = [made[s][0] for s in wiring.order]
    words = ["Steps in order: " + ", ".join(f"{n.name} ({n.sub})" for n in nodes) + "."]
    words += [f"Input {name} ({e.kind}) into {p}." for (name, p), e in zip(wiring.inputs.items(), edges)]
    words += [f"{s} to {d}: {_spec_text(sigs[s.step], s, 'outputs')}." for s, d in wiring.edges]
    words += [f"Output {name} ({_spec_text(sigs[p.step], p, 'outputs')}) from {p}." for name, p in wiring.outputs.items()]
    return _Flow(nodes, edges, None, words)


class _Canvas:
    """What the template draws: boxes, wires, arrowheads, junction dots and text, in picture coordinates."""

    def __init__(self) -> None:
        self.boxes: list[dict] = []
        self.wires: list[str] = []
        self.heads: list[str] = []
        self.dots: list[tuple[float, float]] = []
        self.texts: list[dict] = []

    def text(self, x: float, y: float, text: str, width: float, size: float, cls: str) -> None:
        self.texts.append({"x": x, "y": y, "cls": cls, **label(text, width, size)})

    def arrow(self, x: float, top: float, bottom: float) -> None:
        self.wires.append(f"M{x} {top}V{bottom - 5}")
        self.heads.append(f"{x - 4},{bottom - 6} {x + 4},{bottom - 6} {x},{bottom}")


def _band(c: _Canvas, flow: _Flow, k: int, rects: dict, x: float, bx: float, right: float, y: float,
          lanes: dict[int, int]) -> float:
    """The band above node `k`: one label per wire into it, skip wires joining from their lanes; its bottom."""
    incoming = [(i, e) for i, e in enumerate(flow.edges) if e.dst == k]
    trunk, text_x = bx + 14, bx + 26
    start = y + BAND_PAD
    joins = []
    for i, e in incoming:
        if e.src != k - 1:
            lane_x = x + lanes[i] * LANE + 4
            sx, sy, _, sh = rects[e.src]
            c.wires.append(f"M{sx} {sy + sh / 2}H{lane_x}V{start + 9}H{trunk}")
            c.dots.append((trunk, start + 9))
            joins.append(start + 9)
        if e.ports:
            c.text(text_x, start + 11, e.ports, right - 4 - text_x, SMALL, "pic-port")
            c.text(text_x, start + 24, e.kind, right - 4 - text_x, SMALL, "pic-type")
            start += EDGE_H
    bottom = max(start, y + 2 * BAND_PAD + 6) + BAND_PAD
    near = any(e.src == k - 1 for _, e in incoming)
    if near or joins:
        _, py, _, ph = rects[k - 1]
        c.arrow(trunk, py + ph if near else min(joins), bottom)
    return bottom


def _draw(c: _Canvas, flow: _Flow, x: float, w: float, y: float, source: tuple) -> float:
    """Draw `flow`'s bands and steps inside [x, x + w] below the `source` rect; the top of its outputs."""
    skips = [i for i, e in enumerate(flow.edges) if e.src != e.dst - 1]
    lanes = {i: n % MAX_LANES for n, i in enumerate(skips)}
    bx = x + min(len(skips), MAX_LANES) * LANE
    bw = x + w - bx
    rects = {0: source}
    for k, node in enumerate(flow.nodes, start=1):
        y = _band(c, flow, k, rects, x, bx, x + w, y, lanes)
        if node.group is None:
            c.boxes.append({"x": bx, "y": y, "w": bw, "h": BOX_H, "cls": "pic-step"
                            + (" pic-missing" if node.sub == "not on this registry" else "")})
            c.text(bx + 10, y + 17, node.name, bw - 20, NAME, "pic-name")
            c.text(bx + 10, y + 33, node.sub, bw - 20, SMALL, "pic-sub")
            rects[k] = (bx, y, bw, BOX_H)
        else:
            box = {"x": bx, "y": y, "w": bw, "h": 0, "cls": "pic-group"}
            c.boxes.append(box)
            c.text(bx + 10, y + 17, node.name, bw - 20, NAME, "pic-name")
            c.text(bx + 10, y + 33, node.sub, bw - 20, SMALL, "pic-sub")
            end = _draw(c, node.group, bx + INDENT, bw - 2 * INDENT, y + HEAD_H - BAND_PAD, (bx, y, bw, HEAD_H))
            box["h"] = end - y
            rects[k] = (bx, y, bw, box["h"])
        y = rects[k][1] + rects[k][3]
    return _band(c, flow, len(flow.nodes) + 1, rects, x, bx, x + w, y, lanes)


def _describe(flow: _Flow) -> list[str]:
    words = list(flow.words)
    for node in flow.nodes:
        if node.group is not None:
            words.append(f"Inside {node.name}: " + " ".join(_describe(node.group)))
    return words


def pipeline_diagram(manifest: Manifest, lookup: Lookup) -> dict | None:
    """The card's pipeline diagram as a layout for templates/_diagram.html, or None for a model."""
    if manifest.project.pipeline is None:
        return None
    flow = _flow(manifest.project, lookup)
    c = _Canvas()
    c.boxes.append({"x": PAD, "y": PAD, "w": WIDTH - 2 * PAD, "h": TERM_H, "cls": "pic-terminal"})
    c.text(PAD + 10, PAD + 16, "inputs", 100, SMALL, "pic-sub")
    end = _draw(c, flow, PAD, WIDTH - 2 * PAD, PAD + TERM_H, (PAD, PAD, WIDTH - 2 * PAD, TERM_H))
    c.boxes.append({"x": PAD, "y": end, "w": WIDTH - 2 * PAD, "h": TERM_H, "cls": "pic-terminal"})
    c.text(PAD + 10, end + 16, "outputs", 100, SMALL, "pic-sub")
    return {"width": WIDTH, "height": round(end + TERM_H + PAD), "boxes": c.boxes, "wires": c.wires,
            "heads": c.heads, "dots": c.dots, "texts": c.texts, "note": flow.note,
            "title": f"How the steps of {manifest.name} are wired",
            "desc": " ".join(_describe(flow)), "steps": [n.name for n in flow.nodes]}
