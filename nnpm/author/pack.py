"""Package folder → validated manifest (+ `.nnpm` archive and manifest.json on disk)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.specifiers import SpecifierSet

from nnpm.errors import ManifestError, PackageSafetyError
from nnpm.format.graphs import GraphEntry, Graphs, expected_files
from nnpm.format.limits import MAX_FILES, MAX_MANIFEST_BYTES
from nnpm.format.manifest import FileEntry, Manifest
from nnpm.format.project import SINGLE_GRAPH, Project, load_project
from nnpm.format.safety import check_file
from nnpm.format.signature import Signature
from nnpm.format.variants import REFERENCE
from nnpm.fsutil import atomic_write, remove_tree
from nnpm.hashing import file_digest

if TYPE_CHECKING:
    from nnpm.install.env import Environment


@dataclass(frozen=True)
class Built:
    """A validated package: its manifest and where each listed file lives on disk."""

    manifest: Manifest
    paths: dict[str, Path]


def build(folder: Path, *, allow_hardlinks: bool = False, split_into: Path | None = None) -> Built:
    """Validate a package folder and compute its manifest.

    With `split_into`, every graph is written there in the tensor-addressed layout
    (nnpm/author/split.py) and the manifest lists those files; without, nothing is written."""
    folder = Path(folder)
    project = load_project(folder)
    rels = project.declared_files()
    tests = _test_arrays(folder, project, allow_hardlinks)
    shapes = {key: tuple(array.shape) for key, array in tests[0].items()} if tests else {}
    made = _split(folder, project, split_into, allow_hardlinks) if split_into is not None and project.models else {}
    graph_root = split_into if made else folder
    graphs, ir_version = _read_graphs(graph_root, project, allow_hardlinks or bool(made), shapes) \
        if project.models else ({}, None)
    rels += [p for entries in graphs.values() for e in entries.values() for p in e.data if p not in rels]
    rels = list(dict.fromkeys(rels))
    if len(rels) > MAX_FILES:
        raise PackageSafetyError(f"a package may hold at most {MAX_FILES} files")
    paths, entries = {}, []
    for rel in sorted(rels):
        if rel in made:   # written by the split, its digest known: hashed once, as it was written
            path, digest, size = made[rel]
        else:
            path = check_file(folder, rel, allow_hardlinks=allow_hardlinks)
            digest, size = file_digest(path)
        paths[rel] = path
        entries.append(FileEntry(rel, size, digest))
    sizes = {e.path: e.size for e in entries}
    graphs = {v: {g: replace(e, bytes=sum(sizes[p] for p in dict.fromkeys((e.file, *e.data))))
                  for g, e in gs.items()} for v, gs in graphs.items()}
    manifest = Manifest(project=project, files=tuple(entries), graph_table=graphs, **_top_level(graphs, ir_version))
    _check_labels(project, paths)
    if tests:
        from nnpm.format.selftest import check_test_arrays

        check_test_arrays(manifest, *tests)
    raw = manifest.to_json()
    if len(raw) > MAX_MANIFEST_BYTES:
        raise PackageSafetyError(f"the manifest would be {len(raw)} bytes, over the limit of {MAX_MANIFEST_BYTES}",
                                 hint="list fewer files (put many small files in one archive file)")
    # Parsed back as a registry parses it: whatever the registry would refuse, pack refuses first.
    Manifest.from_json(raw, file=str(folder / "nnpm.toml"))
    return Built(manifest, paths)


def _split(folder: Path, project: Project, out: Path, allow_hardlinks: bool) -> dict[str, tuple[Path, str, int]]:
    """Every graph of every variant written to `out` in the split layout: rel -> (path, sha256, size)."""
    from nnpm.author.split import split_graph
    from nnpm.format import onnxinfo

    made: dict[str, tuple[Path, str, int]] = {}
    for files in expected_files(project).values():
        for rel in files.values():
            # The author's graph is read and checked as it is first (safety, checker, domains): the
            # split rewrites only what passed, and the result is read and checked again.
            info = onnxinfo.read_model(folder, rel, allow_hardlinks=allow_hardlinks, keep_proto=True)
            graph = split_graph(folder, rel, out, allow_hardlinks=allow_hardlinks, model=info.proto)
            made.update(graph.weights)
            made[rel] = (graph.path, graph.digest, graph.size)
    return made


def _read_graphs(folder: Path, project: Project, allow_hardlinks: bool,
                 shapes: dict[str, tuple[int, ...]]) -> tuple[Graphs, int]:
    """Every graph of every variant, read and costed (sizes are filled in once files are hashed); the IR version."""
    from nnpm.format import cost, onnxinfo

    toml = str(folder / "nnpm.toml")
    not_data = set(project.declared_files())
    graphs: Graphs = {}
    ir_version = 0
    for variant, files in expected_files(project).items():
        graphs[variant] = {}
        for graph, rel in files.items():
            info = onnxinfo.read_model(folder, rel, allow_hardlinks=allow_hardlinks, keep_proto=True)
            ir_version = max(ir_version, info.ir_version) if variant == REFERENCE else ir_version
            for data in info.external_files:
                if data in not_data:   # the registry hands its validator only graphs and their data files
                    raise PackageSafetyError(f"the graph {rel!r} keeps external data in {data!r}, which the package "
                                             "declares as a graph, its README, a labels file or an included file",
                                             hint="save the weights to a data file of their own")
            if variant == REFERENCE:
                _check_outputs(project, graph, info.signature, toml)
            graph_shapes = {port.split("/", 1)[-1]: shape for port, shape in shapes.items()
                            if len(files) == 1 or port.startswith(graph + "/")}
            graphs[variant][graph] = GraphEntry(
                rel, info.signature, info.external_files, params=info.params, opsets=info.opsets,
                macs=cost.graph_macs(info.proto, graph_shapes or None), precision=cost.dominant_precision(info.proto))
    return graphs, ir_version


def _check_outputs(project: Project, graph: str, signature: Signature, toml: str) -> None:
    names = {o.name for o in signature.outputs}
    for out in project.models[graph].outputs:
        if out not in names:
            where = "model" if list(project.models) == [SINGLE_GRAPH] else f"models.{graph}"
            raise ManifestError(f"the graph has no output {out!r}", file=toml, key=f"{where}.outputs.{out}",
                                hint="outputs are: " + ", ".join(sorted(names)))


def _test_arrays(folder: Path, project: Project, allow_hardlinks: bool) -> tuple[dict, dict] | None:
    """The self-test's input and output arrays (None without [tests]): checked against the graphs once they are read."""
    if project.tests is None:
        return None
    from nnpm.format.selftest import load_arrays

    return tuple(load_arrays(check_file(folder, rel, allow_hardlinks=allow_hardlinks), what=what)
                 for rel, what in ((project.tests.inputs, "the test inputs"), (project.tests.outputs, "the test outputs")))


