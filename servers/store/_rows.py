"""Rows to records, for every SQL backend: the column lists and the converters.

Both backends select with these column lists, in this order, so a row converts by
position: a ``sqlite3`` tuple and an ``asyncpg.Record`` alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from kaa_wire import RegistrationStatus, Topic
from servers.store.base import (
    Application,
    Balancing,
    Endpoint,
    EndpointStatus,
    EndpointWrite,
    Node,
    SdkToken,
    StoreError,
)

__all__ = [
    "APP_COLUMNS",
    "ENDPOINT_COLUMNS",
    "NODE_COLUMNS",
    "PUT_NODE",
    "PRE_REVOKE",
    "FORGET_PRE_REVOKED",
    "SDK_TOKEN_COLUMNS",
    "application",
    "check_write",
    "endpoint",
    "node",
    "node_values",
    "sdk_token",
    "topics_json",
]

APP_COLUMNS = "token, name, config, config_version, topics, balancing, cached_signature, created_ms"
SDK_TOKEN_COLUMNS = "token_hash, application, created_ms, revoked_ms"
ENDPOINT_COLUMNS = (
    "endpoint_id, public_key, sdk_token_hash, application, profile, profile_hash, "
    "first_seen_ms, last_seen_ms, status, registration_status, last_request_ms, revoked_ms"
)
NODE_COLUMNS = (
    "node_id, host, port, kex_public_key, priority, weight, load, lease_expires_ms, "
    "started_ms, renewed_ms, holder"
)

#: Insert or renew a node lease (parameters: :func:`node_values`, then the reclaim flag;
#: ``$`` numbered for PostgreSQL, SQLite swaps them for ``?``): the conflicting row is
#: updated only by its holder, once its lease has lapsed, or when reclaimed (its address
#: is the writer's own, which only a live process can hold: ``RegistryStore.put_node``).
#: No row returned: another holder's live lease.
PUT_NODE = (
    f"INSERT INTO nodes ({NODE_COLUMNS}) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
    "ON CONFLICT (node_id) DO UPDATE SET host = excluded.host, port = excluded.port, "
    "kex_public_key = excluded.kex_public_key, priority = excluded.priority, "
    "weight = excluded.weight, load = excluded.load, "
    "lease_expires_ms = excluded.lease_expires_ms, renewed_ms = excluded.renewed_ms, "
    "started_ms = CASE WHEN nodes.holder = excluded.holder THEN nodes.started_ms "
    "ELSE excluded.started_ms END, holder = excluded.holder "
    "WHERE nodes.holder = excluded.holder OR nodes.lease_expires_ms <= excluded.renewed_ms "
    "OR ($12 AND nodes.host = excluded.host AND nodes.port = excluded.port) "
    "RETURNING node_id"
)

#: An endpoint id revoked before it ever registered (a stolen key's id, known before it is
#: used): a row with no key, application or profile (parameters: the id, the time, b""),
#: which the registration rule refuses as revoked like any other. An id stored meanwhile
#: is left to the caller's UPDATE (no row returned).
PRE_REVOKE = (
    f"INSERT INTO endpoints ({ENDPOINT_COLUMNS}) "
    "VALUES ($1, $3, $3, '', $3, $3, $2, $2, 'revoked', 'NEW', 0, $2) "
    f"ON CONFLICT (endpoint_id) DO NOTHING RETURNING {ENDPOINT_COLUMNS}"
)
#: Reinstating a pre-revoked id forgets it (parameter: the id): it registers as new.
FORGET_PRE_REVOKED = (
    f"DELETE FROM endpoints WHERE endpoint_id = $1 AND length(public_key) = 0 "
    f"RETURNING {ENDPOINT_COLUMNS}"
)


def topics_json(topics: Sequence[Topic]) -> str:
    return json.dumps([[t.topic_id, t.name] for t in topics])


def application(row: Sequence[Any]) -> Application:
    token, name, config, version, topics, balancing, cached, created = row
    return Application(
        token=token,
        name=name,
        config=bytes(config),
        config_version=version,
        topics=tuple(Topic(int(i), str(n)) for i, n in json.loads(topics)),
        balancing=Balancing(balancing),
        cached_signature=bool(cached),
        created_ms=created,
    )


def sdk_token(row: Sequence[Any]) -> SdkToken:
    return SdkToken(bytes(row[0]), row[1], row[2], row[3])


def endpoint(row: Sequence[Any]) -> Endpoint:
    return Endpoint(
        endpoint_id=bytes(row[0]),
        public_key=bytes(row[1]),
        sdk_token_hash=bytes(row[2]),
        application=row[3],
        profile=bytes(row[4]),
        profile_hash=bytes(row[5]),
        first_seen_ms=row[6],
        last_seen_ms=row[7],
        status=EndpointStatus(row[8]),
        registration_status=RegistrationStatus[row[9]],
        last_request_ms=row[10],
        revoked_ms=row[11],
    )


def node(row: Sequence[Any]) -> Node:
    return Node(
        node_id=row[0],
        host=row[1],
        port=row[2],
        kex_public_key=bytes(row[3]),
        priority=row[4],
        weight=row[5],
        load=row[6],
        lease_expires_ms=row[7],
        started_ms=row[8],
        renewed_ms=row[9],
        holder=row[10],
    )


def node_values(node: Node) -> tuple[Any, ...]:
    """The inverse of :func:`node`: ``node``'s values in ``NODE_COLUMNS`` order."""
    return (
        node.node_id,
        node.host,
        node.port,
        node.kex_public_key,
        node.priority,
        node.weight,
        node.load,
        node.lease_expires_ms,
        node.started_ms,
        node.renewed_ms,
        node.holder,
    )


def check_write(write: EndpointWrite) -> None:
    """A store keeps a profile only with its own hash (``RegistryStore.register_endpoint``)."""
    if hashlib.sha256(write.profile).digest() != write.profile_hash:
        raise StoreError("profile_hash is not the SHA-256 of the profile")
