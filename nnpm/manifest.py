"""The package format: `nnpm.toml` (what an author writes) and `manifest.json` (what is stored).

This module knows nothing of HTTP, disks beyond reading one TOML file, or onnxruntime.
Client and server both parse with it, so a package is judged the same on either side.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from nnpm.errors import ManifestError

FORMAT = 1
TOML_NAME = "nnpm.toml"
MANIFEST_NAME = "manifest.json"

# PEP 508 project names; the length cap keeps URLs and paths sane.
_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])\Z", re.IGNORECASE)
_MAX_NAME = 100
_DIGEST_RE = re.compile(r"^[0-9a-f]{64}\Z")
_PORT_RE = re.compile(r"^[A-Za-z0-9._-]+\.[^.\s][^\s]*\Z")
_LICENSE_RE = re.compile(r"^[A-Za-z0-9.+() -]{1,100}\Z")

_PACKAGE_KEYS = {"name", "version", "description", "license", "readme", "tags", "authors",
                 "homepage", "repository"}
_TOP_KEYS = {"package", "model", "dependencies", "requires", "pipeline", "files"}
_REQUIRES_KEYS = {"onnxruntime"}
_PIPELINE_KEYS = {"steps", "connect", "inputs", "outputs"}
_MANIFEST_KEYS = {"format", "include", "signature", "opsets", "ir_version", "params", "files"}


def canonical_name(name: str, *, file: str | None = None, key: str = "package.name") -> str:
    """Validate a package name (PEP 508) and return its PEP 503 normal form."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > _MAX_NAME:
        raise ManifestError(
            f"invalid package name {name!r}",
            file=file, key=key,
            hint=f"use up to {_MAX_NAME} letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        )
    return canonicalize_name(name)


def parse_version(value: Any, *, file: str | None = None, key: str = "package.version") -> Version:
    """Parse a PEP 440 version or raise ManifestError naming where it came from."""
    if not isinstance(value, str):
        raise ManifestError(f"version must be a string, got {type(value).__name__}", file=file, key=key)
    try:
        return Version(value)
    except (InvalidVersion, ValueError):  # ValueError: a number past Python's int-parsing limit
        raise ManifestError(f"invalid version {value!r}", file=file, key=key,
                            hint="use a PEP 440 version such as 1.0.0 or 2.1rc1") from None


def parse_specifier(value: Any, *, file: str | None = None, key: str) -> SpecifierSet:
    """Parse a PEP 440 specifier set such as '>=1,<2' ('' or '*' means any version)."""
    if not isinstance(value, str):
        raise ManifestError(f"specifier must be a string, got {type(value).__name__}", file=file, key=key)
    text = "" if value.strip() == "*" else value
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise ManifestError(f"invalid version specifier {value!r}", file=file, key=key,
                            hint="use PEP 440 specifiers such as '>=1.0,<2'") from None


def check_relpath(value: Any, *, file: str | None = None, key: str) -> str:
    """A path inside the package: relative, POSIX, no '..', no empty or odd parts."""
    if not isinstance(value, str) or not value:
        raise ManifestError("path must be a non-empty string", file=file, key=key)
    bad = (
        value.startswith("/") or "\\" in value or "\x00" in value or re.match(r"^[A-Za-z]:", value)
    )
    parts = value.split("/")
    if bad or any(p in ("", ".", "..") for p in parts) or len(value) > 255:
        raise ManifestError(f"path {value!r} leaves the package folder or is not a plain relative path",
                            file=file, key=key, hint="use a relative path inside the package, like 'labels.txt'")
    return str(PurePosixPath(value))


def _table(data: Any, key: str, file: str | None, allowed: set[str] | None = None) -> dict:
    if not isinstance(data, dict):
        raise ManifestError(f"must be a table, got {type(data).__name__}", file=file, key=key)
    if allowed is not None:
        for k in data:
            if k not in allowed:
                raise ManifestError(f"unknown key {k!r}", file=file, key=f"{key}.{k}" if key else k,
                                    hint="allowed: " + ", ".join(sorted(allowed)))
    return data


def _str(data: dict, key: str, file: str | None, prefix: str, *, required: bool = False,
         default: str | None = None) -> str | None:
    if key not in data:
        if required:
            raise ManifestError("is required", file=file, key=f"{prefix}.{key}")
        return default
    value = data[key]
    if not isinstance(value, str):
        raise ManifestError(f"must be a string, got {type(value).__name__}", file=file, key=f"{prefix}.{key}")
    if len(value) > 10_000:
        raise ManifestError("is longer than 10000 characters", file=file, key=f"{prefix}.{key}")
    return value


def _str_list(data: dict, key: str, file: str | None, prefix: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or len(value) > 100:
        raise ManifestError("must be a list of up to 100 non-empty strings", file=file, key=f"{prefix}.{key}")
    return tuple(value)


@dataclass(frozen=True)
class OutputInfo:
    """Semantics an author adds to one graph output (labels file)."""

    labels: str | None = None


@dataclass(frozen=True)
class ModelSection:
    """`[model]`: which ONNX file is the package's graph."""

    file: str
    outputs: dict[str, OutputInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSection:
    """`[pipeline]`: steps drawn from dependencies and how their ports are wired."""

    steps: tuple[str, ...]
    connect: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Project:
    """A validated nnpm.toml."""

    name: str
    version: Version
    description: str = ""
    license: str | None = None
    readme: str | None = None
    tags: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    homepage: str | None = None
    repository: str | None = None
    model: ModelSection | None = None
    pipeline: PipelineSection | None = None
    dependencies: dict[str, SpecifierSet] = field(default_factory=dict)
    requires: dict[str, SpecifierSet] = field(default_factory=dict)
    include: tuple[str, ...] = ()

    def declared_files(self) -> list[str]:
        """Files the manifest names directly (model, readme, labels, include), in order, unique."""
        names = [self.model.file] if self.model else []
        if self.readme:
            names.append(self.readme)
        if self.model:
            names += [o.labels for o in self.model.outputs.values() if o.labels]
        names += list(self.include)
        return list(dict.fromkeys(names))


def _parse_model(data: Any, file: str | None) -> ModelSection:
    data = _table(data, "model", file, {"file", "outputs"})
    path = check_relpath(_str(data, "file", file, "model", required=True), file=file, key="model.file")
    if not path.endswith(".onnx"):
        raise ManifestError(f"{path!r} is not an .onnx file", file=file, key="model.file")
    outputs = {}
    for out_name, info in _table(data.get("outputs", {}), "model.outputs", file).items():
        key = f"model.outputs.{out_name}"
        info = _table(info, key, file, {"labels"})
        labels = _str(info, "labels", file, key)
        outputs[out_name] = OutputInfo(labels=check_relpath(labels, file=file, key=f"{key}.labels")
                                       if labels is not None else None)
    return ModelSection(file=path, outputs=outputs)


def _parse_port(value: Any, file: str | None, key: str) -> str:
    if not isinstance(value, str) or not _PORT_RE.match(value):
        raise ManifestError(f"{value!r} is not a port", file=file, key=key,
                            hint="write ports as 'step.port', e.g. 'resnet18.input'")
    return value


def _parse_pipeline(data: Any, file: str | None) -> PipelineSection:
    data = _table(data, "pipeline", file, _PIPELINE_KEYS)
    steps = tuple(canonical_name(s, file=file, key="pipeline.steps") for s in _str_list(data, "steps", file, "pipeline"))
    if not steps:
        raise ManifestError("needs at least one step", file=file, key="pipeline.steps")
    if len(set(steps)) != len(steps):
        raise ManifestError("names a step twice", file=file, key="pipeline.steps")
    tables = {}
    for part in ("connect", "inputs", "outputs"):
        table = _table(data.get(part, {}), f"pipeline.{part}", file)
        tables[part] = {}
        for k, v in table.items():
            if part == "connect":
                _parse_port(k, file, f"pipeline.connect.{k}")
            tables[part][k] = _parse_port(v, file, f"pipeline.{part}.{k}")
    return PipelineSection(steps=steps, **tables)


def _parse_specs(data: Any, key: str, file: str | None, *, names: bool) -> dict[str, SpecifierSet]:
    data = _table(data, key, file, None if names else _REQUIRES_KEYS)
    out = {}
    for raw, spec in data.items():
        name = canonical_name(raw, file=file, key=f"{key}.{raw}") if names else raw
        if name in out:
            raise ManifestError(f"{raw!r} is listed twice (names compare as PEP 503)", file=file, key=f"{key}.{raw}")
        out[name] = parse_specifier(spec, file=file, key=f"{key}.{raw}")
    return out


def project_from_dict(data: Any, *, file: str | None = TOML_NAME) -> Project:
    """Validate a parsed nnpm.toml (or the project part of a manifest) into a Project."""
    data = _table(data, "", file, _TOP_KEYS)
    pkg = _table(data.get("package"), "package", file, _PACKAGE_KEYS) if "package" in data else None
    if pkg is None:
        raise ManifestError("is required", file=file, key="package")
    name = canonical_name(_str(pkg, "name", file, "package", required=True), file=file)
    if "version" not in pkg:
        raise ManifestError("is required", file=file, key="package.version")
    version = parse_version(pkg["version"], file=file)
    license_ = _str(pkg, "license", file, "package")
    if license_ is not None and not _LICENSE_RE.match(license_):
        raise ManifestError(f"invalid license {license_!r}", file=file, key="package.license",
                            hint="use an SPDX identifier such as MIT or Apache-2.0")
    readme = _str(pkg, "readme", file, "package")
    model = _parse_model(data["model"], file) if "model" in data else None
    pipeline = _parse_pipeline(data["pipeline"], file) if "pipeline" in data else None
    if (model is None) == (pipeline is None):
        raise ManifestError("a package needs exactly one of [model] or [pipeline]", file=file, key="model",
                            hint="add [model] file = \"model.onnx\", or a [pipeline] of dependencies")
    deps = _parse_specs(data.get("dependencies", {}), "dependencies", file, names=True)
    if name in deps:
        raise ManifestError("a package cannot depend on itself", file=file, key=f"dependencies.{name}")
    if pipeline:
        for step in pipeline.steps:
            if step not in deps:
                raise ManifestError(f"step {step!r} is not a dependency", file=file, key="pipeline.steps",
                                    hint=f"add it under [dependencies], e.g. {step} = \">=1\"")
    files = _table(data.get("files", {}), "files", file, {"include"})
    include = tuple(check_relpath(p, file=file, key="files.include")
                    for p in _str_list(files, "include", file, "files"))
    return Project(
        name=name, version=version,
        description=_str(pkg, "description", file, "package", default="") or "",
        license=license_,
        readme=check_relpath(readme, file=file, key="package.readme") if readme is not None else None,
        tags=_str_list(pkg, "tags", file, "package"),
        authors=_str_list(pkg, "authors", file, "package"),
        homepage=_str(pkg, "homepage", file, "package") or None,
        repository=_str(pkg, "repository", file, "package") or None,
        model=model, pipeline=pipeline, dependencies=deps,
        requires=_parse_specs(data.get("requires", {}), "requires", file, names=False),
        include=include,
    )


def load_project(folder: Path) -> Project:
    """Read and validate `folder/nnpm.toml`."""
    path = Path(folder) / TOML_NAME
    if not path.is_file():
        raise ManifestError(f"no {TOML_NAME} in {folder}", hint=f"run 'nnpm init {folder} --from model.onnx' first")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"not valid TOML: {exc}", file=str(path)) from None
    return project_from_dict(data, file=str(path))


def project_to_dict(project: Project) -> dict:
    """The TOML-shaped dict of a Project, normalised (canonical names, normal versions)."""
    pkg: dict[str, Any] = {"name": project.name, "version": str(project.version)}
    for key in ("description", "license", "readme", "homepage", "repository"):
        value = getattr(project, key)
        if value:
            pkg[key] = value
    if project.tags:
        pkg["tags"] = list(project.tags)
    if project.authors:
        pkg["authors"] = list(project.authors)
    out: dict[str, Any] = {"package": pkg}
    if project.model:
        model: dict[str, Any] = {"file": project.model.file}
        if project.model.outputs:
            model["outputs"] = {k: ({"labels": v.labels} if v.labels else {})
                                for k, v in sorted(project.model.outputs.items())}
        out["model"] = model
    if project.pipeline:
        p = project.pipeline
        out["pipeline"] = {"steps": list(p.steps)} | {
            k: dict(sorted(getattr(p, k).items())) for k in ("connect", "inputs", "outputs") if getattr(p, k)}
    if project.dependencies:
        out["dependencies"] = {k: str(v) for k, v in sorted(project.dependencies.items())}
    if project.requires:
        out["requires"] = {k: str(v) for k, v in sorted(project.requires.items())}
    if project.include:
        out["files"] = {"include": list(project.include)}
    return out


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
        data = _table(data, "signature", file, {"inputs", "outputs"})
        sides = {}
        for side in ("inputs", "outputs"):
            items = data.get(side)
            if not isinstance(items, list) or len(items) > 10_000:
                raise ManifestError("must be a list", file=file, key=f"signature.{side}")
            specs = []
            for i, item in enumerate(items):
                key = f"signature.{side}[{i}]"
                item = _table(item, key, file, {"name", "dtype", "shape"})
                name, dtype, shape = item.get("name"), item.get("dtype"), item.get("shape")
                if not isinstance(name, str) or not isinstance(dtype, str):
                    raise ManifestError("needs string name and dtype", file=file, key=key)
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
        data = _table(data, "", file, _TOP_KEYS | _MANIFEST_KEYS)
        fmt = data.get("format")
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt != FORMAT:
            raise ManifestError(f"unsupported format {data.get('format')!r}", file=file, key="format",
                                hint=f"this nnpm reads format {FORMAT}; upgrade nnpm")
        # manifest.json keeps the [files] include list under "include"; "files" is the file list.
        project_part = {k: v for k, v in data.items() if k in _TOP_KEYS and k != "files"}
        if "include" in data:
            project_part["files"] = {"include": data["include"]}
        project = project_from_dict(project_part, file=file)
        sig = data.get("signature")
        signature = Signature.from_dict(sig, file=file) if sig is not None else None
        if project.model and signature is None:
            raise ManifestError("a model package needs a signature", file=file, key="signature")
        opsets = _table(data.get("opsets", {}), "opsets", file)
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
    if not isinstance(items, list) or len(items) > 10_000:
        raise ManifestError("must be a list of up to 10000 files", file=file, key="files")
    out = []
    for i, item in enumerate(items):
        key = f"files[{i}]"
        item = _table(item, key, file, {"path", "size", "sha256"})
        path = check_relpath(item.get("path"), file=file, key=f"{key}.path")
        size, digest = item.get("size"), item.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ManifestError("size must be a non-negative integer", file=file, key=f"{key}.size")
        if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
            raise ManifestError("sha256 must be 64 lowercase hex digits", file=file, key=f"{key}.sha256")
        out.append(FileEntry(path, size, digest))
    paths = [f.path for f in out]
    if len(set(paths)) != len(paths):
        raise ManifestError("lists a path twice", file=file, key="files")
    for p in paths:  # a file cannot also be a folder of another file
        if any(q.startswith(p + "/") for q in paths):
            raise ManifestError(f"{p!r} is both a file and a folder", file=file, key="files")
    if paths != sorted(paths):
        raise ManifestError("must be sorted by path", file=file, key="files")
    return tuple(out)


def is_digest(text: str) -> bool:
    """True for 64 lowercase hex digits."""
    return bool(_DIGEST_RE.match(text))
