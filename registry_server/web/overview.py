"""The model card's Graph overview: one section per graph, its figures per variant.

Parameters, MACs, precision, opsets and sizes come from the manifest's `graphs` table
(nnpm/format/graphs.py); operator counts and the largest initializers from what the
registry's worker read at publish (`versions.overview_json`, nnpm/format/overview.py).
A version published before the registry read them has NULL there: the card shows the
manifest's figures and says so. The stored value is the registry's own, read defensively
all the same: a value of the wrong type shows as a dash. Templates escape every string.
A pipeline has no graph of its own, so no overview.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nnpm.format.graphs import GraphEntry
from nnpm.format.manifest import Manifest
from nnpm.format.variants import REFERENCE
from registry_server.web.render import human_count, human_size

_BREAKS = re.compile(r"(?<=[._/:,\-])|(?<=[a-z])(?=[A-Z])")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _stored(overview_json: str | None) -> dict[str, dict] | None:
    """variant → graph → what was read; None when nothing was recorded (or the column is unreadable)."""
    try:
        value = json.loads(overview_json) if overview_json else None
    except ValueError:
        return None
    variants = value.get("variants") if isinstance(value, dict) else None
    if not isinstance(variants, dict):
        return None
    return {v: g for v, g in variants.items() if isinstance(g, dict)}


def breakable(text: str, chunk: int = 20) -> list[str]:
    """`text` in pieces a line may break between (after `._/:-,`, between a lower- and an upper-case letter, and
    every `chunk` characters), for `<wbr>` in the template: long names wrap, not push the page wide."""
    pieces = [p for p in _BREAKS.split(text) if p]
    return [p[i:i + chunk] for p in pieces for i in range(0, len(p), chunk)] or [""]


def _opsets(entry: GraphEntry) -> str:
    return ", ".join(f"{domain or 'ai.onnx'} {version}" for domain, version in sorted(entry.opsets.items()))


FIGURES = (("file", "File"), ("precision", "Precision"), ("params", "Parameters"), ("macs", "MACs"),
           ("nodes", "Nodes"), ("initializers", "Initializers"), ("size", "Size"), ("opsets", "Opsets"))


def _figures(entry: GraphEntry, read: dict | None) -> dict[str, tuple[str | None, str | None]]:
    """One variant of one graph: figure → (text, title); the manifest's figures and the counts the worker read
    (text None: a dash)."""
    read = read or {}
    nodes, inits, init_bytes = (_count(read.get(k)) for k in ("nodes", "initializers", "initializer_bytes"))
    external = _count(read.get("external_bytes"))
    init_title = None if init_bytes is None else f"{human_size(init_bytes)}" + (
        f", {human_size(external)} of it in external data" if external else "")
    return {
        "file": (entry.file, None), "precision": (entry.precision, None),
        "params": (human_count(entry.params), f"{entry.params:,}"),
        "macs": (human_count(entry.macs), f"{entry.macs:,}") if entry.macs is not None else (None, None),
        "nodes": (f"{nodes:,}" if nodes is not None else None, None),
        "initializers": (f"{inits:,}" if inits is not None else None, init_title),
        "size": (human_size(entry.bytes), f"{entry.bytes:,} bytes, the graph and its data files"),
        "opsets": (_opsets(entry) or None, None),
    }


def _figure_rows(per_variant: dict[str, dict[str, tuple[str | None, str | None]]]) -> list[dict]:
    """The figures as table rows: one per figure, a cell per variant."""
    return [{"key": key, "label": label,
             "cells": [{"variant": v, "parts": _parts(key, f[key][0]), "title": f[key][1]} for v, f in per_variant.items()]}
            for key, label in FIGURES]


def _parts(key: str, text: str | None) -> list[str] | None:
    """Where a figure may break: a file name at its punctuation, opsets between domains, a number nowhere."""
    if not text:
        return None
    if key == "file":
        return breakable(text)
    return [p + ", " for p in text.split(", ")[:-1]] + [text.split(", ")[-1]] if key == "opsets" else [text]


def _ops(read: dict | None) -> dict[str, int] | None:
    """operator → count, as read (None: not recorded)."""
    ops = read.get("ops") if isinstance(read, dict) else None
    if not isinstance(ops, list):
        return None
    return {str(op[0]): op[1] for op in ops
            if isinstance(op, list) and len(op) == 2 and isinstance(op[0], str) and _count(op[1]) is not None}


def _op_rows(variants: list[str], reads: dict[str, dict | None]) -> list[dict]:
    """Operators (the reference's order first) × variants: a count, 0, or None (a dash: not recorded); a last row
    `op` None for the operators a long list left out."""
    per = {v: _ops(reads.get(v)) for v in variants}
    names = list(dict.fromkeys(op for v in variants for op in (per[v] or {})))   # as stored: most used first
    others = {v: _count((reads.get(v) or {}).get("other")) for v in variants}
    rows = [{"op": breakable(op), "counts": [_cell(per[v], others[v], op) for v in variants]} for op in names]
    if names and any(others.values()):
        rows.append({"op": None, "counts": [f"{others[v]:,}" if others[v] is not None else None for v in variants]})
    return rows


def _cell(ops: dict[str, int] | None, other: int | None, op: str) -> str | None:
    if ops is None:
        return None
    if op in ops:
        return f"{ops[op]:,}"
    return "0" if not other else None   # not listed: none, unless the list was cut


def _shape(tensor: dict) -> str:
    dims = tensor.get("shape") if isinstance(tensor.get("shape"), list) else []
    dims = [str(d) for d in dims if _count(d) is not None]
    rank = _count(tensor.get("rank"))
    if not dims and not rank:
        return "scalar"
    return "[" + ", ".join(dims) + (", …" if rank is not None and rank > len(dims) else "") + "]"


def _largest(read: dict | None) -> list[dict] | None:
    """The largest initializers as read, biggest first (None: not recorded)."""
    tensors = read.get("largest") if isinstance(read, dict) else None
    if not isinstance(tensors, list):
        return None
    out = []
    for t in tensors:
        if isinstance(t, dict) and isinstance(t.get("name"), str):
            size = _count(t.get("bytes"))
            out.append({"name": breakable(t["name"]), "dtype": t["dtype"] if isinstance(t.get("dtype"), str) else None,
                        "shape": _shape(t), "size": human_size(size) if size is not None else None, "bytes": size,
                        "external": t.get("external") is True})
    return out


def _section(manifest: Manifest, graph: str, variants: list[str], stored: dict[str, dict] | None) -> dict:
    """One graph: its figures and operators (a column per variant), each variant's largest initializers."""
    reads = {v: (stored or {}).get(v, {}).get(graph) for v in variants}
    reads = {v: r if isinstance(r, dict) else None for v, r in reads.items()}
    largest = [{"variant": v, "tensors": _largest(reads[v]), "count": _count((reads[v] or {}).get("initializers"))}
               for v in variants]
    return {"name": graph, "variants": [{"name": v, "parts": breakable(v)} for v in variants],
            "figures": _figure_rows({v: _figures(manifest.graphs[v][graph], reads[v]) for v in variants}),
            "ops": _op_rows(variants, reads),
            "largest": [entry for entry in largest if entry["tensors"]]}


def graph_overview(manifest: Manifest, overview_json: str | None) -> dict | None:
    """What the card's Graph overview shows, or None (a pipeline: it has no graph of its own)."""
    if manifest.project.pipeline is not None or REFERENCE not in manifest.graphs:
        return None
    variants = [v for v in manifest.variant_names() if v in manifest.graphs]
    graphs = [g for g in manifest.project.models if all(g in manifest.graphs[v] for v in variants)]
    graphs += sorted(g for g in manifest.graphs[REFERENCE] if g not in graphs and
                     all(g in manifest.graphs[v] for v in variants))
    stored = _stored(overview_json)
    return {"sections": [_section(manifest, g, variants, stored) for g in graphs],
            "recorded": stored is not None, "several": len(graphs) > 1, "variants": len(variants) > 1}
