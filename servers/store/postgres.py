"""The PostgreSQL backend of the registry store (asyncpg), for more than one machine.

Same interface and rules as the SQLite backend (``base.py``); what differs is how:

* **Durable acknowledgement.** Every connection runs with ``synchronous_commit = on``: a
  COMMIT returns after the WAL is flushed on the primary (and on synchronous standbys, if
  the cluster has any). A write is awaited until its COMMIT returned, never before.
* **Atomic checks without a global lock.** ``register_endpoint`` locks the endpoint's row
  (``SELECT ... FOR UPDATE``) before it reads the stored status, application and last
  request timestamp, and writes in the same transaction. A first registration has no row
  to lock: its INSERT is ``ON CONFLICT DO NOTHING``, and an endpoint another node inserted
  meanwhile is re-read, locked, and judged again (so two copies of one request on two
  nodes give one NEW and one REPLAYED). Revocation updates the same row, so it waits for,
  or is seen by, the registration transaction.
* **Group commit, one statement per step.** Registrations queue on the event loop; one
  writer task gathers them for ``group_commit_ms`` (or ``max_batch`` of them; while a
  commit is in flight the next batch fills), then runs the whole batch in one transaction
  on its own connection: one SELECT ... FOR UPDATE of every endpoint in the batch, one
  INSERT of the new ones and one UPDATE of the changed ones (``unnest`` of arrays, rows in
  endpoint-id order so two nodes' batches cannot deadlock), then one COMMIT for all.
  Outcomes are decided in Python in arrival order, exactly as one-by-one transactions
  would. (``_group_commit.py`` is the SQLite writer: a thread running blocking sqlite3
  jobs; asyncpg is a coroutine API on the loop, so the same idea is written here as a
  task, and shares its ``WriterStats``.)
* **Node changes are pushed.** A node that joins, leaves, moves or comes back from a
  lapsed lease commits a ``pg_notify('kaa_nodes', node_id)``; ``subscribe_nodes`` keeps a
  LISTEN connection and calls back, so a Bootstrap re-reads the node table at once
  instead of at its next poll.
* **Schema migrations** (``migrations_postgres.py``) are applied at open under a
  session-level advisory lock, each step in its own transaction: two processes starting at
  once apply each step once.

Connection trouble (server down, restarting, out of connections) raises StoreBusy, which
the services answer with OVERLOADED and a retry hint; other database errors raise
StoreError.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg

from kaa_wire import RegistrationStatus
from servers import logs
from servers.store import _rows
from servers.store._decision import ACCEPTED, StoredEndpoint, decide, stored_after
from servers.store._group_commit import WriterStats
from servers.store._migrations import pending
from servers.store.base import (
    AlreadyExists,
    Application,
    ApplicationChanges,
    AuditEntry,
    Endpoint,
    EndpointStatus,
    EndpointWrite,
    Node,
    NotFound,
    RegistryStore,
    SdkToken,
    StoreBusy,
    StoreError,
    WriteOutcome,
)
from servers.store.limits import DEFAULT_LIMITS, StoreLimits
from servers.store.migrations_postgres import ADVISORY_LOCK_KEY, MIGRATIONS

__all__ = ["PostgresStore", "NODES_CHANNEL", "redact_dsn", "migrate"]

T = TypeVar("T")

#: The LISTEN/NOTIFY channel of node joins, leaves and changes (payload: the node id).
NODES_CHANNEL = "kaa_nodes"

_log = logging.getLogger("servers.store")

#: Settings of every connection: durable commits; a name in pg_stat_activity.
_SERVER_SETTINGS = {"synchronous_commit": "on", "application_name": "kaa-wire"}

#: Errors that mean "the database is not reachable now", not "this request is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.OperatorInterventionError,  # shutting down, starting up, cancelled
    asyncpg.TransactionRollbackError,  # deadlock or serialization failure: retry later
    OSError,
    TimeoutError,
)

#: Attempts of one batch that failed on a deadlock or serialization error (safe to redo:
#: nothing of it committed).
_BATCH_ATTEMPTS = 3


_LOCK_ENDPOINTS = (
    "SELECT endpoint_id, status, application, profile_hash, last_request_ms FROM endpoints "
    "WHERE endpoint_id = ANY($1::bytea[]) ORDER BY endpoint_id FOR UPDATE"
)
_INSERT_ENDPOINTS = """
INSERT INTO endpoints (endpoint_id, public_key, sdk_token_hash, application, profile,
    profile_hash, first_seen_ms, last_seen_ms, status, registration_status, last_request_ms)
