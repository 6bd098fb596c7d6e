"""A bounded, time-limited cache of store lookups, with one load in flight per key.

Services keep what they read on every request (applications, SDK tokens, endpoint keys)
here so that a hot path costs no database read. Absent results are cached too (for
``negative_ttl_s``) so a flood of unknown tokens cannot turn into a flood of reads. Loads
of the same key share one store read. Loop thread only.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["LookupCache", "MISS", "Miss"]

K = TypeVar("K")
V = TypeVar("V")


class Miss(enum.Enum):
    """Not in the cache (or expired): as opposed to a cached None, "known absent"."""

    MISS = 0


MISS = Miss.MISS


class LookupCache(Generic[K, V]):
    def __init__(
        self,
        load: Callable[[K], Awaitable[V | None]],
        *,
        ttl_s: float,
        negative_ttl_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V | None]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V | None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: K, value: V) -> None:
        self._store(key, value, self._clock() + self._ttl_s)

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def cached(self, key: K) -> V | Miss | None:
        """The fresh cached value without awaiting (None: known absent), or MISS."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self._clock():
            self._entries.move_to_end(key)
            return entry[1]
        return MISS

    async def get(self, key: K) -> V | None:
        value = self.cached(key)
        if value is not MISS:
            return value
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await self._load(key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # consumed: waiters re-raise it, nobody else must
            raise
        finally:
            del self._loading[key]
        self.remember(key, value)
        future.set_result(value)
        return value

    def remember(self, key: K, value: V | None) -> None:
        """Cache what a load found (None: known absent, for ``negative_ttl_s``)."""
        ttl = self._ttl_s if value is not None else self._negative_ttl_s
        self._store(key, value, self._clock() + ttl)

    def _store(self, key: K, value: V | None, expires: float) -> None:
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
