"""`nnpm list`: what an environment holds."""

from __future__ import annotations

import json

import typer

from nnpm.cli.common import ENV


def list_(
    env: str = ENV,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List installed packages."""
    from nnpm.cli.output import console, human_size
    from nnpm.install.env import open_env

    e = open_env(env)
    if env and not e.exists():
        from nnpm.errors import EnvError

        raise EnvError(f"no environment named {env!r}", hint="see 'nnpm env list'")
    lock = e.lock()
    rows = [{"name": n, "version": p.version, "variant": p.variant, "source": p.source, "requested": p.requested,
             "size": sum(s for _, s, _ in p.files)} for n, p in sorted(lock.packages.items())]
    if as_json:
        print(json.dumps({"env": e.name, "project": str(e.project.root) if e.project else None,
                          "packages": rows}, indent=1))
        return
    out = console()
    if not rows:
        out.print(f"{_title(e)}: no packages installed")
        return
    from rich.table import Table

    table = Table(show_edge=False, box=None, pad_edge=False)
    variants = any(r["variant"] != "reference" for r in rows)
    for col in ("name", "version") + (("variant",) if variants else ()) + ("size", "source"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"] + ("" if r["requested"] else " (dep)"), r["version"],
                      *((r["variant"],) if variants else ()), human_size(r["size"]), r["source"])
    out.print(f"{_title(e)}:")
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add `nnpm list`."""
    app.command("list")(list_)


def _title(e) -> str:
    return f"project {e.name} ({e.root})" if e.project else f"env {e.name}"
