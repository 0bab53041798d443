"""`nnpm search`: packages on the registry by name, description and tag."""

from __future__ import annotations

import json

import typer

from nnpm.cli.common import REGISTRY, registry_client


def search(
    query: str = typer.Argument("", help="Words to look for in names, descriptions and tags."),
    registry: str = REGISTRY,
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="Show at most this many packages."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Search the registry."""
    from rich.text import Text

    from nnpm.cli.output import console, literal

    with registry_client(registry, None, need_token=False) as client:
        results, total = client.search(query, limit)
    if as_json:
        print(json.dumps({"query": query, "total": total, "results": results}, indent=1))
        return
    out = console()
    if not results:
        out.print(f"no packages match {literal(repr(query))}")
    for r in results:
        out.print(Text.assemble((literal(r.get("name", "?")), "bold"),
                                f" {literal(r.get('version', '?'))}  {literal(r.get('description', ''))}"))
    if total > len(results):
        out.print(f"... {total - len(results)} more (nnpm search --limit {min(1000, total)} shows them)")


def register(app: typer.Typer) -> None:
    """Add `nnpm search`."""
    app.command()(search)
