"""Connections to PostgreSQL: their settings, and what a failure means for the caller."""

from __future__ import annotations

import urllib.parse

import asyncpg

from servers.store.base import StoreBusy, StoreError

__all__ = ["SERVER_SETTINGS", "UNAVAILABLE", "connect", "redact_dsn", "store_error"]

#: Settings of every connection: durable commits; a name in pg_stat_activity.
SERVER_SETTINGS = {"synchronous_commit": "on", "application_name": "kaa-wire"}

#: Errors that mean "the database is not reachable now", not "this request is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.OperatorInterventionError,  # shutting down, starting up, cancelled
    asyncpg.TransactionRollbackError,  # deadlock or serialization failure: retry later
    OSError,
    TimeoutError,
)


async def connect(dsn: str, timeout_s: float) -> asyncpg.Connection:
    """One connection of its own (the writer's, the listener's), outside the pool."""
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn, timeout=timeout_s, server_settings=SERVER_SETTINGS
    )
    return conn


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for logs and messages."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def store_error(exc: Exception, conn: asyncpg.Connection | None) -> StoreError:
    """StoreBusy when the database is unreachable or the connection broke (retry later),
    StoreError for anything else."""
    if isinstance(exc, UNAVAILABLE) or (conn is not None and conn.is_closed()):
        return StoreBusy(f"database unavailable: {exc}")
    return StoreError(f"database error: {exc!r}")
