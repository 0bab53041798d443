"""What the graph files really hold, compared with what their manifest says: every graph of every variant.

The worker (services/validate.py) reads each graph file of each variant and sends what it
read, `{variant: {graph: {"signature", "opsets", "ir_version", "params", "external_files"}}}`;
`compare` refuses the first disagreement with the manifest's `graphs` table (or, for a
manifest from before that table, with its top-level fields), a variant whose real
interface differs from the reference's (names, ranks, dtypes unless `changes-io`), and
external data kept in a file the package declares as something else. The worker runs it
before it runs any graph, and the server again on the worker's answer.
"""

from __future__ import annotations

import json
from typing import Any

from nnpm.errors import ManifestError, PackageSafetyError
from nnpm.format.manifest import Manifest
from nnpm.format.signature import Signature, interface_difference
from nnpm.format.variants import REFERENCE

Infos = dict[str, dict[str, dict]]   # variant → graph → what the worker read


def unprocessable(err: ManifestError) -> ManifestError:
    """A well-formed manifest that contradicts its graph is 422, not 400 (see registry_server.error_responses)."""
    err.status = 422
    return err


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "…"


def _refuse(key: str, claimed: Any, actual: Any) -> None:
    raise unprocessable(ManifestError(f"the manifest says {_short(claimed)} but the graph says {_short(actual)}",
                                      key=key, hint="run 'nnpm pack' again to recompute the manifest"))


def _compare_signature(key: str, claimed: dict | None, actual: dict) -> None:
    if claimed != actual:
        for side in ("inputs", "outputs"):
            a, b = (claimed or {}).get(side, []), actual[side]
            if a != b:
                _refuse(f"{key}.{side}", a, b)


def graph_jobs(manifest: Manifest) -> list[tuple[str, str, str]]:
    """(variant, graph, file) for every graph file the worker must read, reference first."""
    return [(variant, graph, entry.file) for variant in manifest.variant_names()
            for graph, entry in sorted(manifest.graphs[variant].items())]


def not_data(manifest: Manifest) -> set[str]:
    """Declared files that are not graphs: README, labels, test arrays, included files (never external data)."""
    graphs = {entry.file for entries in manifest.graphs.values() for entry in entries.values()}
    return set(manifest.project.declared_files()) - graphs


def compare(manifest: Manifest, infos: Infos) -> None:
    """Raise (422) at the first place where the graph files and the manifest disagree."""
    expected = manifest.graphs
    if {v: sorted(g) for v, g in infos.items()} != {v: sorted(g) for v, g in expected.items()}:
        raise unprocessable(ManifestError("the graphs read are not the graphs the manifest lists", key="graphs"))
    listed, declared = {f.path for f in manifest.files}, not_data(manifest)
    for variant, entries in expected.items():
        for graph, entry in sorted(entries.items()):
            info = infos[variant][graph]
            if manifest.graph_table:
                key = f"graphs.{variant}.{graph}"
                _compare_signature(f"{key}.signature", entry.signature.to_dict(), info["signature"])
                if dict(entry.opsets) != info["opsets"]:
                    _refuse(f"{key}.opsets", dict(entry.opsets), info["opsets"])
                if entry.params != info["params"]:
                    _refuse(f"{key}.params", entry.params, info["params"])
                if sorted(entry.data) != sorted(info["external_files"]):
                    _refuse(f"{key}.data", sorted(entry.data), sorted(info["external_files"]))
            _check_data(entry.file, info["external_files"], listed, declared)
    _compare_top_level(manifest, infos[REFERENCE])
    _compare_interfaces(manifest, infos)
    _check_labelled_outputs(manifest, infos[REFERENCE])


def _check_data(graph_file: str, external: list[str], listed: set[str], declared: set[str]) -> None:
    for ext in external:
        if ext in declared:
            raise PackageSafetyError(f"the graph {graph_file!r} keeps external data in {ext!r}, which the package "
                                     "declares as its README, a labels file, a test file or an included file",
                                     hint="save the weights to a data file of their own")
        if ext not in listed:
            raise PackageSafetyError(f"external data file {ext!r} is not in the manifest's file list")


def _compare_top_level(manifest: Manifest, reference: dict[str, dict]) -> None:
    """The top-level fields are the reference's: its one graph's signature, opsets merged, params summed, IR max."""
    graphs = [reference[g] for g in sorted(reference)]
    if len(graphs) == 1:
        _compare_signature("signature", manifest.signature.to_dict() if manifest.signature else None,
                           graphs[0]["signature"])
    opsets: dict[str, int] = {}
    for info in graphs:
        for domain, version in info["opsets"].items():
            opsets[domain] = max(version, opsets.get(domain, 0))
    if dict(manifest.opsets) != opsets:
        _refuse("opsets", dict(manifest.opsets), opsets)
    ir_version = max(info["ir_version"] for info in graphs)
    if manifest.ir_version != ir_version:
        _refuse("ir_version", manifest.ir_version, ir_version)
    params = sum(info["params"] for info in graphs)
    if manifest.params != params:
        _refuse("params", manifest.params, params)


def _compare_interfaces(manifest: Manifest, infos: Infos) -> None:
    """A variant's real graphs keep the reference's port names and ranks, and dtypes unless it changes I/O."""
    for name, variant in manifest.project.variants.items():
        for graph, info in sorted(infos[name].items()):
            diff = interface_difference(Signature.from_dict(infos[REFERENCE][graph]["signature"], file=None),
                                        Signature.from_dict(info["signature"], file=None),
                                        dtypes=not variant.changes_io)
            if diff:
                raise unprocessable(ManifestError(
                    f"variant {name!r}, graph {graph!r} ({variant.models[graph]}): {diff}",
                    key=f"variants.{name}", hint="a variant keeps the reference's interface; set changes-io = true "
                                                 "if it is meant to take or give other dtypes"))


def _check_labelled_outputs(manifest: Manifest, reference: dict[str, dict]) -> None:
    for graph, section in sorted(manifest.project.models.items()):
        outputs = {o["name"] for o in reference[graph]["signature"]["outputs"]}
        for out in section.outputs:
            if out not in outputs:
                where = "model" if list(manifest.project.models) == ["model"] else f"models.{graph}"
                raise unprocessable(ManifestError(f"the graph has no output {out!r}", key=f"{where}.outputs.{out}"))
