"""The thin asyncio layer both services share: one request in, one answer out, close.

``data_received`` feeds the kaa_wire sans-IO connection and asks it for the next event;
all protocol work is the core's. This layer only adds what needs a socket or a clock:
the connection limit, the read deadline, handing the decoded request to the service, and
writing its answer (or the core's ERROR frame for any refusal) before closing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from kaa_wire import NEED_DATA, InternalError, KaaWireError, Overloaded, Timeout
from servers import logs
from servers.limits import Gate
from servers.metrics import Metrics

__all__ = ["ServiceContext", "SansIOConnection", "ExchangeProtocol", "ReadDeadlines", "chain"]

T = TypeVar("T")


class SansIOConnection(Protocol):
    def receive_data(self, data: bytes) -> None: ...
    def next_event(self) -> Any: ...
    def send_error(self, error: KaaWireError) -> bytes: ...


def chain(
    source: asyncio.Future[T], finish: Callable[[asyncio.Future[T]], bytes]
) -> asyncio.Future[bytes]:
    """The future of ``finish(source)`` once ``source`` is done, without a task.

    ``finish`` reads ``source.result()`` (its exception then propagates); what it raises
    becomes the answer's exception, and a cancelled source cancels the answer: nothing
    escapes the done callback, where it would leave a connection waiting forever.
    """
    answer: asyncio.Future[bytes] = source.get_loop().create_future()

    def done(_: asyncio.Future[T]) -> None:
        if source.cancelled():
            answer.cancel()
            return
        try:
            answer.set_result(finish(source))
        except Exception as exc:
            answer.set_exception(exc)

    source.add_done_callback(done)
    return answer


class Reading(Protocol):
    """A connection still reading its request, as ReadDeadlines sees it."""

    def read_timed_out(self) -> None: ...


class ReadDeadlines:
    """The read deadlines of one service's connections, on one timer.

    Every connection gets the same timeout, so arrival order is deadline order: a dict
    (insertion-ordered) holds the connections still reading, and one timer fires at the
    earliest deadline. A connection that finishes reading just leaves the dict; under load
    the timer then fires about once per timeout instead of a timer per connection (a uvloop
    TimerHandle is a libuv handle to create, start, stop and close).
    """

    __slots__ = ("_loop", "_timeout_s", "_timer", "_waiting")

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._waiting: dict[Reading, float] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def add(self, protocol: Reading) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        deadline = self._loop.time() + self._timeout_s
        self._waiting[protocol] = deadline
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)

    def discard(self, protocol: Reading) -> None:
        self._waiting.pop(protocol, None)

    def _expire(self) -> None:
        assert self._loop is not None
        self._timer = None
        now = self._loop.time()
        expired = []
        for protocol, deadline in self._waiting.items():
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._expire)
                break
            expired.append(protocol)
        for protocol in expired:
            del self._waiting[protocol]
            protocol.read_timed_out()


@dataclasses.dataclass(slots=True)
class ServiceContext:
    """What every connection of one service shares."""

    name: str
    new_connection: Callable[[], SansIOConnection]
    #: Serves one decoded request: the answer frame, or a future of it (the common case
    #: is served by callbacks, without a task per connection); KaaWireError: a refusal.
    handle: Callable[[Any, Any], bytes | asyncio.Future[bytes]]
    metrics: Metrics
    connections: Gate
    read_timeout_s: float
    retry_after_ms: int
    log: logging.Logger
    deadlines: ReadDeadlines = dataclasses.field(init=False)
    #: One log limiter per refusal code (a bounded set): a flood of refused connections
    #: logs the first and then one line per 30 s with the count, not one line each.
    refusals: dict[str, logs.Trouble] = dataclasses.field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.deadlines = ReadDeadlines(self.read_timeout_s)

    # What a connection reports, whichever protocol serves it (this class's, or the C twin
    # in kaa_wire_ext): one place for the metrics and log lines of both.

    def admit(self) -> bool:
        """Count an accepted connection; False when the connection gate is full."""
        self.metrics.connections.inc(self.name)
        if not self.connections.try_enter():
            return False
        self.metrics.connections_open.inc(self.name)
        return True

    def release(self) -> None:
        """An admitted connection closed."""
        self.connections.leave()
        self.metrics.connections_open.inc(self.name, amount=-1)

    def refused(self, error: KaaWireError, peer: Callable[[], str]) -> None:
        """Count a refusal; log it unless this code's log is rate limited right now."""
        code = error.code.name
        self.metrics.errors.inc(self.name, code)
        refusals = self.refusal_log(code)
        if refusals.log_due():  # the peer's address costs a system call: only when logged
            refusals.failed(error.message, code=code, peer=peer())
        else:
            refusals.failed(error.message)

    def failed(self, peer: str) -> None:
        """The service raised something other than a refusal (logged with its traceback)."""
        self.log.exception("request failed", extra={"fields": {"peer": peer}})

    def served(self, seconds: float) -> None:
        """A whole request was answered ``seconds`` after it arrived."""
        self.metrics.latency.observe(seconds, self.name)

    def refusal_log(self, code: str) -> logs.Trouble:
        trouble = self.refusals.get(code)
        if trouble is None:
            trouble = self.refusals[code] = logs.Trouble(
                self.log, f"refused {code}", base_s=0.0, event="refused", level=logging.INFO
            )
        return trouble


