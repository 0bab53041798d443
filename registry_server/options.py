"""The server's command-line options, defined once for `python -m registry_server` and `nnpm registry ...`.

Each option is a flag (`--database-url URL`) and an environment variable
(`NNPM_REGISTRY_DATABASE_URL`), as container deployments expect; a flag wins over the
variable, the variable over the default. Nothing here imports FastAPI, so the client
can show `nnpm registry serve --help` and say what to install when the server extra is
missing.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnpm.errors import ConfigError
from registry_server.settings import ServerSettings

ENV_PREFIX = "NNPM_REGISTRY_"
SERVER_EXTRA = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "jinja2", "markdown_it")
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Option:
    """One server option: its settings field, help, type and the commands that take it."""

    field: str
    help: str
    type: type = str
    commands: frozenset[str] = frozenset({"serve"})

    @property
    def flag(self) -> str:
        """--database-url"""
        return "--" + self.field.replace("_", "-")

    @property
    def env(self) -> str:
        """NNPM_REGISTRY_DATABASE_URL"""
        return ENV_PREFIX + self.field.upper()

    def from_env(self) -> Any:
        """The value of the environment variable (None when unset), or ConfigError naming it."""
        raw = os.environ.get(self.env)
        if raw is None:
            return None
        if self.type is bool:
            if raw.strip().lower() not in _TRUE | _FALSE:
                raise ConfigError(f"{self.env}={raw!r} is not a yes/no value", hint="use 1 or 0")
            return raw.strip().lower() in _TRUE
        try:
            return self.type(raw)
        except ValueError:
            raise ConfigError(f"{self.env}={raw!r} is not a valid {self.type.__name__}") from None


_BOTH = frozenset({"serve", "user", "gc", "tuf", "import"})
_TUF = frozenset({"serve", "tuf", "import"})
_STORE = frozenset({"serve", "gc", "import"})
OPTIONS = (
    Option("data", "data folder (database and blobs); default: <NNPM_HOME>/registry", Path, _BOTH),
    Option("database_url", "SQLAlchemy URL, e.g. postgresql://USER:PASS@HOST/DB (default: SQLite in the data folder)",
           str, _BOTH),
    Option("host", "address to listen on (0.0.0.0 for every interface); default 127.0.0.1"),
    Option("port", "TCP port to listen on; default 8765", int),
    Option("storage_url", "where blobs live: s3://BUCKET/PREFIX or file:///PATH (default: the data folder)",
           str, _STORE),
    Option("s3_endpoint", "S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS); credentials from the AWS_* variables",
           str, _STORE),
    Option("redirect_downloads", "answer blob downloads with a 307 to a short-lived presigned S3 URL (s3:// only)",
           bool),
    Option("accel_redirect", "hand blob downloads to a front proxy (nginx): answer them with X-Accel-Redirect: "
           "PREFIX/sha256/<ab>/<digest>, PREFIX an internal location over the blobs folder (folder store only; "
           "docs/deploy.md)", str),
    Option("max_blob_size", "bytes per uploaded file (default 8 GiB)", int),
    Option("max_manifest_size", "bytes per manifest (default 4 MiB)", int),
    Option("validate_timeout", "seconds the model-checking worker may take (default 60)", float),
    Option("validate_memory", "address-space bytes of that worker (default 2 GiB)", int),
    Option("validate_workers", "model-checking workers running at once (default 2)", int),
    Option("validate_worker_jobs", "checks one pre-started worker serves before it is replaced (default 1: a worker "
           "that read a hostile graph never reads the next)", int),
    Option("publish_queue", "publishes that may wait for a worker; more are answered 429 (default 16)", int),
    Option("validate_scratch", "bytes one publish may copy into scratch space to be checked (default 64 GiB)", int),
    Option("measure_budget", "more seconds the worker may take to run a publish's self-test and measure its variants "
           "(default 30)", float),
    Option("measure_time", "seconds of timed runs per variant when measuring (at least 5 runs; default 2)", float),
    Option("no_measure", "do not run self-tests nor measure packages at publish", bool),
    Option("readme_timeout", "seconds to render a README at publish; slower ones are shown as plain text (default 10)",
           float),
    Option("body_timeout", "seconds an upload may send nothing before it is dropped with 408 (default 60)", float),
    Option("header_timeout", "seconds a connection has to send its request headers (default 30)", float),
    Option("upload_quota", "bytes of blobs each user may upload in total; 0 for no limit (default 0)", int),
    Option("tuf_online_key", "PEM file of the online key signing the TUF index (default: <data>/tuf-online.key; "
           "absent: no /tuf/)", Path, _TUF),
    Option("tuf_timestamp_expiry", "seconds a signed TUF timestamp lives (default 86400)", int, _TUF),
)
_POSITIVE = ("validate_timeout", "validate_memory", "validate_workers", "validate_scratch", "measure_budget", "measure_time",
             "readme_timeout", "body_timeout", "header_timeout", "max_blob_size", "max_manifest_size",
             "tuf_timestamp_expiry")


def build_parser(command: str, prog: str) -> argparse.ArgumentParser:
    """An argparse parser with the options `command` ("serve", "user", "gc", "tuf" or "import") takes."""
    parser = argparse.ArgumentParser(prog=prog, description="Each option can also come from the environment "
                                     f"variable named after it ({ENV_PREFIX}DATABASE_URL for --database-url).")
    for opt in OPTIONS:
        if command not in opt.commands:
            continue
        if opt.type is bool:
            parser.add_argument(opt.flag, dest=opt.field, action="store_true", default=None,
                                help=f"{opt.help} [{opt.env}]")
        else:
            parser.add_argument(opt.flag, dest=opt.field, type=opt.type, default=None, metavar=opt.field.upper(),
                                help=f"{opt.help} [{opt.env}]")
    return parser


def settings_from(args: argparse.Namespace, command: str) -> ServerSettings:
    """ServerSettings from parsed flags, then environment variables, then the defaults."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        if command not in opt.commands:
            continue
        value = getattr(args, opt.field, None)
        if value is None:
            value = opt.from_env()
        if value is not None:
            values[opt.field] = value
    data = values.pop("data", None)
    if data is None:
        from nnpm.config import home_dir

        data = home_dir() / "registry"
    data = Path(data).expanduser()
    if data.exists() and not data.is_dir():
        raise ConfigError(f"{data} is not a folder", hint="pass --data with a folder path")
    port = values.get("port", 1)
    if not 0 < port < 65536:
        raise ConfigError(f"port {port} is not between 1 and 65535")
    for field in _POSITIVE:
        if field in values and not values[field] > 0:
            raise ConfigError(f"--{field.replace('_', '-')} must be above 0, not {values[field]}")
    for field in ("publish_queue", "upload_quota"):
        if values.get(field, 0) < 0:
            raise ConfigError(f"--{field.replace('_', '-')} must not be negative")
    return ServerSettings(data_dir=data, **values)


def require_server_extra() -> None:
    """ConfigError in one line when the packages the registry server needs are not installed."""
    import importlib.util

    def absent(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except (ImportError, ValueError):
            return True

    missing = [name for name in SERVER_EXTRA if absent(name)]
    if missing:
        raise ConfigError(f"running a registry needs nnpm's server extra ({', '.join(missing)} not installed)",
                          hint="pip install 'nnpm[server]'")
