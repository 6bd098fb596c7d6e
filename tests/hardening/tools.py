"""Helpers for the hardening tests: memory of a server process, liveness probes, frames."""

from __future__ import annotations

import contextlib
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

from kaa_wire import (
    ErrorCode,
    MessageType,
    OperationsNode,
    RegistrationResult,
    RegistrationStatus,
    ResolveClient,
    _codec,
    _crypto,
)
from kaa_wire.sdk_config import SdkConfig
from tests.servers.servers_harness import Endpoint, top_nodes

__all__ = [
    "MEMORY_BOUND",
    "FRAMING_CODES",
    "rss_bytes",
    "raise_fd_limit",
    "soft_fd_limit",
    "probe",
    "fresh_endpoint",
    "request_frame",
    "split_frames",
    "plain_error_code",
]

#: Allowed growth of a server's resident memory across one attack. Generous on purpose:
#: it is not a performance figure, but a leak of per-connection state (a buffered body, a
#: protocol object kept alive) over thousands of connections would pass it.
MEMORY_BOUND = 64 * 1024 * 1024

#: What a server answers bytes that are not a request it can use, before opening anything.
FRAMING_CODES = {
    ErrorCode.MALFORMED_FRAME,
    ErrorCode.UNSUPPORTED_VERSION,
    ErrorCode.UNSUPPORTED_ALGORITHM,
    ErrorCode.UNKNOWN_MESSAGE_TYPE,
    ErrorCode.FRAME_TOO_LARGE,
    ErrorCode.UNEXPECTED_MESSAGE,
    ErrorCode.BAD_SEAL,
}


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``, from /proc (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to ``wanted`` (capped at the hard limit).

    Children started afterwards (the servers) inherit it. Returns the new soft limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextlib.contextmanager
def soft_fd_limit(limit: int) -> Iterator[None]:
    """Children started inside get ``limit`` as their soft RLIMIT_NOFILE (the common default
    is 1024); this process gets its own limit back on leaving."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def fresh_endpoint(sdk: SdkConfig) -> Endpoint:
    """A new device (Ed25519 key: free to make, so every probe is a NEW registration)."""
    return Endpoint(sdk, _crypto.generate_ed25519_key())


def probe(sdk: SdkConfig, *, node: OperationsNode | None = None) -> RegistrationResult:
    """A real resolution and registration of a new endpoint; fails the test unless NEW."""
    endpoint = fresh_endpoint(sdk)
    target = node or top_nodes(endpoint.resolve())[0]
    result = endpoint.register(b'{"probe":true}', node=target)
    assert result.status == RegistrationStatus.NEW
    assert result.endpoint_id == endpoint.endpoint_id
    return result


def request_frame(
    sdk: SdkConfig, service: str, endpoint: Endpoint, node: OperationsNode, profile: bytes
) -> bytes:
    """A valid request frame for ``service`` ("bootstrap" or "operations"), not yet sent."""
    if service == "bootstrap":
        return ResolveClient(
            sdk.application_token, sdk.bootstrap_servers[0].public_key(), nonce=bytes(range(16))
        ).send_request()
    return endpoint.client(node, profile).send_request()


def split_frames(data: bytes) -> list[bytes]:
    """Whole frames in ``data``, in order; fails on a partial trailing frame."""
    frames = []
    while data:
        assert len(data) >= 6, f"partial header {data!r}"
        end = 6 + int.from_bytes(data[3:6], "big")
        assert len(data) >= end, f"partial frame ({len(data)} of {end} bytes)"
        frames.append(data[:end])
        data = data[end:]
    return frames


def plain_error_code(frame: bytes) -> ErrorCode:
    """The code of one plain (unsealed) ERROR frame."""
    assert frame[1] == MessageType.ERROR, f"not an ERROR frame: {frame[:6].hex()}"
    assert frame[2] == 0, "a sealed ERROR where a plain one was expected"
    return ErrorCode(_codec.decode_error(frame[6:]).code)


def connect(port: int, timeout: float = 20.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)
