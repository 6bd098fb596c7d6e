"""One load-generator process: builds its share of the requests, then sends them.

The coordinator (``pool.py``) drives each worker over a pipe with small commands:
``setup`` (resolve once, load this worker's reconnect keys), ``warmup`` (register those
keys, untimed), ``build`` (make the requests of the next load point: signing and sealing
happen here, before any timing, on every core), ``run`` (pin to the generator cores and
send them: closed loop or open loop), ``quit``.

One TCP connection per operation. The requests of a point are built, collected and frozen
out of the cyclic garbage collector's reach (``gc.freeze``) before the window, so that no
full collection over them stalls the generator while it sends.

Latency runs from the moment the operation *should* start to the moment its answer is
read: in closed loop that is when a client is free to connect; in open loop it is the
scheduled send time ``start + i / rate``, so a generator or server that falls behind is
charged for the wait (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import uvloop

from benchmarks.loadgen import cpu
from benchmarks.loadgen.floor_server import ANSWER_SIZE
from benchmarks.loadgen.hdr import Histogram
from benchmarks.loadgen.keys import EndpointKey, KeySource, key_source
from benchmarks.loadgen.requests import (
    ANSWERED,
    Request,
    Target,
    TimeSource,
    best_node,
    build_registrations,
    build_resolutions,
    connection_requests,
    resolve_blocking,
)
from kaa_wire import NEED_DATA, KaaWireError, Resolved

__all__ = ["worker_main", "run_closed", "run_open", "RunStats"]

#: Open loop: most connections one process keeps in flight before later sends wait
#: (their latency still counts from their scheduled time).
MAX_IN_FLIGHT = 2048


class _Exchange(asyncio.Protocol):
    """Write one request frame, feed the answer to the sans-IO client, report, close."""

    __slots__ = ("_done", "_request", "_transport")

    def __init__(self, request: Request, done: asyncio.Future[str]) -> None:
        self._request = request
        self._done = done
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        transport.write(self._request.frame)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self._step(data)

    def eof_received(self) -> bool:
        self._step(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result("CLOSED")

    def _step(self, data: bytes) -> None:
        if self._done.done():
            return
        try:
            self._request.feed(data)
            outcome = self._request.finish()
        except KaaWireError as exc:
            outcome = exc.code.name
        if outcome is NEED_DATA:
            return
        self._done.set_result(outcome)
        assert self._transport is not None
        self._transport.close()


def _expire(done: asyncio.Future[str]) -> None:
    if not done.done():
        done.set_result("CLIENT_TIMEOUT")


async def exchange(host: str, port: int, request: Request, timeout: float) -> str:
    """One operation on a new connection: the outcome's name (or the error's code name)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Exchange(request, done), host, port), timeout
        )
    except (TimeoutError, OSError):
        return "CONNECT_FAILED"
    timer = loop.call_later(timeout, _expire, done)
    try:
        return await done
    finally:
        timer.cancel()
        transport.close()


class RunStats:
    """What one process saw in one run; ``to_dict`` crosses the pipe."""

    def __init__(self) -> None:
        self.outcomes: dict[str, dict[str, int]] = {}  # kind -> outcome -> count
        self.latency: dict[str, Histogram] = {}  # kind -> µs
        self.start_lag = Histogram()  # open loop: how late sends left, µs
        self.first_start = float("inf")
        self.last_done = 0.0
        self.unsent = 0
        self.max_in_flight = 0

    def record(self, kind: str, outcome: str, latency_s: float, done_at: float) -> None:
        per_kind = self.outcomes.setdefault(kind, {})
        per_kind[outcome] = per_kind.get(outcome, 0) + 1
        if outcome in _SUCCESS:
            hist = self.latency.get(kind)
            if hist is None:
                hist = self.latency[kind] = Histogram()
            hist.record(max(0, round(latency_s * 1e6)))
        self.last_done = max(self.last_done, done_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcomes": self.outcomes,
            "latency_us": {k: h.to_dict() for k, h in self.latency.items()},
            "start_lag_us": self.start_lag.to_dict(),
            "first_start": self.first_start if self.first_start != float("inf") else None,
            "last_done": self.last_done or None,
            "unsent": self.unsent,
            "max_in_flight": self.max_in_flight,
        }


