"""The admin API's endpoint list and search at a million endpoints, over real HTTP.

    python -m benchmarks.bench_console                        # SQLite, 1,000,000 endpoints
    python -m benchmarks.bench_console --postgres DSN         # the same on PostgreSQL
    python -m benchmarks.bench_console --count 20000 --repeat 5   # a quick look

Fills a registry (a fresh ``servers.control init`` data directory, or a throwaway
database on the PostgreSQL server ``DSN``) with ``--count`` endpoints in bulk (three
applications of 90 %, 9 % and 1 %; 0.1 % revoked; a JSON profile with a model and a
serial), starts a real ``python -m servers`` on it, and times each query of ``QUERIES``
through ``GET /api/v1/endpoints`` with an API key: ``--repeat`` times each, the median and
the slowest, in milliseconds, client-side (request written to answer read); then follows
each search of ``WALKS`` (bounded: a page examines a window of rows) from its first page to
its last, ``--walks`` times, and reports its pages' median and slowest. It reports
figures; it asserts nothing about speed (the machine is shared and noisy). ``pytest
benchmarks/bench_console.py`` runs a short pass as a test of the answers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.environment import child_environment
from servers.store.console import MAX_PAGE

REPO = Path(__file__).resolve().parents[1]
T0 = 1_767_225_600_000
APPS = ("bench-app-main", "bench-app-mid", "bench-app-rare")
#: (name, query string); ``{cursor}``, ``{prefix}``, ``{since}`` are filled in at run time.
QUERIES = [
    ("list, first page (50)", "limit=50"),
    ("list, next page (cursor)", "limit=50&cursor={cursor}"),
    ("list, page near the oldest (cursor)", "limit=50&cursor={deep}"),
    ("id prefix (6 hex digits)", "id_prefix={prefix}"),
    ("application, 1 % of rows", f"application={APPS[2]}"),
    ("status = revoked (0.1 %)", "status=revoked"),
    ("registered since (last 1 %)", "since_ms={since}"),
    ("application + status", f"application={APPS[2]}&status=revoked"),
    ("profile contains, common", "profile=%22model%22%3A%22m7%22"),
    ("profile contains, one row: a page", "profile=%22serial%22%3A{serial}%7D"),
    ("profile contains, no row: a page", "profile=no-such-text"),
    ("JSON field, common", "profile_field=model&profile_value=%22m7%22"),
    ("JSON field, one row: a page", "profile_field=serial&profile_value={serial}"),
    ("JSON field + application (1 %)", f"profile_field=model&profile_value=%22m49%22"
     f"&application={APPS[2]}"),
]
#: Searches walked to their end, page by page (``--walks`` times each): every page's time.
WALKS = [
    ("profile contains, no row: every page", "profile=no-such-text"),
    ("JSON field, no row: every page", "profile_field=serial&profile_value=-1"),
]


def _rows(count: int) -> Iterator[tuple[Any, ...]]:
    token_hash = hashlib.sha256(b"bench-sdk").digest()
    for n in range(count):
        key = n.to_bytes(8, "big") * 8
        app = APPS[0] if n % 100 < 90 else APPS[1] if n % 100 < 99 else APPS[2]
        profile = b'{"model":"m%d","serial":%d}' % (n % 50, n)
        revoked = n % 1000 == 999
        seen = T0 + n * 10
        yield (
            hashlib.sha1(key).digest(), key, token_hash, app, profile,
            hashlib.sha256(profile).digest(), seen, seen, "revoked" if revoked else "active",
            "NEW", seen, seen if revoked else None,
        )  # fmt: skip


_COLUMNS = (
    "endpoint_id, public_key, sdk_token_hash, application, profile, profile_hash, "
    "first_seen_ms, last_seen_ms, status, registration_status, last_request_ms, revoked_ms"
)


def fill_sqlite(path: Path, count: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")  # a bulk load: durability is not measured here
    with conn:
        conn.executemany(
            f"INSERT INTO endpoints ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _rows(count)
        )
    conn.execute("ANALYZE")
    conn.close()


def fill_postgres(dsn: str, count: int) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.copy_records_to_table(
                "endpoints", records=_rows(count), columns=[c.strip() for c in _COLUMNS.split(",")]
            )
            await conn.execute("ANALYZE endpoints")
        finally:
            await conn.close()

    asyncio.run(run())


def _control(data: Path, store: list[str], *args: str) -> str:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "servers.control", "--data", str(data), *store, *args],
        capture_output=True, text=True, env=child_environment(REPO), check=True, timeout=600,
    )  # fmt: skip
    return result.stdout.strip()


class _Main:
    def __init__(self, data: Path, store: list[str]) -> None:
        import subprocess

        self.log = data.parent / "servers.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "servers", "--data", str(data), *store, "--host",
                 "127.0.0.1", "--bootstrap-port", "0", "--operations-port", "0",
                 "--admin-port", "0",
                 # The request budget (20/s) is for people: this measures answers, not 429s.
                 "--admin-requests-per-s", "100000"],
                stdout=log, stderr=log, env=child_environment(REPO),
            )  # fmt: skip
        listeners = data / "listeners.json"
        deadline = time.monotonic() + 120
        while not listeners.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"python -m servers did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{json.loads(listeners.read_text())['admin_port']}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def _get(url: str, key: str) -> tuple[float, dict[str, Any]]:
    """(milliseconds, the JSON answer); a refusal's answer is its error document."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    elapsed = (time.perf_counter() - start) * 1000
    return elapsed, json.loads(body)


