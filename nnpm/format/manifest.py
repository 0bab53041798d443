"""`manifest.json`: a Project plus what `nnpm pack` reads from the graph and the files.

This module knows nothing of HTTP, disks or onnxruntime. Client and server both parse
with it, so a package is judged the same on either side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.version import Version

from nnpm.errors import ManifestError
from nnpm.format.fields import DIGEST_RE, check_printable, check_relpath, table
from nnpm.format.limits import MAX_FILES, MAX_NAMES_PER_BLOB, MAX_SIGNATURE_PORTS
from nnpm.format.project import TOP_KEYS, Project, project_from_dict, project_to_dict

FORMAT = 1
MANIFEST_NAME = "manifest.json"
_MANIFEST_KEYS = {"format", "include", "signature", "opsets", "ir_version", "params", "files"}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, element type ('float32', 'int64', ...) and shape.

    Shape entries are ints for fixed dims, strings for symbolic dims, None for unknown;
    shape itself is None when the rank is unknown or the value is not a tensor.
    """

    name: str
    dtype: str
    shape: tuple[int | str | None, ...] | None

    def shape_text(self) -> str:
        """Shape as people write it: [N, 3, 224, 224]."""
        if self.shape is None:
            return "?"
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class Signature:
    """The inputs and outputs of a graph."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict:
        """JSON form."""
        return {side: [{"name": t.name, "dtype": t.dtype, "shape": list(t.shape) if t.shape is not None else None}
                       for t in getattr(self, side)] for side in ("inputs", "outputs")}

    @classmethod
    def from_dict(cls, data: Any, *, file: str | None = MANIFEST_NAME) -> "Signature":
        """Parse the JSON form, strictly."""
        data = table(data, "signature", file, {"inputs", "outputs"})
        sides = {}
        for side in ("inputs", "outputs"):
            items = data.get(side)
            if not isinstance(items, list) or len(items) > MAX_SIGNATURE_PORTS:
                raise ManifestError(f"must be a list of up to {MAX_SIGNATURE_PORTS} entries", file=file, key=f"signature.{side}")
            specs = []
            for i, item in enumerate(items):
                key = f"signature.{side}[{i}]"
                item = table(item, key, file, {"name", "dtype", "shape"})
                name, dtype, shape = item.get("name"), item.get("dtype"), item.get("shape")
                if not isinstance(name, str) or not isinstance(dtype, str):
                    raise ManifestError("needs string name and dtype", file=file, key=key)
                check_printable(name, file=file, key=f"{key}.name")
                check_printable(dtype, file=file, key=f"{key}.dtype")
                if shape is not None and (not isinstance(shape, list) or not all(
                        d is None or isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool))
                        for d in shape)):
                    raise ManifestError("shape must be a list of ints, strings or nulls", file=file, key=key)
                specs.append(TensorSpec(name, dtype, tuple(shape) if shape is not None else None))
            sides[side] = tuple(specs)
        return cls(**sides)


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
        if project.model and signature is None:
            raise ManifestError("a model package needs a signature", file=file, key="signature")
        opsets = table(data.get("opsets", {}), "opsets", file)
        if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in opsets.items()):
            raise ManifestError("must map domains to integer versions", file=file, key="opsets")
        ir_version, params = data.get("ir_version"), data.get("params", 0)
        if ir_version is not None and (not isinstance(ir_version, int) or isinstance(ir_version, bool)):
            raise ManifestError("must be an integer", file=file, key="ir_version")
        if not isinstance(params, int) or isinstance(params, bool) or params < 0:
            raise ManifestError("must be a non-negative integer", file=file, key="params")
        files = _parse_files(data.get("files"), file)
        manifest = cls(project=project, files=files, signature=signature, opsets=dict(opsets),
                       ir_version=ir_version, params=params)
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
