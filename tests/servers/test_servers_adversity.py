"""Hostile and broken peers over real sockets: each gets its typed ERROR frame or a close,
and the server goes on serving everyone else."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from servers_harness import (
    IO_TIMEOUT_S,
    Endpoint,
    MainServer,
    error_frame,
    exchange,
    read_to_eof,
    resolve,
    start_main,
    wait_until,
)

from kaa_wire import ErrorCode, LocalProtocolError, MessageType, ResolveClient, _codec
from kaa_wire._constants import PROTOCOL_VERSION

pytestmark = pytest.mark.adversity


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainServer]:
    data = tmp_path_factory.mktemp("adversity") / "data"
    main = start_main(data)
    yield main
    assert main.process.stop() == 0, main.process.logs()


def _ports(server: MainServer) -> list[int]:
    return [server.listeners["bootstrap_port"], server.listeners["operations_port"]]


def _still_serving(server: MainServer) -> None:
    assert resolve(server.sdk).nodes


@pytest.mark.parametrize("service", [0, 1], ids=["bootstrap", "operations"])
def test_garbage_gets_a_typed_error(server: MainServer, service: int) -> None:
    answer = exchange("127.0.0.1", _ports(server)[service], b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert error_frame(answer) == (MessageType.ERROR, ErrorCode.UNSUPPORTED_VERSION)
    _still_serving(server)


@pytest.mark.parametrize("service", [0, 1], ids=["bootstrap", "operations"])
def test_oversized_length_is_refused_before_the_body(server: MainServer, service: int) -> None:
    msg_type = (MessageType.RESOLVE_REQUEST, MessageType.REGISTER_REQUEST)[service]
    header = struct.pack(">BBB", PROTOCOL_VERSION, msg_type, 0) + (0xFFFFFF).to_bytes(3, "big")
    answer = exchange("127.0.0.1", _ports(server)[service], header)
    assert error_frame(answer) == (MessageType.ERROR, ErrorCode.FRAME_TOO_LARGE)
    _still_serving(server)


def test_wrong_message_type_is_unexpected(server: MainServer) -> None:
    client = ResolveClient(
        "app", server.sdk.bootstrap_servers[0].public_key(), nonce=bytes(range(16))
    )
    answer = exchange("127.0.0.1", server.listeners["operations_port"], client.send_request())
    assert error_frame(answer) == (MessageType.ERROR, ErrorCode.UNEXPECTED_MESSAGE)


def test_a_truncated_request_then_eof_is_malformed(server: MainServer) -> None:
    request = ResolveClient(
        server.sdk.application_token,
        server.sdk.bootstrap_servers[0].public_key(),
        nonce=bytes(range(1, 17)),
    ).send_request()
    answer = exchange("127.0.0.1", _ports(server)[0], request[:-3], half_close=True)
    assert error_frame(answer) == (MessageType.ERROR, ErrorCode.MALFORMED_FRAME)
    _still_serving(server)


def test_a_half_closed_peer_still_gets_its_answer(server: MainServer) -> None:
    client = ResolveClient(
        server.sdk.application_token,
        server.sdk.bootstrap_servers[0].public_key(),
        nonce=bytes(range(1, 17)),
    )
    answer = exchange("127.0.0.1", _ports(server)[0], client.send_request(), half_close=True)
    assert answer[1] == MessageType.RESOLVE_RESPONSE


def test_a_peer_that_connects_and_leaves_does_not_hurt(server: MainServer) -> None:
    for _ in range(20):
        socket.create_connection(("127.0.0.1", _ports(server)[1]), timeout=IO_TIMEOUT_S).close()
    _still_serving(server)


def test_an_invalid_ephemeral_key_is_a_bad_seal(server: MainServer) -> None:
    # A well-formed REGISTER_REQUEST sealed to nothing: the all-zero X25519 point.
    body = bytes([1, 1]) + bytes(32) + bytes(64)
    frame = bytes([PROTOCOL_VERSION, MessageType.REGISTER_REQUEST, 0])
    frame += len(body).to_bytes(3, "big") + body
    answer = exchange("127.0.0.1", _ports(server)[1], frame)
    assert error_frame(answer) == (MessageType.ERROR, ErrorCode.BAD_SEAL)
    _still_serving(server)


def test_slow_sender_gets_timeout_and_others_are_served(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data = tmp_path_factory.mktemp("slow") / "data"
    main = start_main(data, "--read-timeout-s", "1")
    try:
        slow = socket.create_connection(("127.0.0.1", main.listeners["bootstrap_port"]))
        slow.settimeout(IO_TIMEOUT_S)
        with slow:
            slow.sendall(bytes([PROTOCOL_VERSION, 1]))  # two bytes of a header, then nothing
            _still_serving(main)  # others are served while the slow one waits
            answer = read_to_eof(slow)
        assert error_frame(answer) == (MessageType.ERROR, ErrorCode.TIMEOUT)
        _still_serving(main)
    finally:
        assert main.process.stop() == 0


def test_connections_over_the_limit_are_told_to_retry(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data = tmp_path_factory.mktemp("limit") / "data"
    # A long read timeout: the held connections must not time out during the test.
    main = start_main(
        data, "--max-connections", "2", "--retry-after-ms", "1500", "--read-timeout-s", "600"
    )
    port = main.listeners["bootstrap_port"]
    try:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            # The server only counts a connection once it accepted it: wait for both.
            def admitted() -> bool:
                return 'kaa_connections_open{service="bootstrap"} 2' in main.metrics()

            wait_until(admitted, "two open connections")
            answer = exchange("127.0.0.1", port, b"")
            assert error_frame(answer) == (MessageType.ERROR, ErrorCode.OVERLOADED)
            assert _codec.decode_error(answer[6:]).retry_after_ms == 1500
        finally:
            for sock in held:
                sock.close()
        wait_until(lambda: resolve(main.sdk).nodes, "service after the burst")
    finally:
        assert main.process.stop() == 0


def test_frame_limit_is_configurable(
    tmp_path_factory: pytest.TempPathFactory, rsa_keys: list
) -> None:
    data = tmp_path_factory.mktemp("frame") / "data"
    main = start_main(data, "--max-frame-size", "1024")
    try:
        assert main.sdk.max_frame_size == 1024
        endpoint = Endpoint(main.sdk, rsa_keys[0])
        node = endpoint.resolve().nodes[0]
        client = endpoint.client(node, b"x" * 900)
        with pytest.raises(LocalProtocolError, match="exceeds"):
            client.send_request()  # the client's own limit (from the SDK) refuses first
        big = bytes([PROTOCOL_VERSION, MessageType.REGISTER_REQUEST, 0]) + (2000).to_bytes(3, "big")
        answer = exchange("127.0.0.1", main.listeners["operations_port"], big)
        assert error_frame(answer) == (MessageType.ERROR, ErrorCode.FRAME_TOO_LARGE)
    finally:
        assert main.process.stop() == 0
