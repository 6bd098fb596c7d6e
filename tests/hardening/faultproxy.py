"""A real asyncio TCP proxy that mangles traffic between a client and a server.

It runs on its own thread and event loop, so blocking test code (and the client library)
talks to it over ordinary loopback sockets. Each accepted connection is carried to the
upstream server in one of these modes:

* ``split``: every byte, both ways, goes out in its own ``send`` with TCP_NODELAY and a
  pause between bytes, so the peer's reads see one byte at a time;
* ``delay``: every chunk, both ways, is held ``delay_s`` before it is forwarded;
* ``cut``: the first ``cut_at`` bytes of the request go upstream, then the proxy half-closes
  upstream (the server sees EOF in the middle of a frame) and drops the rest of the request;
  the server's answer comes back whole;
* ``cut_answer``: the request goes up whole, and only the first ``cut_at`` bytes of the
  server's answer come back before the proxy closes the client's connection;
* ``tamper``: the request goes up whole; the server's whole answer (up to its close) is
  passed through ``tamper`` and what it returns goes to the client: an on-path attacker.

Every connection leaves a :class:`Carried` record: the bytes sent upstream and the bytes the
server answered, so a test can check what the server said even when the client saw a cut.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Callable
from typing import Literal

__all__ = ["Carried", "FaultProxy", "Mode"]

Mode = Literal["split", "delay", "cut", "cut_answer", "tamper"]

_CHUNK = 65536


@dataclasses.dataclass
class Carried:
    """What one proxied connection carried."""

    upstream: bytearray = dataclasses.field(default_factory=bytearray)
    answer: bytearray = dataclasses.field(default_factory=bytearray)
    #: Separate sends the proxy made to the server and to the client.
    sends_up: int = 0
    sends_down: int = 0
    done: bool = False


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        mode: Mode,
        *,
        pause_s: float = 0.0005,
        delay_s: float = 0.3,
        cut_at: int = 0,
        tamper: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.upstream = upstream
        self.mode = mode
        self.pause_s = pause_s
        self.delay_s = delay_s
        self.cut_at = cut_at
        self.tamper = tamper
        self.carried: list[Carried] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        assert self._server is not None, "the proxy did not start"
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- one connection -------------------------------------------------------------------

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        record = Carried()
        self.carried.append(record)
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        _nodelay(client_w)
        _nodelay(server_w)
        try:
            # A reset on one side ends that pump only; the other finishes on its own EOF.
            await asyncio.gather(
                self._pump_up(client_r, server_w, record),
                self._pump_down(server_r, client_w, record),
                return_exceptions=True,
            )
        finally:
            record.done = True
            for writer in (server_w, client_w):
                writer.close()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> int:
        """Forward ``data`` as this mode wants it; the number of sends made."""
        if self.mode == "split":
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await writer.drain()
                await asyncio.sleep(self.pause_s)
            return len(data)
        if self.mode == "delay":
            await asyncio.sleep(self.delay_s)
        writer.write(data)
        await writer.drain()
        return 1

    async def _pump_up(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Carried
    ) -> None:
        while chunk := await reader.read(_CHUNK):
            if self.mode == "cut":
                room = self.cut_at - len(record.upstream)
                if room > 0:
                    record.upstream += chunk[:room]
                    record.sends_up += await self._send(writer, chunk[:room])
                if len(record.upstream) >= self.cut_at:
                    break  # the rest of the request is dropped
                continue
            record.upstream += chunk
            record.sends_up += await self._send(writer, chunk)
        if writer.can_write_eof():
            writer.write_eof()

    async def _pump_down(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: Carried
    ) -> None:
        while chunk := await reader.read(_CHUNK):
            record.answer += chunk
            if self.mode == "tamper":
                continue  # sent at the end, whole and changed
            if self.mode == "cut_answer":
                room = self.cut_at - (len(record.answer) - len(chunk))
                if room > 0:
                    record.sends_down += await self._send(writer, chunk[:room])
                if len(record.answer) >= self.cut_at:
                    writer.transport.abort()  # the client sees its answer cut off
                    await self._drain_rest(reader, record)
                    return
                continue
            record.sends_down += await self._send(writer, chunk)
        if self.mode == "tamper" and self.tamper is not None:
            record.sends_down += await self._send(writer, self.tamper(bytes(record.answer)))
        if writer.can_write_eof():
            writer.write_eof()

    @staticmethod
    async def _drain_rest(reader: asyncio.StreamReader, record: Carried) -> None:
        while chunk := await reader.read(_CHUNK):
            record.answer += chunk
