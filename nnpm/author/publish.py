"""Publish a package folder or `.nnpm` archive: upload the blobs the registry lacks, then commit the manifest.

Nothing unverified leaves the machine: a folder is validated and hashed by `nnpm.author.pack.build`, an
archive is unpacked and checked against its manifest first, and every upload is re-hashed while it
streams (the last chunk is held back until the sha256 matches).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnpm.client.api import RegistryClient
from nnpm.errors import BusyError, IntegrityError, ManifestError, NotFoundError, RegistryError
from nnpm.format.manifest import FileEntry, Manifest
from nnpm.format.project import TOML_NAME
from nnpm.progress import transfer_progress

PROGRESS_MIN_BYTES = 1_000_000   # smaller uploads finish before a bar is worth drawing
ROUNDS = 3                       # uploads of one blob, and whole upload-then-PUT rounds
BUSY_ATTEMPTS = 8                # PUTs of the manifest while the registry answers 429
MAX_BUSY_WAIT = 30.0             # seconds to wait at most before one retry


@dataclass(frozen=True)
class PublishResult:
    """What a publish did: which blobs went up, which the registry had, and whether the version is new."""

    manifest: Manifest
    created: bool                       # 201: a new version; False: 200, identical to the stored one
    uploaded: tuple[FileEntry, ...]
    skipped: tuple[FileEntry, ...]
    bytes_sent: int

    @property
    def bytes_skipped(self) -> int:
        """Bytes the registry had already (another version's tensors, another package's)."""
        return sum(e.size for e in self.skipped)

    @property
    def name(self) -> str:
        """Canonical package name."""
        return self.manifest.name

    @property
    def version(self) -> str:
        """The published version."""
        return str(self.manifest.version)


def publish(path: Path | str, client: RegistryClient, *, progress: bool = True, split: bool = True,
            signer: Any = None) -> PublishResult:
    """Publish a package folder (holding nnpm.toml) or a .nnpm archive to the client's registry.

    A folder is packed in the tensor-addressed layout first (`split=False` keeps the author's).
    `signer`: an Ed25519 private key (nnpm/author/keys.py) that signs the manifest (docs/trust.md)."""
    path = Path(path)
    if path.is_dir():
        from nnpm.author.pack import staged

        with staged(path, split=split) as built:
            return upload(built.manifest, built.paths, client, progress=progress, signer=signer)
    if path.is_file() and path.suffix == ".nnpm":
        from nnpm.format.archive import extract

        with tempfile.TemporaryDirectory(prefix="nnpm-publish-") as tmp:
            root = Path(tmp) / "package"
            manifest = extract(path, root)
            return upload(manifest, {f.path: root / f.path for f in manifest.files}, client, progress=progress,
                          signer=signer)
    if path.is_file():
        raise ManifestError(f"{path} is not a .nnpm archive",
                            hint=f"publish a package folder (with {TOML_NAME}) or an archive made by 'nnpm pack'")
    raise ManifestError(f"{path} does not exist", hint=f"give a package folder (with {TOML_NAME}) or a .nnpm file")


def upload(manifest: Manifest, paths: dict[str, Path], client: RegistryClient, *,
           progress: bool = True, sleep: Callable[[float], None] = time.sleep, signer: Any = None) -> PublishResult:
    """Upload the blobs of a verified manifest that the registry lacks, then PUT the manifest.

    A busy registry (429) is asked again after its Retry-After; an upload it timed out (408)
    is sent again; a blob it lost between the upload and the PUT (its garbage collector
    runs) is found again and re-uploaded. Each a bounded number of times."""
    blobs: dict[str, FileEntry] = {}
    for entry in manifest.files:                      # identical files are one blob
        blobs.setdefault(entry.sha256, entry)
    uploaded: list[FileEntry] = []
    skipped: list[FileEntry] = []
    sent = 0
    signed = _sign(manifest, signer)   # before any upload: a key that cannot sign fails first
    for attempt in range(ROUNDS):
        missing, present = _missing(blobs, client)
        if attempt == 0:
            skipped = present
        sent += _send(missing, paths, client, progress)
        uploaded += missing
        try:
            status = _put_manifest(client, manifest, sleep, signed)
        except NotFoundError:
            if attempt == ROUNDS - 1:
                raise
            continue
        return PublishResult(manifest=manifest, created=status == 201, uploaded=tuple(uploaded),
                             skipped=tuple(e for e in skipped if e not in uploaded), bytes_sent=sent)
    raise AssertionError("unreachable")


def _missing(blobs: dict[str, FileEntry], client: RegistryClient) -> tuple[list[FileEntry], list[FileEntry]]:
    """(blobs the registry lacks, blobs it has): one POST /blobs/missing, or a HEAD per blob on an older registry."""
    lacking = client.missing_blobs(list(blobs))
    if lacking is not None:
        gone = set(lacking)
        return [e for d, e in blobs.items() if d in gone], [e for d, e in blobs.items() if d not in gone]
    missing, present = [], []
    for digest, entry in blobs.items():
        size = client.has_blob(digest)
        if size is None:
            missing.append(entry)
        elif size != entry.size:
            raise IntegrityError(f"the registry holds blob sha256:{digest[:12]}… ({entry.path}) with {size} bytes, "
                                 f"the manifest says {entry.size}", hint="tell the registry's operator")
        else:
            present.append(entry)
    return missing, present


def _send(missing: list[FileEntry], paths: dict[str, Path], client: RegistryClient, progress: bool) -> int:
    """Upload the missing blobs with progress bars; an upload the registry timed out (408) goes again."""
    total = sum(e.size for e in missing)
    enabled = None if progress and total >= PROGRESS_MIN_BYTES else False
    with transfer_progress(total, enabled) as bars:
        for entry in missing:
            for attempt in range(ROUNDS):
                task = bars.add_file(entry.path, entry.size)
                try:
                    client.upload_blob(entry.sha256, entry.size, paths[entry.path],
                                       on_progress=lambda n, task=task: bars.advance(task, n))
                    break
                except RegistryError as exc:
                    if exc.status != 408 or attempt == ROUNDS - 1:
                        raise
                finally:
                    bars.finish(task)
    return total


def _sign(manifest: Manifest, signer: Any) -> tuple:
    """(signature, public key) of the canonical manifest bytes, or () unsigned."""
    if signer is None:
        return ()
    from nnpm.author.keys import public_of
    from nnpm.format.signing import sign_manifest

    return sign_manifest(signer, manifest.to_json()), public_of(signer)


def _put_manifest(client: RegistryClient, manifest: Manifest, sleep: Callable[[float], None],
                  signed: tuple = ()) -> int:
    """PUT the manifest (with its signature when signed), waiting as a busy registry asks (bounded)."""
    for attempt in range(BUSY_ATTEMPTS):
        try:
            return client.put_manifest(manifest, *signed)
        except BusyError as exc:
            if attempt == BUSY_ATTEMPTS - 1:
                raise
            sleep(min(exc.retry_after if exc.retry_after is not None else 1.0, MAX_BUSY_WAIT))
    raise AssertionError("unreachable")
