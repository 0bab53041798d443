"""`nnpm login`: check a token against a registry and save both."""

from __future__ import annotations

import typer

from nnpm.cli.common import registry_client


def login(
    registry: str = typer.Option(..., "--registry", help="Registry URL, e.g. http://localhost:8000."),
    token: str = typer.Option(..., "--token", prompt=True, hide_input=True,
                              help="API token ('nnpm registry user add NAME' prints one); asked for when omitted."),
) -> None:
    """Check a token against a registry and save both as your default (config.toml, mode 0600)."""
    from nnpm.config import home_dir, save_login

    with registry_client(registry, token) as client:
        user = client.whoami()
    path = save_login(home_dir(), client.url, token)
    typer.echo(f"logged in to {client.url} as {user} (saved in {path})")


def register(app: typer.Typer) -> None:
    """Add `nnpm login`."""
    app.command()(login)