SELECT u.e, u.k, u.t, u.a, u.p, u.ph, u.fs, u.ls, 'active', u.rs, u.lr
FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::text[], $5::bytea[], $6::bytea[],
            $7::bigint[], $8::bigint[], $9::text[], $10::bigint[])
     AS u(e, k, t, a, p, ph, fs, ls, rs, lr)
ORDER BY u.e
ON CONFLICT (endpoint_id) DO NOTHING
RETURNING endpoint_id
"""
_UPDATE_ENDPOINTS = """
UPDATE endpoints AS e
SET sdk_token_hash = u.t,
    profile = COALESCE(u.p, e.profile),
    profile_hash = COALESCE(u.ph, e.profile_hash),
    last_seen_ms = u.ls,
    last_request_ms = u.lr,
    registration_status = u.rs
FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bigint[], $6::bigint[],
            $7::text[]) AS u(e, t, p, ph, ls, lr, rs)
WHERE e.endpoint_id = u.e
"""


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for logs and messages."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _store_error(exc: Exception, conn: asyncpg.Connection | None) -> StoreError:
    """StoreBusy when the database is unreachable or the connection broke (retry later),
    StoreError for anything else."""
    if isinstance(exc, _UNAVAILABLE) or (conn is not None and conn.is_closed()):
        return StoreBusy(f"database unavailable: {exc}")
    return StoreError(f"database error: {exc!r}")


def _set_event(event: asyncio.Event, *_: object) -> None:
    event.set()


async def _insert_audit(conn: asyncpg.Connection, entry: AuditEntry) -> None:
    await conn.execute(
        "INSERT INTO audit_log (at_ms, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
        entry.at_ms,
        entry.actor,
        entry.action,
        entry.subject,
        entry.detail,
    )


# -- schema -------------------------------------------------------------------------------


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the missing migration steps; returns the versions this call applied.

    Holds a session-level advisory lock for the whole run: a second process waits here,
    then finds the steps applied. Raises StoreError for a schema newer than this code.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS kaa_schema_migrations ("
            "version integer PRIMARY KEY, name text NOT NULL, "
            "applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await conn.fetch("SELECT version FROM kaa_schema_migrations")
        done = []
        for step in pending(MIGRATIONS, {r["version"] for r in rows}):
            async with conn.transaction():
                await conn.execute(step.sql)
                await conn.execute(
                    "INSERT INTO kaa_schema_migrations (version, name) VALUES ($1, $2)",
                    step.version,
                    step.name,
                )
            done.append(step.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_KEY)


# -- registrations: decided in Python, written set-wise ------------------------------------


@dataclasses.dataclass(slots=True)
class _Row:
    """The final values one batch writes for one endpoint (an INSERT or an UPDATE)."""

    insert: bool
    endpoint_id: bytes
    public_key: bytes
    sdk_token_hash: bytes
    application: str
    #: None in an UPDATE: the stored profile stays.
    profile: bytes | None
    profile_hash: bytes | None
    first_seen_ms: int
    last_seen_ms: int
    registration_status: str
    last_request_ms: int


def _decide(
    writes: Sequence[EndpointWrite], stored: dict[bytes, StoredEndpoint]
) -> tuple[list[WriteOutcome], dict[bytes, _Row]]:
    """Outcomes of ``writes`` in order, as one transaction each would give, and the rows to
    write. ``stored`` (the locked rows) is updated as the writes are applied."""
    outcomes: list[WriteOutcome] = []
    rows: dict[bytes, _Row] = {}
    for w in writes:
        outcome = decide(stored.get(w.endpoint_id), w)
        outcomes.append(outcome)
        if outcome not in ACCEPTED:
            continue
        stored[w.endpoint_id] = stored_after(w)
        row = rows.get(w.endpoint_id)
        if row is None:
            row = rows[w.endpoint_id] = _Row(
                outcome is WriteOutcome.NEW, w.endpoint_id, w.public_key, w.sdk_token_hash,
                w.application, None, None, w.now_ms, w.now_ms, outcome.value, w.request_ms,
            )  # fmt: skip
        row.sdk_token_hash = w.sdk_token_hash
        row.last_seen_ms = w.now_ms
        row.last_request_ms = w.request_ms
        row.registration_status = RegistrationStatus[outcome.value].name
        if row.insert or outcome is WriteOutcome.PROFILE_UPDATED:
            row.profile, row.profile_hash = w.profile, w.profile_hash
    return outcomes, rows


def _stored(records: Sequence[asyncpg.Record]) -> dict[bytes, StoredEndpoint]:
    return {
        bytes(r["endpoint_id"]): StoredEndpoint(
            r["status"], r["application"], bytes(r["profile_hash"]), r["last_request_ms"]
        )
        for r in records
    }


async def _register_batch(
    conn: asyncpg.Connection, writes: Sequence[EndpointWrite]
) -> list[WriteOutcome]:
    """One transaction for the whole batch (see the module docstring)."""
    async with conn.transaction():
        ids = sorted({w.endpoint_id for w in writes})
        stored = _stored(await conn.fetch(_LOCK_ENDPOINTS, ids))
        outcomes, rows = _decide(writes, stored)
        inserts = [rows[i] for i in sorted(rows) if rows[i].insert]
        if inserts:
            inserted = await conn.fetch(
                _INSERT_ENDPOINTS,
                [r.endpoint_id for r in inserts],
                [r.public_key for r in inserts],
                [r.sdk_token_hash for r in inserts],
                [r.application for r in inserts],
                [r.profile for r in inserts],
                [r.profile_hash for r in inserts],
                [r.first_seen_ms for r in inserts],
                [r.last_seen_ms for r in inserts],
                [r.registration_status for r in inserts],
                [r.last_request_ms for r in inserts],
            )
            lost = {r.endpoint_id for r in inserts} - {bytes(r[0]) for r in inserted}
            if lost:
                # Another transaction inserted these endpoints and committed after our
                # SELECT: lock the rows it made and judge our writes of them again.
                again = [k for k, w in enumerate(writes) if w.endpoint_id in lost]
                fresh = _stored(await conn.fetch(_LOCK_ENDPOINTS, sorted(lost)))
                redone, rerows = _decide([writes[k] for k in again], fresh)
                if any(row.insert for row in rerows.values()):  # never acknowledge unwritten
                    raise StoreError("an endpoint row vanished during its registration")
                for k, outcome in zip(again, redone, strict=True):
                    outcomes[k] = outcome
                for endpoint_id in lost:
                    del rows[endpoint_id]
                rows.update(rerows)
        updates = [rows[i] for i in sorted(rows) if not rows[i].insert]
        if updates:
            await conn.execute(
                _UPDATE_ENDPOINTS,
                [r.endpoint_id for r in updates],
                [r.sdk_token_hash for r in updates],
                [r.profile for r in updates],
                [r.profile_hash for r in updates],
                [r.last_seen_ms for r in updates],
                [r.last_request_ms for r in updates],
                [r.registration_status for r in updates],
            )
    return outcomes


# -- the store -----------------------------------------------------------------------------


class PostgresStore(RegistryStore):
    """:class:`RegistryStore` on a PostgreSQL database (see the module docstring).

    ``dsn`` is a libpq-style URL (``postgresql://user@host:5432/kaa``; several hosts with
    ``target_session_attrs=read-write`` follow a failover). The password may come from the
    URL, ``PGPASSWORD`` or ``~/.pgpass``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        limits: StoreLimits = DEFAULT_LIMITS,
        pool_size: int = 4,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.dsn = dsn
        self._max_pending_writes = limits.max_pending_writes
        self._window_s = limits.window_s
        self._max_batch = limits.max_batch
        self._pool_size = pool_size
        self._max_pending_reads = limits.max_pending_reads
        self._connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._writer_conn: asyncpg.Connection | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._queue: collections.deque[tuple[EndpointWrite, asyncio.Future[WriteOutcome]]] = (
            collections.deque()
        )
        self._work = asyncio.Event()
        self._full = asyncio.Event()
        self._closing = False
        self._stats = WriterStats()
        self._pending_reads = 0
        self._node_callbacks: list[Callable[[], None]] = []
        self._listener_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"

    @property
    def location(self) -> str:
        return redact_dsn(self.dsn)

    # -- lifecycle ----------------------------------------------------------------------

    async def _connect(self) -> asyncpg.Connection:
        conn: asyncpg.Connection = await asyncpg.connect(
            self.dsn, timeout=self._connect_timeout_s, server_settings=_SERVER_SETTINGS
        )
        return conn

    async def open(self) -> None:
        where = redact_dsn(self.dsn)
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._connect_timeout_s,
                server_settings=_SERVER_SETTINGS,
            )
            async with self._pool.acquire() as conn:
                await migrate(conn)
                if await conn.fetchval("SHOW fsync") != "on":
                    logs.event(
                        _log, logging.WARNING, "fsync is off: acknowledged writes are not durable",
                        store=where,
                    )  # fmt: skip
            self._writer_conn = await self._connect()
        except StoreError:
            await self._abort_open()
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, *_UNAVAILABLE) as exc:
            await self._abort_open()
            raise StoreError(f"cannot open the database {where}: {exc}") from None
        self._writer_task = asyncio.get_running_loop().create_task(self._write_forever())

    async def _abort_open(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    async def close(self) -> None:
        self._closing = True
        self._work.set()
        self._full.set()
        if self._writer_task is not None:
            await self._writer_task
            self._writer_task = None
        if self._listener_task is not None:
            self._listener_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener_task
            self._listener_task = None
        if self._writer_conn is not None:
            with contextlib.suppress(Exception):
                await self._writer_conn.close(timeout=5)
            self._writer_conn = None
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 10)
            except (TimeoutError, asyncpg.InterfaceError):
                self._pool.terminate()
            self._pool = None

    def writer_stats(self) -> WriterStats:
        return dataclasses.replace(self._stats)

    def stats(self) -> dict[str, float]:
        return {**self.writer_stats().counters(), "pending_reads": self._pending_reads}

    # -- plumbing -----------------------------------------------------------------------

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``work`` on a pooled connection; connection trouble becomes StoreBusy."""
        if self._pool is None:
            raise StoreError("the store is not open")
        try:
            async with self._pool.acquire(timeout=self._connect_timeout_s) as conn:
                try:
                    return await work(conn)
                except StoreError:
                    raise
                except Exception as exc:
                    raise _store_error(exc, conn) from None
        except StoreError:
            raise
        except Exception as exc:  # acquiring: connecting, or the pool is closing
            raise _store_error(exc, None) from None

    async def _read(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pending_reads >= self._max_pending_reads:
            raise StoreBusy(f"{self._pending_reads} reads pending")
        self._pending_reads += 1
        try:
            return await self._run(work)
        finally:
            self._pending_reads -= 1

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """A control write: its own transaction, committed at once (no gathering)."""

        async def run(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await work(conn)

        return await self._run(run)

    # -- the group-commit writer ----------------------------------------------------------

    def _submit(self, write: EndpointWrite) -> asyncio.Future[WriteOutcome]:
        if self._closing:
            raise StoreError("the store is closed")
        if self._stats.pending >= self._max_pending_writes:
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

    async def _commit(
        self, batch: list[tuple[EndpointWrite, asyncio.Future[WriteOutcome]]]
    ) -> list[WriteOutcome]:
        writes = [w for w, _ in batch]
        started = time.perf_counter()
        for attempt in range(1, _BATCH_ATTEMPTS + 1):
            try:
                if self._writer_conn is None or self._writer_conn.is_closed():
                    self._writer_conn = await self._connect()
                outcomes = await _register_batch(self._writer_conn, writes)
            except asyncpg.TransactionRollbackError as exc:
                if attempt < _BATCH_ATTEMPTS:
                    continue  # a deadlock or serialization failure: nothing committed
                raise self._failed(StoreBusy(str(exc))) from None
            except Exception as exc:
                # The connection may be in any state now: start the next batch on a new one.
                # The outcome of a COMMIT cut off by a lost connection is unknown: report a
                # failure (never a false acknowledgement); the endpoint retries.
                error = _store_error(exc, self._writer_conn)
                self._drop_writer_conn()
                raise self._failed(error) from None
            self._stats.batches += 1
            self._stats.jobs += len(batch)
            self._stats.commit_seconds += time.perf_counter() - started
            self._stats.max_batch_seen = max(self._stats.max_batch_seen, len(batch))
            return outcomes
        raise AssertionError("unreachable")

    def _failed(self, error: StoreError) -> StoreError:
        self._stats.failed_commits += 1
        logs.event(_log, logging.WARNING, "group commit failed", error=str(error))
        return error

    def _drop_writer_conn(self) -> None:
        if self._writer_conn is not None:
            self._writer_conn.terminate()
            self._writer_conn = None

    # -- node change notifications --------------------------------------------------------

    def subscribe_nodes(self, callback: Callable[[], None]) -> bool:
        self._node_callbacks.append(callback)
        if self._listener_task is None:
            self._listener_task = asyncio.get_running_loop().create_task(self._listen_forever())
        return True

    def _nodes_changed(self, *_: object) -> None:
        for callback in self._node_callbacks:
            try:
                callback()
            except Exception:  # one subscriber's bug must not silence the others
                _log.exception("node change callback failed")

    async def _listen_forever(self) -> None:
        """Hold a LISTEN connection; reconnect when it drops (and call back then: changes
        may have been missed meanwhile)."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                await conn.add_listener(NODES_CHANNEL, self._nodes_changed)
                self._nodes_changed()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 10.0)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=10.0)  # is it still there?
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logs.event(_log, logging.WARNING, "node listener lost", error=str(exc))
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(1.0)

    # -- applications -------------------------------------------------------------------

    async def create_application(self, app: Application, audit: AuditEntry) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            try:
                await conn.execute(
                    f"INSERT INTO applications ({_rows.APP_COLUMNS}) "
                    "VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)",
                    app.token,
                    app.name,
                    app.config,
                    app.config_version,
                    _rows.topics_json(app.topics),
                    str(app.balancing),
                    app.cached_signature,
                    app.created_ms,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists("an application with this token exists") from None
            await _insert_audit(conn, audit)

        await self._transaction(work)

    async def update_application(
        self, token: str, changes: ApplicationChanges, audit: AuditEntry
    ) -> Application:
        async def work(conn: asyncpg.Connection) -> Application:
            row = await conn.fetchrow(
                f"SELECT {_rows.APP_COLUMNS} FROM applications WHERE token = $1 FOR UPDATE", token
            )
            if row is None:
                raise NotFound("no such application")
            updated = changes.applied_to(_rows.application(row))
            await conn.execute(
                "UPDATE applications SET name = $1, config = $2, config_version = $3, "
                "topics = $4::jsonb, balancing = $5, cached_signature = $6 WHERE token = $7",
                updated.name,
                updated.config,
                updated.config_version,
                _rows.topics_json(updated.topics),
                str(updated.balancing),
                updated.cached_signature,
                token,
            )
            await _insert_audit(conn, audit)
            return updated

        return await self._transaction(work)

    async def get_application(self, token: str) -> Application | None:
        async def work(conn: asyncpg.Connection) -> Application | None:
            row = await conn.fetchrow(
                f"SELECT {_rows.APP_COLUMNS} FROM applications WHERE token = $1", token
            )
            return None if row is None else _rows.application(row)

        return await self._read(work)

    async def list_applications(self) -> list[Application]:
        async def work(conn: asyncpg.Connection) -> list[Application]:
            rows = await conn.fetch(f"SELECT {_rows.APP_COLUMNS} FROM applications ORDER BY seq")
            return [_rows.application(r) for r in rows]

        return await self._read(work)

    # -- SDK tokens ---------------------------------------------------------------------

    async def add_sdk_token(self, token: SdkToken, audit: AuditEntry) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            # FOR SHARE: the application cannot go away before this transaction commits.
            found = await conn.fetchval(
                "SELECT 1 FROM applications WHERE token = $1 FOR SHARE", token.application
            )
            if found is None:
                raise NotFound("no such application")
            try:
                await conn.execute(
                    f"INSERT INTO sdk_tokens ({_rows.SDK_TOKEN_COLUMNS}) VALUES ($1, $2, $3)",
                    token.token_hash,
                    token.application,
                    token.created_ms,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists("this SDK token exists") from None
            await _insert_audit(conn, audit)

        await self._transaction(work)

    async def find_sdk_token(self, token_hash: bytes) -> SdkToken | None:
        async def work(conn: asyncpg.Connection) -> SdkToken | None:
            row = await conn.fetchrow(
                f"SELECT {_rows.SDK_TOKEN_COLUMNS} FROM sdk_tokens WHERE token_hash = $1",
                token_hash,
            )
            return None if row is None else _rows.sdk_token(row)

        return await self._read(work)

    async def list_sdk_tokens(self, application: str) -> list[SdkToken]:
        async def work(conn: asyncpg.Connection) -> list[SdkToken]:
            rows = await conn.fetch(
                f"SELECT {_rows.SDK_TOKEN_COLUMNS} FROM sdk_tokens "
                "WHERE application = $1 ORDER BY seq",
                application,
            )
            return [_rows.sdk_token(r) for r in rows]

        return await self._read(work)

    # -- endpoints ----------------------------------------------------------------------

    def register_endpoint(self, write: EndpointWrite) -> asyncio.Future[WriteOutcome]:
        _rows.check_write(write)
        return self._submit(write)

    async def get_endpoint(self, endpoint_id: bytes) -> Endpoint | None:
        async def work(conn: asyncpg.Connection) -> Endpoint | None:
            row = await conn.fetchrow(
                f"SELECT {_rows.ENDPOINT_COLUMNS} FROM endpoints WHERE endpoint_id = $1",
                endpoint_id,
            )
            return None if row is None else _rows.endpoint(row)

        return await self._read(work)

    async def list_endpoints(
        self, application: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Endpoint]:
        async def work(conn: asyncpg.Connection) -> list[Endpoint]:
            if application is None:
                rows = await conn.fetch(
                    f"SELECT {_rows.ENDPOINT_COLUMNS} FROM endpoints "
                    "ORDER BY seq LIMIT $1 OFFSET $2",
                    limit,
                    offset,
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {_rows.ENDPOINT_COLUMNS} FROM endpoints WHERE application = $1 "
                    "ORDER BY seq LIMIT $2 OFFSET $3",
                    application,
                    limit,
                    offset,
                )
            return [_rows.endpoint(r) for r in rows]

        return await self._read(work)

    async def revoke_endpoint(self, endpoint_id: bytes, audit: AuditEntry) -> Endpoint:
        async def work(conn: asyncpg.Connection) -> Endpoint:
            # The row lock orders this against any registration transaction of the endpoint.
            row = await conn.fetchrow(
                "UPDATE endpoints SET status = $1, revoked_ms = COALESCE(revoked_ms, $2) "
                f"WHERE endpoint_id = $3 RETURNING {_rows.ENDPOINT_COLUMNS}",
                EndpointStatus.REVOKED.value,
                audit.at_ms,
                endpoint_id,
            )
            if row is None:
                raise NotFound("no such endpoint")
            await _insert_audit(conn, audit)
            return _rows.endpoint(row)

        return await self._transaction(work)

    # -- Operations nodes ---------------------------------------------------------------

    async def put_node(self, node: Node) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            old = await conn.fetchrow(
                "SELECT host, port, kex_public_key, priority, weight, lease_expires_ms "
                "FROM nodes WHERE node_id = $1 FOR UPDATE",
                node.node_id,
            )
            await conn.execute(
                f"INSERT INTO nodes ({_rows.NODE_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
                "ON CONFLICT (node_id) DO UPDATE SET host = excluded.host, "
                "port = excluded.port, kex_public_key = excluded.kex_public_key, "
                "priority = excluded.priority, weight = excluded.weight, load = excluded.load, "
                "lease_expires_ms = excluded.lease_expires_ms, renewed_ms = excluded.renewed_ms",
                *_rows.node_values(node),
            )
            # A renewal of a live, unchanged lease is no news; anything else is.
            if (
                old is None
                or old["lease_expires_ms"] <= node.renewed_ms
                or (old["host"], old["port"], bytes(old["kex_public_key"]))
                != (node.host, node.port, node.kex_public_key)
                or (old["priority"], old["weight"]) != (node.priority, node.weight)
            ):
                await conn.execute("SELECT pg_notify($1, $2)", NODES_CHANNEL, node.node_id)

        await self._transaction(work)

    async def remove_node(self, node_id: str) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            gone = await conn.fetchval(
                "DELETE FROM nodes WHERE node_id = $1 RETURNING node_id", node_id
            )
            if gone is not None:
                await conn.execute("SELECT pg_notify($1, $2)", NODES_CHANNEL, node_id)

        await self._transaction(work)

    async def live_nodes(self, now_ms: int) -> list[Node]:
        async def work(conn: asyncpg.Connection) -> list[Node]:
            rows = await conn.fetch(
                f"SELECT {_rows.NODE_COLUMNS} FROM nodes WHERE lease_expires_ms > $1 "
                'ORDER BY node_id COLLATE "C"',
                now_ms,
            )
            return [_rows.node(r) for r in rows]

        return await self._read(work)

    async def list_nodes(self) -> list[Node]:
        async def work(conn: asyncpg.Connection) -> list[Node]:
            rows = await conn.fetch(
                f'SELECT {_rows.NODE_COLUMNS} FROM nodes ORDER BY node_id COLLATE "C"'
            )
            return [_rows.node(r) for r in rows]

        return await self._read(work)

    # -- audit log ----------------------------------------------------------------------

    async def add_audit(self, entry: AuditEntry) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            await _insert_audit(conn, entry)

        await self._run(work)

    async def list_audit(self, limit: int = 100) -> list[AuditEntry]:
        async def work(conn: asyncpg.Connection) -> list[AuditEntry]:
            rows = await conn.fetch(
                "SELECT at_ms, actor, action, subject, detail, seq FROM audit_log "
                "ORDER BY seq DESC LIMIT $1",
                limit,
            )
            return [AuditEntry(*r) for r in rows]

        return await self._read(work)
