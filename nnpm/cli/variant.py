"""`nnpm variant add`: another precision of a package's graphs (int8, uint8, float16)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

variant_app = typer.Typer(help="Make other precisions of a package's graphs.", no_args_is_help=True)


@variant_app.command("add")
def variant_add(
    folder: Path = typer.Argument(Path("."), help="The package folder (holding nnpm.toml)."),
    quantize: Optional[str] = typer.Option(None, "--quantize", metavar="int8|uint8",
                                           help="Quantise the weights (dynamic; static QDQ with --calibrate)."),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", metavar="FILE.npz",
                                             help="Inputs to calibrate static quantisation with, keyed like "
                                                  "tests/inputs.npz; an array with one more axis is a stack of samples."),
    float16: bool = typer.Option(False, "--float16", help="Convert to float16, keeping float32 inputs and outputs."),
    name: Optional[str] = typer.Option(None, "--name", help="The variant's name (default: int8, uint8 or float16)."),
) -> None:
    """Write a variant of every graph beside the reference and declare it in nnpm.toml (a variants.NAME table)."""
    from nnpm.author.variant import add_variant
    from nnpm.cli.output import say
    from nnpm.cli.test import folder_arg

    added = add_variant(folder, quantize=quantize, float16=float16, calibrate=calibrate, name=name)
    for graph, file in added.files.items():
        say(f"wrote {folder / file}  ({graph})")
    for file in added.data:
        say(f"wrote {folder / file}")
    say(f"added [variants.{added.recipe.name}] (precision {added.recipe.precision}, {added.recipe.tool}) "
        f"to {folder / 'nnpm.toml'}. Next: 'nnpm test {folder_arg(folder)} --variant {added.recipe.name}', then 'nnpm pack {folder}'.")


def register(app: typer.Typer) -> None:
    """Add `nnpm variant ...`."""
    app.add_typer(variant_app, name="variant")
