"""File-system moves every stage needs: write aside then rename, and remove trees that hold read-only files.

A reader of `path` sees the old bytes or the new ones, never a half-written file: data
goes to a temporary name in the same folder (`.NAME.PID.THREAD.tmp`) and is renamed over
`path` only once complete. `durable=True` also fsyncs the file and its folder, for
records that must survive a power cut (the lock file).
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def temp_name(path: Path) -> Path:
    """A temporary sibling of `path` that no other process or thread uses."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename inside it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, *, mode: int | None = None, durable: bool = False) -> Iterator[Path]:
    """A temporary path to write `path`'s new content to; renamed over `path` when the block succeeds.

    For writers that want a file name (tarfile, onnx.save). Nothing is left behind on failure.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: Path, data: bytes, *, mode: int | None = None, durable: bool = False) -> None:
    """Replace `path` with `data` atomically (created with `mode` when given, e.g. 0o600 for secrets)."""
    with atomic_path(path, mode=mode, durable=durable) as tmp:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags, 0o666 if mode is None else mode & 0o777 | 0o200)
        with os.fdopen(fd, "wb") as f:
            f.write(data)


def remove_tree(path: Path) -> None:
    """Delete a folder (or file) even when it holds read-only files or folders; a missing one is fine."""
    path = Path(path)

    def make_writable(func, name, _exc) -> None:
        # A read-only folder refuses unlinking its entries; a read-only file itself does not matter.
        parent = os.path.dirname(name)
        try:
            os.chmod(parent, stat.S_IRWXU)
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, stat.S_IRWXU)
            func(name)
        except FileNotFoundError:
            pass

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        import shutil  # here: shutil imports bz2 and lzma (~3 ms) that loading a model never needs

        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=make_writable)
        else:
            shutil.rmtree(path, onerror=make_writable)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def flock(path: Path, mode: int, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """An advisory lock on `path` (created when missing), released when the block ends or the process dies."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


_held: dict[str, tuple[threading.RLock, list[int]]] = {}
_held_guard = threading.Lock()


@contextmanager
def reentrant_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` between processes and threads, which the holder may take again.

    Threads of this process queue on an RLock; the outermost holder takes the flock."""
    import fcntl

    with _held_guard:
        rlock, depth = _held.setdefault(str(path), (threading.RLock(), [0]))
    with rlock:
        if depth[0]:
            depth[0] += 1
            try:
                yield
            finally:
                depth[0] -= 1
            return
        with flock(path, fcntl.LOCK_EX):
            depth[0] = 1
            try:
                yield
            finally:
                depth[0] = 0

