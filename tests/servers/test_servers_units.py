"""Small parts on their own: metrics text, log lines, lookup cache, bounded pools and the
store writer's bound and batching."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from kaa_wire import Overloaded
from servers import logs
from servers.admin import AdminServer
from servers.caching import LookupCache
from servers.limits import Gate, WorkerPool
from servers.metrics import Counter, Histogram, Metrics, Registry
from servers.net import ReadDeadlines
from servers.runtime import Listeners
from servers.store.base import (
    Application,
    AuditEntry,
    Balancing,
    EndpointWrite,
    StoreBusy,
    WriteOutcome,
)
from servers.store.limits import StoreLimits
from servers.store.sqlite import SqliteStore

# -- metrics ----------------------------------------------------------------------------------


def test_metrics_text_format() -> None:
    registry = Registry()
    errors = Counter("kaa_errors_total", "Errors", ("service", "code"))
    latency = Histogram("kaa_seconds", "Latency", ("service",), buckets=(0.1, 1.0))
    registry.add(errors)
    registry.add(latency)
    errors.inc("bootstrap", "TIMEOUT")
    errors.inc("bootstrap", "TIMEOUT")
    errors.inc("ops", 'we"ird\n')
    for value in (0.05, 0.1, 0.5, 3.0):
        latency.observe(value, "ops")
    assert registry.render().splitlines() == [
        "# HELP kaa_errors_total Errors",
        "# TYPE kaa_errors_total counter",
        'kaa_errors_total{service="bootstrap",code="TIMEOUT"} 2',
        'kaa_errors_total{service="ops",code="we\\"ird\\n"} 1',
        "# HELP kaa_seconds Latency",
        "# TYPE kaa_seconds histogram",
        'kaa_seconds_bucket{service="ops",le="0.1"} 2',
        'kaa_seconds_bucket{service="ops",le="1"} 3',
        'kaa_seconds_bucket{service="ops",le="+Inf"} 4',
        'kaa_seconds_sum{service="ops"} 3.65',
        'kaa_seconds_count{service="ops"} 4',
    ]
    with pytest.raises(ValueError):
        registry.add(Counter("kaa_errors_total", "again"))


def test_stats_families_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    stats = {"commits_total": 1.0, "pending_writes": 5.0}
    metrics.add_stats("kaa_store", "Store", lambda: stats)
    stats["commits_total"] = 4.0
    text = metrics.render()
    assert "# TYPE kaa_store_commits_total counter\nkaa_store_commits_total 4\n" in text
    assert "# TYPE kaa_store_pending_writes gauge\nkaa_store_pending_writes 5\n" in text


def test_admin_serves_metrics_and_health() -> None:
    async def main() -> None:
        admin = AdminServer(lambda: "kaa_up 1\n")
        port = await admin.start("127.0.0.1", 0)

        def get(path: str) -> tuple[int, str, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                    return r.status, r.headers["Content-Type"], r.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, "", ""

        try:
            status, kind, body = await asyncio.to_thread(get, "/metrics")
            assert (status, body) == (200, "kaa_up 1\n") and kind.startswith("text/plain")
            assert (await asyncio.to_thread(get, "/healthz"))[::2] == (200, "ok\n")
            assert (await asyncio.to_thread(get, "/nope"))[0] == 404
        finally:
            await admin.stop()

    asyncio.run(main())


def test_admin_requests_beyond_the_budget_are_refused_but_not_the_probes() -> None:
    """A budget of 8 requests a second, of which one anonymous address gets 2 (a burst of
    4): the fifth quick request is 429 with Retry-After; the probes are neither counted
    nor refused; a second later it answers."""

    async def main() -> None:
        admin = AdminServer(lambda: "kaa_up 1\n", requests_per_s=8)
        port = await admin.start("127.0.0.1", 0)

        def get(path: str) -> tuple[int, str | None]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                    return r.status, None
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers.get("Retry-After")

        try:
            statuses = [(await asyncio.to_thread(get, "/nope"))[0] for _ in range(4)]
            assert statuses == [404] * 4
            assert await asyncio.to_thread(get, "/nope") == (429, "1")
            for probe in ("/metrics", "/healthz", "/livez"):
                assert (await asyncio.to_thread(get, probe))[0] == 200
            await asyncio.sleep(1.0)
            assert (await asyncio.to_thread(get, "/nope"))[0] == 404
            assert admin.stats()["throttled_total"] == 1
        finally:
            await admin.stop()

    asyncio.run(main())


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sends before it closes (a reset counts as a close)."""
    try:
        return await asyncio.wait_for(reader.read(), 30)
    except ConnectionError:
        return b""


