"""The two ExchangeProtocols (servers/net.py and its C twin in kaa_wire_ext) on real sockets.

Each scenario runs once per class, on uvloop, against the same scripted service, and must
give the same bytes on the wire and the same metrics: the limits (frame size, read deadline,
connection gate), the refusals (typed, from the core; InternalError for a failure), answers
given at once or through a future, and half-closed peers. The whole servers suite runs on
whichever class servers._impl picks; this file holds the two to each other in one run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
import uvloop

from kaa_wire import (
    BootstrapServerConnection,
    ErrorCode,
    ResolveClient,
    UnknownApplication,
    _codec,
)
from kaa_wire._constants import HEADER_SIZE
from servers import net
from servers.limits import Gate
from servers.metrics import Metrics

ANSWER = b"\x02\x02\x00\x00\x00\x03abc"


def _classes() -> list[Any]:
    classes: list[Any] = [pytest.param(net.ExchangeProtocol, id="py")]
    try:
        from kaa_wire_ext import _ext
    except ImportError:
        classes.append(pytest.param(None, id="ext", marks=pytest.mark.skip("no extension")))
    else:
        classes.append(pytest.param(_ext.ExchangeProtocol, id="ext"))
    return classes


def _request(keys: dict[str, Any]) -> bytes:
    """A resolution request of 89 bytes (its 60-byte token): over a limit of 60, whose
    FRAME_TOO_LARGE answer (41 bytes) still fits it."""
    client = ResolveClient("a" * 60, keys["bootstrap_rsa"].public_key(), nonce=bytes(range(16)))
    return client.send_request()


async def _serve(
    protocol: Any,
    handle: Callable[[Any, Any], Any],
    talk: Callable[[int], Any],
    *,
    limit: int = 8,
    read_timeout_s: float = 2.0,
    max_frame_size: int = 65536,
) -> tuple[Any, dict[str, Any]]:
    metrics = Metrics()
    ctx = net.ServiceContext(
        name="test",
        new_connection=lambda: BootstrapServerConnection(max_frame_size),
        handle=handle,
        metrics=metrics,
        connections=Gate("test connections", limit),
        read_timeout_s=read_timeout_s,
        retry_after_ms=1234,
        log=logging.getLogger("test.exchange"),
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: protocol(ctx), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        seen = await asyncio.wait_for(talk(port), 10)
        for _ in range(100):  # connection_lost runs after the peer saw the close
            if not ctx.connections.active:
                break
            await asyncio.sleep(0.01)
    finally:
        server.close()
    return seen, {
        "connections": metrics.connections.values,
        "open": metrics.connections_open.values,
        "errors": metrics.errors.values,
        "answered": metrics.latency.count("test"),
        "active": ctx.connections.active,
    }


async def _exchange(port: int, data: bytes, *, eof: bool = False, pause: float = 0.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if pause:
        await asyncio.sleep(pause)
    if eof:
        writer.write_eof()
    answer = await reader.read()
    writer.close()
    return answer


def _code(frame: bytes) -> ErrorCode:
    return ErrorCode(_codec.decode_error(frame[HEADER_SIZE:]).code)


def _both(keys: dict[str, Any], scenario: Callable[[Any, bytes], Any]) -> list[Any]:
    results = []
    for param in _classes():
        (protocol,) = param.values
        if protocol is None:
            continue
        results.append(uvloop.run(scenario(protocol, _request(keys))))
    if len(results) == 2:
        assert results[0] == results[1]
    return results


@pytest.fixture
def keys(vector_keys: dict[str, Any]) -> dict[str, Any]:
    return vector_keys


def test_an_answer_at_once_and_through_a_future(keys: dict[str, Any]) -> None:
    async def scenario(protocol: Any, request: bytes) -> Any:
        def at_once(conn: Any, event: Any) -> bytes:
            return ANSWER

        def later(conn: Any, event: Any) -> asyncio.Future[bytes]:
            future = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.05, future.set_result, ANSWER + b"!")
            return future

        first = await _serve(protocol, at_once, lambda port: _exchange(port, request))
        second = await _serve(protocol, later, lambda port: _exchange(port, request, eof=True))
        return first, second

    (first, second), *_ = _both(keys, scenario)
    assert first[0] == ANSWER and first[1]["answered"] == 1 and first[1]["active"] == 0
    assert second[0] == ANSWER + b"!"


def test_refusals_and_failures_are_typed(keys: dict[str, Any]) -> None:
    async def scenario(protocol: Any, request: bytes) -> Any:
        def refuses(conn: Any, event: Any) -> bytes:
            raise UnknownApplication("unknown application token")

        def fails(conn: Any, event: Any) -> bytes:
            raise RuntimeError("a bug")

        def fails_later(conn: Any, event: Any) -> asyncio.Future[bytes]:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(UnknownApplication("later"))
            return future

        out = []
        for handle in (refuses, fails, fails_later):
            answer, stats = await _serve(protocol, handle, lambda port: _exchange(port, request))
            out.append((_code(answer), answer, stats))
        return out

    results = _both(keys, scenario)
    codes = [code for code, _, _ in results[0]]
    assert codes == [
        ErrorCode.UNKNOWN_APPLICATION, ErrorCode.INTERNAL_ERROR, ErrorCode.UNKNOWN_APPLICATION
    ]


def test_limits_on_the_wire(keys: dict[str, Any]) -> None:
    """Garbage, a frame over the limit, EOF mid-frame, a slow peer, a full gate."""

    def never(conn: Any, event: Any) -> bytes:
        raise AssertionError("no request should reach the service")

    async def scenario(protocol: Any, request: bytes) -> Any:
        out = []
        for data, kwargs, talk in (
            (b"\x07" * 8, {}, {}),
            (request, {"max_frame_size": 60}, {}),
            (request[:10], {}, {"eof": True}),
            (request[:10], {"read_timeout_s": 0.2}, {}),
        ):
            answer, stats = await _serve(
                protocol, never, lambda port, d=data, t=talk: _exchange(port, d, **t), **kwargs
            )
            out.append((_code(answer), answer, stats))

        async def two(port: int) -> tuple[bytes, bytes]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request[:5])  # holds the one place
            await asyncio.sleep(0.05)
            refused = await _exchange(port, request)
            first = await reader.read()  # its read deadline
            writer.close()
            return refused, first

        (refused, first), stats = await _serve(protocol, never, two, limit=1, read_timeout_s=0.3)
        out.append((_code(refused), _code(first), refused, stats))
        return out

    results = _both(keys, scenario)
    assert [entry[0] for entry in results[0][:4]] == [
        ErrorCode.UNSUPPORTED_VERSION,
        ErrorCode.FRAME_TOO_LARGE,
        ErrorCode.MALFORMED_FRAME,
        ErrorCode.TIMEOUT,
    ]
    gate = results[0][4]
    assert gate[0] == ErrorCode.OVERLOADED and gate[1] == ErrorCode.TIMEOUT
    assert _codec.decode_error(gate[2][HEADER_SIZE:]).retry_after_ms == 1234
    assert gate[3]["active"] == 0
