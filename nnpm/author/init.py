"""`nnpm init`: turn a bare ONNX file into a package folder with a starter nnpm.toml."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nnpm.errors import ManifestError
from nnpm.format.fields import canonical_name
from nnpm.format.onnxinfo import ModelInfo
from nnpm.format.project import TOML_NAME, project_from_dict

README_NAME = "README.md"


def starter_toml(name: str, model_file: str, *, readme: bool = True) -> str:
    """The nnpm.toml that init writes; `nnpm pack` accepts it unchanged."""
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
    from nnpm.format.onnxinfo import read_model

    folder, source = Path(folder), Path(source)
    if not source.is_file():
        raise ManifestError(f"{source} is not a file", hint="pass the path of an .onnx model with --from")
    if (folder / TOML_NAME).exists():
        raise ManifestError(f"{folder / TOML_NAME} exists already", hint="edit it, or init another folder")
    name = _default_name(folder, source, name)
    info = read_model(source.parent, source.name, allow_hardlinks=True)
    inside = folder.exists() and source.resolve().is_relative_to(folder.resolve())
    model_file = source.resolve().relative_to(folder.resolve()).as_posix() if inside else "model.onnx"
    readme = not (folder / README_NAME).exists()
    text = starter_toml(name, model_file, readme=readme)
    import tomllib
    project_from_dict(tomllib.loads(text))  # what we write must be what pack accepts
    copies = [] if inside else [(source, folder / model_file)]
    copies += [] if inside else [(source.parent / rel, folder / rel) for rel in info.external_files]
    for _, dst in copies:
        if dst.exists():
            raise ManifestError(f"{dst} exists already", hint="init into an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    writes = [(folder / README_NAME, starter_readme(name, info))] if readme else []
    writes.append((folder / TOML_NAME, text))
    _write_all(copies, writes)
    return folder / TOML_NAME, info


def _write_all(copies: list[tuple[Path, Path]], writes: list[tuple[Path, str]]) -> None:
    """Copy and write everything, or leave nothing new behind."""
    done = []
    try:
        for src, dst in copies:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            done.append(dst)
        for dst, text in writes:
            dst.write_text(text, encoding="utf-8")
            done.append(dst)
    except OSError:
        for dst in done:
            dst.unlink(missing_ok=True)
        raise
