"""`DirBlobStore`: blobs as files in a local folder.

    blobs/sha256/ab/ab12…ef     one read-only file per blob, named by its sha256
    tmp/upload-XXXX.part        uploads in flight; renamed into blobs/ only once verified

A blob appears under `blobs/` by one atomic rename after its bytes were hashed and
counted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio.to_thread

from nnpm.errors import ConfigError, NotFoundError
from nnpm.format.fields import is_digest
from registry_server.storage.base import (
    CHUNK,
    STALE_UPLOAD_AFTER,
    BlobStore,
    StoredBlob,
    check_digest,
    drain,
    sized_blocks,
)


class DirBlobStore(BlobStore):
    """Blobs as files in a local folder, written through a temp file and an atomic rename."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = Path(root) / "sha256"
        self.tmp_dir = Path(tmp_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def file_path(self, digest: str) -> Path:
        return self._path(digest)

    def relative_path(self, digest: str) -> str:
        return self._path(digest).relative_to(self.root.parent).as_posix()

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
        # Every file-system call runs in a thread: on the event loop, a burst of uploads held up every request.
        fd, tmp_name = await anyio.to_thread.run_sync(
            lambda: tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.tmp_dir))
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
            await anyio.to_thread.run_sync(self._commit, tmp, digest)
            return True
        finally:
            tmp.unlink(missing_ok=True)   # here, not in a thread: a cancelled upload must still lose its part file

    def _commit(self, tmp: Path, digest: str) -> None:
        """Make a verified upload the blob: read-only, at its name."""
        os.chmod(tmp, 0o444)
        final = self._path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    def materialize(self, digest: str, dest: Path, *, link: bool = True) -> None:
        if link and self.link(digest, dest):
            return
        src = self._path(digest)
        if not src.exists():
            raise NotFoundError(f"blob sha256:{digest} is not stored")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)

    def link(self, digest: str, dest: Path) -> bool:
        src = self._path(digest)
        if not src.exists():
            raise NotFoundError(f"blob sha256:{digest} is not stored")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:  # another file system, too many links, or no hard links at all
            return False
        return True

    def list_blobs(self) -> Iterator[StoredBlob]:
        for folder in sorted(self.root.iterdir()) if self.root.is_dir() else ():
            for path in folder.iterdir() if folder.is_dir() else ():
                if not is_digest(path.name) or path.name[:2] != folder.name:
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:  # deleted meanwhile
                    continue
                yield StoredBlob(path.name, st.st_size, st.st_mtime)

    def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

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
