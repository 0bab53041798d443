"""`nnpm bundle export` and `nnpm bundle import`: packages carried across an air gap in one verified file."""

from __future__ import annotations

from typing import Optional

import typer

from nnpm.cli.common import REGISTRY

bundle_app = typer.Typer(help="Carry packages to a machine without network: one file, verified on arrival.",
                         no_args_is_help=True)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.")


@bundle_app.command("export")
def export_bundle(
    names: Optional[list[str]] = typer.Argument(None, help="Packages to bundle, with their dependencies "
                                                "(default: the project's nnpm.lock)."),
    output: str = typer.Option(..., "--output", "-o", help="The bundle file to write (e.g. site.nnpmb)."),
    lock: str = typer.Option(None, "--lock", help="Bundle exactly what this lock file pins (a project's nnpm.lock "
                             "or an environment's lock)."),
    registry: str = REGISTRY,
    quiet: bool = QUIET,
) -> None:
    """Write one bundle of packages, their files and the registry's signed index."""
    from pathlib import Path

    from nnpm.cli.output import human_size, plural, say
    from nnpm.client.api import RegistryClient
    from nnpm.config import load_settings
    from nnpm.errors import ManifestError
    from nnpm.trust.export import export

    if lock and names:
        raise ManifestError("give --lock or package names, not both")
    if not lock and not names:
        from nnpm.format.application import project_from_environment

        app = project_from_environment()
        if app is None:
            raise ManifestError("nothing to bundle", hint="name packages, give --lock FILE, or run it in a project")
        lock = str(app.lock_path)
    settings = load_settings(registry=registry)
    with RegistryClient.for_settings(settings) as client:
        result = export(Path(output), client, settings, names=list(names or []), lock=Path(lock) if lock else None,
                        progress=False if quiet else None)
    index = "with the registry's signed index" if result.signed_index else "without a signed index"
    say(f"wrote {output} ({human_size(result.size)}): {plural(len(result.versions), 'version')}, "
        f"{plural(result.blobs, 'file')} ({human_size(result.blob_bytes)}), {index}")


@bundle_app.command("import")
def import_bundle(
    bundle: str = typer.Argument(..., help="The bundle file."),
    root: str = typer.Option(None, "--root", help="Verify the registry's signed index from this root.json when this "
                             "machine pins none for that registry (else the bundle's own root is trusted, with a note)."),
    quiet: bool = QUIET,
) -> None:
    """Verify a bundle whole, then add its packages to this machine's store (then 'nnpm install --locked')."""
    from pathlib import Path

    from nnpm.cli.output import human_size, literal, plural, say
    from nnpm.config import load_settings
    from nnpm.trust.bundle import import_

    result = import_(Path(bundle), load_settings(), Path(root) if root else None, progress=False if quiet else None)
    for note in result.notes:
        say(literal(note))
    when = f"; its index was signed to stay fresh until {result.index_expires}" if result.index_expires else ""
    say(f"imported {plural(len(result.versions), 'version')} from {literal(result.registry)} "
        f"(bundled {result.created_at}{when}); {plural(len(result.signed), 'publisher signature')} verified")
    say(f"{plural(result.added, 'file')} added to the store ({human_size(result.added_bytes)}), "
        f"{result.present} already there")


_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def registry_import(ctx: typer.Context) -> None:
    """Load a bundle into this registry, verified first: each version as published (--help lists the options)."""
    from registry_server.bundle_import import main

    code = main(ctx.args, prog="nnpm registry import")
    if code:
        raise typer.Exit(code)


def add_registry_import(registry_app: typer.Typer) -> None:
    """Add `nnpm registry import` (registry_server/bundle_import.py parses its options)."""
    registry_app.command("import", context_settings=_PASS_THROUGH, add_help_option=False)(registry_import)


def register(app: typer.Typer) -> None:
    """Add `nnpm bundle export|import`."""
    app.add_typer(bundle_app, name="bundle")
