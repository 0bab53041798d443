"""The content-addressed local store: every blob once per machine, read-only, by sha256.

    NNPM_HOME/store/
      v1/
        sha256/ab/ab12…ef     a verified blob, mode 0444
        partial/ab12…ef       a download in progress (resumable), never linked
        partial/ab12…ef.lock  held by the one process writing that partial file
        tmp/                  copies being verified before they are committed
        .lock                 held shared by installs, alone by `cache clean`

Blobs enter only through `commit`, which checks size and sha256 first, so a file under
sha256/ is always what its name says. Environments hard-link from here (copy where the
filesystem refuses links). `prune` only ever deletes inside this root, and only while
no install uses the store.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nnpm.errors import IntegrityError
from nnpm.format.fields import is_digest
from nnpm.fsutil import flock, remove_tree
from nnpm.hashing import CHUNK, file_digest

LAYOUT = "v1"


class Store:
    """A folder of blobs named by their sha256."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / LAYOUT

    def path(self, digest: str) -> Path:
        """Where a committed blob lives."""
        if not is_digest(digest):
            raise IntegrityError(f"not a sha256 digest: {digest!r}")
        return self.root / "sha256" / digest[:2] / digest

    @contextmanager
    def using(self) -> Iterator[None]:
        """Hold the store shared: installs may run together, `cache clean` waits for them to finish."""
        with flock(self.root / ".lock", fcntl.LOCK_SH):
            yield

    @contextmanager
    def cleaning(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the store alone (for pruning): waits until no install uses it."""
        with flock(self.root / ".lock", fcntl.LOCK_EX, on_wait=on_wait):
            yield

    @contextmanager
    def downloading(self, digest: str) -> Iterator[Path]:
        """The partial file of one blob, held by this process alone: one writer per blob, others wait."""
        path = self.partial_path(digest)
        with flock(path.with_name(path.name + ".lock"), fcntl.LOCK_EX):
            yield path

    def partial_path(self, digest: str) -> Path:
        """Where a download of this blob accumulates before it is verified."""
        path = self.root / "partial" / digest
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def has(self, digest: str, size: int | None = None) -> bool:
        """True when the blob is committed (and has this size, if given)."""
        try:
            st = self.path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def commit(self, src: Path, digest: str, size: int, *, verified_digest: str | None = None) -> Path:
        """Check `src` against size and sha256, then move it into place read-only.

        `verified_digest` lets a caller that hashed while writing skip a second read.
        On mismatch `src` is deleted and IntegrityError raised.
        """
        src = Path(src)
        actual_size = src.stat().st_size
        actual = verified_digest if verified_digest is not None and actual_size == size else None
        if actual is None:
            actual, actual_size = file_digest(src)
        if actual_size != size or actual != digest:
            src.unlink(missing_ok=True)
            raise IntegrityError(
                f"blob sha256:{digest[:12]}… is corrupt: expected {size} bytes with that digest, "
                f"got {actual_size} bytes with sha256:{actual[:12]}…",
                hint="the download was damaged or the registry served wrong bytes; run the command again")
        dest = self.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(src, 0o444)
        os.replace(src, dest)
        return dest

    def verify_blob(self, digest: str) -> bool:
        """Whether a committed blob still hashes to its name (False when it is absent)."""
        try:
            return file_digest(self.path(digest))[0] == digest
        except FileNotFoundError:
            return False

    def discard(self, digest: str) -> None:
        """Remove one blob (a corrupt one, so it is fetched again); environments keep their own links."""
        remove_tree(self.path(digest))

    def add_file(self, src: Path, digest: str, size: int, *, recheck: bool = False) -> Path:
        """Copy a local file into the store, verified (for installs from folders and archives).

        `recheck` re-hashes a blob the store already has and replaces it when it is corrupt."""
        if self.has(digest, size) and (not recheck or self.verify_blob(digest)):
            return self.path(digest)
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{digest}.{os.getpid()}"
        h = hashlib.sha256()
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK):
                h.update(chunk)
                fout.write(chunk)
        return self.commit(tmp, digest, size, verified_digest=h.hexdigest())

    def add_bytes(self, data: bytes) -> str:
        """Store small bytes (a manifest) and return their digest."""
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest, len(data)):
            tmp_dir = self.root / "tmp"
            tmp_dir.mkdir(parents=True, exist_ok=True)
            tmp = tmp_dir / f"{digest}.{os.getpid()}"
            tmp.write_bytes(data)
            self.commit(tmp, digest, len(data), verified_digest=digest)
        return digest

    def link_into(self, digest: str, dest: Path) -> bool:
        """Hard-link a blob to `dest` (copy where links fail); True when it was linked."""
        src = self.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
        shutil.copyfile(src, dest)
        os.chmod(dest, 0o444)
        return False

    def blobs(self) -> Iterator[tuple[str, Path]]:
        """Every committed blob as (digest, path)."""
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for sub in sorted(base.iterdir()):
            for path in sorted(sub.iterdir()):
                if is_digest(path.name):
                    yield path.name, path

    def verify(self) -> list[str]:
        """Re-hash every blob; return the digests whose bytes no longer match their names."""
        return [d for d, p in self.blobs() if file_digest(p)[0] != d]

    def prune(self, keep: Iterable[str]) -> tuple[int, int]:
        """Delete blobs not in `keep`, and leftover partial/tmp files; returns (files, bytes) freed."""
        keep = set(keep)
        count = freed = 0
        for digest, path in list(self.blobs()):
            if digest not in keep:
                freed += path.stat().st_size
                remove_tree(path)
                count += 1
        for leftover in ("partial", "tmp"):
            folder = self.root / leftover
            if folder.is_dir():
                for path in folder.iterdir():
                    if path.is_dir() and not path.is_symlink():
                        freed += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
                    else:
                        freed += path.stat().st_size
                    remove_tree(path)
                    count += 1
        return count, freed

    def usage(self) -> tuple[int, int]:
        """(number of blobs, total bytes)."""
        sizes = [p.stat().st_size for _, p in self.blobs()]
        return len(sizes), sum(sizes)
