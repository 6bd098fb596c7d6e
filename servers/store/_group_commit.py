"""Group commit: one writer thread runs many write jobs in one durable transaction.

Theory of operation. Callers on an event loop submit *jobs* (functions of a
``sqlite3.Connection``). The writer thread takes the first waiting job, keeps collecting
for ``group_commit_ms`` (or until ``max_batch`` jobs; not at all when the first job is a control
write, which is rare and wants no delay), then runs them all inside one
``BEGIN IMMEDIATE ... COMMIT``, each in its own SAVEPOINT so one failing job does not undo
the others (a job whose only change is made by its last statement, every statement before
it changing nothing, may skip it: SQLite applies a statement whole or not at all, and every
statement costs the writer a GIL round trip).
Only after COMMIT returns (with ``synchronous=FULL`` that is after the fsync) are the
callers' futures resolved, all at once, with one wake-up of their loop. Jobs
queued while a commit is in flight form the next batch, so under load many registrations
share one fsync.

The queue is bounded: ``submit`` raises StoreBusy at ``max_pending_writes`` jobs (queued
plus in flight; ``StoreLimits``) instead of growing. Control writes may pass
``bounded=False``: they are rare and must not be refused because endpoints are busy.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from servers.store.base import StoreBusy, StoreError
from servers.store.limits import StoreLimits

__all__ = ["COMMIT_BUCKETS", "GroupCommitWriter", "WriterStats"]

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
#: A queued job: (job, its future, whether it runs in a SAVEPOINT, whether it is bounded).
#: One tuple in one queue: taking a batch is one popleft per job.
_Queued = tuple[Job, "asyncio.Future[Any]", bool, bool]

_log = logging.getLogger("servers.store")


#: Upper bounds of the commit-duration histogram's buckets, in seconds (an fsync is
#: 0.1 to 10 ms on a disk that honours it; a PostgreSQL commit adds a round trip).
COMMIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclasses.dataclass(slots=True)
class WriterStats:
    """Totals since start; read under the writer's lock."""

    batches: int = 0
    jobs: int = 0
    refused: int = 0
    failed_commits: int = 0
    commit_seconds: float = 0.0
    max_batch_seen: int = 0
    pending: int = 0
    #: Commits per bucket of COMMIT_BUCKETS (not cumulative), the last one past them all.
    commit_buckets: list[int] = dataclasses.field(
        default_factory=lambda: [0] * (len(COMMIT_BUCKETS) + 1)
    )

    def committed(self, jobs: int, seconds: float) -> None:
        """Count one successful commit of ``jobs`` writes that took ``seconds``."""
        self.batches += 1
        self.jobs += jobs
        self.commit_seconds += seconds
        self.max_batch_seen = max(self.max_batch_seen, jobs)
        self.commit_buckets[bisect.bisect_left(COMMIT_BUCKETS, seconds)] += 1

    def copy(self) -> WriterStats:
        return dataclasses.replace(self, commit_buckets=list(self.commit_buckets))

    def counters(self) -> dict[str, float]:
        """The store counters of /metrics these totals give (``RegistryStore.stats``)."""
        return {
            "commits_total": self.batches,
            "committed_writes_total": self.jobs,
            "failed_commits_total": self.failed_commits,
            "refused_writes_total": self.refused,
            "commit_seconds_total": self.commit_seconds,
            "pending_writes": self.pending,
        }


