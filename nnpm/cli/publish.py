"""Registry write commands: publish, login, yank, unyank, owner."""

from __future__ import annotations

from pathlib import Path

import typer

REGISTRY = typer.Option(None, "--registry", help="Registry URL (default: NNPM_REGISTRY or the one you logged in to).")
TOKEN = typer.Option(None, "--token", help="API token (default: NNPM_TOKEN or the one saved by 'nnpm login').")

owner_app = typer.Typer(help="See and add the owners of a package.", no_args_is_help=True)


def _client(registry: str | None, token: str | None, *, need_token: bool = True):
    """A RegistryClient from the resolved settings; ConfigError when registry or token is missing."""
    from nnpm.client import RegistryClient
    from nnpm.config import load_settings
    from nnpm.errors import ConfigError

    settings = load_settings(registry=registry, token=token)
    url = settings.require_registry()
    if need_token and not settings.token:
        raise ConfigError(f"no token for {url}",
                          hint=f"run 'nnpm login --registry {url} --token T', set NNPM_TOKEN or pass --token")
    return RegistryClient(url, token=settings.token, cache_dir=settings.cache_dir)


def _split_spec(spec: str) -> tuple[str, str]:
    """'name==version' → (canonical name, normalised version)."""
    from nnpm.errors import ManifestError
    from nnpm.manifest import canonical_name, parse_version

    name, sep, version = spec.partition("==")
    if not sep or not name.strip() or not version.strip():
        raise ManifestError(f"{spec!r} is not NAME==VERSION", hint="e.g. resnet18==1.0.0")
    return canonical_name(name.strip(), key="name"), str(parse_version(version.strip(), key="version"))


def publish(
    target: Path = typer.Argument(Path("."), help="A package folder (with nnpm.toml) or a .nnpm archive."),
    registry: str = REGISTRY,
    token: str = TOKEN,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show upload progress on a terminal."),
) -> None:
    """Upload a package's missing files to the registry, then publish its version."""
    from nnpm.cli.show import human_size
    from nnpm.publish import publish as do_publish

    with _client(registry, token) as client:
        result = do_publish(target, client, progress=progress)
    what = (f"{len(result.uploaded)} files, {human_size(result.bytes_sent)} uploaded, "
            f"{len(result.skipped)} skipped")
    if result.created:
        typer.echo(f"published {result.name} {result.version} to {client.url} ({what})")
    else:
        typer.echo(f"{result.name} {result.version} was already published to {client.url} "
                   f"with identical content ({what})")
    typer.echo(f"model card: {client.url}/packages/{result.name}")


def login(
    registry: str = typer.Option(..., "--registry", help="Registry URL, e.g. http://localhost:8000."),
    token: str = typer.Option(..., "--token", prompt=True, hide_input=True,
                              help="API token ('nnpm registry user add NAME' prints one); asked for when omitted."),
) -> None:
    """Check a token against a registry and save both as your default (config.toml, mode 0600)."""
    from nnpm.config import home_dir, save_login

    with _client(registry, token) as client:
        user = client.whoami()
    path = save_login(home_dir(), client.url, token)
    typer.echo(f"logged in to {client.url} as {user} (saved in {path})")


def yank(
    spec: str = typer.Argument(..., metavar="NAME==VERSION", help="The version to yank."),
    reason: str = typer.Option(..., "--reason", help="Why people should not install it."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Yank a version (PEP 592): it stays downloadable but installs only when pinned exactly."""
    name, version = _split_spec(spec)
    with _client(registry, token) as client:
        client.yank(name, version, reason)
    typer.echo(f"yanked {name} {version}: {reason}")


def unyank(
    spec: str = typer.Argument(..., metavar="NAME==VERSION", help="The version to restore."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Undo a yank."""
    name, version = _split_spec(spec)
    with _client(registry, token) as client:
        client.unyank(name, version)
    typer.echo(f"restored {name} {version}")


@owner_app.command("add")
def owner_add(
    name: str = typer.Argument(..., help="Package name."),
    user: str = typer.Argument(..., help="User to add as an owner."),
    registry: str = REGISTRY,
    token: str = TOKEN,
) -> None:
    """Let another user publish and yank a package you own."""
    with _client(registry, token) as client:
        owners = client.add_owner(name, user)
    typer.echo(f"owners of {name}: {', '.join(owners)}")


@owner_app.command("list")
def owner_list(
    name: str = typer.Argument(..., help="Package name."),
    registry: str = REGISTRY,
) -> None:
    """Show who owns a package."""
    with _client(registry, None, need_token=False) as client:
        owners = client.owners(name)
    typer.echo(f"owners of {name}: {', '.join(owners)}")


def register(app: typer.Typer) -> None:
    """Add the registry write commands to the app."""
    app.command()(publish)
    app.command()(login)
    app.command()(yank)
    app.command()(unyank)
    app.add_typer(owner_app, name="owner")
