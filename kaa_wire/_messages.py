"""Protocol messages as frozen dataclasses that validate themselves.

A message that exists is valid: constructors raise :class:`LocalProtocolError` for values
the wire format cannot carry. Decoders turn that into :class:`MalformedFrame`, since there
the bad value came from the peer.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from kaa_wire._constants import (
    FIRST_KEY_GENERATION,
    KEY_HASH_SIZE,
    MAX_HOST_SIZE,
    MAX_ROTATION_CHAIN,
    MAX_TOKEN_SIZE,
    NONCE_SIZE,
    X25519_KEY_SIZE,
    AeadAlgorithm,
    KeyExchangeAlgorithm,
    RegistrationStatus,
    Transport,
)
from kaa_wire._errors import ErrorCode, LocalProtocolError

__all__ = [
    "Frame",
    "ResolveRequest",
    "OperationsNode",
    "RotationCertificate",
    "ResolveResponse",
    "RegisterEnvelope",
    "RegistrationPayload",
    "Topic",
    "RegistrationResult",
    "ErrorMessage",
]


class Frame(NamedTuple):
    """One whole frame as the framer hands it out (header already checked)."""

    msg_type: int
    flags: int
    header: bytes
    body: bytes


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise LocalProtocolError(message)


# The checks below build their messages only on failure: they run on every decode.


def _check_uint(value: int, bits: int, name: str) -> None:
    if not 0 <= value < (1 << bits):
        raise LocalProtocolError(f"{name} must fit in {bits} unsigned bits")


def _check_token(token: str, name: str) -> None:
    if not (1 <= len(token) <= MAX_TOKEN_SIZE and token.isascii() and token.isprintable()):
        raise LocalProtocolError(f"{name} must be 1 to {MAX_TOKEN_SIZE} printable ASCII characters")


def _check_generation(generation: int, name: str, lowest: int = FIRST_KEY_GENERATION) -> None:
    if not lowest <= generation <= 0xFFFFFFFF:
        raise LocalProtocolError(f"{name} must be {lowest} to 4294967295")


@dataclasses.dataclass(frozen=True, slots=True)
class ResolveRequest:
    """An endpoint asks a Bootstrap service for the Operations services of its application.

    ``key_generation`` is the generation of the Bootstrap key the endpoint trusts; the
    answer carries the rotations from it to the Bootstrap's current key (docs/protocol.md
    4.5). ``transports`` lists the transports the endpoint can use, at least one.
    """

    app_token: str
    nonce: bytes
    transports: tuple[int, ...] = (Transport.TCP,)
    key_generation: int = FIRST_KEY_GENERATION

    def __post_init__(self) -> None:
        _check_token(self.app_token, "app_token")
        _require(len(self.nonce) == NONCE_SIZE, f"nonce must be {NONCE_SIZE} bytes")
        # An all-zero nonce is the mark of an unbound (cached) answer: a request with it
        # would be answered by something that looks like one.
        _require(any(self.nonce), "nonce must not be all zero")
        _require(1 <= len(self.transports) <= 255, "transports must list 1 to 255 ids")
        for transport in self.transports:
            _check_uint(transport, 8, "transport")
        _check_generation(self.key_generation, "key_generation")


@dataclasses.dataclass(frozen=True, slots=True)
class OperationsNode:
    """One Operations service in a resolution answer: where it is and how to seal to it."""

    priority: int
    weight: int
    access_point_id: int
    host: str
    port: int
    kex_public_key: bytes
    kex_algorithm: int = KeyExchangeAlgorithm.X25519

    def __post_init__(self) -> None:
        _check_uint(self.priority, 8, "priority")
        _check_uint(self.weight, 16, "weight")
        _check_uint(self.access_point_id, 32, "access_point_id")
        _check_uint(self.port, 16, "port")
        _check_uint(self.kex_algorithm, 8, "kex_algorithm")
        _require(
            1 <= len(self.host) <= MAX_HOST_SIZE
            and self.host.isascii()
            and self.host.isprintable(),
            f"host must be 1 to {MAX_HOST_SIZE} printable ASCII characters",
        )
        _require(len(self.kex_public_key) == X25519_KEY_SIZE, "kex_public_key must be 32 bytes")


@dataclasses.dataclass(frozen=True, slots=True)
class RotationCertificate:
    """A Bootstrap key hands over to its successor: generation ``generation`` is the key
    ``public_key`` (DER SubjectPublicKeyInfo, signing with ``signature_algorithm``), signed
    by the key of generation ``generation - 1``.

    ``signed_part`` is the certificate bytes the signature covers (after the context
    prefix); it is not part of equality.
    """

    generation: int
    signature_algorithm: int
    public_key: bytes
    signature: bytes
    signed_part: bytes = dataclasses.field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_generation(self.generation, "certificate generation", FIRST_KEY_GENERATION + 1)
        _check_uint(self.signature_algorithm, 8, "signature_algorithm")
        _require(1 <= len(self.public_key) <= 0xFFFF, "public_key must be 1 to 65535 bytes")
        _require(len(self.signature) <= 0xFFFF, "signature too long")


def _check_chain(key_generation: int, rotations: tuple[RotationCertificate, ...]) -> None:
    """The certificates lead, one generation at a time, to ``key_generation``."""
    _require(len(rotations) <= MAX_ROTATION_CHAIN, f"at most {MAX_ROTATION_CHAIN} rotations")
    first = key_generation - len(rotations) + 1
    for offset, certificate in enumerate(rotations):
        if certificate.generation != first + offset:
            raise LocalProtocolError(
                "rotations must lead one generation at a time to key_generation"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class ResolveResponse:
    """The signed, prioritized list of Operations services.

    ``key_generation`` is the generation of the key that signed it; ``rotations`` the
    certificates from the generation the request named to that one (empty when equal).
    ``signed_part`` is the exact received (or sent) bytes the signature covers, after the
    context prefix and the app token; it is not part of equality.
    """

    nonce: bytes
    server_time_ms: int
    valid_for_s: int
    key_generation: int
    signature_algorithm: int
    nodes: tuple[OperationsNode, ...]
    rotations: tuple[RotationCertificate, ...]
    signature: bytes
    signed_part: bytes = dataclasses.field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        _require(len(self.nonce) == NONCE_SIZE, f"nonce must be {NONCE_SIZE} bytes")
        _check_uint(self.server_time_ms, 64, "server_time_ms")
        _check_uint(self.valid_for_s, 32, "valid_for_s")
        _check_generation(self.key_generation, "key_generation")
        _check_uint(self.signature_algorithm, 8, "signature_algorithm")
        _require(len(self.nodes) <= 255, "at most 255 nodes")
        _check_chain(self.key_generation, self.rotations)
        _require(len(self.signature) <= 0xFFFF, "signature too long")


@dataclasses.dataclass(frozen=True, slots=True)
class RegisterEnvelope:
    """The cleartext of a REGISTER_REQUEST: how the payload is sealed, and the payload."""

    ephemeral_public_key: bytes
    sealed_payload: bytes
    kex_algorithm: int = KeyExchangeAlgorithm.X25519
    aead_algorithm: int = AeadAlgorithm.CHACHA20_POLY1305

    def __post_init__(self) -> None:
        _check_uint(self.kex_algorithm, 8, "kex_algorithm")
        _check_uint(self.aead_algorithm, 8, "aead_algorithm")
        _require(
            len(self.ephemeral_public_key) == X25519_KEY_SIZE,
            "ephemeral_public_key must be 32 bytes",
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RegistrationPayload:
    """The opened registration: who the endpoint is, what it claims, and its proof.

    ``key`` is the endpoint's DER SubjectPublicKeyInfo, or on reconnect (``key_is_hash``)
    its 20-byte SHA-1, the endpoint id. ``signed_part`` is the bytes before the signature.
    """

    key_is_hash: bool
    signature_algorithm: int
    timestamp_ms: int
    sdk_token: str
    key: bytes
    profile: bytes
    signature: bytes
    signed_part: bytes = dataclasses.field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_uint(self.signature_algorithm, 8, "signature_algorithm")
        _check_uint(self.timestamp_ms, 64, "timestamp_ms")
        _check_token(self.sdk_token, "sdk_token")
        if self.key_is_hash:
            _require(len(self.key) == KEY_HASH_SIZE, "key hash must be 20 bytes")
        else:
            _require(1 <= len(self.key) <= 0xFFFF, "key must be 1 to 65535 bytes")
        _require(len(self.profile) <= 0xFFFF, "profile must be at most 65535 bytes")
        _require(len(self.signature) <= 0xFFFF, "signature too long")


@dataclasses.dataclass(frozen=True, slots=True)
class Topic:
    topic_id: int
    name: str

    def __post_init__(self) -> None:
        _check_uint(self.topic_id, 32, "topic_id")
        _require(len(self.name.encode()) <= 255, "topic name must be at most 255 bytes")


@dataclasses.dataclass(frozen=True, slots=True)
class RegistrationResult:
    """The Operations answer: the endpoint id, what happened, and the application state."""

    status: int
    endpoint_id: bytes
    server_time_ms: int
    config_version: int
    config: bytes
    topics: tuple[Topic, ...] = ()
    reconnect_after_s: int = 0
    retry_base_ms: int = 0

    def __post_init__(self) -> None:
        _require(self.status in RegistrationStatus._value2member_map_, "unknown status")
        _require(len(self.endpoint_id) == KEY_HASH_SIZE, "endpoint_id must be 20 bytes")
        _check_uint(self.server_time_ms, 64, "server_time_ms")
        _check_uint(self.config_version, 32, "config_version")
        _require(len(self.config) < (1 << 32), "config too long")
        _require(len(self.topics) <= 0xFFFF, "too many topics")
        _check_uint(self.reconnect_after_s, 32, "reconnect_after_s")
        _check_uint(self.retry_base_ms, 32, "retry_base_ms")


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorMessage:
    """An ERROR frame's content. ``sealed`` says it was authenticated by the session key."""

    code: int
    message: str = ""
    retry_after_ms: int = 0
    sealed: bool = False

    def __post_init__(self) -> None:
        _check_uint(self.code, 8, "code")
        _check_uint(self.retry_after_ms, 32, "retry_after_ms")
        _require(len(self.message.encode()) <= 255, "message must be at most 255 bytes")

    @property
    def error_code(self) -> ErrorCode | int:
        """The code as an ErrorCode when known (a newer peer may send codes we lack)."""
        return ErrorCode._value2member_map_.get(self.code, self.code)  # type: ignore[return-value]
