"""sha256 of files and streams, in chunks so large blobs never sit in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from nnpm.errors import IntegrityError

CHUNK = 1024 * 1024


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def copy_matches(src: IO[bytes], target: Path, size: int, digest: str,
                 advance: Callable[[int], None] | None = None) -> bool:
    """Copy at most `size` bytes of `src` into a new file `target`; whether they were exactly `size` bytes
    with this sha256 (reading stops one chunk past `size`, so a longer stream is not read to its end)."""
    h, n = hashlib.sha256(), 0
    with open(target, "xb") as out:
        while chunk := src.read(CHUNK):
            n += len(chunk)
            if n > size:
                break
            h.update(chunk)
            out.write(chunk)
            if advance:
                advance(len(chunk))
    return n == size and h.hexdigest() == digest


def verified_chunks(f: IO[bytes], size: int, digest: str, on_progress: Callable[[int], None] | None
                     ) -> Iterator[bytes]:
    """The file's bytes in chunks; the last chunk is held back until size and sha256 are checked."""
    h, sent = hashlib.sha256(), 0
    chunk = f.read(CHUNK)
    while True:
        nxt = f.read(CHUNK) if chunk else b""
        h.update(chunk)
        sent += len(chunk)
        if sent > size or (not nxt and (sent != size or h.hexdigest() != digest)):
            raise IntegrityError(f"blob sha256:{digest[:12]}… changed or does not match its manifest entry "
                                 "(size or sha256 differs)", hint="re-run 'nnpm pack' and publish again")
        if not chunk:
            return
        yield chunk
        if on_progress:
            on_progress(len(chunk))
        if not nxt:
            return
        chunk = nxt
