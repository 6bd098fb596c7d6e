"""PostgresStore: the registry store on PostgreSQL, its lifecycle and its reads and control
writes; registrations go to the group-commit writer (``writer.py``), node changes to the
listener (``notify.py``). The package docstring says how it keeps the store's rules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from servers import logs
from servers.store import _rows, console
from servers.store._group_commit import COMMIT_BUCKETS, WriterStats
from servers.store._group_read import POSTGRES_KEYS, KeyReads
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
from servers.store.postgres.connection import (
    SERVER_SETTINGS,
    UNAVAILABLE,
    connect,
    redact_dsn,
    store_error,
)
from servers.store.postgres.migrate import migrate
from servers.store.postgres.notify import NodeListener, is_news, notify_node_change
from servers.store.postgres.writer import BatchWriter

__all__ = ["PostgresStore"]

T = TypeVar("T")

_log = logging.getLogger("servers.store")


async def _insert_audit(conn: asyncpg.Connection, entry: AuditEntry) -> None:
    await conn.execute(
        "INSERT INTO audit_log (at_ms, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)",
        entry.at_ms,
        entry.actor,
        entry.action,
        entry.subject,
        entry.detail,
    )


class PostgresStore(RegistryStore):
    """:class:`RegistryStore` on a PostgreSQL database (see the package docstring).

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
        self._pool_size = pool_size
        self._max_pending_reads = limits.max_pending_reads
        self._connect_timeout_s = connect_timeout_s
        self._connect = functools.partial(connect, dsn, connect_timeout_s)
        self._pool: asyncpg.Pool | None = None
        self._writer = BatchWriter(self._connect, limits)
        self._listener = NodeListener(self._connect)
        self._pending_reads = 0
        self._key_reads = KeyReads(self._read_keys)

    def __repr__(self) -> str:
        return f"PostgresStore({self.location!r})"

    @property
    def location(self) -> str:
        return redact_dsn(self.dsn)

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        where = self.location
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._connect_timeout_s,
                server_settings=SERVER_SETTINGS,
            )
            async with self._pool.acquire() as conn:
                await migrate(conn)
                if await conn.fetchval("SHOW fsync") != "on":
                    logs.event(
                        _log, logging.WARNING, "fsync is off: acknowledged writes are not durable",
                        store=where,
                    )  # fmt: skip
            await self._writer.start()
        except StoreError:
            await self._abort_open()
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, *UNAVAILABLE) as exc:
            await self._abort_open()
            raise StoreError(f"cannot open the database {where}: {exc}") from None

    async def _abort_open(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    async def close(self) -> None:
        await self._writer.close()
        await self._listener.close()
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), 10)
            except (TimeoutError, asyncpg.InterfaceError):
                self._pool.terminate()
            self._pool = None

    def writer_stats(self) -> WriterStats:
        return self._writer.stats()

    def stats(self) -> dict[str, float]:
        return {**self.writer_stats().counters(), "pending_reads": self._pending_reads}

    def commit_durations(self) -> tuple[tuple[float, ...], list[int], float] | None:
        stats = self.writer_stats()
        return COMMIT_BUCKETS, stats.commit_buckets, stats.commit_seconds

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
                    raise store_error(exc, conn) from None
        except StoreError:
            raise
        except Exception as exc:  # acquiring: connecting, or the pool is closing
            raise store_error(exc, None) from None

    async def _read(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pending_reads >= self._max_pending_reads:
            raise StoreBusy(f"{self._pending_reads} reads pending")
        self._pending_reads += 1
        try:
            return await self._run(work)
        finally:
            self._pending_reads -= 1

    async def _select(self, convert: Callable[..., T], sql: str, *args: object) -> list[T]:
        """The rows of one query, each converted."""

        async def work(conn: asyncpg.Connection) -> list[T]:
            return [convert(row) for row in await conn.fetch(sql, *args)]

        return await self._read(work)

    async def _select_one(self, convert: Callable[..., T], sql: str, *args: object) -> T | None:
        """The row of one query, converted; None when there is none."""

        async def work(conn: asyncpg.Connection) -> T | None:
            row = await conn.fetchrow(sql, *args)
            return None if row is None else convert(row)

        return await self._read(work)

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """A control write: its own transaction, committed at once (no gathering)."""

        async def run(conn: asyncpg.Connection) -> T:
            async with conn.transaction():
                return await work(conn)

        return await self._run(run)

    # -- node change notifications --------------------------------------------------------

    def subscribe_nodes(self, callback: Callable[[], None]) -> bool:
        self._listener.subscribe(callback)
        return True

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
        self,
        token: str,
        changes: ApplicationChanges,
        audit: AuditEntry,
        check: Callable[[Application], None] | None = None,
    ) -> Application:
        async def work(conn: asyncpg.Connection) -> Application:
            row = await conn.fetchrow(
                f"SELECT {_rows.APP_COLUMNS} FROM applications WHERE token = $1 FOR UPDATE", token
            )
            if row is None:
                raise NotFound("no such application")
            updated = changes.applied_to(_rows.application(row))
            run_check(check, updated)  # FOR UPDATE: no other change can come between
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
        sql = f"SELECT {_rows.APP_COLUMNS} FROM applications WHERE token = $1"
        return await self._select_one(_rows.application, sql, token)

    async def list_applications(self) -> list[Application]:
        sql = f"SELECT {_rows.APP_COLUMNS} FROM applications ORDER BY seq"
        return await self._select(_rows.application, sql)

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
                    f"INSERT INTO sdk_tokens ({_rows.SDK_TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4)",
                    token.token_hash,
                    token.application,
                    token.created_ms,
                    token.revoked_ms,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists("this SDK token exists") from None
            await _insert_audit(conn, audit)

        await self._transaction(work)

    async def find_sdk_token(self, token_hash: bytes) -> SdkToken | None:
        sql = f"SELECT {_rows.SDK_TOKEN_COLUMNS} FROM sdk_tokens WHERE token_hash = $1"
        return await self._select_one(_rows.sdk_token, sql, token_hash)

    async def list_sdk_tokens(self, application: str) -> list[SdkToken]:
        sql = (
            f"SELECT {_rows.SDK_TOKEN_COLUMNS} FROM sdk_tokens WHERE application = $1 ORDER BY seq"
        )
        return await self._select(_rows.sdk_token, sql, application)

    async def revoke_sdk_token(self, token_hash: bytes, audit: AuditEntry) -> SdkToken:
        sql = (
            "UPDATE sdk_tokens SET revoked_ms = COALESCE(revoked_ms, $1) "
            f"WHERE token_hash = $2 RETURNING {_rows.SDK_TOKEN_COLUMNS}"
        )
        return await self._audited_update(
            _rows.sdk_token, "no such SDK token", audit, sql, audit.at_ms, token_hash
        )

    async def _audited_update(
        self,
        convert: Callable[[Any], T],
        missing: str,
        audit: AuditEntry,
        sql: str,
        *args: Any,
    ) -> T:
        """One ``UPDATE ... RETURNING`` row, converted, and its audit entry, in one
        transaction; NotFound(``missing``) when no row matched."""

        async def work(conn: asyncpg.Connection) -> T:
            # The row lock orders this against any registration transaction of the row.
            row = await conn.fetchrow(sql, *args)
            if row is None:
                raise NotFound(missing)
            await _insert_audit(conn, audit)
            return convert(row)

        return await self._transaction(work)

    # -- endpoints ----------------------------------------------------------------------

    def register_endpoint(self, write: EndpointWrite) -> asyncio.Future[WriteOutcome]:
        _rows.check_write(write)
        return self._writer.submit(write)

    async def get_endpoint(self, endpoint_id: bytes) -> Endpoint | None:
        sql = f"SELECT {_rows.ENDPOINT_COLUMNS} FROM endpoints WHERE endpoint_id = $1"
        return await self._select_one(_rows.endpoint, sql, endpoint_id)

    async def get_endpoint_key(self, endpoint_id: bytes) -> EndpointKey | None:
        # Gathered with the other misses of this loop turn into one query.
        return await self._key_reads.get(endpoint_id)

    def _read_keys(self, ids: list[bytes]) -> asyncio.Future[dict[bytes, EndpointKey]]:
        """One gathered batch of key reads (servers/store/_group_read.py): one query."""
        if self._pool is None:
            raise StoreError("the store is not open")

        async def work(conn: asyncpg.Connection) -> dict[bytes, EndpointKey]:
            return {
                bytes(row[0]): EndpointKey(bytes(row[1]), row[2])
                for row in await conn.fetch(POSTGRES_KEYS, ids)
            }

        return asyncio.ensure_future(self._read(work))

    async def list_endpoints(
        self, application: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Endpoint]:
        if application is None:
            sql = f"SELECT {_rows.ENDPOINT_COLUMNS} FROM endpoints ORDER BY seq LIMIT $1 OFFSET $2"
            return await self._select(_rows.endpoint, sql, limit, offset)
        sql = (
            f"SELECT {_rows.ENDPOINT_COLUMNS} FROM endpoints WHERE application = $1 "
            "ORDER BY seq LIMIT $2 OFFSET $3"
        )
        return await self._select(_rows.endpoint, sql, application, limit, offset)

    async def revoke_endpoint(self, endpoint_id: bytes, audit: AuditEntry) -> Endpoint:
        return await self._set_revoked(endpoint_id, audit, revoked=True)

    async def reinstate_endpoint(self, endpoint_id: bytes, audit: AuditEntry) -> Endpoint:
        return await self._set_revoked(endpoint_id, audit, revoked=False)

    async def _set_revoked(self, endpoint_id: bytes, audit: AuditEntry, revoked: bool) -> Endpoint:
        """Revoke (keeping the first revocation's time; an id never registered is recorded
        revoked) or reinstate (a pre-revoked id is forgotten), and audit it."""
        status = EndpointStatus.REVOKED if revoked else EndpointStatus.ACTIVE
        sql = (
            "UPDATE endpoints SET status = $1, "
            "revoked_ms = CASE WHEN $2 THEN COALESCE(revoked_ms, $3) ELSE NULL END "
            f"WHERE endpoint_id = $4 RETURNING {_rows.ENDPOINT_COLUMNS}"
        )
        args = (status.value, revoked, audit.at_ms, endpoint_id)

        async def work(conn: asyncpg.Connection) -> Endpoint:
            if not revoked:
                forgotten = await conn.fetchrow(_rows.FORGET_PRE_REVOKED, endpoint_id)
                if forgotten is not None:
                    await _insert_audit(conn, audit)
                    return dataclasses.replace(
                        _rows.endpoint(forgotten), status=EndpointStatus.ACTIVE, revoked_ms=None
                    )
            # The row lock orders this against any registration transaction of the row.
            row = await conn.fetchrow(sql, *args)
            if row is None and revoked:
                row = await conn.fetchrow(_rows.PRE_REVOKE, endpoint_id, audit.at_ms, b"")
                if row is None:  # its first registration committed meanwhile
                    row = await conn.fetchrow(sql, *args)
            if row is None:
                raise NotFound("no such endpoint")
            await _insert_audit(conn, audit)
            return _rows.endpoint(row)

        return await self._transaction(work)

    # -- Operations nodes ---------------------------------------------------------------

    async def put_node(self, node: Node, *, reclaim: bool = False) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            old = await conn.fetchrow(
                f"SELECT {_rows.NODE_COLUMNS} FROM nodes WHERE node_id = $1 FOR UPDATE",
                node.node_id,
            )
            if await conn.fetchval(_rows.PUT_NODE, *_rows.node_values(node), reclaim) is None:
                # Another holder's live lease, as it was (inserted since the SELECT, when
                # that found none: read it again).
                held = old or await conn.fetchrow(
                    f"SELECT {_rows.NODE_COLUMNS} FROM nodes WHERE node_id = $1", node.node_id
                )
                raise LeaseHeld(_rows.node(held), node.renewed_ms)
            if is_news(old, node):
                await notify_node_change(conn, node.node_id)

        await self._transaction(work)

    async def remove_node(self, node_id: str, holder: str) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            gone = await conn.fetchval(
                "DELETE FROM nodes WHERE node_id = $1 AND holder = $2 RETURNING node_id",
                node_id,
                holder,
            )
            if gone is not None:
                await notify_node_change(conn, node_id)

        await self._transaction(work)

    async def live_nodes(self, now_ms: int) -> list[Node]:
        sql = (
            f"SELECT {_rows.NODE_COLUMNS} FROM nodes WHERE lease_expires_ms > $1 "
            'ORDER BY node_id COLLATE "C"'
        )
        return await self._select(_rows.node, sql, now_ms)

    async def list_nodes(self) -> list[Node]:
        sql = f'SELECT {_rows.NODE_COLUMNS} FROM nodes ORDER BY node_id COLLATE "C"'
        return await self._select(_rows.node, sql)

    # -- audit log ----------------------------------------------------------------------

    async def add_audit(self, entry: AuditEntry) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            await _insert_audit(conn, entry)

        await self._run(work)

    async def list_audit(self, limit: int = 100) -> list[AuditEntry]:
        sql = (
            "SELECT at_ms, actor, action, subject, detail, seq FROM audit_log "
            "ORDER BY seq DESC LIMIT $1"
        )
        return await self._select(lambda row: AuditEntry(*row), sql, limit)

    async def search_audit(
        self, subject: str | None = None, before: int | None = None, limit: int = 50
    ) -> list[AuditEntry]:
        sql, params = console.audit_search(subject, before, limit, postgres=True)
        return await self._select(lambda row: AuditEntry(*row), sql, *params)

    # -- admin console ------------------------------------------------------------------

    async def add_credential(
        self, credential: console.AdminCredential, audit: AuditEntry
    ) -> None:
        c = credential

        async def work(conn: asyncpg.Connection) -> None:
            try:
                await conn.execute(
                    f"INSERT INTO admin_credentials ({console.CREDENTIAL_COLUMNS}) "
                    "VALUES ($1, $2, $3, $4, $5, $6)",
                    c.name, str(c.kind), str(c.role), c.secret_hash, c.created_ms, c.revoked_ms,
                )  # fmt: skip
            except asyncpg.UniqueViolationError:
                raise AlreadyExists("a credential with this name exists") from None
            await _insert_audit(conn, audit)

        await self._transaction(work)

    async def get_credential(self, name: str) -> console.AdminCredential | None:
        sql = f"SELECT {console.CREDENTIAL_COLUMNS} FROM admin_credentials WHERE name = $1"
        return await self._select_one(console.credential, sql, name)

    async def find_api_key(self, secret_hash: str) -> console.AdminCredential | None:
        sql = (
            f"SELECT {console.CREDENTIAL_COLUMNS} FROM admin_credentials "
            "WHERE secret_hash = $1 AND kind = $2"
        )
        return await self._select_one(
            console.credential, sql, secret_hash, str(console.CredentialKind.API_KEY)
        )

    async def list_credentials(self) -> list[console.AdminCredential]:
        sql = f"SELECT {console.CREDENTIAL_COLUMNS} FROM admin_credentials ORDER BY seq"
        return await self._select(console.credential, sql)

    async def revoke_credential(self, name: str, audit: AuditEntry) -> console.AdminCredential:
        sql = (
            "UPDATE admin_credentials SET revoked_ms = COALESCE(revoked_ms, $1) "
            f"WHERE name = $2 RETURNING {console.CREDENTIAL_COLUMNS}"
        )
        return await self._audited_update(
            console.credential, "no such credential", audit, sql, audit.at_ms, name
        )

    async def search_endpoints(self, query: console.EndpointQuery) -> console.EndpointPage:
        async def work(conn: asyncpg.Connection) -> console.EndpointPage:
            async def select(sql: str, params: list[object]) -> list[Sequence[Any]]:
                return [tuple(row) for row in await conn.fetch(sql, *params)]

            # asyncpg prepares each statement once per connection, and from its sixth run
            # PostgreSQL may keep a generic plan, made without the parameters' values: it
            # takes application = $1 for a third of the rows and walks the position index,
            # filtering a rare application out of half the table (400 ms at a million
            # endpoints instead of 5). A search is planned for its own values instead.
            async with conn.transaction(readonly=True):
                await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
                return await console.search_endpoints(query, select, postgres=True)

        return await self._read(work)
