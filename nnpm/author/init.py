"""`nnpm init`: turn a bare ONNX file into a package folder with a starter nnpm.toml."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nnpm.errors import ManifestError
from nnpm.format.fields import canonical_name
from nnpm.format.onnxinfo import ModelInfo
from nnpm.format.project import TOML_NAME, project_from_dict


def starter_toml(name: str, model_file: str) -> str:
    """The nnpm.toml that init writes; `nnpm pack` accepts it unchanged."""
    return "\n".join([
        "[package]",
        f"name = {json.dumps(name)}",
        'version = "0.1.0"',
        f"description = {json.dumps('The ' + name + ' model')}",
        "# license = \"Apache-2.0\"",
        "# readme = \"README.md\"",
        "# tags = []",
        "",
        "[model]",
        f"file = {json.dumps(model_file)}",
        "",
        "[dependencies]",
        "",
    ])


def init_package(folder: Path, source: Path, *, name: str | None = None) -> tuple[Path, ModelInfo]:
    """Copy `source` (and its external data) into `folder` and write nnpm.toml; nothing on failure."""
    from nnpm.format.onnxinfo import read_model

    folder, source = Path(folder), Path(source)
    if not source.is_file():
        raise ManifestError(f"{source} is not a file", hint="pass the path of an .onnx model with --from")
    if (folder / TOML_NAME).exists():
        raise ManifestError(f"{folder / TOML_NAME} exists already", hint="edit it, or init another folder")
    name = canonical_name(name or source.stem, file=None, key="--name" if name else "model file name")
    info = read_model(source.parent, source.name, allow_hardlinks=True)
    model_file = "model.onnx"
    text = starter_toml(name, model_file)
    import tomllib
    project_from_dict(tomllib.loads(text))  # what we write must be what pack accepts
    copies = [(source, folder / model_file)]
    copies += [(source.parent / rel, folder / rel) for rel in info.external_files]
    for _, dst in copies:
        if dst.exists():
            raise ManifestError(f"{dst} exists already", hint="init into an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    done = []
    try:
        for src, dst in copies:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            done.append(dst)
        (folder / TOML_NAME).write_text(text, encoding="utf-8")
    except OSError:
        for dst in done:
            dst.unlink(missing_ok=True)
        raise
    return folder / TOML_NAME, info
