"""The blob store interface, and the stream helpers every store shares.

A blob becomes visible only after its bytes were counted and hashed, so a reader (or a
restarted server after kill -9) never sees a partial blob. Every store keeps that
promise in its own way, and `tests/test_storage_contract.py` runs the same tests against
each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from nnpm.errors import IntegrityError

CHUNK = 1024 * 1024
STALE_UPLOAD_AFTER = 3600  # seconds without progress after which an upload in flight is abandoned


async def drain(chunks: AsyncIterator[bytes]) -> None:
    """Read a body to its end, so the client can read our answer on a clean connection."""
    async for _ in chunks:
        pass


async def sized_blocks(chunks: AsyncIterator[bytes], size: int, block: int) -> AsyncIterator[bytes]:
    """A body regrouped into blocks of at least `block` bytes, then the shorter (maybe empty) rest.

    Raises IntegrityError as soon as the body is longer than `size`, and at its end when shorter.
    """
    total, buf = 0, bytearray()
    async for chunk in chunks:
        total += len(chunk)
        if total > size:
            raise IntegrityError(f"the body is longer than the {size} bytes announced")
        buf += chunk
        if len(buf) >= block:
            data, buf = bytes(buf), bytearray()
            yield data
    if total != size:
        raise IntegrityError(f"received {total} bytes but {size} were announced")
    yield bytes(buf)


def check_digest(got: str, digest: str) -> None:
    """IntegrityError when the received bytes hash to another digest than the one named."""
    if got != digest:
        raise IntegrityError(f"the bytes hash to sha256:{got}, not sha256:{digest}",
                             hint="upload the file under its own digest")


@dataclass(frozen=True)
class StoredBlob:
    """One blob as a listing shows it: its digest, size and when it was stored (Unix time)."""

    digest: str
    size: int
    mtime: float


class BlobStore(ABC):
    """Content-addressed bytes, keyed by sha256 hex digest (already validated by the caller)."""

    @abstractmethod
    def size(self, digest: str) -> int | None:
        """Bytes of a stored blob, or None when it is absent."""

    def exists(self, digest: str) -> bool:
        """True when the blob is stored."""
        return self.size(digest) is not None

    @abstractmethod
    def open_range(self, digest: str, offset: int = 0, length: int | None = None,
                   chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Chunks of `length` bytes (all, by default) from `offset`; NotFoundError when absent."""

    @abstractmethod
    async def put(self, digest: str, chunks: AsyncIterator[bytes], *, size: int) -> bool:
        """Store a stream as `digest`; True when written, False when already present.

        Raises IntegrityError, storing nothing, when the bytes do not hash to `digest`
        or do not count to `size`.
        """

    @abstractmethod
    def materialize(self, digest: str, dest: Path, *, link: bool = True) -> None:
        """Make the blob's bytes appear as the local file `dest`: a hard link when `link` and possible, else a copy."""

    def link(self, digest: str, dest: Path) -> bool:
        """Make `dest` a hard link to the stored blob, copying nothing; False when this store cannot."""
        return False

    @abstractmethod
    def list_blobs(self) -> Iterator[StoredBlob]:
        """Every stored blob (not uploads in flight), in no particular order."""

    @abstractmethod
    def delete(self, digest: str) -> None:
        """Remove a stored blob (nothing happens when it is absent). Only garbage collection calls this."""

    def read(self, digest: str, limit: int) -> bytes:
        """At most `limit` bytes from the start of a blob."""
        return b"".join(self.open_range(digest, 0, min(limit, self.size(digest) or 0)))

    def check(self) -> None:
        """Raise ConfigError when the store cannot be used at all (called once, at start-up)."""

    def file_path(self, digest: str) -> Path | None:
        """The blob's file, for the server to send with sendfile, or None when the store is not a folder."""
        return None

    def relative_path(self, digest: str) -> str | None:
        """The blob's path under the store's folder ("sha256/ab/ab12…"), or None when the store is not a folder."""
        return None

    def download_url(self, digest: str, *, disposition: str | None = None) -> str | None:
        """A short-lived URL a client may fetch the blob from directly, or None when the store has none.

        `disposition`: the Content-Disposition the store should answer with (a named download)."""
        return None

    def sweep(self, older_than: float = STALE_UPLOAD_AFTER) -> int:
        """Drop what uploads killed mid-way left behind (idle for `older_than` seconds); how many went."""
        return 0
