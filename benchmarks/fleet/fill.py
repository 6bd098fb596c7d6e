"""Bulk fill of a registry store with well-formed endpoint rows.

Only the measured registrations need real signed requests (shared/PERF.md); the rest of
the fleet is rows as the server would have written them: the endpoint id is the SHA-1 of
the row's DER key (a key of ``benchmarks.loadgen.keys``' sources, so any row can later
reconnect for real), the profile is the generator's ``profile_for(index)`` (so a
reconnect is EXISTING), the SDK token hash and application are the deployment's, and
the last request is a day old (so a fresh request is newer).

SQLite: the endpoint table's indexes are dropped, the rows appended in big transactions
with ``synchronous=OFF``, and the indexes created again from the very SQL the schema
holds (``sqlite_master``), which sorts once instead of inserting millions of random keys
into a B-tree. PostgreSQL: ``COPY`` (asyncpg), the same index dance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.loadgen.requests import profile_for
from kaa_wire import RegistrationStatus
from servers.store._rows import ENDPOINT_COLUMNS
from servers.store.base import EndpointStatus

__all__ = ["FillResult", "FillSpec", "disk_bytes", "fill_postgres", "fill_sqlite", "rows"]

DAY_MS = 86_400_000
CHUNK = 50_000


@dataclasses.dataclass(frozen=True)
class FillResult:
    rows: int
    seconds: float
    index_seconds: float

    @property
    def per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "per_s": round(self.per_s, 1)}


@dataclasses.dataclass(frozen=True)
class FillSpec:
    """What a fill appends, whatever the store: rows ``start..start+count-1``."""

    start: int
    count: int
    der_of: Callable[[int], bytes]
    token_hash: bytes
    application: str
    progress: Callable[[int], None] | None = None

    def chunks(self) -> Iterator[list[tuple[Any, ...]]]:
        """The rows in CHUNK-sized lists; ``progress`` hears of each after it is stored."""
        now_ms = int(time.time() * 1000)
        done = 0
        while done < self.count:
            n = min(CHUNK, self.count - done)
            yield list(rows(
                self.start + done, n, self.der_of,
                token_hash=self.token_hash, application=self.application, now_ms=now_ms,
            ))  # fmt: skip
            done += n
            if self.progress is not None:
                self.progress(done)


def rows(
    start: int,
    count: int,
    der_of: Callable[[int], bytes],
    *,
    token_hash: bytes,
    application: str,
    now_ms: int,
) -> Iterator[tuple[Any, ...]]:
    """Endpoint rows ``start..start+count-1`` in ENDPOINT_COLUMNS order."""
    active = EndpointStatus.ACTIVE.value
    new = RegistrationStatus.NEW.name
    seen = now_ms - DAY_MS
    sha1, sha256 = hashlib.sha1, hashlib.sha256
    for index in range(start, start + count):
        der = der_of(index)
        profile = profile_for(index)
        yield (
            sha1(der).digest(), der, token_hash, application, profile,
            sha256(profile).digest(), seen, seen, active, new, seen, None,
        )  # fmt: skip


def disk_bytes(*paths: Path) -> int:
    """Bytes allocated on disk for ``paths`` and, for a database, its -wal file."""
    total = 0
    for path in paths:
        for file in (path, path.with_name(path.name + "-wal")):
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(file).st_blocks * 512
    return total


def _endpoint_indexes(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'endpoints' "
        "AND sql IS NOT NULL ORDER BY name"
    ).fetchall()


def fill_sqlite(db: Path, spec: FillSpec) -> FillResult:
    """Append ``spec``'s rows to the (stopped) server's SQLite file ``db``."""
    began = time.monotonic()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB, for the index builds
        conn.execute("PRAGMA temp_store = FILE")
        indexes = _endpoint_indexes(conn)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        sql = (
            f"INSERT INTO endpoints ({ENDPOINT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        for chunk in spec.chunks():
            conn.execute("BEGIN")
            conn.executemany(sql, chunk)
            conn.execute("COMMIT")
        index_began = time.monotonic()
        for _, create in indexes:
            conn.execute(create)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("ANALYZE")
        ended = time.monotonic()
    finally:
        conn.close()
    return FillResult(spec.count, ended - began, ended - index_began)


async def _fill_postgres(dsn: str, spec: FillSpec) -> FillResult:
    import asyncpg

    began = time.monotonic()
    conn = await asyncpg.connect(dsn)
    try:
        indexes = await conn.fetch(
            "SELECT i.relname AS name, pg_get_indexdef(i.oid) AS sql, "
            "con.conname AS constraint_name, pg_get_constraintdef(con.oid) AS constraint_sql "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "JOIN pg_class t ON t.oid = x.indrelid "
            "LEFT JOIN pg_constraint con ON con.conindid = i.oid "
            "WHERE t.relname = 'endpoints' AND NOT x.indisprimary"
        )
        for ix in indexes:
            if ix["constraint_name"]:
                name = ix["constraint_name"]
                await conn.execute(f'ALTER TABLE endpoints DROP CONSTRAINT "{name}"')
            else:
                await conn.execute(f'DROP INDEX "{ix["name"]}"')
        columns = [c.strip() for c in ENDPOINT_COLUMNS.split(",")]
        for chunk in spec.chunks():
            await conn.copy_records_to_table("endpoints", records=chunk, columns=columns)
        index_began = time.monotonic()
        for ix in indexes:
            if ix["constraint_name"]:
                await conn.execute(
                    f'ALTER TABLE endpoints ADD CONSTRAINT "{ix["constraint_name"]}" '
                    f"{ix['constraint_sql']}"
                )
            else:
                await conn.execute(ix["sql"])
        await conn.execute("VACUUM ANALYZE endpoints")
        ended = time.monotonic()
    finally:
        await conn.close()
    return FillResult(spec.count, ended - began, ended - index_began)


def fill_postgres(dsn: str, spec: FillSpec) -> FillResult:
    """``COPY`` ``spec``'s rows into the PostgreSQL store at ``dsn``."""
    import asyncio

    return asyncio.run(_fill_postgres(dsn, spec))


def postgres_bytes(dsn: str) -> int:
    """Bytes on disk of the endpoints table with its indexes and TOAST."""
    import asyncio

    import asyncpg

    async def size() -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return int(await conn.fetchval("SELECT pg_total_relation_size('endpoints')"))
        finally:
            await conn.close()

    return asyncio.run(size())
