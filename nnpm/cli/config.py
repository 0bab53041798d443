"""`nnpm config get|set|unset`: settings kept in NNPM_HOME/config.toml."""

from __future__ import annotations

import typer

from nnpm.cli.output import say

config_app = typer.Typer(help="See and change nnpm's settings (config.toml).", no_args_is_help=True)


@config_app.command("get")
def get(key: str = typer.Argument(..., help="Setting: registry.")) -> None:
    """Print a setting (empty when it is not set)."""
    from nnpm.config import CONFIG_KEYS, home_dir, read_config
    from nnpm.errors import ConfigError

    if key not in CONFIG_KEYS:
        raise ConfigError(f"unknown setting {key!r}", hint="settings: " + ", ".join(CONFIG_KEYS))
    value = read_config(home_dir()).get(key)
    say(("true" if value else "false") if isinstance(value, bool) else str(value or ""))


@config_app.command("set")
def set_(key: str = typer.Argument(..., help="Setting: registry."),
         value: str = typer.Argument(..., help="Its value, e.g. http://127.0.0.1:8765."),
         root: str = typer.Option(None, "--root", help="With registry: pin this TUF root file (ROOT.json) as the "
                                  "registry's signed-index root, replacing any pin.")) -> None:
    """Change a setting; `config set registry URL` is all a read-only user needs (no token)."""
    from nnpm.config import TRUST_NAME, home_dir, set_config

    if root is not None:   # checked (a root signed by its own threshold) and pinned before the setting changes
        from nnpm.client.trusted_index import pin_file

        pin_file(home_dir() / TRUST_NAME, key, value, root)
    path = set_config(home_dir(), key, value)
    say(f"{key} = {value} (in {path})")


@config_app.command("unset")
def unset(key: str = typer.Argument(..., help="Setting: registry.")) -> None:
    """Remove a setting."""
    from nnpm.config import home_dir, set_config

    set_config(home_dir(), key, None)
    say(f"{key} unset")


def register(app: typer.Typer) -> None:
    """Add `nnpm config ...`."""
    app.add_typer(config_app, name="config")
