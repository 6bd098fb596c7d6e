"""One storm generator process: its share of the devices, prepared before the storm, then run.

Each device runs the client's own :class:`client._policy.RegistrationPlan` (hold-off,
resolution, reconnect by key hash, exponential backoff with full jitter, retry-after): the
one source of the client's policy. The generator only changes *when* the crypto is done
and *how* the sockets are used, never what the device does:

* **Before the storm** every device's first registration request is sealed (X25519, HKDF,
  ChaCha20-Poly1305, the Ed25519 signature) with the timestamp the device will send: the
  server's time (from a resolution made just before) at the common start plus the
  device's hold-off. The plan is started before the storm too, so its hold-off is known.
  In this process :data:`client._policy.RegisterClient` is replaced by
  :class:`SealedBeforeStorm`, which hands that request to the plan when the plan asks for
  the same key, kind and node with a timestamp within ``TOLERANCE_MS`` of the sealed one.
  The tolerance is that wide because a cached-signature answer tells the server's time
  when it was signed (re-signed every 10 s, valid 30 s): two resolutions a moment apart
  can tell times up to 30 s apart, and the plan's own timestamp is that rough too. The
  server's window is +/- 120 s (docs/protocol.md section 6), and it still checks it and
  the endpoint's timestamp order: a request it refuses counts as a failure. Any other
  request, every retry after ``OVERLOADED`` among them, is sealed on demand by the real
  RegisterClient.
* A Bootstrap in cached-signature mode sends every device the same answer bytes (signed
  in advance, its nonce all zero) until it signs again. :func:`memo_resolve_client` makes
  the plan's ResolveClient verify and decode each distinct such answer once per process:
  a device that receives the very bytes already verified gets the same content, at its
  own time of receipt. An answer bound to its request's nonce is verified every time.
* **During the storm** an exchange is a connect, a write and reads until the server
  closes (it closes after its answer, so the close here leaves no TIME_WAIT on a port of
  the range): a device connects only when it is about to send. At most ``max_open``
  sockets of this process are open at once (the port budget, benchmarks/fleet/ports.py);
  a device that has to wait for one has no connection yet, and the waits are reported.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import resource
import time
from collections.abc import Generator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from benchmarks.loadgen import cpu
from benchmarks.loadgen.keys import Ed25519Keys
from benchmarks.loadgen.requests import profile_for

__all__ = ["SealedBeforeStorm", "run_worker"]

#: How far the plan's timestamp may be from the sealed one for that request to be sent.
TOLERANCE_MS = 30_000
#: Loop lag is sampled this often (how late a timer fires: the generator's own backlog).
_TICK_S = 0.1


class _Sealed:
    """A RegisterClient whose request was sealed before the storm (what Exchange uses)."""

    __slots__ = ("conn", "request", "timestamp_ms")

    def __init__(self, conn: Any, timestamp_ms: int) -> None:
        self.conn = conn
        self.timestamp_ms = timestamp_ms
        self.request: bytes = conn.send_request()

    def send_request(self) -> bytes:
        return self.request

    def receive_data(self, data: bytes) -> None:
        self.conn.receive_data(data)

    def next_event(self) -> Any:
        return self.conn.next_event()


class SealedBeforeStorm:
    """Stands in for the plan's RegisterClient: a device's request sealed before the storm
    when it fits the plan's wish, a fresh one sealed now otherwise."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.sealed: dict[int, _Sealed] = {}
        self.used = 0
        self.on_demand = 0

    def seal(self, key: Any, node: Any, timestamp_ms: int, **kwargs: Any) -> None:
        conn = self.real(node, private_key=key, timestamp_ms=timestamp_ms, **kwargs)
        self.sealed[id(key)] = _Sealed(conn, timestamp_ms)

    def __call__(self, node: Any, *, private_key: Any, timestamp_ms: int, **kwargs: Any) -> Any:
        sealed = self.sealed.pop(id(private_key), None)
        if (
            sealed is not None
            and sealed.conn.node == node
            and kwargs.get("reconnect") is True
            and abs(timestamp_ms - sealed.timestamp_ms) <= TOLERANCE_MS
        ):
            self.used += 1
            return sealed
        self.on_demand += 1
        return self.real(node, private_key=private_key, timestamp_ms=timestamp_ms, **kwargs)


