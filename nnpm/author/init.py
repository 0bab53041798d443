"""`nnpm init`: turn a bare ONNX file into a package folder with a starter nnpm.toml (and a self-test).

The self-test is the model run once on seeded inputs (symbolic dims 1, or arrays the author
gives), before anything is written: tests/inputs.npz, tests/outputs.npz and a [tests] table.
A model that cannot be run so (an input nnpm cannot make up, an output that is no array)
still becomes a package, without [tests], and the reason is handed back.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nnpm.errors import InputError, ManifestError, ModelError
from nnpm.format.fields import canonical_name
from nnpm.format.onnxinfo import ModelInfo
from nnpm.format.project import TOML_NAME, project_from_dict
from nnpm.format.variants import DEFAULT_ATOL, DEFAULT_RTOL

if TYPE_CHECKING:
    import numpy as np

README_NAME = "README.md"
TEST_INPUTS, TEST_OUTPUTS = "tests/inputs.npz", "tests/outputs.npz"


@dataclass(frozen=True)
class SelfTest:
    """What init's self-test came to: the arrays to save, or why there are none (`note`)."""

    inputs: dict | None = None
    outputs: dict | None = None
    note: str | None = None


def starter_toml(name: str, model_file: str, *, readme: bool = True, tests: bool = False) -> str:
    """The nnpm.toml that init writes; `nnpm pack` accepts it unchanged."""
    tests_table = ["[tests]", f"inputs = {json.dumps(TEST_INPUTS)}", f"outputs = {json.dumps(TEST_OUTPUTS)}",
                   f"rtol = {DEFAULT_RTOL!r}", f"atol = {DEFAULT_ATOL!r}", ""] if tests else []
    return "\n".join([
        "[package]",
        f"name = {json.dumps(name)}",
        'version = "0.1.0"',
        f"description = {json.dumps('The ' + name + ' model')}",
        "# license = \"Apache-2.0\"",
        f'readme = "{README_NAME}"' if readme else f'# readme = "{README_NAME}"',
        "# tags = []",
        "",
        "[model]",
        f"file = {json.dumps(model_file)}",
        "",
        *tests_table,
        "[dependencies]",
        "",
    ])


def starter_readme(name: str, info: ModelInfo) -> str:
    """A README the model card shows until the author writes their own: the interface and how to use it."""
    rows = [f"| {side} | `{t.name}` | {t.dtype} | {t.shape_text()} |"
            for side, specs in (("input", info.signature.inputs), ("output", info.signature.outputs)) for t in specs]
    first = info.signature.inputs[0].name if info.signature.inputs else "x"
    return "\n".join([
        f"# {name}", "", f"The {name} model. Say here what it does, what it was trained on, and how well it works.",
        "", "## Inputs and outputs", "", "| | name | dtype | shape |", "|---|---|---|---|", *rows, "",
        "## Use", "", "```sh", f"nnpm install {name}", "```", "", "```python", "import nnpm", "",
        f'model = nnpm.load("{name}")', f"outputs = model({first}=...)", "```", "",
        f"Parameters: {info.params:,}.", "",
    ])


def _default_name(folder: Path, source: Path, name: str | None) -> str:
    """--name, else the folder's name (what a user means by `nnpm init my-model`), else the file's stem."""
    if name:
        return canonical_name(name, file=None, key="--name")
    for candidate in (folder.resolve().name, source.stem):
        try:
            return canonical_name(candidate, file=None, key="folder name")
        except ManifestError:
            continue
    raise ManifestError(f"neither {folder.resolve().name!r} nor {source.stem!r} is a package name",
                        hint="pass --name NAME")


def init_package(folder: Path, source: Path, *, name: str | None = None) -> tuple[Path, ModelInfo]:
    """Put `source` (and its external data) into `folder`, write nnpm.toml and a README; nothing on failure.

    A model already inside `folder` stays where it is: nothing is copied."""
    toml, info, _ = init_package_with_test(folder, source, name=name, self_test=False)
    return toml, info


