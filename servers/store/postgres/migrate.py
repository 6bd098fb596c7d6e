"""The runner of PostgreSQL's schema migrations (the steps: ``migrations_postgres.py``)."""

from __future__ import annotations

import asyncpg

from servers.store._migrations import pending
from servers.store.migrations_postgres import ADVISORY_LOCK_KEY, MIGRATIONS

__all__ = ["migrate"]


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
