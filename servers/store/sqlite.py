"""The SQLite backend of the registry store.

One database file, shared by every service and the Control tool on one machine.

* **WAL** journal: readers never wait for the writer, and the writer appends.
* **synchronous=FULL**: in WAL mode that fsyncs the WAL at every COMMIT, so a committed
  row survives power loss. (NORMAL would only sync at checkpoints: a commit could be lost,
  and "acknowledged means durable" would be false.) Group commit pays that one fsync for a
  whole batch of registrations (see ``_group_commit.py``).
* Tables are rowid tables; the endpoint id has a UNIQUE index.
* All writes run on one dedicated thread; reads run on a small pool of reader threads,
  each with its own connection. Both queues are bounded (StoreBusy beyond).
* Several processes may write the same file: ``BEGIN IMMEDIATE`` takes the write lock for
  the whole transaction, and ``busy_timeout`` waits for the other process.
* The file and its -wal and -shm files are 0600 (:func:`make_private`): they hold
  profiles, public keys and token hashes.
* ``read_only=True`` (the Control tool's commands that only read) opens the file with
  SQLite's ``mode=ro``, creating, changing and migrating nothing, so that a read-only copy
  of a data directory can be read; where the database's directory cannot be written (a
  read-only copy or mount: no process can be writing there, and SQLite could not make its
  -shm file), with ``immutable=1`` as well.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import kaa_files
from kaa_wire import RegistrationStatus
from servers import logs
from servers.caching import MISS, Miss
from servers.store import _rows, console
from servers.store._decision import ACCEPTED, StoredEndpoint, decide
from servers.store._group_commit import COMMIT_BUCKETS, GroupCommitWriter, WriterStats
from servers.store._group_read import KeyReads, sqlite_keys
from servers.store._migrations import Migration, pending
from servers.store.base import (
    AlreadyExists,
    Application,
    ApplicationChanges,
    AuditEntry,
    Endpoint,
    EndpointKey,
    EndpointStatus,
    EndpointWrite,
    LeaseHeld,
    Node,
    NotFound,
    RegistryStore,
    SdkToken,
    StoreBusy,
    StoreError,
    WriteOutcome,
    run_check,
)
from servers.store.limits import DEFAULT_LIMITS, StoreLimits
from servers.store.migrations_sqlite import LATEST, MIGRATIONS

__all__ = ["SqliteStore", "backup", "migrate"]

T = TypeVar("T")


def _insert_audit(conn: sqlite3.Connection, entry: AuditEntry) -> None:
    conn.execute(
        "INSERT INTO audit_log (at_ms, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)",
        (entry.at_ms, entry.actor, entry.action, entry.subject, entry.detail),
    )


# -- write jobs (run on the writer thread, inside the batch transaction) -------------------


def migrate(conn: sqlite3.Connection, steps: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the steps the database lacks, inside the caller's write transaction; returns
    the versions applied. ``user_version`` is the last step applied (migrations_sqlite.py).
    Raises StoreError for a schema newer than this code."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    done = []
    for step in pending(steps, range(1, version + 1)):
        for statement in step.sql.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {step.version:d}")
        done.append(step.version)
    return done


def _create_application(conn: sqlite3.Connection, app: Application, audit: AuditEntry) -> None:
    try:
        conn.execute(
            f"INSERT INTO applications ({_rows.APP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                app.token,
                app.name,
                app.config,
                app.config_version,
                _rows.topics_json(app.topics),
                str(app.balancing),
                int(app.cached_signature),
                app.created_ms,
            ),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists("an application with this token exists") from None
    _insert_audit(conn, audit)


def _update_application(
    conn: sqlite3.Connection,
    token: str,
    changes: ApplicationChanges,
    audit: AuditEntry,
    check: Callable[[Application], None] | None,
) -> Application:
    row = conn.execute(f"SELECT {_rows.APP_COLUMNS} FROM applications WHERE token = ?", (token,))
    found = row.fetchone()
    if found is None:
        raise NotFound("no such application")
    updated = changes.applied_to(_rows.application(found))
    run_check(check, updated)
    conn.execute(
        "UPDATE applications SET name = ?, config = ?, config_version = ?, topics = ?, "
        "balancing = ?, cached_signature = ? WHERE token = ?",
        (
            updated.name,
            updated.config,
            updated.config_version,
            _rows.topics_json(updated.topics),
            str(updated.balancing),
            int(updated.cached_signature),
            token,
        ),
    )
    _insert_audit(conn, audit)
    return updated


def _audited_update(
    conn: sqlite3.Connection,
    convert: Callable[[Any], T],
    missing: str,
    audit: AuditEntry,
    sql: str,
    args: tuple[Any, ...],
) -> T:
    """One ``UPDATE ... RETURNING`` row, converted, and its audit entry (the caller's
    transaction); NotFound(``missing``) when no row matched."""
    row = conn.execute(sql, args).fetchone()
    if row is None:
        raise NotFound(missing)
    _insert_audit(conn, audit)
    return convert(row)


def _revoke_sdk_token(conn: sqlite3.Connection, token_hash: bytes, audit: AuditEntry) -> SdkToken:
    sql = (
        "UPDATE sdk_tokens SET revoked_ms = COALESCE(revoked_ms, ?) "
        f"WHERE token_hash = ? RETURNING {_rows.SDK_TOKEN_COLUMNS}"
    )
    args = (audit.at_ms, token_hash)
    return _audited_update(conn, _rows.sdk_token, "no such SDK token", audit, sql, args)


def _add_sdk_token(conn: sqlite3.Connection, token: SdkToken, audit: AuditEntry) -> None:
    exists = conn.execute("SELECT 1 FROM applications WHERE token = ?", (token.application,))
    if exists.fetchone() is None:
        raise NotFound("no such application")
    try:
        conn.execute(
            f"INSERT INTO sdk_tokens ({_rows.SDK_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?)",
            (token.token_hash, token.application, token.created_ms, token.revoked_ms),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists("this SDK token exists") from None
    _insert_audit(conn, audit)


#: The common reconnect: an active endpoint of the same application, a newer request and the
#: same profile, the EXISTING case of ``_decision.decide`` written as SQL (held to it by
#: tests/servers/test_servers_store_rule.py). It matches no row in every other case, and
#: then writes nothing.
_UPDATE_EXISTING = (
    "UPDATE endpoints SET sdk_token_hash = ?, last_seen_ms = ?, last_request_ms = ?, "
    f"registration_status = '{RegistrationStatus.EXISTING.name}' "
    f"WHERE endpoint_id = ? AND status != '{EndpointStatus.REVOKED.value}' "
    "AND application = ? AND last_request_ms < ? AND profile_hash = ?"
)
#: A new endpoint; an endpoint id already stored leaves it unchanged (and the row count 0).
_INSERT_NEW = (
    f"INSERT INTO endpoints ({_rows.ENDPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
    f"'{EndpointStatus.ACTIVE.value}', '{RegistrationStatus.NEW.name}', ?, NULL) "
    "ON CONFLICT(endpoint_id) DO NOTHING"
)


def _register_endpoint(conn: sqlite3.Connection, w: EndpointWrite) -> WriteOutcome:
    # Told apart by row counts alone: a reconnect is one UPDATE, a new endpoint one INSERT;
    # which goes first follows ``w.carried_key``, so the common case of each is one
    # statement, and the other statement, tried second, finds nothing to do. (A SELECT first
    # cost every registration one more statement; an upsert with RETURNING costs SQLite
    # more than the statement it saves.) Every statement before the last one changes
    # nothing, so a failing job leaves nothing behind without a SAVEPOINT
    # (GroupCommitWriter.submit). The constants are SQL literals: an enum's .value and
    # .name are Python-level lookups, per registration.
    if w.carried_key and _insert_new(conn, w):
        return WriteOutcome.NEW
    if _update_existing(conn, w):
        return WriteOutcome.EXISTING
    if not w.carried_key and _insert_new(conn, w):
        return WriteOutcome.NEW
    return _register_known(conn, w)


def _update_existing(conn: sqlite3.Connection, w: EndpointWrite) -> bool:
    params = (
        w.sdk_token_hash,
        w.now_ms,
        w.request_ms,
        w.endpoint_id,
        w.application,
        w.request_ms,
        w.profile_hash,
    )
    return conn.execute(_UPDATE_EXISTING, params).rowcount == 1


def _insert_new(conn: sqlite3.Connection, w: EndpointWrite) -> bool:
    params = (
        w.endpoint_id,
        w.public_key,
        w.sdk_token_hash,
        w.application,
        w.profile,
        w.profile_hash,
        w.now_ms,
        w.now_ms,
        w.request_ms,
    )
    return conn.execute(_INSERT_NEW, params).rowcount == 1


def _register_known(conn: sqlite3.Connection, w: EndpointWrite) -> WriteOutcome:
    """The rare cases: the endpoint is stored and the request is not an EXISTING reconnect.

    BEGIN IMMEDIATE holds the database write lock: the row is the one the statements of
    ``_register_endpoint`` saw.
    """
    status, application, profile_hash, last_request_ms = conn.execute(
        "SELECT status, application, profile_hash, last_request_ms FROM endpoints "
        "WHERE endpoint_id = ?",
        (w.endpoint_id,),
    ).fetchone()
    outcome = decide(StoredEndpoint(status, application, bytes(profile_hash), last_request_ms), w)
    if outcome not in ACCEPTED:
        return outcome
    # In practice PROFILE_UPDATED: _UPDATE_EXISTING has taken every EXISTING one.
    conn.execute(
        "UPDATE endpoints SET sdk_token_hash = ?, profile = ?, profile_hash = ?, "
        "last_seen_ms = ?, last_request_ms = ?, registration_status = ? WHERE endpoint_id = ?",
        (
            w.sdk_token_hash,
            w.profile,
            w.profile_hash,
            w.now_ms,
            w.request_ms,
            RegistrationStatus[outcome.value].name,
            w.endpoint_id,
        ),
    )
    return outcome


def _set_revoked(
    conn: sqlite3.Connection, endpoint_id: bytes, audit: AuditEntry, revoked: bool
) -> Endpoint:
    """Revoke (keeping the first revocation's time; an id never registered is recorded
    revoked) or reinstate (a pre-revoked id is forgotten), and audit it."""
    if not revoked:
        forgotten = conn.execute(_sqlite(_rows.FORGET_PRE_REVOKED), (endpoint_id,)).fetchone()
        if forgotten is not None:
            _insert_audit(conn, audit)
            return dataclasses.replace(
                _rows.endpoint(forgotten), status=EndpointStatus.ACTIVE, revoked_ms=None
            )
    status = EndpointStatus.REVOKED if revoked else EndpointStatus.ACTIVE
    sql = (
        "UPDATE endpoints SET status = ?, "
        "revoked_ms = CASE WHEN ? THEN COALESCE(revoked_ms, ?) ELSE NULL END "
        f"WHERE endpoint_id = ? RETURNING {_rows.ENDPOINT_COLUMNS}"
    )
    row = conn.execute(sql, (status.value, revoked, audit.at_ms, endpoint_id)).fetchone()
    if row is None and revoked:
        row = conn.execute(_sqlite(_rows.PRE_REVOKE), (endpoint_id, audit.at_ms, b"")).fetchone()
    if row is None:
        raise NotFound("no such endpoint")
    _insert_audit(conn, audit)
    return _rows.endpoint(row)


def _add_credential(
    conn: sqlite3.Connection, credential: console.AdminCredential, audit: AuditEntry
) -> None:
    c = credential
    try:
        conn.execute(
            f"INSERT INTO admin_credentials ({console.CREDENTIAL_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (c.name, str(c.kind), str(c.role), c.secret_hash, c.created_ms, c.revoked_ms),
        )
    except sqlite3.IntegrityError:
        raise AlreadyExists("a credential with this name exists") from None
    _insert_audit(conn, audit)


def _revoke_credential(
    conn: sqlite3.Connection, name: str, audit: AuditEntry
) -> console.AdminCredential:
    sql = (
        "UPDATE admin_credentials SET revoked_ms = COALESCE(revoked_ms, ?) "
        f"WHERE name = ? RETURNING {console.CREDENTIAL_COLUMNS}"
    )
    return _audited_update(conn, console.credential, "no such credential", audit, sql,
                           (audit.at_ms, name))  # fmt: skip


def _sqlite(sql: str) -> str:
    """A statement of ``_rows`` written for PostgreSQL (``$N``) with SQLite's ``?N``."""
    return sql.replace("$", "?")


