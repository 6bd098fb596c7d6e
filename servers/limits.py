"""Bounded work: a counter that refuses beyond its limit, and a thread pool built on it.

Nothing in the servers queues without a bound: when a gate is full, the request is
answered at once with Overloaded and a retry-after hint.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kaa_wire import Overloaded

__all__ = ["Gate", "WorkerPool", "auto_threads", "ensure_fd_limit", "FD_RESERVE"]

T = TypeVar("T")


class Gate:
    """Counts work in progress; ``try_enter`` is False at the limit. Loop thread only."""

    __slots__ = ("active", "limit", "name")

    def __init__(self, name: str, limit: int) -> None:
        if limit < 1:
            raise ValueError("a gate needs a limit >= 1")
        self.name = name
        self.limit = limit
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


class WorkerPool:
    """A thread pool whose queue is bounded by a gate: Overloaded when full.

    Use it for work that releases the GIL (RSA signing and verifying in libcrypto), where
    threads add real parallelism. With ``threads=0`` the work runs inline on the calling
    thread: on a single core, hand-offs to a thread and back would only add CPU time.
    """

    def __init__(self, name: str, threads: int, max_pending: int, retry_after_ms: int) -> None:
        self.gate = Gate(name, max_pending)
        self._executor = (
            ThreadPoolExecutor(threads, thread_name_prefix=f"kaa-{name}") if threads else None
        )
        self._retry_after_ms = retry_after_ms

    def start(self, fn: Callable[..., T], *args: object) -> T | asyncio.Future[T]:
        """``fn(*args)`` itself when inline, else an asyncio future of it, from the pool."""
        if self._executor is None:
            return fn(*args)
        if not self.gate.try_enter():
            raise Overloaded(f"{self.gate.name} queue is full", retry_after_ms=self._retry_after_ms)
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        future.add_done_callback(self._left)
        return future

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        started = self.start(fn, *args)
        return await started if isinstance(started, asyncio.Future) else started

    def _left(self, _: asyncio.Future[Any]) -> None:
        self.gate.leave()

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def auto_threads() -> int:
    """Pool threads for GIL-free work: one per core this process may run on, none on one.

    On one core a thread adds no parallelism, only hand-offs (measured in
    docs/operations.md); the work then runs on the event loop.
    """
    cores = len(os.sched_getaffinity(0))
    return cores if cores > 1 else 0


#: File descriptors a process needs besides its connections (the services' and the admin
#: port's, each bounded by its own limit): listeners, the store's files (database, WAL and
#: shared memory per connection), refused connections in their last moment, the standard
#: streams.
FD_RESERVE = 256


def ensure_fd_limit(connections: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE so ``connections`` sockets fit, up to the hard limit.

    ``connections``: every connection the process may hold at once, the services'
    ``max_connections`` each (or, in the admin process, ``admin_max_connections``). Returns
    ``(soft limit now, descriptors wanted)``; the caller warns when the first is smaller. A
    common default soft limit is 1024: with that, 1024 idle connections to one service would
    exhaust the process's descriptors, and every other service of the process (and the
    admin port) could accept nothing, long before ``max_connections``.
    """
    wanted = connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return (wanted if soft == resource.RLIM_INFINITY else soft), wanted
