"""`nnpm env list|create|remove`."""

from __future__ import annotations

import typer

from nnpm.cli.output import say

env_app = typer.Typer(help="Manage environments.", no_args_is_help=True)


@env_app.command("list")
def list_envs() -> None:
    """List environments and how many packages each holds."""
    from nnpm.config import load_settings
    from nnpm.install.env import env_names, open_env

    settings = load_settings()
    for name in env_names(settings):
        count = len(open_env(name, settings).lock().packages)
        mark = "*" if name == settings.env else " "
        print(f"{mark} {name}  ({count} packages)")


@env_app.command("create")
def create(name: str = typer.Argument(..., help="Environment name.")) -> None:
    """Create an empty environment."""
    from nnpm.errors import EnvError
    from nnpm.install.env import open_env
    from nnpm.install.lockfile import Lock

    env = open_env(name)
    if env.exists():
        raise EnvError(f"environment {name!r} exists already")
    env.root.mkdir(parents=True)
    env.commit(Lock())
    say(f"created environment {name} at {env.root}")


@env_app.command("remove")
def remove(name: str = typer.Argument(..., help="Environment name."),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask first.")) -> None:
    """Delete an environment (the store keeps its blobs; 'nnpm cache clean' frees them)."""
    import sys

    from nnpm.errors import EnvError
    from nnpm.fsutil import remove_tree
    from nnpm.install.env import open_env

    env = open_env(name)
    if not env.exists():
        raise EnvError(f"no environment named {name!r}", hint="see 'nnpm env list'")
    if not yes:
        count = len(env.lock().packages)
        if not sys.stdin.isatty():
            raise EnvError(f"removing environment {name!r} ({count} packages) needs confirmation",
                           hint="pass --yes to remove it without asking")
        if not typer.confirm(f"remove environment {name!r} and its {count} installed packages?"):
            raise EnvError("nothing removed")
    with env.install_lock():
        trash = env.root.with_name(f".{name}.removing")
        env.root.rename(trash)
    remove_tree(trash)
    say(f"removed environment {name}")


def register(app: typer.Typer) -> None:
    """Add the env sub-app."""
    app.add_typer(env_app, name="env")
