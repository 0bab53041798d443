"""`nnpm bundle export`: the versions a lock (or a resolve of NAMEs) names, with everything needed to verify
and install them offline, in one bundle (nnpm/format/bundle.py).

The packuments are taken as the registry signed them: from its signed index (`/tuf/`) when
it has one, as TUF targets by hash with the root chain, timestamp, snapshot, targets and
the bins that sign them; else from the plain API. What is written is first verified as an
importer will (nnpm/format/bundlecheck.py: from this machine's pin, else the registry's
own first root), so a registry that changed between two reads is caught here, not at the
other end of the air gap. Every file of every bundled version (all variants: the bundle
can fill another registry, and the offline machine can pick any variant) is fetched into
the store as an install fetches it (resumable, verified), then written from the store,
re-hashed as it goes, to a temporary file renamed over the output at the end.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from nnpm.errors import ManifestError

if TYPE_CHECKING:
    from nnpm.client.api import RegistryClient
    from nnpm.config import Settings
    from nnpm.format.bundle import BundledPackage, BundleMetadata


@dataclass
class ExportResult:
    """What a bundle holds: its versions, blob count and bytes, and whether its index is signed."""

    versions: list[tuple[str, str]]
    blobs: int
    blob_bytes: int
    signed_index: bool
    size: int


def from_lock(path: Path) -> tuple[list["BundledPackage"], list[str]]:
    """(the packages, the names asked for) of a project lock (nnpm.lock, TOML) or an environment's lock (JSON)."""
    from nnpm.format.bundle import BundledPackage

    path = Path(path)
    if path.read_bytes().lstrip()[:1] == b"{":
        from nnpm.install.lockfile import Lock

        packages = Lock.read(path, missing_ok=False).packages
        requested = sorted(n for n, p in packages.items() if p.requested)
    else:
        from nnpm.project.lockfile import ProjectLock

        lock = ProjectLock.read(path)
        packages, requested = lock.packages, sorted(lock.direct())
    for name, p in sorted(packages.items()):
        if p.source.startswith(("path:", "oci://")):
            raise ManifestError(f"{name} {p.version} in {path} came from {p.source}, not a registry",
                                hint="a bundle carries packages published to a registry")
    return [BundledPackage(n, p.version, p.manifest_sha256, p.variant) for n, p in sorted(packages.items())], requested


def resolved(client: "RegistryClient", names: list[str]) -> tuple[list["BundledPackage"], list[str]]:
    """(the packages, the names asked for) that `nnpm install NAME...` would choose, dependencies included."""
    from nnpm.format.bundle import BundledPackage
    from nnpm.format.spec import parse_spec
    from nnpm.install.resolve import resolve

    specs = [parse_spec(n) for n in names]
    if not specs or any(s.is_path for s in specs):
        raise ManifestError("name the packages to bundle (names or requirements, not folders), or give --lock")
    chosen = resolve(specs, client.packument)
    return [BundledPackage(n, str(c.version), hashlib.sha256(c.release.manifest.to_json()).hexdigest())
            for n, c in sorted(chosen.items())], sorted({s.name for s in specs})


def export(out: Path, client: "RegistryClient", settings: "Settings", *, names: list[str] = (),
           lock: Path | None = None, progress: bool | None = None) -> ExportResult:
    """Write a bundle of what `lock` pins, else of what NAMEs resolve to; verified before it is written."""
    from nnpm.client.trusted_index import trusted_root
    from nnpm.format.bundle import BundleInfo
    from nnpm.format.bundlecheck import check_metadata, choose_root
    from nnpm.trust.index import fetch_metadata

    packages, requested = from_lock(lock) if lock is not None else resolved(client, list(names))
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = fetch_metadata(client, BundleInfo(client.url, created, tuple(packages), tuple(requested)))
    index = client.trusted_index()
    trusted, _ = choose_root(meta, given=None, pinned=trusted_root(index.folder) if index else None)
    checked = check_metadata(meta, trusted)
    blobs = checked.blobs()
    labels = {f.sha256: f"{v.package.name} {f.path}" for v in checked.versions for f in v.manifest.files}
    _write(Path(out), client, settings, meta, blobs, labels, progress)
    return ExportResult([(p.name, p.version) for p in packages], len(blobs), sum(blobs.values()), meta.signed,
                        Path(out).stat().st_size)


def _write(out: Path, client: "RegistryClient", settings: "Settings", meta: "BundleMetadata",
           blobs: dict[str, int], labels: dict[str, str], progress: bool | None) -> None:
    """Fetch the blobs the store lacks, then write the bundle from the store."""
    from nnpm.format.bundle import write_bundle
    from nnpm.install.fetch import Wanted, fetch_all
    from nnpm.install.store import Store
    from nnpm.progress import transfer_progress

    store = Store(settings.store_dir)
    with store.using():   # `cache clean` waits until the bundle is written
        fetch_all(lambda: client, store, [Wanted(d, s, labels[d]) for d, s in sorted(blobs.items())],
                  progress=progress)
        total = sum(blobs.values())
        with transfer_progress(total, enabled=progress, label="writing") as bar:
            task = bar.add_file(out.name, total)
            write_bundle(out, meta, [(d, s, store.path(d)) for d, s in blobs.items()],
                         advance=lambda n: bar.advance(task, n))
            bar.finish(task)
