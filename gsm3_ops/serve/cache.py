"""A thread-safe least-recently-used cache bounded in bytes (decoded arrays, rendered tiles)."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np


def size_of(value: Any) -> int:
    """Bytes an entry holds: an array's buffer, a bytes object's length, else a rough size."""
    if isinstance(value, np.ndarray):
        return value.nbytes + 112
    if isinstance(value, bytes | bytearray):
        return len(value) + 33
    if isinstance(value, tuple):
        return sum(size_of(v) for v in value) + 56
    return sys.getsizeof(value)


class ByteLRU:
    """Least-recently-used mapping holding at most ``max_bytes`` (an entry larger than that
    is returned but not kept)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Hashable) -> Any | None:
        """The value under ``key`` (now the most recent), or None."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: Hashable, value: Any) -> Any:
        """Store ``value`` under ``key``, evicting the least recent entries; returns it."""
        size = size_of(value)
        if size > self.max_bytes:
            return value
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._data[key] = (value, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._data.popitem(last=False)
                self.nbytes -= dropped
        return value

    def get_or_load(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The cached value, else ``load()`` stored under ``key``."""
        value = self.get(key)
        if value is None:
            value = self.put(key, load())
        return value

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()
            self.nbytes = 0