def test_admin_answers_503_only_when_every_connection_is_handling_a_request() -> None:
    """A connection handling a request is never evicted for a newcomer: with every slot
    busy the newcomer is answered 503 at once."""

    async def main() -> None:
        release = asyncio.Event()

        async def slow(_: web.Request) -> web.Response:
            await release.wait()
            return web.Response(text="done\n")

        admin = AdminServer(
            lambda: "", max_connections=1, timeout_s=5.0,
            console=lambda app: app.router.add_get("/slow", slow),
        )  # fmt: skip
        port = await admin.start("127.0.0.1", 0)
        try:
            busy, busy_w = await asyncio.open_connection("127.0.0.1", port)
            busy_w.write(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            while not any(conn.busy for conn in admin._open.values()):
                await asyncio.sleep(0.01)
            late, late_w = await asyncio.open_connection("127.0.0.1", port)
            assert (await _until_closed(late)).startswith(b"HTTP/1.1 503 ")
            release.set()
            assert (await _until_closed(busy)).endswith(b"done\n")
            assert (admin.stats()["refused_total"], admin.stats()["evicted_total"]) == (1, 0)
            for w in (busy_w, late_w):
                w.close()
        finally:
            await admin.stop()

    asyncio.run(main())


def test_admin_holds_few_connections_each_for_a_short_time() -> None:
    """Over real sockets: at the limit a newcomer takes the slot of the oldest connection
    handling no request, which is closed unanswered (before, it was answered 503 while
    idle peers held every slot: the console attack's F1); a held one ends at the deadline
    with 408, silent or trickling bytes (which do not extend it); a peer that never reads
    a big answer is cut at the deadline too; then the port serves again. A head over
    8 KiB is 400."""

    async def main() -> None:
        big = "x" * (8 << 20)  # far more than the socket buffers hold
        admin = AdminServer(lambda: big, max_connections=2, timeout_s=1.5)
        port = await admin.start("127.0.0.1", 0)

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection("127.0.0.1", port)

        async def trickle(writer: asyncio.StreamWriter) -> None:
            # A well-formed head that never ends (a malformed one is refused 400 at once).
            for byte in b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 200:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)

        try:
            silent, silent_w = await connect()
            trickling, trickling_w = await connect()
            sender = asyncio.create_task(trickle(trickling_w))
            await asyncio.sleep(0.1)  # both admitted
            third, third_w = await connect()
            assert await _until_closed(silent) == b""  # the oldest, evicted for the third
            assert (await _until_closed(trickling)).startswith(b"HTTP/1.1 408 ")
            assert (await _until_closed(third)).startswith(b"HTTP/1.1 408 ")
            sender.cancel()

            # A peer that asks for a big answer and never reads it.
            reader, writer = await connect()
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.1)
            assert admin.connections.active == 1  # held, its answer half written
            while admin.connections.active:
                await asyncio.sleep(0.05)  # cut at the deadline
            got = await _until_closed(reader)
            assert len(got) < len(big)

            oversized, oversized_w = await connect()
            oversized_w.write(b"GET /" + b"a" * 9000)
            # (HTTP/1.0: a request line that long is not read, so neither is its version.)
            assert (await _until_closed(oversized)).split(b"\r\n")[0].endswith(b" 400 Bad Request")
            healthy, healthy_w = await connect()
            healthy_w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await _until_closed(healthy)).endswith(b"\r\n\r\nok\n")
            stats = admin.stats()
            assert (stats["evicted_total"], stats["refused_total"]) == (1, 0)
            assert stats["timed_out_total"] == 3
            for w in (silent_w, trickling_w, third_w, writer, oversized_w, healthy_w):
                w.close()
        finally:
            await admin.stop()

    asyncio.run(main())


# -- logs ---------------------------------------------------------------------------------------


