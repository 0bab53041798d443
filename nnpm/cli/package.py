"""Author commands: init, pack."""

from __future__ import annotations

from pathlib import Path

import typer


def init(
    folder: Path = typer.Argument(Path("."), help="Package folder to create or fill."),
    source: Path = typer.Option(..., "--from", help="The ONNX model to package."),
    name: str = typer.Option(None, help="Package name (default: the model file's stem)."),
) -> None:
    """Start a package from an ONNX file: copy it in and write an nnpm.toml."""
    from nnpm.init import init_package
    from nnpm.cli.show import console, signature_table

    project_path, info = init_package(folder, source, name=name)
    out = console()
    out.print(f"wrote {project_path}")
    out.print(signature_table(info.signature))
    out.print(f"params: {info.params:,}. Next: edit the description, then 'nnpm pack {folder}'.")


def pack(
    folder: Path = typer.Argument(Path("."), help="Package folder holding nnpm.toml."),
    out: Path = typer.Option(None, "-o", "--output", help="Archive path (default FOLDER/dist/NAME-VERSION.nnpm)."),
) -> None:
    """Validate a package folder and write its manifest and .nnpm archive."""
    from nnpm.cli.show import console, summary
    from nnpm.pack import pack as do_pack

    notes = []

    def check_wiring(built) -> None:
        if built.manifest.project.pipeline:
            from nnpm.pipeline import check_installed_wiring

            notes.append("  wiring: checked against the installed steps"
                         if check_installed_wiring(built.manifest.project) else
                         "  wiring: not checked here (steps not installed); the registry checks it at publish")

    built, archive, manifest_path = do_pack(folder, out, check=check_wiring)
    summary(built.manifest)
    console().print("\n".join([*notes, f"wrote {archive}", f"wrote {manifest_path}"]))


def register(app: typer.Typer) -> None:
    """Add the author commands to the app."""
    app.command()(init)
    app.command()(pack)
