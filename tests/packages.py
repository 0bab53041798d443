"""The tiny package folders tests pack, publish and install (a fixture plugin of tests/conftest.py).

- ``write_package(folder, name="tiny", version="1.0.0", weights=(1, 2, 3), **options) -> folder``
  writes nnpm.toml and its files. By default the model is ``Y = X + W`` (W = weights,
  modelkit.add_constant) and [package] has a description, license, tags and a README.
  Options:

  - ``model``: another onnx.ModelProto to save as ``model_file`` (default "model.onnx");
  - ``location`` (or ``external_data=True`` for "weights.bin"): every tensor goes to that
    external-data file;
  - ``description``, ``license``, ``tags``, ``readme`` (the README.md text): None leaves
    the field (and README.md) out; ``bare=True`` leaves out all four unless given;
  - ``labels``: lines of a labels.txt declared for output ``Y``;
  - ``files``: more files, {relative path: bytes};
  - ``package_extra``: more lines inside [package]; ``extra_toml``: text at the end;
  - ``dependencies`` ({name: specifier}) and ``pipeline`` (step names, with ``connect``
    {"step.input": "step.output"}): a pipeline package, with no model.
- ``DEMO``: options for ``demo`` 1.0.0 with only the fields nnpm.toml requires
  (``write_package(folder, **DEMO, model=modelkit.linear())``).
- ``write_unique_package(root, name, version, weights, **options)``: the same, into a folder
  of ``root`` named after every argument, so packages that differ in anything never share one.
- ``write_labelled_package(folder, name, version, n)``: ``Y = X + W`` with n weights, a README
  and a labels.txt for Y, each naming the package (three files no other name shares).
- ``tamper(archive, member)``: flip one byte of one member inside a .nnpm archive.
- ``small_package`` (fixture): ``make(name="tiny", version="1.0.0", weights=(1, 2, 3), **options)``
  writes ``tmp_path/packages/NAME-VERSION`` (the same name and version rewrite one folder).
"""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

DEMO = {"name": "demo", "bare": True}  # demo 1.0.0 with only the fields nnpm.toml requires
DESCRIPTION = "A tiny test model"
README = "# tiny\n\nAdds a constant to its input.\n"
_UNSET = object()


def _toml_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def _package_table(name: str, version: str, about: dict, package_extra: str) -> str:
    lines = ["[package]", f'name = "{name}"', f'version = "{version}"']
    if about["description"] is not None:
        lines.append(f'description = "{about["description"]}"')
    if about["license"] is not None:
        lines.append(f'license = "{about["license"]}"')
    if about["tags"] is not None:
        lines.append(f"tags = {_toml_list(about['tags'])}")
    if about["readme"] is not None:
        lines.append('readme = "README.md"')
    return "\n".join(lines) + "\n" + package_extra + "\n"


def _pipeline_tables(dependencies: Mapping[str, str] | None, pipeline: Sequence[str] | None,
                     connect: Mapping[str, str] | None) -> str:
    text = ""
    if dependencies:
        text += "[dependencies]\n" + "".join(f'{k} = "{v}"\n' for k, v in dependencies.items()) + "\n"
    if pipeline is not None:
        text += f"[pipeline]\nsteps = {_toml_list(pipeline)}\n"
        if connect:
            text += "\n[pipeline.connect]\n" + "".join(f'"{k}" = "{v}"\n' for k, v in connect.items())
    return text


def _save_model(folder: Path, model, model_file: str, location: str | None) -> None:
    import modelkit

    if location is not None:
        (folder / location).unlink(missing_ok=True)  # onnx appends to an existing file
    modelkit.save(model, folder / model_file, location=location)


def write_package(folder: Path, name: str = "tiny", version: str = "1.0.0",
                  weights: Sequence[float] = (1.0, 2.0, 3.0), *, model=None, model_file: str = "model.onnx",
                  location: str | None = None, external_data: bool = False, bare: bool = False,
                  description=_UNSET, license=_UNSET, tags=_UNSET, readme=_UNSET,
                  labels: Sequence[str] | None = None, files: Mapping[str, bytes] | None = None,
                  package_extra: str = "", extra_toml: str = "", dependencies: Mapping[str, str] | None = None,
                  pipeline: Sequence[str] | None = None, connect: Mapping[str, str] | None = None) -> Path:
    """Write a valid package folder (see the module docstring for the options) and return it."""
    import modelkit

    defaults = {"description": DESCRIPTION, "license": "MIT", "tags": ("test",), "readme": README}
    given = {"description": description, "license": license, "tags": tags, "readme": readme}
    about = {k: (None if bare else defaults[k]) if v is _UNSET else v for k, v in given.items()}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = _package_table(name, version, about, package_extra)
    text += _pipeline_tables(dependencies, pipeline, connect)
    if pipeline is None:
        model = modelkit.add_constant(weights, name) if model is None else model
        _save_model(folder, model, model_file, "weights.bin" if external_data else location)
        text += f'[model]\nfile = "{model_file}"\n'
    if labels is not None:
        (folder / "labels.txt").write_text("".join(f"{line}\n" for line in labels), encoding="utf-8")
        text += '\n[model.outputs.Y]\nlabels = "labels.txt"\n'
    if about["readme"] is not None:
        (folder / "README.md").write_text(about["readme"], encoding="utf-8")
    for rel, data in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    (folder / "nnpm.toml").write_text(text + extra_toml, encoding="utf-8")
    return folder


def write_unique_package(root: Path, name: str = "tiny", version: str = "1.0.0",
                         weights: Sequence[float] = (1.0, 2.0, 3.0), **options) -> Path:
    """`write_package` into root/NAME-VERSION-DIGEST, DIGEST naming every argument (no two share a folder)."""
    digest = hashlib.sha256(repr((name, version, tuple(weights), sorted(options.items()))).encode()).hexdigest()
    return write_package(Path(root) / f"{name}-{version}-{digest[:12]}", name, version, weights, **options)


def write_labelled_package(folder: Path, name: str = "tiny", version: str = "1.0.0", n: int = 1000) -> Path:
    """Y = X + W with W = 0..n-1, a README "# NAME" and labels NAME-a, NAME-b for Y."""
    import numpy as np

    return write_package(folder, name, version, np.arange(n, dtype=np.float32), description="test",
                         license=None, tags=None, readme=f"# {name}\n", labels=[f"{name}-a", f"{name}-b"])


def tamper(archive: Path, member: str) -> None:
    """Flip the 11th byte of `member`'s data inside a .nnpm archive, in place."""
    with tarfile.open(archive) as tar:
        offset = tar.getmember(member).offset_data
    with open(archive, "r+b") as f:
        f.seek(offset + 10)
        byte = f.read(1)
        f.seek(offset + 10)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def small_package(tmp_path: Path) -> Callable[..., Path]:
    """`make(name="tiny", version="1.0.0", weights=(1, 2, 3), **options) -> folder` under tmp_path/packages."""
    def make(name: str = "tiny", version: str = "1.0.0", weights=(1.0, 2.0, 3.0), **options) -> Path:
        return write_package(tmp_path / "packages" / f"{name}-{version}", name, version, weights, **options)

    return make