#: Distinct frames the connection-floor load cycles through (signing more would only
#: lengthen the build).
_CONNECTION_FRAMES = 256

#: Outcomes that count as a successful operation (everything else is an error code).
_SUCCESS = frozenset({"NEW", "EXISTING", "PROFILE_UPDATED", "RESOLVED", ANSWERED})


def is_success(outcome: str) -> bool:
    return outcome in _SUCCESS


async def run_closed(
    host: str,
    port: int,
    requests: list[Request],
    *,
    concurrency: int,
    start_at: float,
    deadline: float,
    timeout: float,
) -> RunStats:
    """``concurrency`` clients, each starting its next operation when the last one ends."""
    stats = RunStats()
    queue = iter(requests)
    clock = time.monotonic
    await asyncio.sleep(max(0.0, start_at - clock()))
    stats.first_start = clock()

    async def client() -> None:
        for request in queue:
            began = clock()
            if began >= deadline:
                stats.unsent += 1
                continue
            outcome = await exchange(host, port, request, timeout)
            done = clock()
            stats.record(request.kind, outcome, done - began, done)

    await asyncio.gather(*(client() for _ in range(max(1, concurrency))))
    stats.max_in_flight = concurrency
    return stats


async def run_open(
    host: str,
    port: int,
    requests: list[Request],
    *,
    rate: float,
    start_at: float,
    slot: int,
    slots: int,
    deadline: float,
    timeout: float,
) -> RunStats:
    """Send request i (this process's ``i``-th, the load's ``slot + i * slots``-th) at
    ``start_at + (slot + i * slots) / rate``, whatever happened to the earlier ones."""
    stats = RunStats()
    clock = time.monotonic
    in_flight: set[asyncio.Task[None]] = set()
    room = asyncio.Semaphore(MAX_IN_FLIGHT)
    interval = 1.0 / rate

    async def one(request: Request, scheduled: float) -> None:
        try:
            now = clock()
            stats.start_lag.record(max(0, round((now - scheduled) * 1e6)))
            outcome = await exchange(host, port, request, timeout)
            done = clock()
            stats.record(request.kind, outcome, done - scheduled, done)
        finally:
            room.release()

    stats.first_start = start_at + slot * interval
    for i, request in enumerate(requests):
        scheduled = start_at + (slot + i * slots) * interval
        if scheduled >= deadline:
            stats.unsent += len(requests) - i
            break
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        await room.acquire()
        task = asyncio.ensure_future(one(request, scheduled))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        stats.max_in_flight = max(stats.max_in_flight, len(in_flight))
    if in_flight:
        await asyncio.wait(in_flight)
    return stats


