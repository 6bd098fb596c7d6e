"""Both transports over real loopback sockets, against peers that fail in each way."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client import Device, Failed, RetryPolicy
from kaa_wire import MalformedFrame, _crypto
from tests.client.conftest import Register, sdk_with_bootstraps

FAST = RetryPolicy(base_delay_s=0.01, max_delay_s=0.02, exchange_timeout_s=0.3, max_failures=2)


def _pem(vector_keys: dict[str, Any]) -> str:
    return _crypto.public_key_pem(vector_keys["bootstrap_rsa"]).decode()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """Listens (the kernel completes the handshake) but never reads nor answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.fixture
def hangup_port() -> Iterator[int]:
    """Accepts, reads the request, and closes without a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.shutdown(socket.SHUT_RDWR)  # wakes the accept() on Linux
    server.close()
    thread.join(5)


def _device(directory: Path, port: int, vector_keys: dict[str, Any]) -> Device:
    config = sdk_with_bootstraps(None, [("127.0.0.1", port, _pem(vector_keys))])
    return Device.open(directory, config, policy=FAST)


@pytest.mark.parametrize(
    ("peer", "cause"),
    [
        ("closed_port", ConnectionRefusedError),
        ("silent_port", TimeoutError),
        ("hangup_port", MalformedFrame),
    ],
)
def test_each_way_a_peer_fails_is_a_failure_with_its_cause(
    request: pytest.FixtureRequest,
    seed_dir: Callable[[str], Path],
    vector_keys: dict[str, Any],
    register: Register,
    peer: str,
    cause: type,
) -> None:
    port = request.getfixturevalue(peer)
    with _device(seed_dir("device"), port, vector_keys) as device:
        outcome = register(device, b"{}")
        assert isinstance(outcome, Failed)
        assert outcome.reason == "2 failed attempts"
        assert [type(a.cause) for a in outcome.attempts] == [cause, cause]
        assert all(a.stage == "resolve" and a.port == port for a in outcome.attempts)
        assert isinstance(outcome.cause, cause)
        assert not device.state.registered
