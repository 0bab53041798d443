"""`nnpm.toml`: what an author writes, validated into a Project.

Unknown keys are refused; every error names the file, the key and what is allowed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from nnpm.errors import ManifestError
from nnpm.format.fields import (
    canonical_name,
    check_printable,
    check_relpath,
    parse_specifier,
    parse_version,
    table,
    text,
    text_list,
)
from nnpm.format.variants import (
    TestsSection,
    VariantSection,
    check_graph_name,
    parse_tests,
    parse_variants,
)

TOML_NAME = "nnpm.toml"

_PORT_RE = re.compile(r"^[A-Za-z0-9._-]+(:[A-Za-z][A-Za-z0-9_-]*)?\.[^.\s][^\s]*\Z")
_LICENSE_RE = re.compile(r"^[A-Za-z0-9.+() -]{1,100}\Z")

_PACKAGE_KEYS = {"name", "version", "description", "license", "readme", "tags", "authors",
                 "homepage", "repository"}
TOP_KEYS = {"package", "model", "models", "dependencies", "requires", "pipeline", "files", "tests", "variants"}
SINGLE_GRAPH = "model"   # the graph [model] names: [model] is [models.model]
_REQUIRES_KEYS = {"onnxruntime"}
_PIPELINE_KEYS = {"steps", "connect", "inputs", "outputs"}


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
    models: dict[str, ModelSection] = field(default_factory=dict)   # graph name → section, sorted by name
    pipeline: PipelineSection | None = None
    dependencies: dict[str, SpecifierSet] = field(default_factory=dict)
    requires: dict[str, SpecifierSet] = field(default_factory=dict)
    include: tuple[str, ...] = ()
    tests: TestsSection | None = None
    variants: dict[str, VariantSection] = field(default_factory=dict)

    @property
    def model(self) -> ModelSection | None:
        """The graph of a one-graph package (the first by name when there are several; None for a pipeline)."""
        return next(iter(self.models.values()), None)

    def declared_files(self) -> list[str]:
        """Files the manifest names directly (graphs, readme, labels, tests, include), in order, unique."""
        names = [m.file for m in self.models.values()]
        for variant in self.variants.values():
            names += [variant.models[g] for g in sorted(variant.models)]
        if self.readme:
            names.append(self.readme)
        for model in self.models.values():
            names += [o.labels for o in model.outputs.values() if o.labels]
        if self.tests:
            names += [self.tests.inputs, self.tests.outputs]
        names += list(self.include)
        return list(dict.fromkeys(names))


def _parse_model(data: Any, file: str | None, where: str = "model") -> ModelSection:
    data = table(data, where, file, {"file", "outputs"})
    path = check_relpath(text(data, "file", file, where, required=True), file=file, key=f"{where}.file")
    if not path.endswith(".onnx"):
        raise ManifestError(f"{path!r} is not an .onnx file", file=file, key=f"{where}.file")
    outputs = {}
    for out_name, info in table(data.get("outputs", {}), f"{where}.outputs", file).items():
        key = f"{where}.outputs.{out_name}"
        check_printable(out_name, file=file, key=key)
        info = table(info, key, file, {"labels"})
        labels = text(info, "labels", file, key)
        outputs[out_name] = OutputInfo(labels=check_relpath(labels, file=file, key=f"{key}.labels")
                                       if labels is not None else None)
    return ModelSection(file=path, outputs=outputs)


def _parse_port(value: Any, file: str | None, key: str) -> str:
    if not isinstance(value, str) or not _PORT_RE.match(value):
        raise ManifestError(f"{value!r} is not a port", file=file, key=key,
                            hint="write ports as 'step.port', e.g. 'resnet18.input'")
    check_printable(value, file=file, key=key)
    return value


def step_package(step: str) -> str:
    """The package a pipeline step names: `pkg` of `pkg` or `pkg:graph`."""
    return step.partition(":")[0]


def step_graph(step: str) -> str | None:
    """The graph a pipeline step names (`pkg:graph`), or None for the package's only graph."""
    return step.partition(":")[2] or None


def _parse_step(text: str, file: str | None) -> str:
    name, colon, graph = text.partition(":")
    name = canonical_name(name, file=file, key="pipeline.steps")
    return f"{name}:{check_graph_name(graph, file=file, key='pipeline.steps')}" if colon else name


def _parse_pipeline(data: Any, file: str | None) -> PipelineSection:
    data = table(data, "pipeline", file, _PIPELINE_KEYS)
    steps = tuple(_parse_step(s, file) for s in text_list(data, "steps", file, "pipeline", printable=False))
    if not steps:
        raise ManifestError("needs at least one step", file=file, key="pipeline.steps")
    if len(set(steps)) != len(steps):
        raise ManifestError("names a step twice", file=file, key="pipeline.steps")
    tables = {}
    for part in ("connect", "inputs", "outputs"):
        entries = table(data.get(part, {}), f"pipeline.{part}", file)
        tables[part] = {}
        for k, v in entries.items():
            if part == "connect":
                _parse_port(k, file, f"pipeline.connect.{k}")
            else:
                check_printable(k, file=file, key=f"pipeline.{part}.{k}")
            tables[part][k] = _parse_port(v, file, f"pipeline.{part}.{k}")
    return PipelineSection(steps=steps, **tables)


def _parse_specs(data: Any, key: str, file: str | None, *, names: bool) -> dict[str, SpecifierSet]:
    data = table(data, key, file, None if names else _REQUIRES_KEYS)
    out = {}
    for raw, spec in data.items():
        name = canonical_name(raw, file=file, key=f"{key}.{raw}") if names else raw
        if name in out:
            raise ManifestError(f"{raw!r} is listed twice (names compare as PEP 503)", file=file, key=f"{key}.{raw}")
        out[name] = parse_specifier(spec, file=file, key=f"{key}.{raw}")
    return out