def _put_node(conn: sqlite3.Connection, node: Node, reclaim: bool) -> None:
    values = (*_rows.node_values(node), reclaim)
    taken = conn.execute(_sqlite(_rows.PUT_NODE), values).fetchone()
    if taken is None:  # another holder's live lease: the row is as it was
        held = conn.execute(
            f"SELECT {_rows.NODE_COLUMNS} FROM nodes WHERE node_id = ?", (node.node_id,)
        ).fetchone()
        raise LeaseHeld(_rows.node(held), node.renewed_ms)


#: SQLite's page cache per connection, in KiB (SQLite's default is 2 MiB). At fleet size
#: (millions of endpoints) every registration touches a random leaf of the endpoint-id
#: index: with 2 MiB not even the index's inner pages stay cached, and each lookup and
#: insert re-reads them through the VFS. The writer's cache holds the inner pages and the
#: hottest leaves of a 10-million-endpoint store; each reader's, the inner pages
#: (benchmarks/README.md, "Fleet scale"). Memory: at most 64 + 2 x 16 MiB.
WRITER_CACHE_KIB = 65536
READER_CACHE_KIB = 16384
#: A reader's page cache is emptied whenever another connection committed since its last
#: read (SQLite's WAL rule): under a steady write load, every read. So the loop thread's
#: key reads map the file instead: each page then comes from the OS's page cache without a
#: pread (mapped pages count in RSS as shared file pages, at most this much).
NOW_MMAP_BYTES = 256 * 1024 * 1024
#: A loop-thread key read slower than this went to the disk (a cached one takes tens of
#: microseconds): the next ``NOW_PAUSE_S`` of reads go to the reader threads, which wait
#: for the disk without stopping the loop (a cold 10-million-endpoint store otherwise held
#: the loop for most of each miss: benchmarks/README.md, "Fleet scale").
NOW_SLOW_S = 0.0005
NOW_PAUSE_S = 1.0

