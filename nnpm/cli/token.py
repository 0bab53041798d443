"""`nnpm token list|revoke`: your API tokens on a registry (the registry's operator makes them)."""

from __future__ import annotations

import json

import typer

from nnpm.cli.common import REGISTRY, TOKEN, registry_client
from nnpm.cli.output import say

token_app = typer.Typer(help="See and revoke your API tokens.", no_args_is_help=True)


@token_app.command("list")
def token_list(registry: str = REGISTRY, token: str = TOKEN,
               as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List your tokens: id, prefix, when made and last used (the tokens themselves are never shown)."""
    with registry_client(registry, token) as client:
        tokens = client.tokens()
    if as_json:
        print(json.dumps({"tokens": tokens}, indent=1))
        return
    for t in tokens:
        mark = "*" if t.get("current") else " "
        say(f"{mark} {t.get('id')}  {t.get('prefix') or '?'}…  made {t.get('created_at') or '?'}  "
            f"last used {t.get('last_used_at') or 'never'}")


@token_app.command("revoke")
def token_revoke(token_id: int = typer.Argument(..., help="The id 'nnpm token list' shows."),
                 registry: str = REGISTRY, token: str = TOKEN) -> None:
    """Revoke one of your tokens; it stops working at once."""
    with registry_client(registry, token) as client:
        client.revoke_token(token_id)
    say(f"revoked token {token_id}")


def register(app: typer.Typer) -> None:
    """Add `nnpm token ...`."""
    app.add_typer(token_app, name="token")
