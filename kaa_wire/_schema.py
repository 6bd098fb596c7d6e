"""The normative byte layouts of protocol v2, as construct schemas.

Each schema here is the readable specification of one structure in docs/protocol.md. All
are compilable (no lambdas; lengths use ``this``) and compiled once at import. Compiled
construct silently accepts short reads, so never call ``.parse`` directly on untrusted
bytes: :func:`parse_exact` is the only entry point, and it rejects truncated and trailing
input for every schema at once.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import construct as c
from construct import this

from kaa_wire._constants import KEY_HASH_SIZE, NONCE_SIZE, PAYLOAD_FLAG_KEY_IS_HASH, X25519_KEY_SIZE
from kaa_wire._errors import trailing_bytes, truncated_or_invalid

__all__ = [
    "HEADER",
    "RESOLVE_REQUEST",
    "RESOLVE_RESPONSE",
    "OPERATIONS_NODE",
    "ROTATION_CERTIFICATE",
    "REGISTER_ENVELOPE",
    "REGISTER_PAYLOAD",
    "REGISTER_RESULT",
    "ERROR_BODY",
    "INTERPRETED",
    "parse_exact",
]

_bytes8 = c.Prefixed(c.Int8ub, c.GreedyBytes)
_bytes16 = c.Prefixed(c.Int16ub, c.GreedyBytes)
_bytes32 = c.Prefixed(c.Int32ub, c.GreedyBytes)

_HEADER = c.Struct(
    "version" / c.Int8ub,
    "msg_type" / c.Int8ub,
    "flags" / c.Int8ub,
    "length" / c.Int24ub,  # body bytes that follow the header
)

_RESOLVE_REQUEST = c.Struct(
    "nonce" / c.Bytes(NONCE_SIZE),  # never all zero
    "key_generation" / c.Int32ub,  # of the Bootstrap key the endpoint trusts
    "app_token" / _bytes8,
    "transports" / c.PrefixedArray(c.Int8ub, c.Int8ub),  # at least one
)

_OPERATIONS_NODE = c.Struct(
    "priority" / c.Int8ub,  # higher is preferred
    "weight" / c.Int16ub,
    "access_point_id" / c.Int32ub,
    "port" / c.Int16ub,
    "kex_algorithm" / c.Int8ub,
    "kex_public_key" / c.Bytes(X25519_KEY_SIZE),
    "host" / _bytes8,
)

# A Bootstrap key's hand-over to the key of the next generation. The signature, by the key
# of generation - 1, covers every byte before it (after a context prefix).
_ROTATION_CERTIFICATE = c.Struct(
    "generation" / c.Int32ub,
    "signature_algorithm" / c.Int8ub,  # of the new key
    "public_key" / _bytes16,  # the new key, DER SubjectPublicKeyInfo
    "signature" / _bytes16,
)

# The Bootstrap signature covers every byte before ``signature`` (after a context prefix
# and the app token, see docs/protocol.md); the signature is always the last field.
_RESOLVE_RESPONSE = c.Struct(
    "nonce" / c.Bytes(NONCE_SIZE),
    "server_time_ms" / c.Int64ub,
    "valid_for_s" / c.Int32ub,
    "key_generation" / c.Int32ub,  # of the key that signs this answer
    "signature_algorithm" / c.Int8ub,
    "nodes" / c.PrefixedArray(c.Int8ub, _OPERATIONS_NODE),
    "rotations" / c.PrefixedArray(c.Int8ub, _ROTATION_CERTIFICATE),
    "signature" / _bytes16,
)

# The cleartext part of a REGISTER_REQUEST body; the sealed payload follows it.
_REGISTER_ENVELOPE = c.Struct(
    "kex_algorithm" / c.Int8ub,
    "aead_algorithm" / c.Int8ub,
    "ephemeral_public_key" / c.Bytes(X25519_KEY_SIZE),
)

# The sealed registration payload, after opening. The signature covers every byte before
# ``signature``; ``flags`` bit 0 says whether ``key`` is the DER key or its SHA-1.
_REGISTER_PAYLOAD = c.Struct(
    "flags" / c.Int8ub,
    "signature_algorithm" / c.Int8ub,
    "timestamp_ms" / c.Int64ub,
    "sdk_token" / _bytes8,
    "key"
    / c.IfThenElse(
        (this.flags & PAYLOAD_FLAG_KEY_IS_HASH) == PAYLOAD_FLAG_KEY_IS_HASH,
        c.Bytes(KEY_HASH_SIZE),
        _bytes16,
    ),
    "profile" / _bytes16,
    "signature" / _bytes16,
)

_TOPIC = c.Struct("topic_id" / c.Int32ub, "name" / _bytes8)

# The sealed REGISTER_RESPONSE payload.
_REGISTER_RESULT = c.Struct(
    "status" / c.Int8ub,
    "endpoint_id" / c.Bytes(KEY_HASH_SIZE),
    "server_time_ms" / c.Int64ub,
    "config_version" / c.Int32ub,
    "config" / _bytes32,
    "topics" / c.PrefixedArray(c.Int16ub, _TOPIC),
    "reconnect_after_s" / c.Int32ub,
    "retry_base_ms" / c.Int32ub,
)

_ERROR_BODY = c.Struct(
    "code" / c.Int8ub,
    "retry_after_ms" / c.Int32ub,
    "message" / _bytes8,
)

#: The interpreted schemas, kept for tests that check both forms agree.
INTERPRETED: dict[str, c.Construct] = {
    "HEADER": _HEADER,
    "RESOLVE_REQUEST": _RESOLVE_REQUEST,
    "RESOLVE_RESPONSE": _RESOLVE_RESPONSE,
    "OPERATIONS_NODE": _OPERATIONS_NODE,
    "ROTATION_CERTIFICATE": _ROTATION_CERTIFICATE,
    "REGISTER_ENVELOPE": _REGISTER_ENVELOPE,
    "REGISTER_PAYLOAD": _REGISTER_PAYLOAD,
    "REGISTER_RESULT": _REGISTER_RESULT,
    "ERROR_BODY": _ERROR_BODY,
}

HEADER = _HEADER.compile()
RESOLVE_REQUEST = _RESOLVE_REQUEST.compile()
RESOLVE_RESPONSE = _RESOLVE_RESPONSE.compile()
OPERATIONS_NODE = _OPERATIONS_NODE.compile()
ROTATION_CERTIFICATE = _ROTATION_CERTIFICATE.compile()
REGISTER_ENVELOPE = _REGISTER_ENVELOPE.compile()
REGISTER_PAYLOAD = _REGISTER_PAYLOAD.compile()
REGISTER_RESULT = _REGISTER_RESULT.compile()
ERROR_BODY = _ERROR_BODY.compile()

# One byte appended after the input, only to detect a short read (compiled construct reads
# short silently): a parser that runs short consumes it into a field; one that stops early
# leaves more than it behind. The verdict never depends on its value: every short or bad read
# is "truncated or invalid", and trailing bytes are counted without it, which is all the
# extension's parsers (bounds-checked, with no sentinel) need to give the same answers.
_SENTINEL = b"\xa5"
_PARSE_FAILURES = (c.ConstructError, struct.error, ValueError, IndexError, KeyError)


def parse_exact(schema: c.Construct, data: bytes, what: str) -> Any:
    """Parse ``data`` as exactly one ``schema`` structure, or raise MalformedFrame."""
    stream = io.BytesIO(data + _SENTINEL)
    try:
        parsed = schema.parse_stream(stream)
    except _PARSE_FAILURES:
        raise truncated_or_invalid(what) from None
    rest = stream.read()
    if not rest:  # the sentinel went into a field: the input ran short
        raise truncated_or_invalid(what)
    if len(rest) > len(_SENTINEL):
        raise trailing_bytes(len(rest) - len(_SENTINEL), what)
    return parsed
