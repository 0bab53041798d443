"""`python -m registry_server.gc` and `nnpm registry gc`: delete blobs no published version references.

A dry run unless `--yes`: it lists what would go. It takes the server's storage options
(`--data`, `--database-url`, `--storage-url`, `--s3-endpoint`, and their `NNPM_REGISTRY_*`
variables) and `--grace SECONDS` (default one day): a blob uploaded, or named by a publish,
within the grace period is kept, so a publish in flight never loses its blobs. Safe to run
while servers are serving (registry_server/services/gc.py says how).
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_GRACE = 24 * 3600.0


def main(argv: list[str] | None = None, prog: str = "python -m registry_server.gc") -> int:
    """Parse the options, collect (or list) unreferenced blobs, print a summary; 2 on a configuration error."""
    from nnpm.errors import NnpmError
    from registry_server.options import build_parser, require_server_extra, settings_from

    parser = build_parser("gc", prog)
    parser.description = "Delete blobs that no published version references. " + (parser.description or "")
    parser.add_argument("--yes", "--delete", dest="delete", action="store_true",
                        help="delete them (without it, only list what would be deleted)")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE, metavar="SECONDS",
                        help=f"keep blobs uploaded or named by a publish within this many seconds "
                             f"(default {DEFAULT_GRACE:g}, one day)")
    args = parser.parse_args(argv)
    try:
        if args.grace < 0:
            from nnpm.errors import ConfigError

            raise ConfigError("--grace must not be negative")
        require_server_extra()
        report = run(settings_from(args, "gc"), grace=args.grace, delete_blobs=args.delete)
    except NnpmError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    verb = "deleted" if args.delete else "would delete"
    for blob in report.collected:
        print(f"{verb} sha256:{blob.digest} ({blob.size} bytes)")
    print(f"{verb} {len(report.collected)} unreferenced blobs ({report.collected_bytes} bytes); kept "
          f"{report.referenced} referenced and {report.recent} used within the grace period"
          + (f"; {'removed' if args.delete else 'would remove'} {report.stale_rows} records of unfinished uploads"
             if report.stale_rows else ""))
    if not args.delete and report.collected:
        print("this was a dry run: run again with --yes to delete them")
    return 0


def run(settings, *, grace: float, delete_blobs: bool):
    """One collection over the database and blob store `settings` name; its Report."""
    from nnpm.errors import ConfigError
    from registry_server.db.engine import make_engine, session_factory
    from registry_server.services.gc import collect
    from registry_server.storage import storage_from_settings

    sqlite_file = settings.database_url.removeprefix("sqlite:///")
    if settings.database_url.startswith("sqlite:///") and not Path(sqlite_file).is_file():
        raise ConfigError(f"there is no registry database at {sqlite_file}",
                          hint="pass the registry's --data folder, or its --database-url")
    store = storage_from_settings(settings)
    store.check()
    engine = make_engine(settings.database_url)
    try:
        return collect(session_factory(engine), store, grace=grace, delete_blobs=delete_blobs)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