def memo_resolve_client(real: type) -> type:
    """The plan's ResolveClient, verifying each distinct unbound answer once (module doc)."""
    verified: dict[tuple[bytes, int, int, bool], tuple[Any, ...]] = {}

    class MemoResolveClient(real):  # type: ignore[misc,valid-type]
        def receive_data(self, data: bytes) -> None:
            self._raw = getattr(self, "_raw", b"") + data
            super().receive_data(data)

        def next_event(self, now: float) -> Any:
            from kaa_wire._connection import Resolved, _State

            raw = getattr(self, "_raw", b"")
            trusted = self._trusted
            key = (raw, id(trusted.public_key), trusted.generation, self._accept_unbound)
            hit = verified.get(key) if self._accept_unbound else None
            if hit is not None:
                self.state = _State.DONE
                return Resolved(hit[0], hit[1], hit[2], now, hit[3])
            event = super().next_event(now)
            # Accepted without echoing this request's random nonce: an unbound answer.
            if isinstance(event, Resolved) and self.request.nonce not in raw:
                if len(verified) > 64:
                    verified.clear()
                verified[key] = (
                    event.nodes,
                    event.server_time_ms,
                    event.valid_for_s,
                    event.bootstrap_key,
                )
            return event

    return MemoResolveClient


class _Gate:
    """At most ``size`` holders; waiters in arrival order. asyncio.Semaphore removes a
    cancelled waiter from its deque (O(n) each): cancelling tens of thousands of waiting
    devices at the bound took minutes. Here a cancelled waiter is skipped when its turn
    comes."""

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def busy(self) -> bool:
        return self.free <= 0

    async def acquire(self) -> None:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(turn)
        try:
            await turn  # release() handed its place over
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed over, then cancelled: pass it on
            raise

    def release(self) -> None:
        while self.waiters:
            turn = self.waiters.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.free += 1


class _Counters:
    def __init__(self) -> None:
        self.gate_waits = 0
        self.gate_wait_s = 0.0
        self.timeouts = 0
        self.lag: list[float] = []


class _OneExchange(asyncio.Protocol):
    """One connection: the request written the moment it connects, every byte until the
    server closes (it closes after its answer); our close then follows theirs."""

    def __init__(self, request: bytes, answer: asyncio.Future[bytes]) -> None:
        self.request = request
        self.answer = answer
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> bool:
        if not self.answer.done():
            self.answer.set_result(b"".join(self.chunks))
        return False  # close our side now: the server closed first

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc or EOFError("connection lost"))


async def _exchange(action: Any, timeout_s: float, gate: _Gate, n: _Counters) -> Any:
    """Connect, write the request, read until the server closes; then open the answer."""
    from kaa_wire._connection import NEED_DATA

    loop = asyncio.get_running_loop()
    if gate.busy():
        n.gate_waits += 1
        waited = time.monotonic()
        await gate.acquire()
        n.gate_wait_s += time.monotonic() - waited
    else:
        await gate.acquire()
    transport = None
    try:
        answer: asyncio.Future[bytes] = loop.create_future()
        try:
            async with asyncio.timeout(timeout_s):
                transport, _ = await loop.create_connection(
                    lambda: _OneExchange(action.request, answer), action.host, action.port
                )
                action.sent = len(action.request)
                data = await answer
        except TimeoutError:
            n.timeouts += 1  # this close comes first: a TIME_WAIT on our port
            raise
        event = action.receive(data)
        if event is NEED_DATA:
            event = action.receive(b"")  # end of stream: raises what is wrong
        if event is NEED_DATA:
            raise EOFError("the server closed before its whole answer")
        return event
    finally:
        if transport is not None:
            transport.close()
        gate.release()


