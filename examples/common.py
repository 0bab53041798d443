"""Shared helpers: the Package record, model finalisation, TOML output and folder writing."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

OPSET = 17
ML_OPSET = 3
IR_VERSION = 8
PRODUCER = "nnpm-examples"
AUTHORS = ["nnpm examples"]
LICENSE = "Apache-2.0"
REQUIRES = {"onnxruntime": ">=1.17"}


@dataclass
class Package:
    """An example package: its manifest, optional model and the text files beside it."""

    manifest: dict[str, Any]
    readme: str
    model: onnx.ModelProto | None = None
    files: dict[str, str] = field(default_factory=dict)
    self_test: bool = False                       # write tests/*.npz from a seeded run, and [tests]
    variants: tuple[dict[str, Any], ...] = ()     # nnpm.author.variant.add_variant options, one per variant

    @property
    def name(self) -> str:
        """The package name from the manifest."""
        return str(self.manifest["package"]["name"])

    @property
    def version(self) -> str:
        """The package version from the manifest."""
        return str(self.manifest["package"]["version"])


def package_table(name: str, description: str, tags: list[str]) -> dict[str, Any]:
    """Return the [package] table every example shares apart from name, description and tags."""
    return {
        "name": name,
        "version": "1.0.0",
        "description": description,
        "license": LICENSE,
        "readme": "README.md",
        "tags": tags,
        "authors": AUTHORS,
    }


def finalize(model: onnx.ModelProto, ml: bool = False) -> onnx.ModelProto:
    """Pin IR version and opset imports, then run the full ONNX checker."""
    # Converters pick the lowest opset that works (and skl2onnx can even list a
    # domain twice); nnpm examples promise exactly opset 17 (+ ai.onnx.ml 3).
    del model.opset_import[:]
    model.opset_import.append(onnx.helper.make_opsetid("", OPSET))
    if ml:
        model.opset_import.append(onnx.helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def make_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    """Wrap a graph built with onnx.helper into a checked opset-17 model."""
    model = onnx.helper.make_model(graph, producer_name=PRODUCER, producer_version="1.0.0")
    return finalize(model)


def imagenet_placeholder_labels() -> str:
    """Return 1000 placeholder class names, since the real ImageNet names are not available offline."""
    return "".join(f"class {i}\n" for i in range(1000))


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes.
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"unsupported TOML value {value!r}")


def _dump_table(table: dict[str, Any], path: list[str], out: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        out.append("")
        out.append("[" + ".".join(_key(p) for p in path) + "]")
    out.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
    for key, sub in tables.items():
        _dump_table(sub, path + [key], out)


def dump_toml(doc: dict[str, Any]) -> str:
    """Serialise nested dicts of strings and string lists as TOML, keeping insertion order."""
    out: list[str] = []
    _dump_table(doc, [], out)
    text = "\n".join(out).lstrip("\n") + "\n"
    # Guard the hand-rolled writer: the text must parse back to the same data.
    if tomllib.loads(text) != doc:
        raise AssertionError("TOML round trip failed")
    return text


def _write(folder: Path, pkg: Package) -> None:
    (folder / "nnpm.toml").write_text(dump_toml(pkg.manifest), encoding="utf-8")
    (folder / "README.md").write_text(pkg.readme, encoding="utf-8")
    for rel, text in pkg.files.items():
        (folder / rel).write_text(text, encoding="utf-8")
    if pkg.model is not None:
        # Keep weights inline: nnpm ships model.onnx as a single file.
        onnx.save_model(pkg.model, folder / "model.onnx", save_as_external_data=False)
    if pkg.self_test:
        _add_self_test(folder)
    for options in pkg.variants:
        from nnpm.author.variant import add_variant

        calibrate = options.get("calibrate")   # a path inside the package folder
        add_variant(folder, **options | ({"calibrate": folder / calibrate} if calibrate else {}))


def _add_self_test(folder: Path) -> None:
    """The reference run once on seeded inputs, saved as the package's self-test (as `nnpm init` does)."""
    import numpy as np

    from nnpm.author.pack import build
    from nnpm.format.selftest import run_variant, seeded_inputs

    manifest = build(folder).manifest
    inputs = seeded_inputs(manifest)
    outputs = run_variant(folder, manifest, "reference", inputs)
    (folder / "tests").mkdir()
    np.savez(folder / "tests" / "inputs.npz", **inputs)
    np.savez(folder / "tests" / "outputs.npz", **outputs)
    with (folder / "nnpm.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[tests]\ninputs = "tests/inputs.npz"\noutputs = "tests/outputs.npz"\nrtol = 0.0001\natol = 1e-05\n')


def write_package(pkg: Package, outdir: Path) -> Path:
    """Write pkg to outdir/<name>, replacing any previous folder only once the new one is complete."""
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / pkg.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{pkg.name}.", suffix=".tmp", dir=outdir))
    try:
        _write(tmp, pkg)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700 folders; packages should be readable
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{pkg.name}.", suffix=".old", dir=outdir))
            os.rename(target, old / pkg.name)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