#: The mode of the database and of its side files: the owner's alone.
PRIVATE_FILE_MODE = 0o600
#: What SQLite keeps beside the database (the rollback journal only before WAL is set).
_SIDE_FILES = ("-wal", "-shm", "-journal")
_log = logging.getLogger("servers.store")


def make_private(path: Path) -> None:
    """Create the database file ``path`` 0600 if missing; tighten an existing one, and
    its side files, to 0600 (one warning each). Raises StoreError when one cannot be.

    SQLite creates the -wal and -shm files lazily, with the mode of the database file, so
    a 0600 database is enough for the files still to come; umask only takes bits away.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        pass  # SQLite takes an empty file for a new database, so one made here is fine
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None
    for file in (path, *(path.with_name(path.name + suffix) for suffix in _SIDE_FILES)):
        try:
            mode = kaa_files.make_private(file, PRIVATE_FILE_MODE)
        except OSError as exc:
            raise StoreError(
                f"{file} is readable by group or others and cannot be made "
                f"{PRIVATE_FILE_MODE:04o}: {exc.strerror}"
            ) from None
        if mode is None:
            continue
        logs.event(
            _log,
            logging.WARNING,
            "database file tightened",
            path=str(file),
            old_mode=f"{mode:04o}",
            new_mode=f"{mode & PRIVATE_FILE_MODE:04o}",
        )


def backup(source: Path, target: Path) -> int:
    """A consistent copy of the database ``source`` at ``target``, while services write
    it; returns its size in bytes. Raises StoreError.

    SQLite's online backup API copies one snapshot (a read transaction: in WAL mode the
    writers go on meanwhile). The copy is written to a 0600 temporary file beside
    ``target``, switched out of WAL so that it is one self-contained file, checked
    (``quick_check``), fsynced, then renamed over ``target`` and the directory fsynced:
    ``target`` is the old file or the whole new copy, never a part.
    """
    if target.resolve() == source.resolve():
        raise StoreError(f"{target} is the database itself")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    except OSError as exc:
        raise StoreError(f"cannot write {target}: {exc.strerror}") from None
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        os.close(fd)
        uri = f"file:{urllib.parse.quote(str(source.absolute()))}?mode=ro"
        src = sqlite3.connect(uri, uri=True, timeout=5.0)
        try:
            dst = sqlite3.connect(tmp, isolation_level=None)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
                verdict = dst.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    raise StoreError(f"the copy of {source} fails its check: {verdict}")
            finally:
                dst.close()
        finally:
            src.close()
        with open(tmp, "rb") as copy:
            os.fsync(copy.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        for leftover in (tmp, *(tmp.with_name(tmp.name + side) for side in _SIDE_FILES)):
            leftover.unlink(missing_ok=True)
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"cannot back up {source}: {exc}") from None
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target.stat().st_size


class SqliteStore(RegistryStore):
    """:class:`RegistryStore` on one SQLite file (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        limits: StoreLimits = DEFAULT_LIMITS,
        reader_threads: int = 2,
        busy_timeout_ms: int = 5000,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._busy_timeout_ms = busy_timeout_ms
        self._writer = GroupCommitWriter(self._connect_writer, limits)
        self._reader_threads = reader_threads
        self._readers: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._max_pending_reads = limits.max_pending_reads
        self._pending_reads = 0
        self._key_reads = KeyReads(self._read_keys)
        #: The loop thread's own read connection, for endpoint_key_now (never waits), and
        #: until when (time.monotonic) it rests after a read that went to the disk.
        self._now: sqlite3.Connection | None = None
        self._now_rests_until = 0.0

    # -- connections --------------------------------------------------------------------

    def _connect(self, busy_timeout_ms: int | None = None) -> sqlite3.Connection:
        # ``timeout`` is SQLite's busy timeout: how long to wait for another writer's lock.
        wait_ms = self._busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms
        return sqlite3.connect(
            self._read_only_uri() if self.read_only else self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=wait_ms / 1000,
            uri=self.read_only,
        )

    def _connect_reader(self, busy_timeout_ms: int | None = None) -> sqlite3.Connection:
        conn = self._connect(busy_timeout_ms)
        conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB:d}")
        return conn

    def _read_only_uri(self) -> str:
        uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?mode=ro"
        if not os.access(self.path.parent, os.W_OK):
            uri += "&immutable=1"
        return uri

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(f"cannot switch {self.path} to WAL (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB:d}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._connect_reader()
            self._reader_local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def _connect_now(self) -> sqlite3.Connection:
        """The loop thread's reader: no busy timeout, so a read that would wait (a rare
        lock, e.g. WAL recovery) fails at once and goes to a reader thread instead."""
        conn = self._connect_reader(busy_timeout_ms=0)
        conn.execute(f"PRAGMA mmap_size = {NOW_MMAP_BYTES:d}")
        return conn

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        if self.read_only:
            await self._open_read_only()
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        make_private(self.path)
        await asyncio.get_running_loop().run_in_executor(None, self._writer.start)
        self._readers = ThreadPoolExecutor(self._reader_threads, thread_name_prefix="kaa-store-r")
        await self._write(migrate, bounded=False)
        self._now = self._connect_now()

    async def _open_read_only(self) -> None:
        if not self.path.is_file():
            raise StoreError(f"{self.path} does not exist")
        self._readers = ThreadPoolExecutor(self._reader_threads, thread_name_prefix="kaa-store-r")
        try:
            version = await self._read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        except StoreBusy as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from None
        pending(MIGRATIONS, range(1, version + 1))  # refuses a newer schema
        if version < LATEST:
            raise StoreError(
                f"{self.path} has schema {version}, older than this code's {LATEST}: a read-only "
                "open cannot migrate it (open it once read-write)"
            )
        self._now = self._connect_now()

    async def close(self) -> None:
        if self._now is not None:
            self._now.close()
            self._now = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._writer.close)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    @property
    def location(self) -> str:
        return str(self.path)

    def writer_stats(self) -> WriterStats:
        return self._writer.stats()

    def stats(self) -> dict[str, float]:
        return {**self.writer_stats().counters(), "pending_reads": self._pending_reads}

    def commit_durations(self) -> tuple[tuple[float, ...], list[int], float] | None:
        stats = self.writer_stats()
        return COMMIT_BUCKETS, stats.commit_buckets, stats.commit_seconds

    # -- plumbing -----------------------------------------------------------------------

    async def _write(
        self,
        job: Callable[[sqlite3.Connection], T],
        *,
        bounded: bool = True,
        savepoint: bool = True,
    ) -> T:
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only")
        result: T = await self._writer.submit(job, bounded=bounded, savepoint=savepoint)
        return result

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise StoreError("the store is not open")
        if self._pending_reads >= self._max_pending_reads:
            raise StoreBusy(f"{self._pending_reads} reads pending")
        self._pending_reads += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._readers, self._run_read, query)
        finally:
            self._pending_reads -= 1

    def _submit_read(self, query: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Start ``query`` on a reader thread (a pending read until ``_read_done``)."""
        if self._readers is None:
            raise StoreError("the store is not open")
        if self._pending_reads >= self._max_pending_reads:
            raise StoreBusy(f"{self._pending_reads} reads pending")
        self._pending_reads += 1
        return self._readers.submit(self._run_read, query)

    def _read_done(self) -> None:
        self._pending_reads -= 1

    def _read_keys(self, ids: list[bytes]) -> asyncio.Future[dict[bytes, EndpointKey]]:
        """One gathered batch of key reads (servers/store/_group_read.py) on a reader
        thread; its answer comes back to the loop with one call_soon_threadsafe."""
        done = self._submit_read(functools.partial(sqlite_keys, ids=ids))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[bytes, EndpointKey]] = loop.create_future()

        def back(_: Future[dict[bytes, EndpointKey]]) -> None:
            self._read_done()
            if future.cancelled():
                return
            exc = done.exception()
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(done.result())

        done.add_done_callback(lambda _: loop.call_soon_threadsafe(back, done))
        return future

    def _run_read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return query(self._reader())
        except sqlite3.OperationalError as exc:
            raise StoreBusy(str(exc)) from None

    async def _select(self, convert: Callable[..., T], sql: str, *params: object) -> list[T]:
        """The rows of one query, each converted (on a reader thread)."""

        def query(conn: sqlite3.Connection) -> list[T]:
            return [convert(row) for row in conn.execute(sql, params)]

        return await self._read(query)

    async def _select_one(self, convert: Callable[..., T], sql: str, *params: object) -> T | None:
        """The row of one query, converted; None when there is none."""

        def query(conn: sqlite3.Connection) -> T | None:
            row = conn.execute(sql, params).fetchone()
            return None if row is None else convert(row)

        return await self._read(query)

    # -- applications -------------------------------------------------------------------

    async def create_application(self, app: Application, audit: AuditEntry) -> None:
        job = functools.partial(_create_application, app=app, audit=audit)
        await self._write(job, bounded=False)

    async def update_application(
        self,
        token: str,
        changes: ApplicationChanges,
        audit: AuditEntry,
        check: Callable[[Application], None] | None = None,
    ) -> Application:
        job = functools.partial(
            _update_application, token=token, changes=changes, audit=audit, check=check
        )
        return await self._write(job, bounded=False)

    async def get_application(self, token: str) -> Application | None:
        sql = f"SELECT {_rows.APP_COLUMNS} FROM applications WHERE token = ?"
        return await self._select_one(_rows.application, sql, token)

    async def list_applications(self) -> list[Application]:
        sql = f"SELECT {_rows.APP_COLUMNS} FROM applications ORDER BY id"
        return await self._select(_rows.application, sql)

    # -- SDK tokens ---------------------------------------------------------------------

    async def add_sdk_token(self, token: SdkToken, audit: AuditEntry) -> None:
        job = functools.partial(_add_sdk_token, token=token, audit=audit)
        await self._write(job, bounded=False)

    async def find_sdk_token(self, token_hash: bytes) -> SdkToken | None:
        sql = f"SELECT {_rows.SDK_TOKEN_COLUMNS} FROM sdk_tokens WHERE token_hash = ?"
        return await self._select_one(_rows.sdk_token, sql, token_hash)

    async def list_sdk_tokens(self, application: str) -> list[SdkToken]:
        sql = f"SELECT {_rows.SDK_TOKEN_COLUMNS} FROM sdk_tokens WHERE application = ? ORDER BY id"
        return await self._select(_rows.sdk_token, sql, application)

    async def revoke_sdk_token(self, token_hash: bytes, audit: AuditEntry) -> SdkToken:
        job = functools.partial(_revoke_sdk_token, token_hash=token_hash, audit=audit)
        return await self._write(job, bounded=False)

    # -- endpoints ----------------------------------------------------------------------

    def register_endpoint(self, write: EndpointWrite) -> asyncio.Future[WriteOutcome]:
        _rows.check_write(write)
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only")
        # Only its last statement may change a row (see _register_endpoint): no SAVEPOINT.
        future: asyncio.Future[WriteOutcome] = self._writer.submit(
            functools.partial(_register_endpoint, w=write), savepoint=False
        )
        return future

    async def get_endpoint(self, endpoint_id: bytes) -> Endpoint | None:
        sql = f"SELECT {_rows.ENDPOINT_COLUMNS} FROM endpoints WHERE endpoint_id = ?"
        return await self._select_one(_rows.endpoint, sql, endpoint_id)

    async def get_endpoint_key(self, endpoint_id: bytes) -> EndpointKey | None:
        # Gathered with the other misses of this loop turn into one reader job.
        return await self._key_reads.get(endpoint_id)

    def endpoint_key_now(self, endpoint_id: bytes) -> EndpointKey | Miss | None:
        # A point lookup of a few pages the OS has cached: ~10 µs on the loop thread,
        # against a task, two thread hand-offs and the GIL passing back and forth for a
        # reader thread (benchmarks/README.md, "Fleet scale").
        if self._now is None:
            return MISS
        started = time.monotonic()
        if started < self._now_rests_until:
            return MISS
        try:
            found = sqlite_keys(self._now, [endpoint_id]).get(endpoint_id)
        except sqlite3.Error:  # busy or locked this instant
            return MISS
        finished = time.monotonic()
        if finished - started > NOW_SLOW_S:  # from the disk: the reader threads wait for it
            self._now_rests_until = finished + NOW_PAUSE_S
        return found

    async def list_endpoints(
        self, application: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Endpoint]:
        if application is None:
            sql = f"SELECT {_rows.ENDPOINT_COLUMNS} FROM endpoints ORDER BY id LIMIT ? OFFSET ?"
            return await self._select(_rows.endpoint, sql, limit, offset)
        sql = (
            f"SELECT {_rows.ENDPOINT_COLUMNS} FROM endpoints WHERE application = ? "
            "ORDER BY id LIMIT ? OFFSET ?"
        )
        return await self._select(_rows.endpoint, sql, application, limit, offset)

    async def revoke_endpoint(self, endpoint_id: bytes, audit: AuditEntry) -> Endpoint:
        job = functools.partial(_set_revoked, endpoint_id=endpoint_id, audit=audit, revoked=True)
        return await self._write(job, bounded=False)

    async def reinstate_endpoint(self, endpoint_id: bytes, audit: AuditEntry) -> Endpoint:
        job = functools.partial(_set_revoked, endpoint_id=endpoint_id, audit=audit, revoked=False)
        return await self._write(job, bounded=False)

    # -- Operations nodes ---------------------------------------------------------------

    async def put_node(self, node: Node, *, reclaim: bool = False) -> None:
        job = functools.partial(_put_node, node=node, reclaim=reclaim)
        await self._write(job, bounded=False)

    async def remove_node(self, node_id: str, holder: str) -> None:
        def job(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM nodes WHERE node_id = ? AND holder = ?", (node_id, holder))

        await self._write(job, bounded=False)

    async def live_nodes(self, now_ms: int) -> list[Node]:
        sql = f"SELECT {_rows.NODE_COLUMNS} FROM nodes WHERE lease_expires_ms > ? ORDER BY node_id"
        return await self._select(_rows.node, sql, now_ms)

    async def list_nodes(self) -> list[Node]:
        sql = f"SELECT {_rows.NODE_COLUMNS} FROM nodes ORDER BY node_id"
        return await self._select(_rows.node, sql)

    # -- audit log ----------------------------------------------------------------------

    async def add_audit(self, entry: AuditEntry) -> None:
        await self._write(functools.partial(_insert_audit, entry=entry), bounded=False)

    async def list_audit(self, limit: int = 100) -> list[AuditEntry]:
        sql = (
            "SELECT at_ms, actor, action, subject, detail, id FROM audit_log "
            "ORDER BY id DESC LIMIT ?"
        )
        return await self._select(lambda row: AuditEntry(*row), sql, limit)

    async def search_audit(
        self, subject: str | None = None, before: int | None = None, limit: int = 50
    ) -> list[AuditEntry]:
        sql, params = console.audit_search(subject, before, limit, postgres=False)
        return await self._select(lambda row: AuditEntry(*row), sql, *params)

    # -- admin console ------------------------------------------------------------------

    async def add_credential(
        self, credential: console.AdminCredential, audit: AuditEntry
    ) -> None:
        job = functools.partial(_add_credential, credential=credential, audit=audit)
        await self._write(job, bounded=False)

    async def get_credential(self, name: str) -> console.AdminCredential | None:
        sql = f"SELECT {console.CREDENTIAL_COLUMNS} FROM admin_credentials WHERE name = ?"
        return await self._select_one(console.credential, sql, name)

    async def find_api_key(self, secret_hash: str) -> console.AdminCredential | None:
        sql = (
            f"SELECT {console.CREDENTIAL_COLUMNS} FROM admin_credentials "
            "WHERE secret_hash = ? AND kind = ?"
        )
        return await self._select_one(
            console.credential, sql, secret_hash, str(console.CredentialKind.API_KEY)
        )

    async def list_credentials(self) -> list[console.AdminCredential]:
        sql = f"SELECT {console.CREDENTIAL_COLUMNS} FROM admin_credentials ORDER BY id"
        return await self._select(console.credential, sql)

    async def revoke_credential(self, name: str, audit: AuditEntry) -> console.AdminCredential:
        job = functools.partial(_revoke_credential, name=name, audit=audit)
        return await self._write(job, bounded=False)

    async def search_endpoints(self, query: console.EndpointQuery) -> console.EndpointPage:
        async def select(sql: str, params: list[object]) -> list[Sequence[Any]]:
            return await self._select(tuple, sql, *params)

        return await console.search_endpoints(query, select, postgres=False)