async def _drive(steps: Generator[Any, Any, Any], action: Any, timeout_s: float,
                 gate: _Gate, n: _Counters) -> Any:  # fmt: skip
    """client._asyncio.run's loop, over :func:`_exchange`, from an action already taken."""
    from client._policy import TRANSPORT_ERRORS, Sleep

    try:
        while True:
            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
                action = steps.send(None)
                continue
            try:
                event = await _exchange(action, timeout_s, gate, n)
            except TRANSPORT_ERRORS as exc:
                # The plan keeps each failure in its attempts: without the traceback, not
                # every frame of the exchange with it (memory, at 100,000 devices).
                action = steps.throw(exc.with_traceback(None))
            else:
                action = steps.send(event)
    except StopIteration as stop:
        return stop.value


def run_worker(
    conn: Connection, sdk_json: str, indexes: list[int], holdoff_s: float,
    cpus: list[int] | None, bound_s: float, max_open: int, stop: Event,
) -> None:  # fmt: skip
    """The process body: build, report, seal for the start it is told, run, report."""
    import uvloop

    import client._policy as policy_module
    from client._policy import Connected, Failed, RegistrationPlan, RetryPolicy, Sleep
    from client._state import DeviceState
    from kaa_wire._errors import Overloaded
    from kaa_wire.sdk_config import SdkConfig

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = SdkConfig.from_json(Path(sdk_json).read_text())
    anchors = tuple(server.trusted_key() for server in config.bootstrap_servers)
    policy = RetryPolicy(initial_holdoff_s=holdoff_s)
    timeout_s = policy.exchange_timeout_s
    sealer = SealedBeforeStorm(policy_module.RegisterClient)
    counters = _Counters()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    gate = _Gate(max_open)

    def plan_for(key: Any, pol: Any) -> Any:
        state = DeviceState(endpoint_id=key.endpoint_id.hex(), registered=True, status="existing")
        return RegistrationPlan(
            config, anchors, key.private_key, state, profile_for(key.index),
            policy=pol, rng=random.Random(key.index), clock=time.monotonic,
        )  # fmt: skip

    keys = Ed25519Keys().load_many(indexes)

    # A resolution just before the storm: the server's time and the node to seal to. The
    # client's own plan makes it (a device of this process; its request is never sent).
    async def first_resolution() -> Any:
        for _ in range(10):
            probe = plan_for(keys[0], RetryPolicy())
            steps = probe.steps()
            try:
                event = await _exchange(next(steps), timeout_s, gate, counters)
                steps.send(event)  # the plan keeps the verified resolution, builds a request
                return probe.resolved
            except Exception:  # the node may still be starting: ask again
                await asyncio.sleep(1.0)
            finally:
                steps.close()
        raise RuntimeError("no resolution from the Bootstrap before the storm")

    resolved = loop.run_until_complete(first_resolution())
    node = resolved.nodes[0]
    started = [plan_for(key, policy).steps() for key in keys]
    firsts = [next(steps) for steps in started]  # the hold-off (a Sleep) of each plan
    holdoffs = [a.seconds if isinstance(a, Sleep) else 0.0 for a in firsts]
    sample = time.monotonic()
    for key in keys[: min(32, len(keys))]:
        policy_module.RegisterClient(
            node, sdk_token=config.sdk_token, private_key=key.private_key,
            profile=profile_for(key.index), timestamp_ms=0, reconnect=True,
        ).send_request()  # fmt: skip
    per_seal = (time.monotonic() - sample) / min(32, len(keys))
    conn.send({"built": len(keys), "seal_estimate_s": per_seal * len(keys)})

    planned: float = conn.recv()  # the common start the timestamps are sealed for
    began = time.monotonic()
    for key, holdoff in zip(keys, holdoffs, strict=True):
        sealer.seal(
            key.private_key, node, resolved.server_time_at(planned + holdoff),
            sdk_token=config.sdk_token, profile=profile_for(key.index), reconnect=True,
            max_frame_size=config.max_frame_size,
        )  # fmt: skip
    policy_module.RegisterClient = sealer  # type: ignore[assignment,misc]
    policy_module.ResolveClient = memo_resolve_client(policy_module.ResolveClient)  # type: ignore[assignment,misc]
    conn.send({"sealed": len(keys), "seal_s": time.monotonic() - began})

    start_at: float = conn.recv()
    if cpus:
        os.sched_setaffinity(0, cpus)
    done_at: list[float] = []
    after_holdoff: list[float] = []
    overloaded = {"resolve": 0, "register": 0}
    attempts = {"resolve": 0, "register": 0}
    failed = [0]
    other = [0]

    async def device(index: int) -> None:
        steps, first = started[index], firsts[index]
        if isinstance(first, Sleep):  # its hold-off, from the common start, is over
            first = steps.send(None)
        outcome = await _drive(steps, first, timeout_s, gate, counters)
        for attempt in outcome.attempts:
            attempts[attempt.stage] += 1
            overloaded[attempt.stage] += isinstance(attempt.cause, Overloaded)
        if isinstance(outcome, Connected):
            now = time.monotonic()
            done_at.append(now - start_at)
            after_holdoff.append(now - start_at - holdoffs[index])
        elif isinstance(outcome, Failed):
            failed[0] += 1
        else:
            other[0] += 1

    async def ticker() -> None:
        while not stop.is_set():
            due = time.monotonic() + _TICK_S
            await asyncio.sleep(_TICK_S)
            counters.lag.append(time.monotonic() - due)

    live: set[asyncio.Task[None]] = set()
    remaining = [len(started)]
    finished = asyncio.Event()

    def ended(task: asyncio.Task[None]) -> None:
        live.discard(task)
        remaining[0] -= 1
        if not remaining[0]:
            finished.set()

    def spawn(index: int) -> None:
        task = loop.create_task(device(index))
        live.add(task)
        task.add_done_callback(ended)

    async def main() -> None:
        # A device's coroutine exists only from the end of its hold-off (a timer until then).
        now = time.monotonic()  # (uvloop's loop.time() has its own origin)
        for index, holdoff in enumerate(holdoffs):
            loop.call_later(start_at + holdoff - now, spawn, index)
        tick = asyncio.ensure_future(ticker())
        deadline = start_at + bound_s
        while not finished.is_set() and not stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), 1.0)
        for task in list(live):  # still trying at the bound (or stopped): they count so
            task.cancel()
        await asyncio.gather(*live, return_exceptions=True)
        tick.cancel()
        await asyncio.gather(tick, return_exceptions=True)

    before = cpu.sample(os.getpid())
    if os.environ.get("STORM_PROFILE"):
        import cProfile

        prof = cProfile.Profile()
        prof.runcall(loop.run_until_complete, main())
        prof.dump_stats(os.environ["STORM_PROFILE"] + str(os.getpid()))
    else:
        loop.run_until_complete(main())
    usage = cpu.usage(before, cpu.sample(os.getpid()))
    loop.close()
    lag = sorted(counters.lag)
    conn.send({
        "done_at": done_at, "after_holdoff": after_holdoff, "overloaded": overloaded,
        "attempts": attempts, "failed": failed[0], "revoked": other[0], "cpu": usage,
        "devices": len(keys), "sealed_before_used": sealer.used,
        "sealed_on_demand": sealer.on_demand, "gate_waits": counters.gate_waits,
        "gate_wait_s": round(counters.gate_wait_s, 2), "timeouts": counters.timeouts,
        "loop_lag_ms": {
            "p50": round(1000 * lag[len(lag) // 2], 1) if lag else None,
            "p99": round(1000 * lag[int(0.99 * (len(lag) - 1))], 1) if lag else None,
            "max": round(1000 * lag[-1], 1) if lag else None,
        },
    })  # fmt: skip
