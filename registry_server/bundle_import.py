"""`python -m registry_server.bundle_import BUNDLE` / `nnpm registry import BUNDLE`: load an air-gapped bundle.

It takes the server's database, storage and TUF options (`--data`, `--database-url`,
`--storage-url`, `--s3-endpoint`, `--tuf-online-key`, and their `NNPM_REGISTRY_*`
variables), `--root ROOT.json` (the source registry's root to verify the bundle's signed
index from; default: the bundle's own first root, said in a note) and `--owner USER` (who
publishes versions that name no publisher). The bundle is verified whole before anything
is stored (nnpm/format/bundlecheck.py: the index, packuments, publisher signatures, every
blob's size and sha256); registry_server/services/imports.py then commits its versions as
they were published.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry_server.services.imports import Report
    from registry_server.settings import ServerSettings


def main(argv: list[str] | None = None, prog: str = "python -m registry_server.bundle_import") -> int:
    """Parse the options, import the bundle, print what was imported; 1 (one error line) when refused."""
    from nnpm.errors import NnpmError
    from registry_server.options import build_parser, require_server_extra, settings_from

    parser = build_parser("import", prog)
    parser.description = ("Load a bundle written by 'nnpm bundle export' into this registry: every version as it was "
                          "published (publisher, signature, date), verified first. " + (parser.description or ""))
    parser.add_argument("bundle", type=Path, help="the bundle file")
    parser.add_argument("--root", type=Path, metavar="ROOT.json",
                        help="verify the bundle's signed index from this root of the registry it came from")
    parser.add_argument("--owner", metavar="USER", help="the publisher of versions that name none")
    args = parser.parse_args(argv)
    try:
        require_server_extra()
        report = run(settings_from(args, "import"), args.bundle, root=args.root, owner=args.owner)
    except NnpmError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.strerror or type(exc).__name__}: {exc.filename or args.bundle}", file=sys.stderr)
        return 1
    for note in report.notes:
        print(note)
    for name, version in report.imported:
        print(f"imported {name} {version}")
    print(f"imported {len(report.imported)} versions ({report.blobs} new blobs, {report.blob_bytes} bytes); "
          f"{len(report.skipped)} already here")
    return 0


def run(settings: "ServerSettings", bundle: Path, *, root: Path | None = None, owner: str | None = None) -> "Report":
    """One import into the database and blob store `settings` name; its services.imports.Report."""
    from registry_server.db.engine import make_engine, session_factory
    from registry_server.services import index
    from registry_server.services.imports import import_bundle
    from registry_server.storage import storage_from_settings

    bundle = Path(bundle)
    if not bundle.is_file():
        raise FileNotFoundError(2, "No such file", str(bundle))
    given = Path(root).read_bytes() if root is not None else None
    if settings.database_url.startswith("sqlite:///"):   # a new registry may start from a bundle
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = storage_from_settings(settings)
    store.check()
    engine = make_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        index.configure(sessions, settings)   # so the import re-signs this registry's index
        with sessions() as session:
            return import_bundle(session, store, settings, bundle, root=given, owner=owner)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
