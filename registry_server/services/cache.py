"""A small thread-safe LRU bounded by entries and by the bytes of what it holds.

Used for what the server would otherwise recompute on every anonymous read: parsed
manifests (by their sha256) and packument bodies (by the state of a package's rows).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    """`get_or_make(key, cost, make)`: the cached value, or `make()` stored under `key`."""

    def __init__(self, max_entries: int, max_cost: int) -> None:
        self.max_entries, self.max_cost = max_entries, max_cost
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._cost = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable) -> V | None:
        """The value under `key` (now the most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: V, cost: int) -> None:
        """Keep `value`; the least recently used entries go when a bound is passed. Too costly ones are not kept."""
        if cost > self.max_cost:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._cost -= old[1]
            self._items[key] = (value, cost)
            self._cost += cost
            while len(self._items) > self.max_entries or self._cost > self.max_cost:
                _, (_, dropped) = self._items.popitem(last=False)
                self._cost -= dropped

    def get_or_make(self, key: Hashable, cost: int, make: Callable[[], V]) -> V:
        """The cached value, else `make()` (outside the lock: two threads may both make it once)."""
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value, cost)
        return value

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
            self._cost = 0
