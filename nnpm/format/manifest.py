"""`manifest.json`: a Project plus what `nnpm pack` reads from the graph and the files.

This module knows nothing of HTTP, disks or onnxruntime. Client and server both parse
with it, so a package is judged the same on either side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from packaging.version import Version

from nnpm.errors import ManifestError
from nnpm.format.fields import DIGEST_FILE_RE, DIGEST_RE, check_relpath, table
from nnpm.format.graphs import GraphEntry, Graphs, files_not_for, legacy_graphs, parse_graphs
from nnpm.format.limits import MAX_FILES, MAX_NAMES_PER_BLOB
from nnpm.format.project import TOP_KEYS, Project, project_from_dict, project_to_dict
from nnpm.format.signature import Signature, TensorSpec  # noqa: F401  (TensorSpec: public here too)

FORMAT = 1
MANIFEST_NAME = "manifest.json"
_MANIFEST_KEYS = {"format", "include", "signature", "opsets", "ir_version", "params", "files", "graphs"}


@dataclass(frozen=True)
class FileEntry:
    """One file of a package: its path inside the package, size and sha256 (hex)."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """manifest.json: the project plus what `nnpm pack` reads from the graph and the files."""

    project: Project
    files: tuple[FileEntry, ...]
    signature: Signature | None = None
    opsets: dict[str, int] = field(default_factory=dict)
    ir_version: int | None = None
    params: int = 0
    graph_table: Graphs = field(default_factory=dict)   # as written in manifest.json ({} when absent)

    @cached_property
    def graphs(self) -> Graphs:
        """variant → graph → GraphEntry; for a manifest from before variants, the one entry it implies."""
        if self.graph_table:
            return self.graph_table
        return legacy_graphs(self.project, self.signature, self.opsets, self.params, {f.path: f.size for f in self.files})

    def graph_names(self) -> list[str]:
        """The package's graphs, sorted by name (empty for a pipeline)."""
        return list(self.project.models)

    def variant_names(self) -> list[str]:
        """'reference' and then the declared variants, by name (a pipeline has only 'reference')."""
        return ["reference"] + sorted(v for v in self.graphs if v != "reference")

    def graph(self, variant: str = "reference", graph: str | None = None) -> GraphEntry:
        """One graph of one variant (`graph` may be left out for a one-graph package); KeyError when absent."""
        entries = self.graphs[variant]
        if graph is None:
            if len(entries) != 1:
                raise KeyError(f"{self.name} has several graphs: name one of {sorted(entries)}")
            return next(iter(entries.values()))
        return entries[graph]

    def files_for(self, variant: str = "reference") -> tuple[FileEntry, ...]:
        """The files an install of one variant needs: all but the graphs (and data) of the other variants."""
        if variant not in self.graphs and variant != "reference":
            raise KeyError(variant)
        left_out = files_not_for(self.graphs, variant)
        return tuple(f for f in self.files if f.path not in left_out)

    @property
    def name(self) -> str:
        """Canonical package name."""
        return self.project.name

    @property
    def version(self) -> Version:
        """The package version."""
        return self.project.version

    @property
    def total_size(self) -> int:
        """Bytes of all files together."""
        return sum(f.size for f in self.files)

    def file(self, path: str) -> FileEntry:
        """The entry for one path."""
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)

    def to_dict(self) -> dict:
        """The JSON form stored by the registry and in archives."""
        project = project_to_dict(self.project)
        include = project.pop("files", {}).get("include")
        return {
            "format": FORMAT,
            **project,
            **({"include": include} if include else {}),
            "signature": self.signature.to_dict() if self.signature else None,
            "opsets": dict(sorted(self.opsets.items())),
            "ir_version": self.ir_version,
            "params": self.params,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
            **({"graphs": {v: {g: e.to_dict() for g, e in sorted(entries.items())}
                           for v, entries in sorted(self.graph_table.items())}} if self.graph_table else {}),
        }

    def to_json(self) -> bytes:
        """Canonical bytes: sorted keys, no whitespace variance, so equal manifests hash equal."""
        return (json.dumps(self.to_dict(), sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()

    def with_files(self, files: list[FileEntry]) -> "Manifest":
        """A copy with another file list."""
        return replace(self, files=tuple(sorted(files, key=lambda f: f.path)))

    @classmethod
    def from_dict(cls, data: Any, *, file: str | None = MANIFEST_NAME) -> "Manifest":
        """Parse and validate manifest.json (as sent to the registry or read from an archive)."""
        data = table(data, "", file, TOP_KEYS | _MANIFEST_KEYS)
        fmt = data.get("format")
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt != FORMAT:
            raise ManifestError(f"unsupported format {data.get('format')!r}", file=file, key="format",
                                hint=f"this nnpm reads format {FORMAT}; upgrade nnpm")
        # manifest.json keeps the [files] include list under "include"; "files" is the file list.
        project_part = {k: v for k, v in data.items() if k in TOP_KEYS and k != "files"}
        if "include" in data:
            project_part["files"] = {"include": data["include"]}
        project = project_from_dict(project_part, file=file)
        sig = data.get("signature")
        signature = Signature.from_dict(sig, file=file) if sig is not None else None
        if len(project.models) == 1 and signature is None:
            raise ManifestError("a model package needs a signature", file=file, key="signature")
        if len(project.models) > 1 and signature is not None:
            raise ManifestError("a package of several graphs keeps its signatures under graphs", file=file,
                                key="signature")
        opsets = table(data.get("opsets", {}), "opsets", file)
        if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in opsets.items()):
            raise ManifestError("must map domains to integer versions", file=file, key="opsets")
        ir_version, params = data.get("ir_version"), data.get("params", 0)
        if ir_version is not None and (not isinstance(ir_version, int) or isinstance(ir_version, bool)):
            raise ManifestError("must be an integer", file=file, key="ir_version")
        if not isinstance(params, int) or isinstance(params, bool) or params < 0:
            raise ManifestError("must be a non-negative integer", file=file, key="params")
        files = _parse_files(data.get("files"), file)
        graphs = _graphs_of(data, project, signature, files, file)
        manifest = cls(project=project, files=files, signature=signature, opsets=dict(opsets),
                       ir_version=ir_version, params=params, graph_table=graphs)
        listed = {f.path for f in files}
        for needed in project.declared_files():
            if needed not in listed:
                raise ManifestError(f"{needed!r} is declared but not in the file list", file=file, key="files")
        return manifest

    @classmethod
    def from_json(cls, raw: bytes | str, *, file: str | None = MANIFEST_NAME) -> "Manifest":
        """Parse manifest.json bytes."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ManifestError(f"not valid JSON: {exc}", file=file) from None
        return cls.from_dict(data, file=file)


def _graphs_of(data: dict, project: Project, signature: Signature | None, files: tuple[FileEntry, ...],
               file: str | None) -> Graphs:
    """The `graphs` table, required for several graphs or any variant, consistent with the top level."""
    if "graphs" not in data:
        if len(project.models) > 1 or project.variants:
            raise ManifestError("is required for a package with several graphs or variants", file=file,
                                key="graphs", hint="pack the package with this nnpm")
        return {}
    if not project.models:
        raise ManifestError("a pipeline has no graphs of its own", file=file, key="graphs")
    graphs = parse_graphs(data["graphs"], project, {f.path: f.size for f in files}, file=file)
    if signature is not None and graphs["reference"][next(iter(project.models))].signature != signature:
        raise ManifestError("the signature differs from the reference graph's", file=file, key="signature")
    return graphs


def _parse_files(items: Any, file: str | None) -> tuple[FileEntry, ...]:
    if not isinstance(items, list) or len(items) > MAX_FILES:
        raise ManifestError(f"must be a list of up to {MAX_FILES} files", file=file, key="files")
    out = []
    for i, item in enumerate(items):
        key = f"files[{i}]"
        item = table(item, key, file, {"path", "size", "sha256"})
        path = check_relpath(item.get("path"), file=file, key=f"{key}.path")
        size, digest = item.get("size"), item.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError("size must be a non-negative integer", file=file, key=f"{key}.size")
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise ManifestError("sha256 must be 64 lowercase hex digits", file=file, key=f"{key}.sha256")
        named = DIGEST_FILE_RE.match(path.rsplit("/", 1)[-1])
        if named and named.group(1) != digest:   # a digest-named file is what its name says, or nothing
            raise ManifestError(f"{path!r} is named by a digest its bytes do not have (sha256 {digest[:12]}…)",
                                file=file, key=f"{key}.sha256",
                                hint="pack the package again: nnpm names each weights file by its own sha256")
        out.append(FileEntry(path, size, digest))
    paths = [f.path for f in out]
    if paths != sorted(paths):
        raise ManifestError("must be sorted by path", file=file, key="files")
    if len(set(paths)) != len(paths):
        raise ManifestError("lists a path twice", file=file, key="files")
    _check_no_file_is_a_folder(paths, file)
    _check_names_per_blob(out, file)
    return tuple(out)


def _check_no_file_is_a_folder(paths: list[str], file: str | None) -> None:
    """A file cannot also be a folder of another file; linear in the total length of the paths."""
    folders = {p[:i] for p in paths for i, ch in enumerate(p) if ch == "/"}
    clash = folders.intersection(paths)
    if clash:
        raise ManifestError(f"{min(clash)!r} is both a file and a folder", file=file, key="files")


def _check_names_per_blob(entries: list[FileEntry], file: str | None) -> None:
    """The same bytes under a few names is an author's choice; under thousands, an amplification attack."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.sha256] = counts.get(entry.sha256, 0) + 1
    digest, most = max(counts.items(), key=lambda kv: kv[1], default=("", 0))
    if most > MAX_NAMES_PER_BLOB:
        raise ManifestError(f"lists the same file (sha256:{digest[:12]}…) under {most} names; "
                            f"at most {MAX_NAMES_PER_BLOB} are allowed", file=file, key="files",
                            hint="keep one copy and refer to it from the others' users")
