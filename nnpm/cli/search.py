"""`nnpm search`: packages on the registry by name, description and tag."""

from __future__ import annotations

import typer

from nnpm.cli.common import REGISTRY, registry_client


def search(
    query: str = typer.Argument("", help="Words to look for in names, descriptions and tags."),
    registry: str = REGISTRY,
) -> None:
    """Search the registry."""
    from rich.text import Text

    from nnpm.cli.output import console, literal

    with registry_client(registry, None, need_token=False) as client:
        results = client.search(query)
    out = console()
    if not results:
        out.print(f"no packages match {literal(repr(query))}")
    for r in results:
        out.print(Text.assemble((literal(r.get("name", "?")), "bold"),
                                f" {literal(r.get('version', '?'))}  {literal(r.get('description', ''))}"))


def register(app: typer.Typer) -> None:
    """Add `nnpm search`."""
    app.command()(search)
