"""Records for the store tests: registrations, node leases, and one batch's scenario."""

from __future__ import annotations

import hashlib
from typing import Any

from servers.store import EndpointWrite, Node, WriteOutcome

T0 = 1_700_000_000_000


def endpoint_id(endpoint: int) -> bytes:
    """The id of test endpoint number ``endpoint`` (the SHA-1 of its key)."""
    return hashlib.sha1(f"key-{endpoint}".encode()).digest()


def endpoint_write(
    endpoint: int = 1,
    request_ms: int = T0,
    profile: bytes = b"p",
    *,
    application: str = "app-1",
    sdk_token: bytes = b"sdk",
    carried_key: bool = False,
) -> EndpointWrite:
    """A verified registration of test endpoint number ``endpoint``."""
    return EndpointWrite(
        endpoint_id=endpoint_id(endpoint),
        public_key=f"key-{endpoint}".encode(),
        sdk_token_hash=hashlib.sha256(sdk_token).digest(),
        application=application,
        profile=profile,
        profile_hash=hashlib.sha256(profile).digest(),
        request_ms=request_ms,
        now_ms=request_ms + 5,
        carried_key=carried_key,
    )


def node_lease(node_id: str = "a", expires: int = T0 + 2000, **changes: Any) -> Node:
    """An Operations node lease (``changes``: any other field)."""
    fields: dict[str, Any] = {
        "node_id": node_id, "host": "127.0.0.1", "port": 9997, "kex_public_key": bytes(32),
        "priority": 100, "weight": 100, "load": 0, "lease_expires_ms": expires,
        "started_ms": T0, "renewed_ms": T0,
    }  # fmt: skip
    fields.update(changes)
    return Node(**fields)


#: Writes of two new endpoints that one group-commit batch gets together, and the outcome
#: of each, as one transaction per write, in this order, gives it.
ONE_BATCH: list[tuple[EndpointWrite, WriteOutcome]] = [
    (endpoint_write(1, T0), WriteOutcome.NEW),
    (endpoint_write(1, T0 + 1), WriteOutcome.EXISTING),
    (endpoint_write(1, T0 + 1, b"q"), WriteOutcome.REPLAYED),  # same timestamp
    (endpoint_write(1, T0 + 2, b"q"), WriteOutcome.PROFILE_UPDATED),
    (endpoint_write(1, T0 + 3, b"q"), WriteOutcome.EXISTING),
    (endpoint_write(2, T0), WriteOutcome.NEW),  # another endpoint
    (endpoint_write(2, T0 - 1), WriteOutcome.REPLAYED),  # older
]
