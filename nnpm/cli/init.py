"""`nnpm init`: start a package folder from an ONNX file."""

from __future__ import annotations

from pathlib import Path

import typer


def init(
    folder: Path = typer.Argument(Path("."), help="Package folder to create or fill."),
    source: Path = typer.Option(..., "--from", help="The ONNX model to package."),
    name: str = typer.Option(None, help="Package name (default: the model file's stem)."),
) -> None:
    """Start a package from an ONNX file: copy it in and write an nnpm.toml."""
    from nnpm.author.init import init_package
    from nnpm.cli.output import console, signature_table

    project_path, info = init_package(folder, source, name=name)
    out = console()
    out.print(f"wrote {project_path}")
    out.print(signature_table(info.signature))
    out.print(f"params: {info.params:,}. Next: edit the description, then 'nnpm pack {folder}'.")


def register(app: typer.Typer) -> None:
    """Add `nnpm init`."""
    app.command()(init)