class Worker:
    def __init__(self, index: int, workers: int) -> None:
        self.index = index
        self.workers = workers
        self.target: Target | None = None
        self.resolved: Resolved | None = None
        self.clock: TimeSource | None = None
        self.keys: KeySource | None = None
        self.reconnect_keys: list[EndpointKey] = []
        self.requests: list[Request] = []
        self.all_cpus = sorted(os.sched_getaffinity(0))

    # -- commands -------------------------------------------------------------------------

    def setup(self, target: dict[str, Any], keycache: str, reconnect: list[int]) -> dict[str, Any]:
        self.target = Target(**target)
        self.keys = key_source(keycache)
        self.resolved = resolve_blocking(self.target)
        self.clock = TimeSource(self.resolved)
        self.reconnect_keys = self.keys.load_many(reconnect)
        node = best_node(self.resolved)
        return {"node": f"{node.host}:{node.port}", "server_time_ms": self.resolved.server_time_ms}

    def build(
        self,
        kind: str,
        count: int,
        first: list[int] | None = None,
        first_share: float = 0.0,
        offset: int = 0,
    ) -> dict[str, Any]:
        assert self.target is not None and self.resolved is not None and self.clock
        os.sched_setaffinity(0, self.all_cpus)  # build on every core, before the window
        began = time.monotonic()
        self.requests = []  # free the previous point's first
        if kind == "resolve":
            self.requests = build_resolutions(count, self.target)
        elif kind == "connection":  # reconnect frames: they use up no first-time keys
            registrations = build_registrations(
                min(count, _CONNECTION_FRAMES),
                node=best_node(self.resolved),
                target=self.target,
                clock=self.clock,
                first_keys=(),
                reconnect_keys=self.reconnect_keys,
                first_share=0.0,
            )
            frames = [r.frame for r in registrations]
            self.requests = connection_requests(frames, count, ANSWER_SIZE)
        else:
            assert self.keys is not None
            first_keys = (self.keys.load(i) for i in (first or []))
            self.requests = build_registrations(
                count,
                node=best_node(self.resolved),
                target=self.target,
                clock=self.clock,
                first_keys=first_keys,
                reconnect_keys=self.reconnect_keys,
                first_share=first_share,
                offset=offset,
            )
        # The built requests are many long-lived objects: left to the cyclic collector, a
        # full collection over them in the timed window stalled this process for ~50 ms
        # (a latency spike charged to the server). Collect now, then freeze them.
        gc.collect()
        gc.freeze()
        return {"built": len(self.requests), "build_s": time.monotonic() - began}

    def run(
        self,
        mode: str,
        service: str,
        start_at: float,
        max_seconds: float,
        cpus: list[int] | None,
        timeout: float,
        concurrency: int = 0,
        rate: float = 0.0,
        port: int = 0,
    ) -> dict[str, Any]:
        """``port``: the floor server's, for the "connection" service (on 127.0.0.1)."""
        assert self.target is not None and self.resolved is not None
        if cpus:
            os.sched_setaffinity(0, cpus)
        if service == "connection":
            host = "127.0.0.1"
        elif service == "bootstrap":
            host, port = self.target.bootstrap_host, self.target.bootstrap_port
        else:
            node = best_node(self.resolved)
            host, port = node.host, node.port
        deadline = start_at + max_seconds
        me = os.getpid()
        requests, self.requests = self.requests, []

        async def main() -> tuple[RunStats, cpu.CpuSample, cpu.CpuSample]:
            await asyncio.sleep(max(0.0, start_at - time.monotonic() - 0.05))
            before = cpu.sample(me)
            if mode == "closed":
                stats = await run_closed(
                    host,
                    port,
                    requests,
                    concurrency=concurrency,
                    start_at=start_at,
                    deadline=deadline,
                    timeout=timeout,
                )
            else:
                stats = await run_open(
                    host,
                    port,
                    requests,
                    rate=rate,
                    start_at=start_at,
                    slot=self.index,
                    slots=self.workers,
                    deadline=deadline,
                    timeout=timeout,
                )
            return stats, before, cpu.sample(me)

        try:
            stats, before, after = uvloop.run(main())
        finally:
            requests.clear()
            gc.unfreeze()  # this point's requests may go now
        result = stats.to_dict()
        result["cpu"] = cpu.usage(before, after)
        result["pid"] = me
        return result

    def warmup(self, concurrency: int, timeout: float) -> dict[str, Any]:
        """Register this worker's reconnect keys with their full key, untimed."""
        assert self.target is not None and self.resolved is not None and self.clock
        node = best_node(self.resolved)
        requests = build_registrations(
            len(self.reconnect_keys),
            node=node,
            target=self.target,
            clock=self.clock,
            first_keys=self.reconnect_keys,
            reconnect_keys=[],
            first_share=1.0,
        )
        self.requests = requests
        started = time.monotonic()
        result = self.run(
            "closed", "operations", started, 600.0, None, timeout, concurrency=concurrency
        )
        return {"outcomes": result["outcomes"], "warmup_s": time.monotonic() - started}


def worker_main(conn: Connection, index: int, workers: int) -> None:
    """Entry point of a worker process: serve commands until ``quit``."""
    worker = Worker(index, workers)
    handlers: dict[str, Callable[..., dict[str, Any]]] = {
        "setup": worker.setup,
        "build": worker.build,
        "run": worker.run,
        "warmup": worker.warmup,
    }
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        command = message.pop("cmd")
        if command == "quit":
            conn.send({"ok": True})
            return
        try:
            conn.send({"ok": True, **handlers[command](**message)})
        except BaseException as exc:  # report to the coordinator, which raises
            conn.send(
                {
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc(),
                }
            )
