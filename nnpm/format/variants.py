"""`[tests]` and `[variants.NAME]` of nnpm.toml: a package's self-test and its other precisions.

Parsed here for `nnpm/format/project.py`; what a variant's graphs hold is read at pack into
the manifest's `graphs` table (`nnpm/format/graphs.py`). docs/format.md has the contract.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from nnpm.errors import ManifestError
from nnpm.format.fields import check_printable, check_relpath, table, text, text_list

REFERENCE = "reference"
PREFER = ("reference", "speed", "size")   # how an installer or a project may choose among variants
PRECISIONS = ("float64", "float32", "float16", "bfloat16", "int16", "int8", "uint8", "int4", "uint4", "mixed")
DEFAULT_RTOL, DEFAULT_ATOL = 1e-4, 1e-5
MAX_TRANSFORM_JSON = 4096

GRAPH_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}\Z", re.ASCII)
VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z", re.ASCII)
_PROVIDER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}ExecutionProvider\Z", re.ASCII)
_VARIANT_KEYS = {"precision", "derived-from", "models", "transform", "requires", "changes-io"}


@dataclass(frozen=True)
class TestsSection:
    """`[tests]`: input and expected-output arrays (.npz inside the package) and tolerances."""

    inputs: str
    outputs: str
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL

    def to_dict(self) -> dict:
        """TOML/JSON form."""
        return {"inputs": self.inputs, "outputs": self.outputs, "rtol": self.rtol, "atol": self.atol}


@dataclass(frozen=True)
class Transform:
    """How a variant was made: the tool, its version and its parameters."""

    tool: str
    version: str = ""
    parameters: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """TOML/JSON form."""
        out: dict[str, Any] = {"tool": self.tool}
        if self.version:
            out["version"] = self.version
        if self.parameters:
            out["parameters"] = self.parameters
        return out


@dataclass(frozen=True)
class VariantSection:
    """`[variants.NAME]`: one file per graph of the package, at another precision."""

    name: str
    precision: str
    models: dict[str, str]
    derived_from: str = REFERENCE
    transform: Transform | None = None
    providers: tuple[str, ...] = ()
    changes_io: bool = False

    def to_dict(self) -> dict:
        """TOML/JSON form (defaults left out)."""
        out: dict[str, Any] = {"precision": self.precision, "derived-from": self.derived_from,
                               "models": dict(sorted(self.models.items()))}
        if self.transform:
            out["transform"] = self.transform.to_dict()
        if self.providers:
            out["requires"] = {"providers": list(self.providers)}
        if self.changes_io:
            out["changes-io"] = True
        return out


def check_graph_name(name: Any, *, file: str | None, key: str) -> str:
    """A graph name: 1-64 ASCII letters, digits, '_' and '-', starting with a letter."""
    if not isinstance(name, str) or not GRAPH_NAME_RE.match(name):
        raise ManifestError(f"{name!r} is not a graph name", file=file, key=key,
                            hint="use 1-64 letters, digits, '_' and '-', starting with a letter")
    return name


def _tolerance(data: dict, key: str, default: float, file: str | None) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ManifestError(f"must be a non-negative number, not {value!r}", file=file, key=f"tests.{key}",
                            hint=f"e.g. {key} = {default}")
    return float(value)


def parse_tests(data: Any, file: str | None) -> TestsSection:
    """`[tests]`: inputs, outputs (.npz package paths) and rtol, atol."""
    data = table(data, "tests", file, {"inputs", "outputs", "rtol", "atol"})
    paths = {}
    for key in ("inputs", "outputs"):
        path = check_relpath(text(data, key, file, "tests", required=True), file=file, key=f"tests.{key}")
        if not path.endswith(".npz"):
            raise ManifestError(f"{path!r} is not an .npz file", file=file, key=f"tests.{key}",
                                hint="save the arrays with numpy.savez")
        paths[key] = path
    if paths["inputs"] == paths["outputs"]:
        raise ManifestError("inputs and outputs must be two files", file=file, key="tests")
    return TestsSection(paths["inputs"], paths["outputs"], _tolerance(data, "rtol", DEFAULT_RTOL, file),
                        _tolerance(data, "atol", DEFAULT_ATOL, file))


def _scalar_tree(value: Any, depth: int = 0) -> bool:
    if isinstance(value, (str, int, float, bool)):
        return not (isinstance(value, float) and not math.isfinite(value))
    if depth < 3 and isinstance(value, list):
        return all(_scalar_tree(v, depth + 1) for v in value)
    if depth < 3 and isinstance(value, dict):
        return all(isinstance(k, str) and _scalar_tree(v, depth + 1) for k, v in value.items())
    return False


def _parse_transform(data: Any, file: str | None, key: str) -> Transform:
    data = table(data, key, file, {"tool", "version", "parameters"})
    tool = text(data, "tool", file, key, required=True)
    version = text(data, "version", file, key) or ""
    params = table(data.get("parameters", {}), f"{key}.parameters", file)
    if not _scalar_tree(params) or len(json.dumps(params)) > MAX_TRANSFORM_JSON:
        raise ManifestError(f"must hold numbers, strings, booleans and lists of them, at most "
                            f"{MAX_TRANSFORM_JSON} bytes of JSON", file=file, key=f"{key}.parameters")
    return Transform(tool, version, dict(params))


def _parse_variant(name: str, data: Any, graphs: list[str], file: str | None) -> VariantSection:
    key = f"variants.{name}"
    if not VARIANT_NAME.match(name) or name == REFERENCE:
        raise ManifestError(f"{name!r} is not a variant name" + (" (reference is the [models] files themselves)"
                                                               if name == REFERENCE else ""),
                            file=file, key=key, hint="use 1-64 lower-case letters, digits, '_' and '-', e.g. int8")
    data = table(data, key, file, _VARIANT_KEYS)
    precision = text(data, "precision", file, key, required=True)
    if precision not in PRECISIONS:
        raise ManifestError(f"unknown precision {precision!r}", file=file, key=f"{key}.precision",
                            hint="one of " + ", ".join(PRECISIONS))
    if "models" not in data:
        raise ManifestError("is required", file=file, key=f"{key}.models",
                            hint="name a file for every graph, e.g. models = { model = \"model_int8.onnx\" }")
    models = {}
    for graph, path in table(data["models"], f"{key}.models", file).items():
        if graph not in graphs:
            raise ManifestError(f"the package has no graph {graph!r}", file=file, key=f"{key}.models.{graph}",
                                hint="graphs are: " + ", ".join(graphs))
        models[graph] = check_relpath(path, file=file, key=f"{key}.models.{graph}")
        if not models[graph].endswith(".onnx"):
            raise ManifestError(f"{models[graph]!r} is not an .onnx file", file=file, key=f"{key}.models.{graph}")
    missing = [g for g in graphs if g not in models]
    if missing:
        raise ManifestError(f"names no file for graph {missing[0]!r}", file=file, key=f"{key}.models",
                            hint="a variant gives a file for every graph of the package")
    requires = table(data.get("requires", {}), f"{key}.requires", file, {"providers"})
    providers = text_list(requires, "providers", file, f"{key}.requires")
    for provider in providers:
        if not _PROVIDER_RE.match(provider):
            raise ManifestError(f"{provider!r} is not an execution provider name", file=file,
                                key=f"{key}.requires.providers", hint="e.g. CUDAExecutionProvider")
    changes_io = data.get("changes-io", False)
    if not isinstance(changes_io, bool):
        raise ManifestError("must be true or false", file=file, key=f"{key}.changes-io")
    derived = text(data, "derived-from", file, key) or REFERENCE
    check_printable(derived, file=file, key=f"{key}.derived-from")
    transform = _parse_transform(data["transform"], file, f"{key}.transform") if "transform" in data else None
    return VariantSection(name, precision, models, derived, transform, providers, changes_io)


def parse_variants(data: Any, graph_files: dict[str, str], file: str | None) -> dict[str, VariantSection]:
    """`[variants.*]` checked against the package's graphs (name → reference file)."""
    graphs = sorted(graph_files)
    variants = {name: _parse_variant(name, value, graphs, file)
                for name, value in sorted(table(data, "variants", file).items())}
    owner = {path: REFERENCE for path in graph_files.values()}
    for name, variant in variants.items():
        for graph, path in sorted(variant.models.items()):
            if path in owner:
                raise ManifestError(f"{path!r} is already a graph of {owner[path]}", file=file,
                                    key=f"variants.{name}.models.{graph}", hint="each variant has files of its own")
            owner[path] = name
    for name, variant in variants.items():
        seen, at = {name}, variant.derived_from
        while at != REFERENCE:
            if at not in variants:
                raise ManifestError(f"derived from {at!r}, which is neither reference nor a variant", file=file,
                                    key=f"variants.{name}.derived-from")
            if at in seen:
                raise ManifestError("derived-from goes round in a circle", file=file, key=f"variants.{name}.derived-from")
            seen.add(at)
            at = variants[at].derived_from
    return variants
