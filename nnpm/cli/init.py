"""`nnpm init`: start a package folder from an ONNX file, with a self-test."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    import numpy as np


def init(
    folder: Path = typer.Argument(Path("."), help="Package folder to create or fill."),
    source: Path = typer.Option(..., "--from", help="The ONNX model to package."),
    name: str = typer.Option(None, help="Package name (default: the model file's stem)."),
    test_inputs: Optional[list[str]] = typer.Option(
        None, "--test-input", metavar="NAME=FILE.npy",
        help="An input for the self-test instead of a seeded random one. Repeat for several inputs."),
    no_test: bool = typer.Option(False, "--no-test", help="Write no self-test (no tests/ folder, no tests table)."),
) -> None:
    """Start a package from an ONNX file: copy it in, write an nnpm.toml and a self-test."""
    from nnpm.author.init import TEST_INPUTS, TEST_OUTPUTS, init_package_with_test
    from nnpm.cli.output import console, literal, signature_table
    from nnpm.cli.test import folder_arg

    overrides = _load_test_inputs(test_inputs or [])
    project_path, info, test = init_package_with_test(folder, source, name=name, self_test=not no_test,
                                                      test_inputs=overrides)
    out = console()
    out.print(f"wrote {project_path}")
    out.print(signature_table(info.signature))
    if test.inputs is not None:
        out.print(f"wrote {folder / TEST_INPUTS} and {folder / TEST_OUTPUTS} (the self-test: 'nnpm test {folder_arg(folder)}')")
    elif not no_test:
        out.print(literal(f"note: no self-test written: {test.note}"))
    out.print(f"params: {info.params:,}. Next: edit the description, then 'nnpm pack {folder}'.")


def _load_test_inputs(items: list[str]) -> "dict[str, np.ndarray]":
    """`NAME=FILE.npy` → arrays, read without pickles."""
    from nnpm.errors import InputError
    from nnpm.runtime.inputs import load_npy

    arrays = {}
    for item in items:
        key, sep, file = item.partition("=")
        if not sep or not key or not file:
            raise InputError(f"--test-input {item!r} is not NAME=FILE.npy", hint="e.g. --test-input image=cat.npy")
        if key in arrays:
            raise InputError(f"--test-input {key!r} is given twice")
        arrays[key] = load_npy(Path(file), f"--test-input {key!r}")
    return arrays


def register(app: typer.Typer) -> None:
    """Add `nnpm init`."""
    app.command()(init)
