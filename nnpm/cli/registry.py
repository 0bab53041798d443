"""`nnpm registry serve`, `nnpm registry user add|list` and `nnpm registry gc`: run a self-hosted registry.

The options are defined once, in registry_server/options.py, and parsed there: these
commands hand their arguments on. FastAPI, uvicorn and SQLAlchemy load only inside them.
"""

from __future__ import annotations

import typer

registry_app = typer.Typer(help="Run a self-hosted nnpm registry.", no_args_is_help=True)
user_app = typer.Typer(help="Manage the registry's users and their API tokens.", no_args_is_help=True)
registry_app.add_typer(user_app, name="user")

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@registry_app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def serve(ctx: typer.Context) -> None:
    """Serve the registry API, the web pages and /docs until stopped (--help lists the options)."""
    from registry_server.__main__ import serve as run
    from registry_server.options import build_parser, require_server_extra, settings_from

    args = build_parser("serve", "nnpm registry serve").parse_args(ctx.args)
    require_server_extra()
    run(settings_from(args, "serve"))


@user_app.command("add", context_settings=_PASS_THROUGH, add_help_option=False)
def user_add(ctx: typer.Context) -> None:
    """Create a user if needed and print a new API token for it (NAME [--data DIR] [--database-url URL])."""
    from registry_server.options import build_parser, require_server_extra, settings_from

    parser = build_parser("user", "nnpm registry user add")
    parser.add_argument("name", help="user name (letters, digits, '.', '_', '-')")
    args = parser.parse_args(ctx.args)
    require_server_extra()
    from registry_server.services.auth import add_user, check_user_name

    check_user_name(args.name)
    settings = settings_from(args, "user")
    if settings.database_url.startswith("sqlite:///"):  # the SQLite file lives in the data folder
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = add_user(settings.database_url, args.name)
    typer.echo(f"new API token for {args.name!r} (stored hashed; it is shown only now):")
    typer.echo(token)


@user_app.command("list", context_settings=_PASS_THROUGH, add_help_option=False)
def user_list(ctx: typer.Context) -> None:
    """List the users, how many tokens each holds and when one was last used ([--data DIR] [--database-url URL])."""
    from registry_server.users import main

    code = main(ctx.args, prog="nnpm registry user list")
    if code:
        raise typer.Exit(code)


@registry_app.command(context_settings=_PASS_THROUGH, add_help_option=False)
def gc(ctx: typer.Context) -> None:
    """Delete blobs no published version references; a dry run unless --yes (--help lists the options)."""
    from registry_server.gc import main

    code = main(ctx.args, prog="nnpm registry gc")
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add `nnpm registry ...`."""
    app.add_typer(registry_app, name="registry")
    from nnpm.cli.registry_keys import register as add_keys  # `nnpm registry keys init|rotate`
    add_keys(registry_app)
    from nnpm.cli.bundle import add_registry_import  # `nnpm registry import BUNDLE`
    add_registry_import(registry_app)