class GroupCommitWriter:
    def __init__(self, connect: Callable[[], sqlite3.Connection], limits: StoreLimits) -> None:
        self._connect = connect
        self._max_pending = limits.max_pending_writes
        self._window_s = limits.window_s
        self._max_batch = limits.max_batch
        self._jobs: collections.deque[_Queued] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        #: True while the writer gathers a batch (waits out ``window_s``): submitters do not
        #: wake it then, unless the batch is full. Waking it per job cost a thread switch
        #: per registration on a busy core, for nothing.
        self._gathering = False
        self._stats = WriterStats()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kaa-store-writer", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise StoreError(f"cannot open the database: {self._start_error}")

    def stats(self) -> WriterStats:
        with self._cond:
            return self._stats.copy()

    def submit(
        self,
        job: Callable[[sqlite3.Connection], T],
        *,
        bounded: bool = True,
        savepoint: bool = True,
    ) -> Any:
        """Queue ``job``; returns an asyncio future of its result (awaitable).

        ``savepoint=False`` is for a job whose only change is made by its last statement
        (every statement before it changes nothing, as a read or an UPDATE that matches no
        row): if it fails, nothing of it remains, without a SAVEPOINT around it.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._closing:
                raise StoreError("the store is closed")
            if bounded and self._stats.pending >= self._max_pending:
                self._stats.refused += 1
                raise StoreBusy(f"{self._stats.pending} writes pending")
            self._stats.pending += 1
            self._jobs.append((job, future, savepoint, bounded))
            if not self._gathering or len(self._jobs) >= self._max_batch:
                self._cond.notify()
        return future

    def close(self) -> None:
        """Run what is queued, then stop the thread (blocking)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        try:
            while True:
                batch = self._next_batch()
                if not batch:
                    return
                results = self._commit(conn, batch)
                with self._cond:  # before delivering: a woken caller may submit at once
                    self._stats.pending -= len(batch)
                self._deliver(results)
        except BaseException as exc:  # a bug: fail everything queued rather than hang it
            _log.exception("store writer stopped")
            with self._cond:
                self._closing = True
                orphans = list(self._jobs)
                self._jobs.clear()
            error = StoreError(f"store writer stopped: {exc!r}")
            self._deliver([(future, None, error) for _, future, _, _ in orphans])
            raise
        finally:
            conn.close()

    def _next_batch(self) -> list[_Queued]:
        with self._cond:
            while not self._jobs and not self._closing:
                self._cond.wait()
            # Gather only behind a bounded (hot-path) write; a control write commits at once.
            if self._window_s and self._jobs and self._jobs[0][3] and not self._closing:
                deadline = time.monotonic() + self._window_s
                self._gathering = True
                try:
                    while len(self._jobs) < self._max_batch and not self._closing:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                finally:
                    self._gathering = False
            count = min(len(self._jobs), self._max_batch)
            return [self._jobs.popleft() for _ in range(count)]

    def _commit(
        self, conn: sqlite3.Connection, batch: list[_Queued]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        started = time.perf_counter()
        results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, future, savepoint, _ in batch:
                if savepoint:
                    conn.execute("SAVEPOINT job")
                try:
                    value = job(conn)
                except Exception as exc:
                    if savepoint:
                        conn.execute("ROLLBACK TO job")
                    # A database error (a read-only file, a full disk) is the store's, typed.
                    error = _store_error(exc) if isinstance(exc, sqlite3.Error) else exc
                    results.append((future, None, error))
                else:
                    results.append((future, value, None))
                if savepoint:
                    conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            _log.warning("group commit failed", extra={"fields": {"error": str(exc)}})
            with self._cond:
                self._stats.failed_commits += 1
            return [(future, None, _store_error(exc)) for _, future, _, _ in batch]
        elapsed = time.perf_counter() - started
        with self._cond:
            self._stats.committed(len(batch), elapsed)
        return results

    @staticmethod
    def _deliver(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for item in results:
            by_loop.setdefault(item[0].get_loop(), []).append(item)
        for loop, items in by_loop.items():
            # A closed loop raises RuntimeError: nobody waits for these results any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve_all, items)


def _store_error(exc: sqlite3.Error) -> StoreError:
    busy = "locked" in str(exc) or "busy" in str(exc)
    return StoreBusy(str(exc)) if busy else StoreError(str(exc))


def _resolve_all(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in items:
        if future.done():
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
