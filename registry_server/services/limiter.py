"""How many publishes a server works on at once, and how many may wait: the rest are told to come back.

A publish is admitted (`admit`) before its body is read, so the bodies held in memory are
bounded too; it then waits for one of `workers` places (`worker`) on the event loop,
holding no thread, and only then runs in the thread pool. Reads never wait behind
publishes. Admitting past `workers + queue` raises BusyError (429) with `retry_after`, an
estimate from how long recent publishes took. Used from the event loop only, so the
counters need no lock.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from nnpm.errors import BusyError


class PublishLimiter:
    """At most `workers` publishes run at once and `queue` more wait; further ones are BusyError."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue)
        self.admitted = 0
        self._semaphore: anyio.Semaphore | None = None  # made on the event loop, at first use
        self._seconds = 2.0  # moving average of one publish's duration

    def retry_after(self) -> int:
        """Seconds after which the queue has likely moved on: how long the admitted ones take to drain."""
        return max(1, min(300, math.ceil(self._seconds * self.capacity / self.workers)))

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a place among the admitted publishes for the block, or raise BusyError at once."""
        if self.admitted >= self.capacity:
            err = BusyError(f"the registry is busy with {self.admitted} publishes; try again in {self.retry_after()} s",
                            hint="publishing again later will work; nothing was stored")
            err.retry_after = self.retry_after()  # type: ignore[attr-defined]  # the Retry-After header
            raise err
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[None]:
        """Wait, on the event loop, for one of the `workers` places; hold it for the block."""
        if self._semaphore is None:
            self._semaphore = anyio.Semaphore(self.workers)
        async with self._semaphore:
            start = time.monotonic()
            try:
                yield
            finally:
                self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - start)
