"""Blob storage behind one small interface; routes never touch a path or a bucket.

`storage_from_settings(settings)` picks the store from `Settings.storage_url`:

    ""  or  file:///PATH       DirBlobStore, in PATH (default: the --data folder)
    s3://BUCKET/PREFIX         S3BlobStore (registry_server/storage_s3.py; needs boto3)

`DirBlobStore` keeps blobs in a folder:

    blobs/sha256/ab/ab12…ef     one read-only file per blob, named by its sha256
    tmp/upload-XXXX.part        uploads in flight; renamed into blobs/ only once verified

A blob appears under `blobs/` by one atomic rename after its bytes were hashed and
counted, so a reader (or a restarted server after kill -9) never sees a partial blob.
Every store keeps that promise in its own way, and `tests/test_storage_contract.py`
runs the same tests against each.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import anyio.to_thread

from nnpm.errors import ConfigError, IntegrityError, NotFoundError

if TYPE_CHECKING:
    from registry_server.settings import Settings

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

    def read(self, digest: str, limit: int) -> bytes:
        """At most `limit` bytes from the start of a blob."""
        return b"".join(self.open_range(digest, 0, min(limit, self.size(digest) or 0)))

    def check(self) -> None:
        """Raise ConfigError when the store cannot be used at all (called once, at start-up)."""

    def download_url(self, digest: str) -> str | None:
        """A short-lived URL a client may fetch the blob from directly, or None when the store has none."""
        return None

    def sweep(self, older_than: float = STALE_UPLOAD_AFTER) -> int:
        """Drop what uploads killed mid-way left behind (idle for `older_than` seconds); how many went."""
        return 0


class DirBlobStore(BlobStore):
    """Blobs as files in a local folder, written through a temp file and an atomic rename."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = Path(root) / "sha256"
        self.tmp_dir = Path(tmp_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def check(self) -> None:
        """ConfigError unless both folders exist and can be written."""
        for folder in (self.root, self.tmp_dir):
            if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
                raise ConfigError(f"blob folder {folder} is missing or not writable",
                                  hint="check the --data folder and its permissions")

    def size(self, digest: str) -> int | None:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def open_range(self, digest: str, offset: int = 0, length: int | None = None,
                   chunk_size: int = CHUNK) -> Iterator[bytes]:
        try:
            f = open(self._path(digest), "rb")  # opened now, so absence is known before streaming
        except FileNotFoundError:
            raise NotFoundError(f"blob sha256:{digest} is not stored") from None
        return _read_chunks(f, offset, length, chunk_size)

    async def put(self, digest: str, chunks: AsyncIterator[bytes], *, size: int) -> bool:
        if self.exists(digest):
            await drain(chunks)
            return False
        fd, tmp_name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.tmp_dir)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                h = hashlib.sha256()

                def flush(data: bytes) -> None:
                    h.update(data)
                    f.write(data)

                async for data in sized_blocks(chunks, size, CHUNK):
                    await anyio.to_thread.run_sync(flush, data)
                check_digest(h.hexdigest(), digest)
                f.flush()
                await anyio.to_thread.run_sync(os.fsync, f.fileno())
            os.chmod(tmp, 0o444)
            final = self._path(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def materialize(self, digest: str, dest: Path, *, link: bool = True) -> None:
        src = self._path(digest)
        if not src.exists():
            raise NotFoundError(f"blob sha256:{digest} is not stored")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if link:
            try:
                os.link(src, dest)
                return
            except OSError:
                pass
        shutil.copyfile(src, dest)

    def sweep(self, older_than: float = STALE_UPLOAD_AFTER) -> int:
        removed, cutoff = 0, time.time() - older_than
        for part in self.tmp_dir.glob("upload-*.part"):
            try:
                if part.lstat().st_mtime < cutoff:  # a live upload writes to its file continuously
                    part.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def parse_storage_url(url: str) -> tuple[str, str, str]:
    """`""` → ("", "", ""); `file:///PATH` → ("file", "", PATH); `s3://BUCKET/PREFIX` → ("s3", BUCKET, PREFIX)."""
    if not url:
        return "", "", ""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"storage URL {url!r} is not a local folder", hint="write file:///absolute/path")
        return "file", "", unquote(parts.path)
    if parts.scheme == "s3":
        if not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"storage URL {url!r} names no bucket", hint="write s3://BUCKET or s3://BUCKET/PREFIX")
        return "s3", parts.netloc, unquote(parts.path).strip("/")
    raise ConfigError(f"storage URL {url!r} is neither file:///PATH nor s3://BUCKET/PREFIX")


def storage_from_settings(settings: Settings) -> BlobStore:
    """The blob store `settings.storage_url` names (a folder under --data by default); boto3 loads only for s3://."""
    scheme, bucket, where = parse_storage_url(settings.storage_url)
    if settings.redirect_downloads and scheme != "s3":
        raise ConfigError("--redirect-downloads needs an s3:// storage URL",
                          hint="blobs in a folder are always served by the registry itself")
    if scheme == "s3":
        try:
            from registry_server.storage_s3 import S3BlobStore
        except ImportError as exc:
            raise ConfigError(f"s3:// storage needs boto3, which cannot be imported ({exc})",
                              hint="pip install 'nnpm[s3]'") from None
        return S3BlobStore(bucket, where, endpoint_url=settings.s3_endpoint or None)
    if settings.s3_endpoint:
        raise ConfigError("--s3-endpoint is set but the storage URL is not s3://BUCKET/PREFIX")
    folder = Path(where) if scheme == "file" else settings.data_dir
    return DirBlobStore(folder / "blobs", folder / "tmp")


def _read_chunks(f, offset: int, length: int | None, chunk_size: int) -> Iterator[bytes]:
    with f:
        f.seek(offset)
        left = length
        while left is None or left > 0:
            chunk = f.read(chunk_size if left is None else min(chunk_size, left))
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            yield chunk
