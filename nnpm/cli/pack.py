"""`nnpm pack`: validate a package folder and write its manifest and .nnpm archive."""

from __future__ import annotations

from pathlib import Path

import typer


def pack(
    folder: Path = typer.Argument(Path("."), help="Package folder holding nnpm.toml."),
    out: Path = typer.Option(None, "-o", "--output", help="Archive path (default FOLDER/dist/NAME-VERSION.nnpm)."),
    check: bool = typer.Option(False, "--check", help="Validate and hash, write nothing "
                               "(what 'nnpm publish FOLDER' does first; archives are for offline use)."),
    no_split: bool = typer.Option(False, "--no-split-tensors", help="Keep the author's weight files instead of "
                                  "one file per tensor over 64 KiB, named by its sha256."),
) -> None:
    """Validate a package folder and write its manifest and .nnpm archive."""
    from nnpm.author.pack import pack as do_pack
    from nnpm.cli.output import console, summary

    notes = []

    def check_wiring(built) -> None:
        if built.manifest.project.pipeline:
            from nnpm.author.pack import check_installed_wiring

            notes.append("  wiring: checked against the installed steps"
                         if check_installed_wiring(built.manifest.project) else
                         "  wiring: not checked here (steps not installed); the registry checks it at publish")

    if check:
        from nnpm.author.pack import staged

        with staged(folder, split=not no_split) as built:   # the split layout goes to a scratch folder
            check_wiring(built)
            summary(built.manifest)
        console().print("\n".join([*notes, "checked: nothing written"]))
        return
    built, archive, manifest_path = do_pack(folder, out, check=check_wiring, split=not no_split)
    summary(built.manifest)
    console().print("\n".join([*notes, f"wrote {archive}", f"wrote {manifest_path}"]))


def register(app: typer.Typer) -> None:
    """Add `nnpm pack`."""
    app.command()(pack)