def _top_level(graphs: Graphs, ir_version: int | None) -> dict:
    """Manifest fields of the reference: its one graph's, or for several graphs the union (no signature)."""
    ref = list(graphs.get(REFERENCE, {}).values())
    if not ref:
        return {}
    opsets: dict[str, int] = {}
    for entry in ref:
        for domain, version in entry.opsets.items():
            opsets[domain] = max(version, opsets.get(domain, 0))
    return {"signature": ref[0].signature if len(ref) == 1 else None, "opsets": opsets,
            "params": sum(e.params for e in ref), "ir_version": ir_version}


def _check_labels(project: Project, paths: dict[str, Path]) -> None:
    from nnpm.format.labels import parse_labels

    for info in (o for m in project.models.values() for o in m.outputs.values()):
        if info.labels:
            parse_labels(paths[info.labels].read_bytes(), path=info.labels)


def default_archive_name(manifest: Manifest) -> str:
    """name-version.nnpm, as pip names wheels."""
    return f"{manifest.name}-{manifest.version}.nnpm"


@contextmanager
def staged(folder: Path, *, split: bool = True, allow_hardlinks: bool = False,
           scratch: Path | None = None) -> Iterator[Built]:
    """`build` with the split layout written to a scratch folder that lives as long as the block."""
    if not split:
        yield build(folder, allow_hardlinks=allow_hardlinks)
        return
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="nnpm-split-", dir=scratch))
    try:
        yield build(folder, allow_hardlinks=allow_hardlinks, split_into=tmp)
    finally:
        remove_tree(tmp)


def pack(folder: Path, out: Path | None = None, *, check: Callable[[Built], None] | None = None,
         split: bool = True) -> tuple[Built, Path, Path]:
    """Write NAME-VERSION.nnpm and NAME-VERSION.manifest.json (default in FOLDER/dist/).

    `check` runs on the validated package before anything is written; `split=False` keeps the
    author's weight layout instead of one file per large tensor.
    """
    from nnpm.format.archive import write_archive

    with staged(folder, split=split) as built:
        if check is not None:
            check(built)
        archive = Path(out) if out else Path(folder) / "dist" / default_archive_name(built.manifest)
        if archive.suffix != ".nnpm":
            raise ManifestError(f"output {archive} must end in .nnpm", hint="e.g. -o resnet18-1.0.0.nnpm")
        archive.parent.mkdir(parents=True, exist_ok=True)
        # Named after the archive so several packs can share one output folder.
        manifest_path = archive.with_name(archive.name[: -len(".nnpm")] + ".manifest.json")
        write_archive(built.manifest, built.paths, archive)
        atomic_write(manifest_path, built.manifest.to_json())
    return built, archive, manifest_path


def check_installed_wiring(project: Project, env: "Environment | None" = None) -> bool:
    """Check a pipeline project against the steps installed in `env`; False when some are missing."""
    from nnpm.errors import NotInstalledError
    from nnpm.format.wiring import check_pipeline
    from nnpm.install.env import open_env

    env = env or open_env()

    def installed(step: str, spec: SpecifierSet) -> Manifest | None:
        try:
            pkg = env.get(step)
        except NotInstalledError:
            return None
        return pkg.manifest if spec.contains(pkg.version, prereleases=True) else None

    return check_pipeline(project, installed) is not None