class _Phase(enum.Enum):
    READING = 1
    SERVING = 2
    DONE = 3


class ExchangeProtocol(asyncio.Protocol):
    __slots__ = (
        "_admitted",
        "_conn",
        "_ctx",
        "_phase",
        "_started",
        "_transport",
    )

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._transport: asyncio.Transport | None = None
        self._conn = ctx.new_connection()
        self._phase = _Phase.READING
        self._admitted = False
        self._started = 0.0

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is duck-typed
        ctx = self._ctx
        if not ctx.admit():
            self._refuse(Overloaded("too many connections", retry_after_ms=ctx.retry_after_ms))
            return
        self._admitted = True
        ctx.deadlines.add(self)

    def data_received(self, data: bytes) -> None:
        if self._phase is not _Phase.READING:
            return  # one exchange per connection: anything after the request is ignored
        self._conn.receive_data(data)
        self._poll()

    def eof_received(self) -> bool:
        if self._phase is _Phase.READING:
            self._conn.receive_data(b"")
            self._poll()
        # Keep our side open: a peer that half-closed after its request still gets the answer.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _Phase.DONE
        self._drop_read_deadline()
        if self._admitted:
            self._admitted = False
            self._ctx.release()

    # -- the exchange -------------------------------------------------------------------

    def _poll(self) -> None:
        try:
            event = self._conn.next_event()
        except KaaWireError as exc:
            self._refuse(exc)
            return
        if event is NEED_DATA:
            return
        self._phase = _Phase.SERVING
        self._drop_read_deadline()
        self._started = time.perf_counter()
        self._settle(functools.partial(self._ctx.handle, self._conn, event))

    def _served(self, answer: asyncio.Future[bytes]) -> None:
        if answer.cancelled():  # the server is stopping
            if self._transport is not None:
                self._transport.abort()
            return
        self._settle(answer.result)

    def _settle(self, answer: Callable[[], bytes | asyncio.Future[bytes]]) -> None:
        """Send what ``answer()`` gives, or wait for it: refuse what it raises."""
        try:
            result = answer()
        except KaaWireError as exc:
            self._refuse(exc)
        except Exception:
            self._ctx.failed(self._peer())
            self._refuse(InternalError("the server failed"))
        else:
            if isinstance(result, bytes):
                self._finish(result)
            else:  # read no more while the answer is pending (an immediate one closes)
                if self._transport is not None:
                    self._transport.pause_reading()
                result.add_done_callback(self._served)

    def read_timed_out(self) -> None:
        """Called by the service's ReadDeadlines when this connection's deadline passed."""
        if self._phase is _Phase.READING:
            seconds = self._ctx.read_timeout_s
            self._refuse(Timeout(f"no whole request within {seconds:g} s"))

    def _refuse(self, error: KaaWireError) -> None:
        self._ctx.refused(error, self._peer)
        try:
            answer = self._conn.send_error(error)
        except KaaWireError:  # the core cannot frame it: just close
            answer = b""
        self._finish(answer)

    def _finish(self, answer: bytes) -> None:
        if self._phase is _Phase.SERVING:
            self._ctx.served(time.perf_counter() - self._started)
        self._phase = _Phase.DONE
        self._drop_read_deadline()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if answer:
            transport.write(answer)
        transport.close()
        # close() flushes first; a peer that never reads would hold us forever: abort then.
        if transport.get_write_buffer_size():
            asyncio.get_running_loop().call_later(self._ctx.read_timeout_s, transport.abort)

    def _peer(self) -> str:
        """Looked up only to log a refusal or failure: a system call per connection else."""
        peer = None if self._transport is None else self._transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)

    def _drop_read_deadline(self) -> None:
        self._ctx.deadlines.discard(self)
