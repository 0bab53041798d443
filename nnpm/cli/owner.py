"""`nnpm owner add|remove|list`: who may publish and yank a package."""

from __future__ import annotations

import typer

from nnpm.cli.common import REGISTRY, TOKEN, registry_client
from nnpm.cli.output import say

owner_app = typer.Typer(help="See and change the owners of a package.", no_args_is_help=True)


def _name(text: str) -> str:
    from nnpm.format.spec import parse_spec

    spec = parse_spec(text, paths=False)
    if spec.specifier:
        from nnpm.errors import SpecError

        raise SpecError(f"{text!r}: owners belong to a package, not a version", hint=f"use {spec.name}")
    return spec.name


@owner_app.command("add")
def owner_add(
    name: str = typer.Argument(..., help="Package name."),
    user: str = typer.Argument(..., help="User to add as an owner."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Let another user publish and yank a package you own."""
    with registry_client(registry, token) as client:
        owners = client.add_owner(_name(name), user)
    say(f"owners of {_name(name)}: {', '.join(owners)}")


@owner_app.command("remove")
def owner_remove(
    name: str = typer.Argument(..., help="Package name."),
    user: str = typer.Argument(..., help="Owner to remove."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Take another owner's rights to a package away (a package keeps at least one owner)."""
    with registry_client(registry, token) as client:
        owners = client.remove_owner(_name(name), user)
    say(f"owners of {_name(name)}: {', '.join(owners)}")


@owner_app.command("list")
def owner_list(
    name: str = typer.Argument(..., help="Package name."),
    registry: str = REGISTRY,
) -> None:
    """Show who owns a package."""
    with registry_client(registry, None, need_token=False) as client:
        owners = client.owners(_name(name))
    say(f"owners of {_name(name)}: {', '.join(owners)}")


def register(app: typer.Typer) -> None:
    """Add `nnpm owner ...`."""
    app.add_typer(owner_app, name="owner")
