"""`nnpm registry serve` and `nnpm registry user add`: run a self-hosted registry.

Only typer is imported here; fastapi, uvicorn and SQLAlchemy load inside the commands.
"""

from __future__ import annotations

from pathlib import Path

import typer

registry_app = typer.Typer(help="Run a self-hosted nnpm registry.", no_args_is_help=True)
user_app = typer.Typer(help="Manage the registry's users and their API tokens.", no_args_is_help=True)
registry_app.add_typer(user_app, name="user")

_DATA_HELP = "Registry data folder (database and blobs). Default: <NNPM_HOME>/registry."


def _data_dir(data: Path | None) -> Path:
    from nnpm.config import home_dir

    return Path(data).expanduser() if data is not None else home_dir() / "registry"


def _settings(data: Path | None, **kwargs):
    from nnpm.errors import ConfigError
    from registry_server.settings import Settings

    folder = _data_dir(data)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder", hint="pass --data with a folder path")
    if not 0 < kwargs.get("port", 1) < 65536:
        raise ConfigError(f"port {kwargs['port']} is not between 1 and 65535")
    return Settings(data_dir=folder, **kwargs)


@registry_app.command()
def serve(
    data: Path = typer.Option(None, "--data", help=_DATA_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8765, help="TCP port to listen on."),
    database_url: str = typer.Option("", "--database-url",
                                     help="SQLAlchemy URL, e.g. postgresql://… (default: SQLite in the data folder)."),
    storage_url: str = typer.Option("", "--storage-url",
                                    help="Where blobs live: s3://BUCKET/PREFIX or file:///PATH "
                                         "(default: the data folder)."),
    s3_endpoint: str = typer.Option("", "--s3-endpoint",
                                    help="S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS). Credentials "
                                         "and region come from the usual AWS_* variables."),
    redirect_downloads: bool = typer.Option(False, "--redirect-downloads",
                                            help="Answer blob downloads with a 307 to a short-lived presigned "
                                                 "S3 URL instead of streaming them (s3:// only)."),
    max_blob_size: int = typer.Option(None, "--max-blob-size", help="Bytes per uploaded file (default 8 GiB)."),
    max_manifest_size: int = typer.Option(None, "--max-manifest-size", help="Bytes per manifest (default 4 MiB)."),
    validate_timeout: float = typer.Option(None, "--validate-timeout",
                                           help="Seconds the model-checking worker may take (default 60)."),
    validate_memory: int = typer.Option(None, "--validate-memory",
                                        help="Address-space bytes of that worker (default 2 GiB)."),
) -> None:
    """Serve the registry API, the web pages and /docs until stopped."""
    from registry_server.__main__ import serve as run

    limits = {k: v for k, v in (("max_blob_size", max_blob_size), ("max_manifest_size", max_manifest_size),
                                ("validate_timeout", validate_timeout), ("validate_memory", validate_memory))
              if v is not None}
    run(_settings(data, host=host, port=port, database_url=database_url, storage_url=storage_url,
                  s3_endpoint=s3_endpoint, redirect_downloads=redirect_downloads, **limits))


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="User name (letters, digits, '.', '_', '-')."),
    data: Path = typer.Option(None, "--data", help=_DATA_HELP),
    database_url: str = typer.Option("", "--database-url", help="SQLAlchemy URL (default: SQLite in the data folder)."),
) -> None:
    """Create a user if needed and print a new API token for it (shown once, on the last line)."""
    from registry_server.auth import add_user, check_user_name

    check_user_name(name)
    settings = _settings(data, database_url=database_url)
    if not database_url:  # the SQLite file lives there; with --database-url nothing does
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = add_user(settings.database_url, name)
    typer.echo(f"new API token for {name!r} (stored hashed; it is shown only now):")
    typer.echo(token)


def register(app: typer.Typer) -> None:
    """Add `nnpm registry ...` to the app."""
    app.add_typer(registry_app, name="registry")
