"""The admin HTTP port: ``/metrics``, ``/healthz``, ``/livez``, and the console and API.

Served by aiohttp (``aiohttp.web``) in a process of its own, on its own uvloop loop
(servers/admin_process.py; docs/console.md says why, and what it costs the services).
Whoever connects, the port must never cost the services a descriptor or a moment of the
loop they need, nor the admin process more than a bounded share, so this module keeps
what the hand-written server it replaced guaranteed:

* it binds to its own address (``admin_host``, loopback by default), not the services';
* at most ``max_connections`` are open; one more takes the slot of a connection handling
  no request (still sending its head or its body, or idle between requests), the oldest
  of the client address holding the most connections (closed unanswered: idle or slow
  peers cannot keep operators out), or, when every one is handling a request, is
  answered ``503`` and closed at once, never queued (those few descriptors are in the
  process's budget, servers/limits.py);
* a connection may wait at most ``timeout_s`` for a whole request head (trickling bytes
  does not extend it: ``408``, then closed) and stay idle at most ``timeout_s`` between
  requests; a request's handler has ``timeout_s`` to answer; a peer that has not read its
  answer ``timeout_s`` after it was due is aborted;
* a request line or header is at most 8 KiB, a body at most ``MAX_BODY`` bytes;
* the console and API answer each credential at most half of ``requests_per_s`` a
  second, and anonymous clients together the other half (token buckets of two seconds'
  worth, :class:`RequestBudget`); beyond, ``429`` at once, which costs next to nothing.
  This bounds what the console can take from the machine and the store it shares with
  the services (docs/console.md has the measurement), and neither anonymous requests,
  from one address or many, nor another credential's flood, ever lock an admin out. The
  probes are not counted: a scraper is never refused for a busy console.

``/healthz`` is the services' readiness (``503`` with the reason while the store cannot
be read or the lease renewed, or the services published nothing lately), ``/livez`` their
liveness; both and ``/metrics`` need no credential (the port
is on loopback by default: docs/operations.md says how to expose it). Everything else is
the console (servers/console/), which needs one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from servers.limits import Gate

__all__ = [
    "AdminServer",
    "Buckets",
    "CREDENTIAL",
    "client_key",
    "MAX_BODY",
    "MAX_HEAD_LINE",
    "RequestBudget",
    "TokenBucket",
]

#: The longest request line and header line (aiohttp's own default: 8 KiB).
MAX_HEAD_LINE = 8190
#: The largest request body; more is answered 413 without being read.
MAX_BODY = 64 * 1024
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
#: aiohttp's protocol logs a malformed request at ERROR; it is answered 400 and is the
#: peer's fault, and a flood of them must not flood the logs. (A handler's own failure is
#: logged by the console's error middleware.)
_quiet = logging.getLogger("servers.admin.http")
_quiet.setLevel(logging.CRITICAL)


def _raw(status: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


_BUSY = _raw("503 Service Unavailable", b"busy\n")
_TIMED_OUT = _raw("408 Request Timeout", b"timeout\n")
#: The 429 of the request budget, as the console's JSON errors (servers/console/errors.py).
_THROTTLED_JSON = b'{"error": {"code": "busy", "message": "too many admin requests: retry"}}'
_THROTTLED_HEADERS = {"Retry-After": "1"}

Setup = Callable[[web.Application], None]
_PROBES = frozenset({"/metrics", "/healthz", "/livez"})


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up (loop time, loop thread)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


#: An app key: the credential a request carries, when the console knows it (a live
#: session's cookie, an API key it has checked or loaded): its name. The console sets it
#: (a cheap look-up in memory, never the store); without it every request is anonymous.
CREDENTIAL: web.AppKey[Callable[[web.Request], str | None]] = web.AppKey(
    "credential",
    object,  # type: ignore[arg-type]
)


class Buckets:
    """Token buckets by key (``burst`` tokens saved up at most: two seconds' worth unless
    told), at most ``limit`` of them, the least recently used going first (one pushed out
    comes back full: the other limits still hold the total)."""

    def __init__(self, rate: float, limit: int, burst: float | None = None) -> None:
        self.rate = rate
        self.limit = limit
        self.burst = 2 * rate if burst is None else burst
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, burst=self.burst)
            if len(self._buckets) > self.limit:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take()

    def __len__(self) -> int:
        return len(self._buckets)


class RequestBudget:
    """The console's and API's requests, ``rate`` a second for each kind of client, shared
    so that no one client starves the others (the console reviews locked every admin out
    with 40 ``GET /login`` a second into one global bucket, then with one API key's flood
    into the one bucket kept for credentials):

    * each credential the console knows (by its name: a person's sessions share one) has
      a bucket of ``CREDENTIAL_SHARE`` of the rate, its own: no other client takes from it;
    * anonymous requests share ``1 - CREDENTIAL_SHARE`` of the rate, and one client address
      (an IPv6 /64: one host's usual allocation) gets ``ADDRESS_SHARE`` of the rate at most;
    * at most ``MAX_CREDENTIALS`` credentials and ``MAX_ADDRESSES`` addresses have a
      bucket: a spray of addresses costs bounded memory (an address pushed out comes back
      with a full bucket, but every anonymous request also takes from the shared one).

    The work is then bounded by the number of credentials, which only an admin makes.
    """

    CREDENTIAL_SHARE = 0.5
    ADDRESS_SHARE = 0.25
    MAX_CREDENTIALS = 1024
    MAX_ADDRESSES = 4096

    def __init__(self, rate: float) -> None:
        self.rate = rate
        own = rate * self.CREDENTIAL_SHARE
        self.shared = TokenBucket(rate - own, burst=2 * (rate - own))
        self._credentials = Buckets(own, self.MAX_CREDENTIALS)
        self._addresses = Buckets(rate * self.ADDRESS_SHARE, self.MAX_ADDRESSES)

    def take(self, address: str | None, credential: str | None) -> bool:
        if credential is not None:
            return self._credentials.take(credential)
        return self._addresses.take(client_key(address)) and self.shared.take()

    def __len__(self) -> int:
        return len(self._addresses)


def client_key(address: str | None) -> str:
    """An IPv4 address, or an IPv6 address's /64 (a host gets a whole /64 to pick from).

    On a dual-stack socket an IPv4 peer is ``::ffff:a.b.c.d``: its own IPv4 address, not
    the one /64 every IPv4 peer shares. Loopback and link-local IPv6 addresses (whose /64
    is everyone's) are kept whole, the scope of a link-local one included."""
    if not address or ":" not in address:
        return address or ""
    bare, _, scope = address.partition("%")
    try:
        ip = ipaddress.IPv6Address(bare)
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.is_loopback or ip.is_link_local:
        return f"{ip}%{scope}" if scope else str(ip)
    return str(ipaddress.IPv6Network((ip, 64), strict=False).network_address)


class AdminServer:
    def __init__(
        self,
        render_metrics: Callable[[], str],
        *,
        max_connections: int = 16,
        timeout_s: float = 2.0,
        not_ready: Callable[[], str | None] = lambda: None,
        not_alive: Callable[[], str | None] = lambda: None,
        console: Setup | None = None,
        requests_per_s: float = 20.0,
    ) -> None:
        self._render = render_metrics
        #: Why the process cannot serve now (store unreachable, lease not held), or None.
        self._not_ready = not_ready
        #: Why the services are not alive (they published nothing lately), or None.
        self._not_alive = not_alive
        self._console = console
        self._server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self.connections = Gate("admin connections", max_connections)
        self.timeout_s = timeout_s
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self.budget = RequestBudget(requests_per_s)
        self.throttled = 0
        #: The open, admitted connections, by transport (for the request middleware).
        self._open: dict[Any, _Connection] = {}

    def application(self) -> web.Application:
        """The aiohttp application: the probes, and the console when given."""
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._deadline])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/livez", self._livez)
        if self._console is not None:
            self._console(app)
        return app

    async def start(self, host: str | None, port: int | None, sock: Any = None) -> int:
        """Listen on (host, port), or serve ``sock``, a socket already listening (the
        services' process bound it: servers/admin_process.py); returns the bound port."""
        self._runner = web.AppRunner(
            self.application(),
            access_log=None,  # state changes are in the audit log; probes would flood it
            handle_signals=False,
            handler_cancellation=True,  # a peer that goes away cancels its handler
            keepalive_timeout=self.timeout_s,
            max_line_size=MAX_HEAD_LINE,
            max_field_size=MAX_HEAD_LINE,
            logger=_quiet,
        )
        await self._runner.setup()
        make_handler = self._runner.server
        assert make_handler is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: self._admit(make_handler), host, port, sock=sock, backlog=128
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._open.values()):
                conn.abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), self.timeout_s)
        if self._runner is not None:
            await self._runner.cleanup()

    def stats(self) -> dict[str, float]:
        """For /metrics (``kaa_admin_*``)."""
        return {
            "connections_open": self.connections.active,
            "refused_total": self.refused,
            "evicted_total": self.evicted,
            "timed_out_total": self.timed_out,
            "throttled_total": self.throttled,
        }

    # -- connections ----------------------------------------------------------------------

    def _admit(self, make_handler: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        if not self.connections.try_enter() and not self._evict_idle():
            self.refused += 1
            return _Busy()
        return _Connection(self, make_handler())

    def _evict_idle(self) -> bool:
        """At the limit, close the oldest connection that is handling no request (still
        sending its head, as a slow peer holding slots does, or idle between requests) and
        give its slot to the newcomer: otherwise 16 idle connections from anyone kept every
        operator out (the console attack's F1). False when every one is handling one."""
        idle = [t for t, conn in self._open.items() if not conn.busy]  # oldest first
        if not idle:
            return False
        # From the client address holding the most connections, the oldest: one peer
        # churning many sockets evicts its own first, not an operator's one connection
        # that has not sent its request yet (round 3 of the attack).
        held = collections.Counter(self._open[t].client for t in self._open)
        most = max(held[self._open[t].client] for t in idle)
        idle = next(t for t in idle if held[self._open[t].client] == most)
        conn = self._open.pop(idle)  # its connection_lost then frees no slot: this one has it
        self.evicted += 1
        conn.abort()
        return True

    @web.middleware
    async def _deadline(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in _PROBES and not self._within_budget(request):
            self.throttled += 1
            # A constant answer, not the console's error page: a flood costs next to nothing.
            if request.path.startswith("/api/"):
                return web.Response(status=429, body=_THROTTLED_JSON, headers=_THROTTLED_HEADERS,
                                    content_type="application/json")  # fmt: skip
            return web.Response(status=429, text="too many admin requests: retry\n",
                                headers=_THROTTLED_HEADERS)  # fmt: skip
        if request.body_exists and request.path not in _PROBES:
            await self._read_body(request)
        conn = self._open.get(request.transport)
        if conn is not None:
            conn.busy += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                return await handler(request)
        except TimeoutError:
            self.timed_out += 1
            raise web.HTTPServiceUnavailable(reason="Timeout", text="timeout\n") from None
        finally:
            if conn is not None:
                conn.busy -= 1
                conn.answered()

    async def _read_body(self, request: web.Request) -> None:
        """Read the body before the connection counts as handling a request: one trickled
        in held its slot from eviction, and 16 of them, at 8 requests a second, answered
        every operator and probe 503 (the console attack of 2026-12-03, round 3).
        Handlers then read it from aiohttp's cache. A compressed body is refused unread:
        nothing here needs one, and a 64 KiB gzip bomb cost 170 ms of a core to refuse
        (round 5); a body aiohttp cannot decode is 400, not a 500 with an ERROR line."""
        if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            raise web.HTTPUnsupportedMediaType(text="a compressed request body\n")
        try:
            async with asyncio.timeout(self.timeout_s):
                await request.read()
        except TimeoutError:
            self.timed_out += 1
            raise web.HTTPRequestTimeout(text="request body too slow\n") from None
        except RequestPayloadError:
            raise web.HTTPBadRequest(text="a request body that cannot be read\n") from None

    def _within_budget(self, request: web.Request) -> bool:
        known = request.app.get(CREDENTIAL)
        try:
            credential = None if known is None else known(request)
        except Exception:  # the requester's bytes must never get past the budget
            credential = None
        return self.budget.take(request.remote, credential)

    # -- the probes -----------------------------------------------------------------------

    async def _metrics(self, _: web.Request) -> web.Response:
        body = self._render().encode()
        return web.Response(body=body, headers={"Content-Type": _PROMETHEUS})

    async def _healthz(self, _: web.Request) -> web.Response:
        reason = self._not_ready()
        if reason is not None:
            return web.Response(status=503, text=f"not ready: {reason}\n")
        return web.Response(text="ok\n")

    async def _livez(self, _: web.Request) -> web.Response:
        reason = self._not_alive()
        if reason is not None:
            return web.Response(status=503, text=f"not alive: {reason}\n")
        return web.Response(text="alive\n")


class _Busy(asyncio.Protocol):
    """A connection beyond the limit: 503 and closed at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's: duck-typed
        stream.write(_BUSY)
        stream.close()
        if stream.get_write_buffer_size():  # (it fits a fresh socket's buffer)
            stream.abort()


class _Connection(asyncio.Protocol):
    """aiohttp's protocol for one admitted connection, with the admission and deadline
    around it: every call is passed on."""

    def __init__(self, server: AdminServer, inner: asyncio.Protocol) -> None:
        self._server = server
        self._inner = inner
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Requests being handled now.
        self.busy = 0
        #: The peer's address as the request budget keys it (client_key).
        self.client = ""
        #: Whether a request was answered on this connection (an idle keep-alive
        #: connection is closed quietly at its deadline; one that never sent a whole
        #: request head gets 408).
        self._answered_once = False
        self._overdue = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = client_key(peer[0] if isinstance(peer, tuple) and peer else None)
        self._server._open[transport] = self
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        if transport is not None and self._server._open.pop(transport, None) is not None:
            self._server.connections.leave()
        self._inner.connection_lost(exc)

    def answered(self) -> None:
        self._answered_once = True
        self._overdue = False
        self._arm()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._server.timeout_s, self._expired)

    def _expired(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self.busy and not self._overdue:
            # A handler is running: it answers by its own deadline; the peer then has one
            # more period to read the answer.
            self._overdue = True
            self._arm()
            return
        if self.busy or transport.get_write_buffer_size():
            self._server.timed_out += 1
            transport.abort()
            return
        if not self._answered_once:
            self._server.timed_out += 1
            transport.write(_TIMED_OUT)
        transport.close()
        if transport.get_write_buffer_size():
            transport.abort()
