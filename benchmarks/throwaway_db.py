"""Throwaway databases on a PostgreSQL server, for the tests and the cluster benchmark.

Each run gets a database of its own (a fresh schema, nothing left from another run) and
drops it afterwards, whatever happened to the processes that used it.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
import uuid
from collections.abc import Iterator

__all__ = ["drop_database", "fresh_database", "new_database"]


def _admin(server_dsn: str, statement: str) -> None:
    import asyncpg  # only the PostgreSQL runs need it

    async def run() -> None:
        conn = await asyncpg.connect(server_dsn, timeout=30)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def new_database(server_dsn: str, prefix: str) -> str:
    """Create an empty database named ``prefix`` + a random suffix; returns its DSN."""
    name = f"{prefix}{uuid.uuid4().hex[:16]}"
    _admin(server_dsn, f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(server_dsn)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def drop_database(server_dsn: str, database_dsn: str) -> None:
    """Drop the database of ``database_dsn``, closing what is still connected to it."""
    name = urllib.parse.urlsplit(database_dsn).path.lstrip("/")
    _admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def fresh_database(server_dsn: str, prefix: str) -> Iterator[str]:
    dsn = new_database(server_dsn, prefix)
    try:
        yield dsn
    finally:
        drop_database(server_dsn, dsn)
