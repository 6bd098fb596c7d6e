"""The admin HTTP port: ``GET /metrics`` (Prometheus text) and ``GET /healthz``.

A deliberately tiny HTTP/1.1 server: one request per connection, nothing else. It must
never cost the services a descriptor or a moment of the event loop they need, whoever
connects to it, so:

* it binds to its own address (``admin_host``, loopback by default), not the services';
* at most ``max_connections`` are open; one more is answered ``503`` and closed at once,
  never queued (those few descriptors are in the process's budget, servers/limits.py);
* each connection lives at most ``timeout_s``, request *and* answer: trickling bytes does
  not extend it, and a peer that never reads the answer is aborted at that deadline;
* a request head is at most 8 KiB; it is parsed by hand on an ``asyncio.Protocol``, with
  no task and no stream per connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from servers.limits import Gate

__all__ = ["AdminServer"]

_MAX_HEAD = 8192
_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_TEXT = "text/plain"


def _response(status: str, content_type: str, body: bytes) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


_BUSY = _response("503 Service Unavailable", _TEXT, b"busy\n")
_BAD_REQUEST = _response("400 Bad Request", _TEXT, b"bad request\n")
_TIMED_OUT = _response("408 Request Timeout", _TEXT, b"timeout\n")


class AdminServer:
    def __init__(
        self,
        render_metrics: Callable[[], str],
        *,
        max_connections: int = 16,
        timeout_s: float = 2.0,
        not_ready: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._render = render_metrics
        #: Why the process cannot serve now (store unreachable, lease not held), or None.
        self._not_ready = not_ready
        self._server: asyncio.Server | None = None
        self.connections = Gate("admin connections", max_connections)
        self.timeout_s = timeout_s
        self.refused = 0
        self.timed_out = 0

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _AdminConnection(self), host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def stats(self) -> dict[str, float]:
        """For /metrics (``kaa_admin_*``)."""
        return {
            "connections_open": self.connections.active,
            "refused_total": self.refused,
            "timed_out_total": self.timed_out,
        }

    def answer(self, head: bytes) -> bytes:
        """The whole response to a request head (without its final blank line)."""
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return _BAD_REQUEST
        method, target, _ = parts
        path = target.split("?", 1)[0]
        if method != "GET":
            return _response("405 Method Not Allowed", _TEXT, b"method not allowed\n")
        if path == "/metrics":
            return _response("200 OK", _PROMETHEUS, self._render().encode())
        if path == "/healthz":  # readiness: can it serve?
            reason = self._not_ready()
            if reason is not None:
                body = f"not ready: {reason}\n".encode()
                return _response("503 Service Unavailable", _TEXT, body)
            return _response("200 OK", _TEXT, b"ok\n")
        if path == "/livez":  # liveness: the process runs and answers
            return _response("200 OK", _TEXT, b"alive\n")
        return _response("404 Not Found", _TEXT, b"not found\n")


class _AdminConnection(asyncio.Protocol):
    __slots__ = ("_admin", "_admitted", "_answered", "_deadline", "_head", "_transport")

    def __init__(self, admin: AdminServer) -> None:
        self._admin = admin
        self._transport: asyncio.Transport | None = None
        self._head = bytearray()
        self._admitted = False
        self._answered = False
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's: duck-typed
        self._transport = stream
        admin = self._admin
        if not admin.connections.try_enter():
            admin.refused += 1
            self._send(_BUSY)
            if stream.get_write_buffer_size():  # (it fits a fresh socket's buffer)
                stream.abort()
            return
        self._admitted = True
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(admin.timeout_s, self._expired)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return  # one request per connection: anything after it is ignored
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_HEAD:
                self._send(_BAD_REQUEST)
            return
        if end + 4 > _MAX_HEAD:
            self._send(_BAD_REQUEST)
            return
        self._send(self._admin.answer(bytes(self._head[:end])))

    def eof_received(self) -> bool:
        if not self._answered:
            self._send(_BAD_REQUEST)  # the peer stopped before a whole request head
        return True  # _send closes; a half-closed peer still gets the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._answered = True
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._admitted:
            self._admitted = False
            self._admin.connections.leave()

    def _expired(self) -> None:
        self._deadline = None
        self._admin.timed_out += 1
        transport = self._transport
        if transport is None:
            return
        if not self._answered:
            self._send(_TIMED_OUT)
        # A peer that has not read its answer by now is not waited for.
        if transport.get_write_buffer_size():
            transport.abort()

    def _send(self, response: bytes) -> None:
        self._answered = True
        self._head.clear()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(response)
        transport.close()
