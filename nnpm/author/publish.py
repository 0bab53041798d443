"""Publish a package folder or `.nnpm` archive: upload the blobs the registry lacks, then commit the manifest.

Nothing unverified leaves the machine: a folder is validated and hashed by `nnpm.author.pack.build`, an
archive is unpacked and checked against its manifest first, and every upload is re-hashed while it
streams (the last chunk is held back until the sha256 matches).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from nnpm.client.api import RegistryClient
from nnpm.errors import IntegrityError, ManifestError
from nnpm.format.manifest import FileEntry, Manifest
from nnpm.format.project import TOML_NAME
from nnpm.progress import transfer_progress

PROGRESS_MIN_BYTES = 1_000_000   # smaller uploads finish before a bar is worth drawing


@dataclass(frozen=True)
class PublishResult:
    """What a publish did: which blobs went up, which the registry had, and whether the version is new."""

    manifest: Manifest
    created: bool                       # 201: a new version; False: 200, identical to the stored one
    uploaded: tuple[FileEntry, ...]
    skipped: tuple[FileEntry, ...]
    bytes_sent: int

    @property
    def name(self) -> str:
        """Canonical package name."""
        return self.manifest.name

    @property
    def version(self) -> str:
        """The published version."""
        return str(self.manifest.version)


def publish(path: Path | str, client: RegistryClient, *, progress: bool = True) -> PublishResult:
    """Publish a package folder (holding nnpm.toml) or a .nnpm archive to the client's registry."""
    path = Path(path)
    if path.is_dir():
        from nnpm.author.pack import build

        built = build(path)
        return upload(built.manifest, built.paths, client, progress=progress)
    if path.is_file() and path.suffix == ".nnpm":
        from nnpm.format.archive import extract

        with tempfile.TemporaryDirectory(prefix="nnpm-publish-") as tmp:
            root = Path(tmp) / "package"
            manifest = extract(path, root)
            return upload(manifest, {f.path: root / f.path for f in manifest.files}, client, progress=progress)
    if path.is_file():
        raise ManifestError(f"{path} is not a .nnpm archive",
                            hint=f"publish a package folder (with {TOML_NAME}) or an archive made by 'nnpm pack'")
    raise ManifestError(f"{path} does not exist", hint=f"give a package folder (with {TOML_NAME}) or a .nnpm file")


def upload(manifest: Manifest, paths: dict[str, Path], client: RegistryClient, *,
           progress: bool = True) -> PublishResult:
    """Upload the blobs of a verified manifest that the registry lacks, then PUT the manifest."""
    blobs: dict[str, FileEntry] = {}
    for entry in manifest.files:                      # identical files are one blob
        blobs.setdefault(entry.sha256, entry)
    missing, skipped = [], []
    for digest, entry in blobs.items():
        size = client.has_blob(digest)
        if size is None:
            missing.append(entry)
        elif size != entry.size:
            raise IntegrityError(f"the registry holds blob sha256:{digest[:12]}… ({entry.path}) with {size} bytes, "
                                 f"the manifest says {entry.size}", hint="tell the registry's operator")
        else:
            skipped.append(entry)
    total = sum(e.size for e in missing)
    sent = 0
    enabled = None if progress and total >= PROGRESS_MIN_BYTES else False
    with transfer_progress(total, enabled) as bars:
        for entry in missing:
            task = bars.add_file(entry.path, entry.size)
            client.upload_blob(entry.sha256, entry.size, paths[entry.path],
                               on_progress=lambda n, task=task: bars.advance(task, n))
            bars.finish(task)
            sent += entry.size
    status = client.put_manifest(manifest)
    return PublishResult(manifest=manifest, created=status == 201, uploaded=tuple(missing),
                         skipped=tuple(skipped), bytes_sent=sent)