def init_package_with_test(folder: Path, source: Path, *, name: str | None = None, self_test: bool = True,
                           test_inputs: Mapping[str, np.ndarray] | None = None) -> tuple[Path, ModelInfo, SelfTest]:
    """`init_package`, plus a self-test from running the model on seeded inputs (`test_inputs` win)."""
    from nnpm.format.onnxinfo import read_model

    folder, source = Path(folder), Path(source)
    if not source.is_file():
        raise ManifestError(f"{source} is not a file", hint="pass the path of an .onnx model with --from")
    if (folder / TOML_NAME).exists():
        raise ManifestError(f"{folder / TOML_NAME} exists already", hint="edit it, or init another folder")
    name = _default_name(folder, source, name)
    info = read_model(source.parent, source.name, allow_hardlinks=True)
    unknown = sorted(set(test_inputs or {}) - {t.name for t in info.signature.inputs})
    if unknown:
        raise InputError(f"--test-input {unknown[0]!r}: the model has no such input",
                         hint="its inputs are: " + ", ".join(t.name for t in info.signature.inputs))
    inside = folder.exists() and source.resolve().is_relative_to(folder.resolve())
    model_file = source.resolve().relative_to(folder.resolve()).as_posix() if inside else "model.onnx"
    readme = not (folder / README_NAME).exists()
    copies = [] if inside else [(source, folder / model_file)]
    copies += [] if inside else [(source.parent / rel, folder / rel) for rel in info.external_files]
    for _, dst in copies:
        if dst.exists():
            raise ManifestError(f"{dst} exists already", hint="init into an empty folder")
    test = SelfTest(note="not asked for")
    if self_test:
        run_at = (folder, model_file) if inside else (source.parent, source.name)
        test = _self_test(*run_at, name, info, folder, dict(test_inputs or {}))
    text = starter_toml(name, model_file, readme=readme, tests=test.inputs is not None)
    import tomllib
    project_from_dict(tomllib.loads(text))  # what we write must be what pack accepts
    folder.mkdir(parents=True, exist_ok=True)
    writes = [(folder / README_NAME, starter_readme(name, info).encode())] if readme else []
    if test.inputs is not None:
        writes += [(folder / TEST_INPUTS, _npz(test.inputs)), (folder / TEST_OUTPUTS, _npz(test.outputs))]
    writes.append((folder / TOML_NAME, text.encode()))
    _write_all(copies, writes)
    return folder / TOML_NAME, info, test


def _self_test(run_folder: Path, run_file: str, name: str, info: ModelInfo, folder: Path,
               overrides: dict[str, np.ndarray]) -> SelfTest:
    """Run the model where it is now on seeded inputs; the arrays to save, or a note saying why not."""
    from nnpm.format.manifest import Manifest
    from nnpm.format.selftest import run_variant, seeded_inputs

    for rel in (TEST_INPUTS, TEST_OUTPUTS):
        if (folder / rel).exists():
            return SelfTest(note=f"{rel} exists already, so init leaves the self-test to you")
    import tomllib
    project = project_from_dict(tomllib.loads(starter_toml(name, run_file)))
    manifest = Manifest(project=project, files=(), signature=info.signature, opsets=info.opsets)
    try:
        inputs = seeded_inputs(manifest, overrides)
        outputs = {k: _storable(k, v) for k, v in run_variant(run_folder, manifest, "reference", inputs).items()}
    except (InputError, ModelError) as exc:
        return SelfTest(note=exc.one_line())
    return SelfTest(inputs, outputs)


def _storable(key: str, value: object) -> np.ndarray:
    """An output as an array an .npz keeps without pickling; strings come back from onnxruntime as objects."""
    import numpy as np

    array = np.asarray(value) if isinstance(value, np.ndarray) else None
    if array is not None and array.dtype.hasobject and all(isinstance(v, str) for v in array.flat):
        array = array.astype(str)
    if array is None or array.dtype.hasobject:
        raise InputError(f"output {key!r} is a {type(value).__name__} of non-array values (a sequence or map), "
                         "which a self-test cannot hold", hint="add [tests] by hand if another output suffices")
    return array


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _write_all(copies: list[tuple[Path, Path]], writes: list[tuple[Path, bytes]]) -> None:
    """Copy and write everything, or leave nothing new behind."""
    done = []
    try:
        for src, dst in copies:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            done.append(dst)
        for dst, data in writes:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(data)
            done.append(dst)
    except OSError:
        for dst in done:
            dst.unlink(missing_ok=True)
        raise
