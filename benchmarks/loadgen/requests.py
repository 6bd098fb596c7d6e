"""The load: what to connect to, and requests built in full before the timed window.

Every request is made by the kaa_wire sans-IO clients (``ResolveClient``,
``RegisterClient``); nothing here encodes protocol bytes itself. A registration request is
sealed to the node key and signed with the endpoint's RSA-2048 key at build time, so the
timed window only connects, writes, reads and opens the answer.

Timestamps follow docs/protocol.md section 6: the server's time as learnt from one signed
resolution plus the monotonic time since, and strictly increasing per endpoint (a
reconnecting endpoint's next request is stamped at least 1 ms after its previous one).
They must be within the server's replay window (+/-120 s by default) when they arrive,
so requests are built right before the window that sends them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.loadgen.keys import EndpointKey
from kaa_wire import (
    NEED_DATA,
    OperationsNode,
    RegisterClient,
    RegistrationStatus,
    ResolveClient,
    Resolved,
)
from kaa_wire.sdk_config import BootstrapServer, SdkConfig

__all__ = [
    "ANSWERED",
    "CONNECTION",
    "FIRST",
    "RECONNECT",
    "RESOLVE",
    "Request",
    "Target",
    "TimeSource",
    "build_registrations",
    "build_resolutions",
    "connection_requests",
    "is_first",
    "profile_for",
    "resolve_blocking",
]

FIRST = "first"
RECONNECT = "reconnect"
RESOLVE = "resolve"
#: A registration's bytes sent to the connection-floor server (floor_server.py)...
CONNECTION = "connection"
#: ...and its outcome once the whole answer arrived.
ANSWERED = "ANSWERED"


def _require_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"refusing to load {host}: the load generator targets loopback only")


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """The service under load, from the SDK configuration the servers export."""

    app_token: str
    sdk_token: str
    bootstrap_host: str
    bootstrap_port: int
    bootstrap_key_pem: str
    max_frame_size: int
    #: The generation of ``bootstrap_key_pem`` (a rotated deployment's export says).
    bootstrap_key_generation: int = 1
    #: Cached-signature mode: answers are not bound to the request's nonce (the export says).
    accept_unbound: bool = False

    @classmethod
    def from_sdk_json(cls, path: Path | str) -> Target:
        sdk = SdkConfig.from_json(Path(path).read_text())
        boot = sdk.bootstrap_servers[0]
        _require_loopback(boot.host)
        return cls(
            sdk.application_token,
            sdk.sdk_token,
            boot.host,
            boot.port,
            boot.public_key_pem,
            sdk.max_frame_size,
            boot.key_generation,
            sdk.accept_unbound_resolution,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def bootstrap_key(self) -> Any:
        """The build-time Bootstrap public key that must sign every resolution answer."""
        return BootstrapServer(
            self.bootstrap_host, self.bootstrap_port, self.bootstrap_key_pem
        ).public_key()


@dataclasses.dataclass(slots=True)
class Request:
    """One exchange, ready to send: the frame, and how to read the answer.

    ``finish()`` asks the client for its event: NEED_DATA, or the outcome's name
    (NEW / EXISTING / PROFILE_UPDATED / RESOLVED); protocol errors raise.
    """

    kind: str
    frame: bytes
    feed: Callable[[bytes], None]
    finish: Callable[[], Any]


def profile_for(index: int) -> bytes:
    """About 200 bytes of realistic JSON profile, distinct per endpoint."""
    return json.dumps(
        {
            "model": "kaa-sensor-7",
            "firmware": "4.2.1",
            "serial": f"SN-{index:011d}",
            "location": {"site": f"plant-{index % 17}", "line": index % 40, "cell": "B7"},
            "capabilities": ["temp", "humidity", "vibration"],
            "interval_s": 30,
            "tz": "Europe/Kyiv",
        },
        separators=(",", ":"),
    ).encode()


def resolve_blocking(target: Target, timeout: float = 10.0) -> Resolved:
    """One verified resolution over a plain socket: the node list and the server time."""
    client = ResolveClient(
        target.app_token,
        target.bootstrap_key(),
        nonce=os.urandom(16),
        key_generation=target.bootstrap_key_generation,
        accept_unbound=target.accept_unbound,
        max_frame_size=target.max_frame_size,
    )
    with socket.create_connection((target.bootstrap_host, target.bootstrap_port), timeout) as s:
        s.sendall(client.send_request())
        while True:
            data = s.recv(65536)
            client.receive_data(data)
            event = client.next_event(time.monotonic())
            if event is not NEED_DATA:
                assert isinstance(event, Resolved)
                for node in event.nodes:
                    _require_loopback(node.host)
                return event
            if not data:
                raise ConnectionError("the Bootstrap closed without an answer")


def best_node(resolved: Resolved) -> OperationsNode:
    return max(resolved.nodes, key=lambda n: (n.priority, n.weight))


class TimeSource:
    """The server clock as the endpoints know it (protocol section 6), per-endpoint strictly
    increasing."""

    def __init__(self, resolved: Resolved) -> None:
        self._resolved = resolved
        self._last: dict[int, int] = {}

    def stamp(self, key_index: int) -> int:
        now = self._resolved.server_time_at(time.monotonic())
        ts = max(now, self._last.get(key_index, 0) + 1)
        self._last[key_index] = ts
        return ts


def is_first(j: int, share: float) -> bool:
    """Whether request ``j`` of a mix with ``share`` first-time registrations is one.

    Spreads them evenly (Bresenham): any window of the sequence holds the share."""
    return int((j + 1) * share) > int(j * share)


def _registration(
    node: OperationsNode,
    target: Target,
    key: EndpointKey,
    clock: TimeSource,
    reconnect: bool,
) -> Request:
    client = RegisterClient(
        node,
        sdk_token=target.sdk_token,
        private_key=key.private_key,
        profile=profile_for(key.index),
        timestamp_ms=clock.stamp(key.index),
        reconnect=reconnect,
        max_frame_size=target.max_frame_size,
    )
    frame = client.send_request()

    def finish() -> Any:
        event = client.next_event()
        if event is NEED_DATA:
            return event
        return RegistrationStatus(event.result.status).name  # type: ignore[union-attr]

    return Request(RECONNECT if reconnect else FIRST, frame, client.receive_data, finish)


def build_registrations(
    count: int,
    *,
    node: OperationsNode,
    target: Target,
    clock: TimeSource,
    first_keys: Iterable[EndpointKey],
    reconnect_keys: list[EndpointKey],
    first_share: float,
    offset: int = 0,
) -> list[Request]:
    """``count`` sealed and signed REGISTER_REQUESTs, first-time ones spread evenly.

    First-time requests take the next key of ``first_keys`` (each key once); reconnects
    cycle through ``reconnect_keys`` (already registered), ``offset`` choosing where in the
    mix this slice starts.
    """
    first_iter = iter(first_keys)
    out: list[Request] = []
    r = 0
    for j in range(count):
        if is_first(j + offset, first_share) or not reconnect_keys:
            key = next(first_iter, None)
            if key is None:
                raise ValueError("not enough first-time keys for this mix")
            out.append(_registration(node, target, key, clock, reconnect=False))
        else:
            key = reconnect_keys[r % len(reconnect_keys)]
            r += 1
            out.append(_registration(node, target, key, clock, reconnect=True))
    return out


def build_resolutions(count: int, target: Target) -> list[Request]:
    """``count`` RESOLVE_REQUESTs, each with a fresh nonce; answers are verified."""
    bootstrap_key = target.bootstrap_key()
    out = []
    for _ in range(count):
        client = ResolveClient(
            target.app_token,
            bootstrap_key,
            nonce=os.urandom(16),
            key_generation=target.bootstrap_key_generation,
            accept_unbound=target.accept_unbound,
            max_frame_size=target.max_frame_size,
        )
        frame = client.send_request()

        def finish(client: ResolveClient = client) -> Any:
            event = client.next_event(time.monotonic())
            return event if event is NEED_DATA else "RESOLVED"

        out.append(Request(RESOLVE, frame, client.receive_data, finish))
    return out


def connection_requests(frames: list[bytes], count: int, answer_size: int) -> list[Request]:
    """``count`` sends of ``frames`` (cycled: the floor server does not read them) for the
    floor server; each is done when ``answer_size`` bytes came back."""

    def raw(frame: bytes) -> Request:
        received = [0]

        def feed(data: bytes) -> None:
            received[0] += len(data)

        def finish() -> Any:
            return ANSWERED if received[0] >= answer_size else NEED_DATA

        return Request(CONNECTION, frame, feed, finish)

    return [raw(frames[i % len(frames)]) for i in range(count)]
