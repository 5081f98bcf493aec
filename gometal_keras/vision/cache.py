"""`ImageCache`: decoded images kept in memory, least recently used out first.

Go-Metal's `CacheManager`: a bounded map from image path to its decoded pixels, with hit
and miss counts. One cache may serve several loaders (train and validation, Go-Metal's
`CreateSharedDataLoaders`): entries are keyed by path and decode settings, so loaders of
different image sizes never read each other's pixels. Thread-safe, for parallel workers.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Hashable

import numpy as np


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """What a cache holds and how often it answered.

    Attributes:
        size: Images held now.
        max_size: Most images it holds.
        hits: Look-ups answered from memory.
        misses: Look-ups that had to decode.
        nbytes: Bytes of pixels held.
    """

    size: int
    max_size: int
    hits: int
    misses: int
    nbytes: int

    @property
    def hit_rate(self) -> float:
        """Hits per look-up, in [0, 1] (0 before any look-up)."""
        looked = self.hits + self.misses
        return self.hits / looked if looked else 0.0

    def __str__(self) -> str:
        return (
            f"Cache: {self.size}/{self.max_size} items, Hits: {self.hits}, "
            f"Misses: {self.misses}, Hit Rate: {100 * self.hit_rate:.1f}%"
        )


class ImageCache:
    """A bounded, thread-safe least-recently-used cache of decoded images.

    Args:
        max_size: Most images kept (Go-Metal's `MaxCacheSize`); 0 keeps none.

    Example:
        >>> cache = ImageCache(max_size=1)
        >>> cache.get("a") is None
        True
        >>> cache.put("a", np.zeros(3, np.float32)); cache.put("b", np.ones(3, np.float32))
        >>> cache.get("a") is None, float(cache.get("b").sum())
        (True, 3.0)
        >>> print(cache.stats())
        Cache: 1/1 items, Hits: 1, Misses: 2, Hit Rate: 33.3%
    """

    def __init__(self, max_size: int = 1000):
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
            raise ValueError(f"max_size is {max_size!r}; expected an int of at least 0.")
        self.max_size = max_size
        self._items: collections.OrderedDict[Hashable, np.ndarray] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._hits = self._misses = self._nbytes = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        """The cached image for `key` (now the most recently used), or None (a miss)."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self._misses += 1
                return None
            self._items.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: Hashable, image: np.ndarray) -> None:
        """Keep `image` (read-only from now on), dropping the least recently used if full."""
        if self.max_size == 0:
            return
        image.setflags(write=False)
        with self._lock:
            old = self._items.pop(key, None)
            self._nbytes -= 0 if old is None else old.nbytes
            self._items[key] = image
            self._nbytes += image.nbytes
            while len(self._items) > self.max_size:
                _, dropped = self._items.popitem(last=False)
                self._nbytes -= dropped.nbytes

    def clear(self) -> None:
        """Drop every image (the counts stay; `reset_stats` clears them)."""
        with self._lock:
            self._items.clear()
            self._nbytes = 0

    def reset_stats(self) -> None:
        """Set the hit and miss counts back to zero."""
        with self._lock:
            self._hits = self._misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> CacheStats:
        """The counts now, as a `CacheStats`."""
        with self._lock:
            return CacheStats(
                len(self._items), self.max_size, self._hits, self._misses, self._nbytes
            )