def parse_dependencies(data: Any, *, file: str | None = TOML_NAME) -> dict[str, SpecifierSet]:
    """`[dependencies]`: canonical package names to PEP 440 specifiers (None or absent: none)."""
    return _parse_specs({} if data is None else data, "dependencies", file, names=True)


def project_from_dict(data: Any, *, file: str | None = TOML_NAME) -> Project:
    """Validate a parsed nnpm.toml (or the project part of a manifest) into a Project."""
    data = table(data, "", file, TOP_KEYS)
    pkg = table(data.get("package"), "package", file, _PACKAGE_KEYS) if "package" in data else None
    if pkg is None:
        raise ManifestError("is required", file=file, key="package")
    name = canonical_name(text(pkg, "name", file, "package", required=True), file=file)
    if "version" not in pkg:
        raise ManifestError("is required", file=file, key="package.version")
    version = parse_version(pkg["version"], file=file)
    license_ = text(pkg, "license", file, "package")
    if license_ is not None and not _LICENSE_RE.match(license_):
        raise ManifestError(f"invalid license {license_!r}", file=file, key="package.license",
                            hint="use an SPDX identifier such as MIT or Apache-2.0")
    readme = text(pkg, "readme", file, "package")
    models = _parse_models(data, file)
    pipeline = _parse_pipeline(data["pipeline"], file) if "pipeline" in data else None
    if (not models) == (pipeline is None):
        raise ManifestError("a package needs exactly one of [model] or [pipeline] ([models.NAME] for several graphs)", file=file,
                            key="model", hint="add [model] file = \"model.onnx\", or a [pipeline] of dependencies")
    if pipeline and ("tests" in data or "variants" in data):
        raise ManifestError("a pipeline has no [tests] or [variants] of its own", file=file,
                            key="tests" if "tests" in data else "variants",
                            hint="its steps carry their own self-tests and variants")
    deps = parse_dependencies(data.get("dependencies", {}), file=file)
    if name in deps:
        raise ManifestError("a package cannot depend on itself", file=file, key=f"dependencies.{name}")
    if pipeline:
        for step in pipeline.steps:
            if step_package(step) not in deps:
                raise ManifestError(f"step {step!r} is not a dependency", file=file, key="pipeline.steps",
                                    hint=f"add it under [dependencies], e.g. {step_package(step)} = \">=1\"")
    files = table(data.get("files", {}), "files", file, {"include"})
    include = tuple(check_relpath(p, file=file, key="files.include")
                    for p in text_list(files, "include", file, "files", printable=False))
    return Project(
        name=name, version=version,
        description=text(pkg, "description", file, "package", default="") or "",
        license=license_,
        readme=check_relpath(readme, file=file, key="package.readme") if readme is not None else None,
        tags=text_list(pkg, "tags", file, "package"),
        authors=text_list(pkg, "authors", file, "package"),
        homepage=text(pkg, "homepage", file, "package") or None,
        repository=text(pkg, "repository", file, "package") or None,
        models=models, pipeline=pipeline, dependencies=deps,
        requires=_parse_specs(data.get("requires", {}), "requires", file, names=False),
        include=include,
        tests=parse_tests(data["tests"], file) if "tests" in data else None,
        variants=parse_variants(data["variants"], {g: m.file for g, m in models.items()}, file)
        if "variants" in data else {},
    )


def _parse_models(data: dict, file: str | None) -> dict[str, ModelSection]:
    """`[model]` or `[models.NAME]` tables (never both), sorted by graph name."""
    if "model" in data and "models" in data:
        raise ManifestError("use [model] for one graph or [models.NAME] for several, not both", file=file, key="models")
    if "model" in data:
        return {SINGLE_GRAPH: _parse_model(data["model"], file)}
    models = {}
    for name, section in sorted(table(data.get("models", {}), "models", file).items()):
        check_graph_name(name, file=file, key=f"models.{name}")
        models[name] = _parse_model(section, file, f"models.{name}")
    files = [m.file for m in models.values()]
    if len(set(files)) != len(files):
        raise ManifestError("two graphs name the same file", file=file, key="models")
    return models


def load_project(folder: Path) -> Project:
    """Read and validate `folder/nnpm.toml`."""
    path = Path(folder) / TOML_NAME
    if not path.is_file():
        raise ManifestError(f"no {TOML_NAME} in {folder}", hint=f"run 'nnpm init {folder} --from model.onnx' first")
    import tomllib  # only nnpm.toml needs it; nnpm.load reads manifest.json

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"not valid TOML: {exc}", file=str(path)) from None
    return project_from_dict(data, file=str(path))


def _model_dict(model: ModelSection) -> dict:
    out: dict[str, Any] = {"file": model.file}
    if model.outputs:
        out["outputs"] = {k: ({"labels": v.labels} if v.labels else {}) for k, v in sorted(model.outputs.items())}
    return out


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
    if list(project.models) == [SINGLE_GRAPH]:   # written as [model]: older manifests keep their bytes
        out["model"] = _model_dict(project.models[SINGLE_GRAPH])
    elif project.models:
        out["models"] = {name: _model_dict(m) for name, m in project.models.items()}
    if project.tests:
        out["tests"] = project.tests.to_dict()
    if project.variants:
        out["variants"] = {name: v.to_dict() for name, v in sorted(project.variants.items())}
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
