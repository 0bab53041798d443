"""`nnpm yank` and `nnpm unyank` (PEP 592)."""

from __future__ import annotations

import typer

from nnpm.cli.common import REGISTRY, TOKEN, registry_client
from nnpm.cli.output import say


def yank(
    spec: str = typer.Argument(..., metavar="NAME==VERSION", help="The version to yank."),
    reason: str = typer.Option(..., "--reason", help="Why people should not install it."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Yank a version (PEP 592): it stays downloadable but installs only when pinned exactly."""
    from nnpm.format.spec import parse_pin

    name, version = parse_pin(spec)
    with registry_client(registry, token) as client:
        client.yank(name, str(version), reason)
    say(f"yanked {name} {version}: {reason}")


def unyank(
    spec: str = typer.Argument(..., metavar="NAME==VERSION", help="The version to restore."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Undo a yank."""
    from nnpm.format.spec import parse_pin

    name, version = parse_pin(spec)
    with registry_client(registry, token) as client:
        client.unyank(name, str(version))
    say(f"restored {name} {version}")


def register(app: typer.Typer) -> None:
    """Add `nnpm yank` and `nnpm unyank`."""
    app.command()(yank)
    app.command()(unyank)
