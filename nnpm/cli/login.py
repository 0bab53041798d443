"""`nnpm login`, `logout` and `whoami`: who you are on a registry."""

from __future__ import annotations

import typer

from nnpm.cli.common import REGISTRY, TOKEN, registry_client, warn_command_line_token
from nnpm.cli.output import say


def login(
    registry: str = typer.Option(..., "--registry", help="Registry URL, e.g. http://localhost:8000."),
    token: str = typer.Option(None, "--token", help="API token; visible to other users of this machine, so prefer "
                              "the prompt (asked for when no token is given), NNPM_TOKEN or --token-stdin."),
    token_stdin: bool = typer.Option(False, "--token-stdin", help="Read the token from standard input."),
) -> None:
    """Check a token against a registry and save both as your default (config.toml, mode 0600)."""
    import os
    import sys

    from nnpm.config import home_dir, save_login
    from nnpm.errors import ConfigError

    if token_stdin:
        token = sys.stdin.readline().strip()
    elif token:
        warn_command_line_token(token)
    else:
        token = os.environ.get("NNPM_TOKEN") or typer.prompt("API token", hide_input=True)
    if not token:
        raise ConfigError("no token given", hint="'nnpm registry user add NAME' prints one")
    with registry_client(registry, None, need_token=False, token_value=token) as client:
        user = client.whoami()
        client.trusted_index()   # pins the registry's signed-index root (TUF) when it has one
    path = save_login(home_dir(), client.url, token)
    say(f"logged in to {client.url} as {user} (saved in {path})")


def logout(registry: str = REGISTRY) -> None:
    """Forget the token saved for a registry (the default registry itself stays)."""
    from nnpm.config import forget_login, home_dir, load_settings

    url = load_settings(registry=registry).require_registry()
    if forget_login(home_dir(), url):
        say(f"logged out of {url}")
    else:
        say(f"no token was saved for {url}")


def whoami(registry: str = REGISTRY, token: str = TOKEN) -> None:
    """Show the user a registry knows you as."""
    with registry_client(registry, token) as client:
        say(f"{client.whoami()} on {client.url}")


def register(app: typer.Typer) -> None:
    """Add `nnpm login`, `nnpm logout` and `nnpm whoami`."""
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
