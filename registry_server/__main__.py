"""`python -m registry_server [--data DIR] [--host H] [--port P] ...`: run one registry server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from registry_server.settings import Settings


def serve(settings: Settings) -> None:
    """Print where the registry listens, then run it with uvicorn until stopped."""
    import uvicorn

    from registry_server.app import create_app

    app = create_app(settings)
    print(f"nnpm registry serving on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=5, server_header=False)


def parse_args(argv: list[str] | None = None) -> Settings:
    """Command-line arguments → Settings."""
    d = Settings(data_dir=Path("."))
    p = argparse.ArgumentParser(prog="python -m registry_server", description="Run an nnpm registry.")
    p.add_argument("--data", type=Path, default=None,
                   help="data folder (database, blobs); default: <NNPM_HOME>/registry")
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument("--database-url", default="", help="SQLAlchemy URL (default: SQLite file in the data folder)")
    p.add_argument("--storage-url", default="",
                   help="where blobs live: s3://BUCKET/PREFIX or file:///PATH (default: the data folder)")
    p.add_argument("--s3-endpoint", default="",
                   help="S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS); credentials from the AWS_* variables")
    p.add_argument("--redirect-downloads", action="store_true",
                   help="answer blob downloads with a 307 to a short-lived presigned S3 URL")
    p.add_argument("--max-blob-size", type=int, default=d.max_blob_size, help="bytes per uploaded file")
    p.add_argument("--max-manifest-size", type=int, default=d.max_manifest_size, help="bytes per manifest")
    p.add_argument("--validate-timeout", type=float, default=d.validate_timeout,
                   help="seconds the model-reading worker may run")
    p.add_argument("--validate-memory", type=int, default=d.validate_memory,
                   help="bytes of address space for the model-reading worker")
    a = p.parse_args(argv)
    if a.data is None:
        from nnpm.config import home_dir

        a.data = home_dir() / "registry"
    return Settings(data_dir=a.data, host=a.host, port=a.port, database_url=a.database_url,
                    storage_url=a.storage_url, s3_endpoint=a.s3_endpoint, redirect_downloads=a.redirect_downloads,
                    max_blob_size=a.max_blob_size, max_manifest_size=a.max_manifest_size,
                    validate_timeout=a.validate_timeout, validate_memory=a.validate_memory)


def main(argv: list[str] | None = None) -> int:
    """Entry point; a configuration problem (bad storage URL, missing bucket) is one line and exit 2."""
    from nnpm.errors import NnpmError

    try:
        serve(parse_args(argv))
    except NnpmError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
