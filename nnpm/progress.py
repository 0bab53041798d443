"""Progress bars for byte transfers: one bar per file plus a total, silent when not on a terminal.

    with transfer_progress(total_bytes) as p:
        task = p.add_file("model.onnx", size)
        p.advance(task, n)          # from any thread
        p.finish(task)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Transfer(Protocol):
    """What a transfer display offers; every method is safe to call from several threads."""

    def add_file(self, label: str, size: int, completed: int = 0) -> int:
        """Start a bar for one file (`completed` bytes already there, e.g. a resumed download)."""

    def advance(self, task: int, n: int) -> None:
        """Count n more bytes for a file and the total (negative n when a transfer restarts)."""

    def finish(self, task: int) -> None:
        """The file is done: remove its bar, keep its bytes in the total."""


class _Silent:
    """A Transfer that shows nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0

    def add_file(self, label: str, size: int, completed: int = 0) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def advance(self, task: int, n: int) -> None:
        pass

    def finish(self, task: int) -> None:
        pass


class _Bars:
    """A Transfer drawn with rich.progress on stderr."""

    def __init__(self, progress, total_bytes: int, total_label: str) -> None:
        self._p = progress
        self._lock = threading.Lock()
        self._total = progress.add_task(total_label, total=total_bytes)
        self._files: set[int] = set()

    def add_file(self, label: str, size: int, completed: int = 0) -> int:
        with self._lock:
            task = self._p.add_task(f"  {label}", total=size, completed=completed)
            self._files.add(task)
            self._p.advance(self._total, completed)
            return task

    def advance(self, task: int, n: int) -> None:
        with self._lock:
            if task in self._files:
                self._p.advance(task, n)
                self._p.advance(self._total, n)

    def finish(self, task: int) -> None:
        with self._lock:
            if task in self._files:
                self._files.discard(task)
                self._p.remove_task(task)


def _on_terminal() -> bool:
    return all(getattr(s, "isatty", lambda: False)() for s in (sys.stdout, sys.stderr))


@contextmanager
def transfer_progress(total_bytes: int, enabled: bool | None = None, *, label: str = "total") -> Iterator[Transfer]:
    """A Transfer for `total_bytes`; drawn only when enabled (default: stdout and stderr are terminals)."""
    if enabled is None:
        enabled = _on_terminal()
    if not enabled:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    with progress:
        yield _Bars(progress, total_bytes, label)
