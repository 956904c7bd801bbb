"""The in-memory cache that every browser session of a server shares: least recently used, bounded in bytes."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable


class LRUCache:
    """A least-recently-used cache bounded in bytes (numpy arrays count their nbytes, tuples the
    sum of their items', others 0), shared by the sessions' worker threads.

    `misses` counts the values that had to be computed. Two threads missing the same key both
    compute it (the values are equal); the lock only guards the bookkeeping.
    """

    def __init__(self, max_bytes: float = 300e6, max_items: int = 16):
        self.max_bytes, self.max_items = max_bytes, max_items
        self._items: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _size(value) -> int:
        if isinstance(value, tuple):
            return sum(map(LRUCache._size, value))
        return int(getattr(value, "nbytes", 0))

    def get(self, key: Hashable, compute: Callable[[], object]):
        with self._lock:
            if key in self._items:
                self.hits += 1
                self._items.move_to_end(key)
                return self._items[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > 1 and (len(self._items) > self.max_items or self.nbytes > self.max_bytes):
                self._items.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    @property
    def nbytes(self) -> int:
        return sum(self._size(v) for v in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


# One cache for every browser session of a server: a session seen by anyone is instant for all.
SHARED_CACHE = LRUCache(max_bytes=800e6, max_items=64)
# The views' data and images made from those results: every page opens on the same view.
VIEW_CACHE = LRUCache(max_bytes=200e6, max_items=64)
