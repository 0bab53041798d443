"""`nnpm bundle import`: a bundle verified whole, then its blobs and manifests added to the store.

Everything is checked before the store changes: the signed index from this machine's
pin for the bundle's registry (else `--root`, else the bundle's own first root, said in a
note), every packument against it, every publisher signature, every bundled manifest
against the sha256 bundle.json names (nnpm/format/bundlecheck.py), and every blob's size
and sha256 as it streams into a scratch folder inside the store's tmp/ (same file system:
committing is a rename). A bundle that fails anywhere leaves the store as it was. Then each
blob is committed (the store's own verified add), each manifest stored as the installer
stores it (so `nnpm install --locked` finds it by the lock's sha256, with no registry), and
each packument cached under the bundle's registry.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from nnpm.errors import IndexTrustError
from nnpm.fsutil import remove_tree

if TYPE_CHECKING:
    from nnpm.config import Settings
    from nnpm.format.bundle import BundleMetadata
    from nnpm.format.bundlecheck import CheckedBundle
    from nnpm.install.store import Store


@dataclass
class ImportResult:
    """What an import added: versions, blobs new to the store and their bytes, what was there, and notes."""

    registry: str = ""
    created_at: str = ""
    versions: list[tuple[str, str]] = field(default_factory=list)
    added: int = 0
    added_bytes: int = 0
    present: int = 0
    notes: list[str] = field(default_factory=list)
    index_expires: str | None = None      # the bundled timestamp's expiry, when the index is signed
    signed: list[tuple[str, str]] = field(default_factory=list)   # versions whose publisher signature verified


def pinned_root(settings: "Settings", registry: str) -> bytes | None:
    """This machine's trusted root for `registry` (NNPM_HOME/trust), or None when it pins none."""
    from nnpm.client.trusted_index import pin_dir, trusted_root
    from nnpm.config import normalise_url

    return trusted_root(pin_dir(settings.trust_dir, normalise_url(registry)))


def read_root_file(path: Path) -> bytes:
    """The bytes of a root metadata file given with --root (IndexTrustError when it is not one)."""
    from nnpm.format.tufverify import root_version

    data = Path(path).read_bytes()
    root_version(data)
    return data


@contextmanager
def scratch_in(store: "Store") -> Iterator[Path]:
    """A scratch folder inside the store's tmp/ (committing is a rename), gone afterwards with any tmp/ it made."""
    tmp = store.root / "tmp"
    made = not tmp.exists()
    tmp.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bundle-", dir=tmp))
    try:
        yield folder
    finally:
        remove_tree(folder)
        if made:
            try:
                tmp.rmdir()
            except OSError:   # another install put something there meanwhile
                pass


def import_(bundle: Path, settings: "Settings", root: Path | None = None, *,
            progress: bool | None = None) -> ImportResult:
    """Verify a bundle whole, then add its blobs and manifests to the store and cache its packuments."""
    from nnpm.format.bundle import read_bundle
    from nnpm.format.bundlecheck import check_metadata, choose_root
    from nnpm.install.store import Store
    from nnpm.progress import transfer_progress

    bundle = Path(bundle)
    given = read_root_file(root) if root is not None else None
    store = Store(settings.store_dir)
    result = ImportResult()
    checked: list[CheckedBundle] = []

    def expect(meta: "BundleMetadata") -> dict[str, int]:
        trusted, note = choose_root(meta, given=given, pinned=pinned_root(settings, meta.info.registry))
        checked.append(check_metadata(meta, trusted))
        result.notes += [note] if note else []
        return checked[0].blobs()

    size = bundle.stat().st_size
    with store.using(), scratch_in(store) as scratch, \
            transfer_progress(size, enabled=progress, label="verifying") as bar:
        task = bar.add_file(bundle.name, size)
        meta = read_bundle(bundle, scratch, expect, advance=lambda n: bar.advance(task, n))
        bar.finish(task)
        _commit(store, settings, meta, checked[0], scratch, result)
    return result


def _commit(store: "Store", settings: "Settings", meta: "BundleMetadata", checked: "CheckedBundle",
            scratch: Path, result: ImportResult) -> None:
    """Everything verified: blobs into the store, manifests beside them, packuments into the cache."""
    from nnpm.client.packument_cache import PackumentCache
    from nnpm.config import normalise_url

    for digest, size in sorted(checked.blobs().items()):
        if store.has(digest, size):
            result.present += 1
            continue
        store.commit(scratch / digest, digest, size, verified_digest=digest)   # hashed as it was read
        result.added += 1
        result.added_bytes += size
    for version in checked.versions:
        digest = store.add_bytes(version.manifest.to_json())
        if digest != version.package.manifest_sha256:   # check_metadata compared them: a bug if not
            raise IndexTrustError(f"{version.package.name} {version.package.version}: the stored manifest "
                                  "differs from the bundled one")
        result.versions.append((version.package.name, version.package.version))
        if version.key is not None:
            result.signed.append((version.package.name, version.package.version))
    cache = PackumentCache(settings.cache_dir, normalise_url(meta.info.registry))
    for name, raw in sorted(meta.packuments.items()):   # the ETag a registry gives these bytes
        cache.write(name, '"' + hashlib.sha256(raw).hexdigest() + '"', json.loads(raw))
    result.registry, result.created_at = meta.info.registry, meta.info.created_at
    if checked.index is not None:
        result.index_expires = checked.index.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
