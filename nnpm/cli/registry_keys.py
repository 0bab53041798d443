"""`nnpm registry keys init|rotate`: the keys of a registry's signed index (TUF), in registry_server/tufadmin.py."""

from __future__ import annotations

import typer

from nnpm.cli.output import say

keys_app = typer.Typer(help="The keys of the registry's signed index (TUF).", no_args_is_help=True)
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@keys_app.command("init", context_settings=_PASS_THROUGH, add_help_option=False)
def init(ctx: typer.Context) -> None:
    """Make the root keys (--root-keys DIR [--threshold N] [--count M]) and the online key; sign the index."""
    from registry_server.tufadmin import run

    say(run(["init", *ctx.args], prog="nnpm registry keys"))


@keys_app.command("rotate", context_settings=_PASS_THROUGH, add_help_option=False)
def rotate(ctx: typer.Context) -> None:
    """Sign the next root (--root-keys DIR [--new-root-keys DIR2] [--new-online-key] [--threshold N])."""
    from registry_server.tufadmin import run

    say(run(["rotate", *ctx.args], prog="nnpm registry keys"))


def register(registry_app: typer.Typer) -> None:
    """Add `nnpm registry keys ...` to the `nnpm registry` group."""
    registry_app.add_typer(keys_app, name="keys")
