"""The in-memory cache that every browser session of a server shares: least recently used, bounded in bytes."""
from __future__ import annotations

import threading
from typing import Callable, Hashable, TypeVar

import cachetools

T = TypeVar("T")


def nbytes(value: object) -> int:
    """The bytes an entry counts: numpy arrays and objects with an `nbytes` their own, tuples the
    sum of their items', others 0."""
    if isinstance(value, tuple):
        return sum(map(nbytes, value))
    return int(getattr(value, "nbytes", 0))


class _Entries(cachetools.LRUCache):
    """cachetools' LRU cache bounded in bytes, and in entries too: recordings, fits and plots
    count 0 bytes and would otherwise pile up."""

    def __init__(self, max_bytes: float, max_items: int):
        super().__init__(maxsize=max_bytes, getsizeof=nbytes)
        self.max_items = max_items

    def __setitem__(self, key: Hashable, value: object) -> None:
        super().__setitem__(key, value)
        while len(self) > self.max_items:
            self.popitem()


class LRUCache:
    """A least-recently-used cache bounded in bytes and entries, shared by the sessions' worker
    threads. A value larger than the bound is returned but not kept.

    `misses` counts the values that had to be computed. Two threads missing the same key both
    compute it (the values are equal; the first stored is kept); the lock only guards the
    bookkeeping.
    """

    def __init__(self, max_bytes: float = 300e6, max_items: int = 16):
        self._entries = _Entries(max_bytes, max_items)
        self._lock = threading.Lock()
        self._get = cachetools.cached(self._entries, key=lambda key, compute: key, lock=self._lock,
                                      info=True)(lambda key, compute: compute())

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value kept under `key`, else `compute()` (outside the lock), kept."""
        return self._get(key, compute)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._entries

    @property
    def hits(self) -> int:
        return self._get.cache_info().hits

    @property
    def misses(self) -> int:
        return self._get.cache_info().misses

    @property
    def nbytes(self) -> int:
        return int(self._entries.currsize)

    def __len__(self) -> int:
        return len(self._entries)


# One cache for every browser session of a server: a session seen by anyone is instant for all.
SHARED_CACHE = LRUCache(max_bytes=800e6, max_items=64)
# The views' data and images made from those results: every page opens on the same view.
VIEW_CACHE = LRUCache(max_bytes=200e6, max_items=64)
