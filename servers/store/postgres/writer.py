"""The group-commit writer of PostgreSQL registrations: a task on the event loop commits
queued registrations in batches, one transaction each, on a connection of its own, and
resolves their futures only after that COMMIT returned (the package docstring says how).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from servers import logs
from servers.store._group_commit import WriterStats
from servers.store.base import EndpointWrite, StoreBusy, StoreError, WriteOutcome
from servers.store.limits import StoreLimits
from servers.store.postgres.batch import (
    INSERT_ENDPOINTS,
    LOCK_ENDPOINTS,
    UPDATE_ENDPOINTS,
    Batch,
    locked_rows,
)
from servers.store.postgres.connection import store_error

__all__ = ["BatchWriter", "register_batch"]

_log = logging.getLogger("servers.store")

#: Attempts of one batch that failed on a deadlock or serialization error (safe to redo:
#: nothing of it committed).
_BATCH_ATTEMPTS = 3

_Queued = tuple[EndpointWrite, "asyncio.Future[WriteOutcome]"]


async def register_batch(
    conn: asyncpg.Connection, writes: Sequence[EndpointWrite]
) -> list[WriteOutcome]:
    """One transaction for the whole batch; the outcomes, one per write, in order.

    A first registration has no row to lock: its INSERT is ``ON CONFLICT DO NOTHING``, and
    an endpoint another node inserted meanwhile is re-read, locked, and judged again (so
    two copies of one request on two nodes give one NEW and one REPLAYED).
    """
    async with conn.transaction():
        locked = await conn.fetch(LOCK_ENDPOINTS, Batch.endpoint_ids(writes))
        batch = Batch(writes, locked_rows(locked))
        if batch.inserts():
            inserted = await conn.fetch(INSERT_ENDPOINTS, *batch.insert_arrays())
            lost = batch.lost(bytes(r[0]) for r in inserted)
            if lost:
                again = await conn.fetch(LOCK_ENDPOINTS, sorted(lost))
                batch.judge_again(lost, locked_rows(again))
        if batch.updates():
            await conn.execute(UPDATE_ENDPOINTS, *batch.update_arrays())
    return batch.outcomes


class BatchWriter:
    """The writer task and its queue (see the module docstring)."""

    def __init__(
        self, connect: Callable[[], Awaitable[asyncpg.Connection]], limits: StoreLimits
    ) -> None:
        self._connect = connect
        self._max_pending = limits.max_pending_writes
        self._window_s = limits.window_s
        self._max_batch = limits.max_batch
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._queue: collections.deque[_Queued] = collections.deque()
        self._work = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._stats = WriterStats()

    async def start(self) -> None:
        """Connect, then start the task (connection errors are the caller's)."""
        self._conn = await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._write_forever())

    async def close(self) -> None:
        """Commit what is queued, then stop the task and close the connection."""
        self._closing = True
        self._work.set()
        self._full.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close(timeout=5)
            self._conn = None

    def stats(self) -> WriterStats:
        return self._stats.copy()

    def submit(self, write: EndpointWrite) -> asyncio.Future[WriteOutcome]:
        if self._closing:
            raise StoreError("the store is closed")
        if self._stats.pending >= self._max_pending:
            self._stats.refused += 1
            raise StoreBusy(f"{self._stats.pending} writes pending")
        future: asyncio.Future[WriteOutcome] = asyncio.get_running_loop().create_future()
        self._queue.append((write, future))
        self._stats.pending += 1
        self._work.set()
        if len(self._queue) >= self._max_batch:
            self._full.set()
        return future

    async def _write_forever(self) -> None:
        while True:
            await self._work.wait()
            if not self._queue:
                if self._closing:
                    return
                self._work.clear()
                continue
            if self._window_s and not self._closing and len(self._queue) < self._max_batch:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._window_s)
            count = min(len(self._queue), self._max_batch)
            batch = [self._queue.popleft() for _ in range(count)]
            if not self._queue:
                self._work.clear()
            try:
                outcomes = await self._commit(batch)
            except BaseException as exc:
                error = exc if isinstance(exc, StoreError) else StoreError(repr(exc))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                if not isinstance(exc, Exception):
                    raise
            else:
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
            finally:
                self._stats.pending -= len(batch)

    async def _commit(self, batch: list[_Queued]) -> list[WriteOutcome]:
        writes = [w for w, _ in batch]
        started = time.perf_counter()
        for attempt in range(1, _BATCH_ATTEMPTS + 1):
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await self._connect()
                outcomes = await register_batch(self._conn, writes)
            except asyncpg.TransactionRollbackError as exc:
                if attempt < _BATCH_ATTEMPTS:
                    continue  # a deadlock or serialization failure: nothing committed
                raise self._failed(StoreBusy(str(exc))) from None
            except Exception as exc:
                # The connection may be in any state now: start the next batch on a new one.
                # The outcome of a COMMIT cut off by a lost connection is unknown: report a
                # failure (never a false acknowledgement); the endpoint retries.
                error = store_error(exc, self._conn)
                self._drop_conn()
                raise self._failed(error) from None
            self._stats.committed(len(batch), time.perf_counter() - started)
            return outcomes
        raise AssertionError("unreachable")

    def _failed(self, error: StoreError) -> StoreError:
        self._stats.failed_commits += 1
        logs.event(_log, logging.WARNING, "group commit failed", error=str(error))
        return error

    def _drop_conn(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