def _capture(json_lines: bool) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logs.configure(json_lines=json_lines, level="debug", stream=stream)
    return logs.get("test"), stream


def test_json_log_lines() -> None:
    log, stream = _capture(True)
    logs.event(log, logging.INFO, "registered", endpoint="ab" * 20, status="NEW", name="x")
    logs.event(log, logging.DEBUG, "line\nbreak", level="spoofed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "registered" and first["level"] == "info"
    assert (first["endpoint"], first["status"], first["name"]) == ("ab" * 20, "NEW", "x")
    assert first["logger"] == "servers.test" and first["ts"].endswith("Z")
    assert second["level"] == "debug"  # a field cannot overwrite the reserved keys


def test_text_log_lines_quote_what_needs_it() -> None:
    log, stream = _capture(False)
    logs.event(log, logging.WARNING, "refused", code="TIMEOUT", reason="no whole request", empty="")
    line = stream.getvalue().strip()
    assert line.endswith('refused code=TIMEOUT reason="no whole request" empty=""')
    assert "\n" not in line


def test_levels_below_the_threshold_cost_nothing() -> None:
    stream = io.StringIO()
    logs.configure(level="warning", stream=stream)
    logs.event(logs.get("test"), logging.INFO, "hidden")
    assert stream.getvalue() == ""


# -- lookup cache -------------------------------------------------------------------------------


def test_lookup_cache_shares_loads_and_caches_absence() -> None:
    async def main() -> None:
        now = [0.0]
        loads: list[str] = []
        gate = asyncio.Event()

        async def load(key: str) -> str | None:
            loads.append(key)
            await gate.wait()
            return None if key == "missing" else key.upper()

        cache = LookupCache(load, ttl_s=10, negative_ttl_s=1, max_entries=2, clock=lambda: now[0])
        waiting = [asyncio.ensure_future(cache.get("a")) for _ in range(5)]
        await asyncio.sleep(0)
        gate.set()
        assert await asyncio.gather(*waiting) == ["A"] * 5
        assert loads == ["a"]  # five callers, one load
        assert await cache.get("missing") is None
        assert await cache.get("missing") is None
        assert loads == ["a", "missing"]
        now[0] = 1.5  # the absence expired, the value has not
        assert await cache.get("missing") is None and await cache.get("a") == "A"
        assert loads == ["a", "missing", "missing"]
        await cache.get("b")  # a third key evicts the least recently used ("missing")
        assert len(cache) == 2

    asyncio.run(main())


def test_lookup_cache_propagates_failures_and_retries() -> None:
    async def main() -> None:
        calls = 0

        async def load(key: str) -> str | None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("store down")
            return "ok"

        cache: LookupCache[str, str] = LookupCache(
            load, ttl_s=10, negative_ttl_s=10, max_entries=10
        )
        with pytest.raises(RuntimeError):
            await cache.get("k")
        assert await cache.get("k") == "ok"

    asyncio.run(main())


# -- bounded work -----------------------------------------------------------------------------


def test_gate_counts_to_its_limit() -> None:
    gate = Gate("g", 2)
    assert gate.try_enter() and gate.try_enter() and not gate.try_enter()
    gate.leave()
    assert gate.try_enter()


def test_worker_pool_refuses_beyond_its_bound() -> None:
    async def main() -> None:
        pool = WorkerPool("sign", threads=1, max_pending=2, retry_after_ms=250)
        release = threading.Event()
        busy = [asyncio.ensure_future(pool.run(release.wait)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await pool.run(release.wait)
        assert refused.value.retry_after_ms == 250
        release.set()
        assert await asyncio.gather(*busy) == [True, True]
        assert await pool.run(lambda: 42) == 42
        pool.shutdown()

    asyncio.run(main())


def _endpoint_write(n: int) -> EndpointWrite:
    return EndpointWrite(
        endpoint_id=hashlib.sha1(bytes([n])).digest(),
        public_key=bytes([n]),
        sdk_token_hash=bytes(32),
        application="app",
        profile=b"",
        profile_hash=hashlib.sha256(b"").digest(),
        request_ms=1,
        now_ms=1,
    )


async def _store_with_app(path: Path, limits: StoreLimits | None = None) -> SqliteStore:
    store = SqliteStore(path, limits=limits or StoreLimits())
    await store.open()
    app = Application("app", "n", b"", 1, (), Balancing.STATIC, False, 0)
    await store.create_application(app, AuditEntry(0, "t", "app.create", "n"))
    return store


def test_store_writer_queue_is_bounded(tmp_path: Path) -> None:
    async def main() -> None:
        store = await _store_with_app(tmp_path / "r.db", StoreLimits(max_pending_writes=2))
        release = threading.Event()
        # Hold the writer thread inside a job, so submitted writes stay pending.
        held = store._writer.submit(lambda conn: release.wait(), bounded=False)
        try:
            queued = asyncio.ensure_future(store.register_endpoint(_endpoint_write(1)))
            await asyncio.sleep(0)
            with pytest.raises(StoreBusy):
                await store.register_endpoint(_endpoint_write(2))
        finally:
            release.set()
        assert await held is True
        assert await queued is WriteOutcome.NEW
        assert store.stats()["refused_writes_total"] == 1
        await store.close()

    asyncio.run(main())


def test_store_groups_concurrent_writes_into_few_commits(tmp_path: Path) -> None:
    async def main() -> None:
        # A long gathering window that ends as soon as a batch of 50 is full.
        limits = StoreLimits(group_commit_ms=10_000, max_batch=50)
        store = await _store_with_app(tmp_path / "r.db", limits)
        before = store.stats()["commits_total"]
        outcomes = await asyncio.gather(
            *(store.register_endpoint(_endpoint_write(n)) for n in range(200))
        )
        assert set(outcomes) == {WriteOutcome.NEW}
        assert store.stats()["commits_total"] - before == 4
        await store.close()

    asyncio.run(main())


def test_store_is_wal_with_full_sync(tmp_path: Path) -> None:
    async def main() -> None:
        store = await _store_with_app(tmp_path / "r.db")
        conn = store._connect_writer()
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            # synchronous is per connection: check what the writer sets (2 = FULL).
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        finally:
            conn.close()
        await store.close()

    asyncio.run(main())


class _Reading:
    """What ReadDeadlines calls: records when its deadline passed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.timed_out_at: float | None = None

    def read_timed_out(self) -> None:
        self.timed_out_at = self._loop.time()


def test_read_deadlines_time_out_only_the_connections_still_reading() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = ReadDeadlines(0.2)
        done, slow, later = _Reading(loop), _Reading(loop), _Reading(loop)
        began = loop.time()
        deadlines.add(done)
        deadlines.add(slow)
        deadlines.discard(done)  # read its request: never times out
        await asyncio.sleep(0.1)
        deadlines.add(later)
        await asyncio.sleep(0.15)  # past slow's deadline, not later's
        assert done.timed_out_at is None and later.timed_out_at is None
        assert slow.timed_out_at is not None and 0.2 <= slow.timed_out_at - began < 0.25
        await asyncio.sleep(0.1)
        assert later.timed_out_at is not None and later.timed_out_at - began >= 0.3
        assert done.timed_out_at is None

    asyncio.run(main())


def test_trouble_logs_the_first_then_one_line_per_interval_with_what_it_suppressed() -> None:
    stream = io.StringIO()
    logs.configure(stream=stream)
    trouble = logs.Trouble(logs.get("test"), "x", base_s=0.0, event="refused",
                           level=logging.INFO, log_every_s=3600)  # fmt: skip
    assert trouble.log_due()
    for _ in range(1000):
        trouble.failed("garbage", code="MALFORMED_FRAME")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "refused code=MALFORMED_FRAME error=garbage failures=1" in lines[0]
    assert not trouble.log_due() and trouble.failures == 1000
    trouble._logged_at -= 3600  # the interval has passed
    trouble.failed("garbage")
    assert stream.getvalue().splitlines()[1].endswith("failures=1001 suppressed=999")


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:9899/"),
        ("::", "http://[::]:9899/"),  # before: http://:::9899/
        ("::1", "http://[::1]:9899/"),
        ("admin.example", "http://admin.example:9899/"),
    ],
)
def test_the_admin_url_printed_at_start_brackets_an_ipv6_address(host: str, url: str) -> None:
    assert Listeners("127.0.0.1", admin_port=9899, admin_host=host).admin_url() == url