def measure(
    url: str, key: str, count: int, repeat: int, walks: int = 1
) -> list[dict[str, Any]]:
    api = url + "/api/v1/endpoints?"
    _, first = _get(api + "limit=50", key)
    # A cursor near the oldest row (at most MAX_PAGE + 50 rows above it): the API's own,
    # from walking the list MAX_PAGE rows a page (cursors are signed, and bound to their
    # search's filters, so a client can neither write one nor take another search's).
    deep = None
    for _ in range(max(0, (count - 51) // MAX_PAGE)):
        _, page = _get(api + f"limit={MAX_PAGE}" + (f"&cursor={deep}" if deep else ""), key)
        deep = page["next_cursor"]
    deep = deep or first["next_cursor"]  # (a list of fewer rows: its second page)
    serial = count // 3
    prefix = hashlib.sha1(serial.to_bytes(8, "big") * 8).hexdigest()[:6]
    fill = {
        "cursor": first["next_cursor"],
        "deep": deep,
        "prefix": prefix,
        "since": T0 + int(count * 0.99) * 10,
        "serial": serial,
    }
    results = []
    for name, template in QUERIES:
        query = template.format(**fill)
        times = []
        rows = 0
        for _ in range(repeat):
            elapsed, page = _get(api + query, key)
            times.append(elapsed)
            rows = len(page["items"]) if "items" in page else -1  # -1: refused (deadline)
        results.append(
            {
                "query": name,
                "rows": rows,
                "median_ms": statistics.median(times),
                "max_ms": max(times),
            }
        )
    for name, query in WALKS:
        for _ in range(walks):
            times, rows, pages = [], 0, 0
            cursor = None
            while True:
                elapsed, page = _get(api + query + (f"&cursor={cursor}" if cursor else ""), key)
                times.append(elapsed)
                if "items" not in page:
                    rows = -1
                    break
                rows += len(page["items"])
                pages += 1
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            results.append(
                {
                    "query": name,
                    "note": f"{pages} pages, {sum(times):.0f} ms in all",
                    "rows": rows,
                    "median_ms": statistics.median(times),
                    "max_ms": max(times),
                }
            )
    return results


def run(
    count: int, repeat: int, postgres: str | None, walks: int = 1
) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="kaa-bench-console-") as tmp:
        data = Path(tmp) / "data"
        store: list[str] = []
        database = None
        if postgres:
            from benchmarks.throwaway_db import new_database

            database = new_database(postgres, "kaa_bench_console_")
            store = ["--store", database]
        try:
            _control(data, store, "init")
            started = time.perf_counter()
            if database:
                fill_postgres(database, count)
            else:
                fill_sqlite(data / "registry.db", count)
            print(f"filled {count} endpoints in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)  # fmt: skip
            key = _control(data, store, "admin", "key", "bench", "--role", "read-only")
            main = _Main(data, store)
            try:
                return measure(main.url, key, count, repeat, walks)
            finally:
                main.stop()
        finally:
            if database:
                from benchmarks.throwaway_db import drop_database

                drop_database(postgres or "", database)


def test_a_short_pass_answers_every_query() -> None:
    """``pytest benchmarks/``: 2,000 endpoints, each query once; the answers, not speed."""
    rows = {r["query"]: r["rows"] for r in run(2000, 1, None)}
    assert rows["list, first page (50)"] == rows["list, next page (cursor)"] == 50
    assert rows["id prefix (6 hex digits)"] == rows["profile contains, one row: a page"] == 1
    assert rows["JSON field, one row: a page"] == 1
    assert rows["JSON field, common"] == rows["profile contains, common"] == 40  # 1 in 50
    assert rows["profile contains, no row: a page"] == 0
    assert rows["profile contains, no row: every page"] == 0
    assert rows["JSON field, no row: every page"] == 0
    assert rows["status = revoked (0.1 %)"] == 2
    assert min(rows.values()) >= 0  # none refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--walks", type=int, default=3,
                        help="times each search of WALKS is followed to its end")  # fmt: skip
    parser.add_argument("--postgres", metavar="DSN", help="a PostgreSQL server to use instead")
    args = parser.parse_args(argv)
    results = run(args.count, args.repeat, args.postgres, args.walks)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"{backend}, {args.count:,} endpoints, {args.repeat} requests each (ms)")
    print(f"{'query':<60} {'rows':>5} {'median':>8} {'max':>8}")
    for r in results:
        name = r["query"] + (f" ({r['note']})" if "note" in r else "")
        print(f"{name:<60} {r['rows']:>5} {r['median_ms']:>8.1f} {r['max_ms']:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
