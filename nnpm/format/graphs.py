"""The manifest's `graphs` table: every graph of every variant, as `nnpm pack` read it.

    {"reference": {"model": {"file", "data", "bytes", "params", "macs", "precision", "opsets", "signature"}},
     "int8": {...}}

Parsed strictly and checked against the project (files, variants) and the file list
(sizes); the registry's worker checks it against the graph files themselves. A manifest
made before variants existed has no `graphs`: `legacy_graphs` builds the one entry it implies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nnpm.errors import ManifestError
from nnpm.format.fields import check_relpath, table
from nnpm.format.project import Project
from nnpm.format.signature import Signature, interface_difference
from nnpm.format.variants import REFERENCE

_ENTRY_KEYS = {"file", "data", "bytes", "params", "macs", "precision", "opsets", "signature"}
Graphs = dict[str, dict[str, "GraphEntry"]]   # variant → graph → entry


@dataclass(frozen=True)
class GraphEntry:
    """One graph of one variant: its file, external data, size and cost, and its signature."""

    file: str
    signature: Signature
    data: tuple[str, ...] = ()
    bytes: int = 0
    params: int = 0
    macs: int | None = None
    precision: str | None = None
    opsets: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON form."""
        return {"file": self.file, "data": list(self.data), "bytes": self.bytes, "params": self.params,
                "macs": self.macs, "precision": self.precision, "opsets": dict(sorted(self.opsets.items())),
                "signature": self.signature.to_dict()}

    @classmethod
    def from_dict(cls, data: Any, *, file: str | None, key: str) -> "GraphEntry":
        """Parse one entry strictly."""
        data = table(data, key, file, _ENTRY_KEYS)
        path = check_relpath(data.get("file"), file=file, key=f"{key}.file")
        extra = data.get("data", [])
        if not isinstance(extra, list):
            raise ManifestError("must be a list of paths", file=file, key=f"{key}.data")
        for name in ("bytes", "params"):
            _count(data.get(name), file, f"{key}.{name}")
        if data.get("macs") is not None:
            _count(data["macs"], file, f"{key}.macs")
        precision = data.get("precision")
        if precision is not None and (not isinstance(precision, str) or not precision.isidentifier()):
            raise ManifestError("must be an element type such as float32", file=file, key=f"{key}.precision")
        opsets = table(data.get("opsets", {}), f"{key}.opsets", file)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in opsets.values()):
            raise ManifestError("must map domains to integer versions", file=file, key=f"{key}.opsets")
        return cls(path, Signature.from_dict(data.get("signature"), file=file),
                   tuple(check_relpath(p, file=file, key=f"{key}.data") for p in extra),
                   data["bytes"], data["params"], data.get("macs"), precision, dict(opsets))


def _count(value: Any, file: str | None, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ManifestError("must be a non-negative integer", file=file, key=key)
    return value


def expected_files(project: Project) -> dict[str, dict[str, str]]:
    """variant → graph → the graph file the project names."""
    out = {REFERENCE: {g: m.file for g, m in project.models.items()}}
    out.update({name: dict(sorted(v.models.items())) for name, v in project.variants.items()})
    return out


def parse_graphs(data: Any, project: Project, sizes: dict[str, int], *, file: str | None) -> Graphs:
    """The `graphs` table, checked against the project's graphs and variants and the file sizes."""
    data = table(data, "graphs", file)
    want = expected_files(project)
    if set(data) != set(want):
        raise ManifestError(f"lists variants {sorted(data)}, the package declares {sorted(want)}",
                            file=file, key="graphs")
    graphs: Graphs = {}
    for variant, files in want.items():
        entries = table(data[variant], f"graphs.{variant}", file)
        if set(entries) != set(files):
            raise ManifestError(f"lists graphs {sorted(entries)}, the package has {sorted(files)}",
                                file=file, key=f"graphs.{variant}")
        graphs[variant] = {}
        for graph in sorted(files):
            key = f"graphs.{variant}.{graph}"
            entry = GraphEntry.from_dict(entries[graph], file=file, key=key)
            if entry.file != files[graph]:
                raise ManifestError(f"names {entry.file!r}, the package {files[graph]!r}", file=file, key=f"{key}.file")
            missing = [p for p in (entry.file, *entry.data) if p not in sizes]
            if missing:
                raise ManifestError(f"{missing[0]!r} is not in the file list", file=file, key=key)
            if entry.bytes != sum(sizes[p] for p in dict.fromkeys((entry.file, *entry.data))):
                raise ManifestError("bytes is not the size of the graph and its data files", file=file, key=key)
            graphs[variant][graph] = entry
    check_interfaces(graphs, project, file=file)
    return graphs


def check_interfaces(graphs: Graphs, project: Project, *, file: str | None) -> None:
    """Every variant's graphs have the reference's port names and ranks (and dtypes, unless changes-io)."""
    for name, variant in project.variants.items():
        for graph, entry in graphs[name].items():
            diff = interface_difference(graphs[REFERENCE][graph].signature, entry.signature,
                                        dtypes=not variant.changes_io)
            if diff:
                raise ManifestError(f"variant {name!r}, graph {graph!r}: {diff}", file=file,
                                    key=f"variants.{name}",
                                    hint="a variant keeps the reference's interface; set changes-io = true "
                                         "if it is meant to take or give other dtypes")


def legacy_graphs(project: Project, signature: Signature | None, opsets: dict[str, int], params: int,
                  sizes: dict[str, int]) -> Graphs:
    """The graphs table a manifest from before variants implies (one graph, every other file its data)."""
    if project.model is None or signature is None:
        return {}
    graph = next(iter(project.models))
    return {REFERENCE: {graph: GraphEntry(project.model.file, signature, bytes=sizes.get(project.model.file, 0),
                                          params=params, opsets=dict(opsets))}}


def variant_files(graphs: Graphs, variant: str) -> set[str]:
    """The graph and data files of one variant."""
    return {p for entry in graphs.get(variant, {}).values() for p in (entry.file, *entry.data)}


def files_not_for(graphs: Graphs, variant: str) -> set[str]:
    """Files that belong only to other variants: what installing `variant` leaves out."""
    mine = variant_files(graphs, variant)
    others = set().union(*(variant_files(graphs, v) for v in graphs if v != variant))
    return others - mine
