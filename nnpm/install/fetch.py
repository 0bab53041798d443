"""Download blobs into the store: in parallel, resumable, verified before anything is linked.

A partial download lives at store/v1/partial/<digest>. A retry resumes it with
`Range: bytes=N-` and `If-Range: "sha256:<digest>"`; a server that answers 200 instead
of 206 gets its body written from the start. Size and sha256 are checked before the
blob is committed; a mismatch deletes the partial file and raises IntegrityError.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nnpm.errors import IntegrityError, RegistryError
from nnpm.hashing import CHUNK
from nnpm.install.store import Store

if TYPE_CHECKING:
    from nnpm.client.api import RegistryClient

ATTEMPTS = 3
WORKERS = 4


@dataclass(frozen=True)
class Wanted:
    """One blob to fetch, with a label for the progress bar."""

    digest: str
    size: int
    label: str


@dataclass
class FetchStats:
    """What a fetch did: blobs and bytes downloaded, blobs already present."""

    downloaded: int = 0
    bytes: int = 0
    present: int = 0
    present_bytes: int = 0        # what the store had already: the bytes the install did not fetch


def _resume_state(path, digest: str) -> tuple[int, "hashlib._Hash"]:
    h = hashlib.sha256()
    done = 0
    if path.exists():
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                done += len(chunk)
    return done, h


def fetch_one(client: "RegistryClient", store: Store, want: Wanted, advance=None) -> int:
    """Make sure one blob is in the store; returns the bytes downloaded.

    One process at a time writes a blob's partial file; another that wants the same blob
    waits for it, then finds the blob committed (or resumes what the first left).
    """
    if store.has(want.digest, want.size):
        return 0
    with store.downloading(want.digest) as part:
        if store.has(want.digest, want.size):
            return 0
        return _fetch_into(client, store, want, part, advance)


def _fetch_into(client: "RegistryClient", store: Store, want: Wanted, part, advance) -> int:
    received = 0
    last_error: Exception | None = None
    for _ in range(ATTEMPTS):
        done, h = _resume_state(part, want.digest)
        resumed = done > 0
        if done > want.size:
            part.unlink()
            done, h = 0, hashlib.sha256()
        try:
            if done < want.size:
                got, h = _download(client, want, part, done, h, advance)
                received += got
        except RegistryError as exc:
            if exc.status is not None:   # the server said no: retrying will not help
                raise
            last_error = exc
            continue
        size = part.stat().st_size
        if size != want.size:
            last_error = IntegrityError(f"{want.label}: the download stopped at {size} of {want.size} bytes")
            continue
        try:
            store.commit(part, want.digest, want.size, verified_digest=h.hexdigest())
        except IntegrityError as exc:
            if not resumed:
                raise
            last_error = exc   # bytes kept from before were bad; commit removed them: start over
            continue
        return received
    raise last_error or IntegrityError(f"{want.label}: download failed")


def _download(client, want: Wanted, part, done: int, h, advance) -> tuple[int, "hashlib._Hash"]:
    """Stream the bytes after `done` into the partial file; returns (bytes received, running hash)."""
    etag = f'"sha256:{want.digest}"'
    received = 0
    with client.open_blob(want.digest, start=done, if_range=etag if done else None) as resp:
        mode = "ab"
        if done and resp.status_code == 200:
            # The server ignored Range (or If-Range did not match): its body starts at byte 0.
            if advance:
                advance(-done)
            done, mode, h = 0, "wb", hashlib.sha256()
        with open(part, mode) as f:
            for chunk in resp.iter_bytes():  # as received, so a cut loses no buffered bytes
                if done + received + len(chunk) > want.size:
                    f.close()
                    part.unlink(missing_ok=True)
                    raise IntegrityError(
                        f"{want.label}: the registry sent more than the {want.size} bytes the manifest lists",
                        hint="the registry is serving a different file; tell its operator")
                f.write(chunk)
                h.update(chunk)
                received += len(chunk)
                if advance:
                    advance(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    return received, h


def fetch_all(connect: Callable[[], "RegistryClient"], store: Store, wanted: list[Wanted], *,
              progress: bool | None = None) -> FetchStats:
    """Fetch every wanted blob the store lacks, several at once, with a progress bar.

    `connect` makes the registry client; it is called only when some blob must be downloaded,
    so an install whose blobs are all in the store needs no registry.
    """
    from nnpm.progress import transfer_progress

    stats = FetchStats()
    unique = {w.digest: w for w in wanted}
    missing = [w for w in unique.values() if not store.has(w.digest, w.size)]
    stats.present = len(unique) - len(missing)
    stats.present_bytes = sum(w.size for w in unique.values()) - sum(w.size for w in missing)
    if not missing:
        return stats
    from concurrent.futures import ThreadPoolExecutor  # only when something is to be fetched

    client = connect()
    with transfer_progress(sum(w.size for w in missing), enabled=progress) as bar:
        def job(want: Wanted) -> int:
            task = bar.add_file(want.label, want.size)
            got = fetch_one(client, store, want, advance=lambda n: bar.advance(task, n))
            bar.finish(task)
            return got

        with ThreadPoolExecutor(max_workers=min(WORKERS, len(missing))) as pool:
            for got in pool.map(job, missing):
                stats.downloaded += 1
                stats.bytes += got
    return stats
