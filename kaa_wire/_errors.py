"""Error codes and exception classes shared by both implementations.

Two families, as in h11: :class:`LocalProtocolError` means this side misused the API
(for example, tried to send an invalid message); :class:`RemoteProtocolError` means the
peer misbehaved or refused us. Every exception carries the wire :class:`ErrorCode` that an
ERROR frame would carry, so a server can answer any failure with one call.
"""

from __future__ import annotations

import enum

__all__ = [
    "ErrorCode",
    "KaaWireError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "MalformedFrame",
    "UnsupportedVersion",
    "UnsupportedAlgorithm",
    "UnknownMessageType",
    "FrameTooLarge",
    "UnexpectedMessage",
    "UnknownApplication",
    "UnknownSdkToken",
    "BadSignature",
    "BadSeal",
    "StaleRequest",
    "ReplayedRequest",
    "RevokedEndpoint",
    "UnknownKeyHash",
    "Timeout",
    "Overloaded",
    "InternalError",
    "error_for_code",
    # The failures both implementations raise (kaa_wire's modules and kaa_wire_ext's .pyx
    # files alike), one factory each: the text of each lives here once.
    "truncated_or_invalid",
    "trailing_bytes",
    "unsupported_version",
    "unknown_message_type",
    "flags_not_allowed",
    "frame_too_large",
    "bad_max_frame_size",
    "unknown_registration_flags",
    "invalid_registration_payload",
    "negative_cache_size",
    "reconnect_needs_stored_key",
    "stored_key_does_not_match",
    "algorithm_does_not_fit_key",
    "proof_does_not_verify",
    "register_request_too_short",
    "unsupported_key_exchange",
    "unsupported_aead",
    "invalid_ephemeral_key",
    "sealed_payload_does_not_authenticate",
    "bad_response_secret_size",
    "bad_response_nonce_size",
]


class ErrorCode(enum.IntEnum):
    """Codes carried in ERROR frames (docs/protocol.md, section "Errors")."""

    MALFORMED_FRAME = 0x01
    UNSUPPORTED_VERSION = 0x02
    UNSUPPORTED_ALGORITHM = 0x03
    UNKNOWN_MESSAGE_TYPE = 0x04
    FRAME_TOO_LARGE = 0x05
    UNEXPECTED_MESSAGE = 0x06
    UNKNOWN_APPLICATION = 0x10
    UNKNOWN_SDK_TOKEN = 0x11
    BAD_SIGNATURE = 0x12
    BAD_SEAL = 0x13
    STALE_REQUEST = 0x14
    REPLAYED_REQUEST = 0x15
    REVOKED_ENDPOINT = 0x16
    UNKNOWN_KEY_HASH = 0x17
    TIMEOUT = 0x20
    OVERLOADED = 0x21
    INTERNAL_ERROR = 0x22


class KaaWireError(Exception):
    """Base of every kaa-wire protocol error; ``code`` is the wire error code."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str = "", *, retry_after_ms: int = 0, sealed: bool = False) -> None:
        super().__init__(message or self.code.name.lower().replace("_", " "))
        self.message = str(self.args[0])
        self.retry_after_ms = retry_after_ms
        #: True when this error arrived in a sealed ERROR frame, so the server that holds the
        #: session key sent it; an unsealed error could come from anyone on the path.
        self.sealed = sealed

    def __eq__(self, other: object) -> bool:
        # Equal when the same kind of failure: lets differential tests compare outcomes.
        return type(other) is type(self) and other.args == self.args  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), self.args))


class LocalProtocolError(KaaWireError):
    """This side tried something the protocol forbids (a bug in the caller)."""


class RemoteProtocolError(KaaWireError):
    """The peer sent something invalid, or refused the request with an ERROR frame."""


class MalformedFrame(RemoteProtocolError):
    """Bytes do not parse."""

    code = ErrorCode.MALFORMED_FRAME


class UnsupportedVersion(RemoteProtocolError):
    """Unknown protocol version."""

    code = ErrorCode.UNSUPPORTED_VERSION


class UnsupportedAlgorithm(RemoteProtocolError):
    """Unknown algorithm id."""

    code = ErrorCode.UNSUPPORTED_ALGORITHM


class UnknownMessageType(RemoteProtocolError):
    """Unknown message type."""

    code = ErrorCode.UNKNOWN_MESSAGE_TYPE


class FrameTooLarge(RemoteProtocolError):
    """Frame over the limit."""

    code = ErrorCode.FRAME_TOO_LARGE


class UnexpectedMessage(RemoteProtocolError):
    """Valid message, wrong place."""

    code = ErrorCode.UNEXPECTED_MESSAGE


class UnknownApplication(RemoteProtocolError):
    """No such application token."""

    code = ErrorCode.UNKNOWN_APPLICATION


class UnknownSdkToken(RemoteProtocolError):
    """No such SDK token."""

    code = ErrorCode.UNKNOWN_SDK_TOKEN


class BadSignature(RemoteProtocolError):
    """A signature did not verify."""

    code = ErrorCode.BAD_SIGNATURE


class BadSeal(RemoteProtocolError):
    """A sealed payload did not authenticate."""

    code = ErrorCode.BAD_SEAL


class StaleRequest(RemoteProtocolError):
    """Timestamp outside the accepted window."""

    code = ErrorCode.STALE_REQUEST


class ReplayedRequest(RemoteProtocolError):
    """Request seen before (not newer)."""

    code = ErrorCode.REPLAYED_REQUEST


class RevokedEndpoint(RemoteProtocolError):
    """Endpoint revoked."""

    code = ErrorCode.REVOKED_ENDPOINT


class UnknownKeyHash(RemoteProtocolError):
    """Reconnect key hash matches no endpoint."""

    code = ErrorCode.UNKNOWN_KEY_HASH


class Timeout(RemoteProtocolError):
    """The peer was too slow."""

    code = ErrorCode.TIMEOUT


class InternalError(RemoteProtocolError):
    """The server failed."""

    code = ErrorCode.INTERNAL_ERROR


class Overloaded(RemoteProtocolError):
    """The server is at capacity; retry after ``retry_after_ms``."""

    code = ErrorCode.OVERLOADED


_BY_CODE: dict[int, type[RemoteProtocolError]] = {
    cls.code: cls
    for cls in (
        MalformedFrame,
        UnsupportedVersion,
        UnsupportedAlgorithm,
        UnknownMessageType,
        FrameTooLarge,
        UnexpectedMessage,
        UnknownApplication,
        UnknownSdkToken,
        BadSignature,
        BadSeal,
        StaleRequest,
        ReplayedRequest,
        RevokedEndpoint,
        UnknownKeyHash,
        Timeout,
        Overloaded,
        InternalError,
    )
}


def error_for_code(
    code: int, message: str = "", retry_after_ms: int = 0, sealed: bool = False
) -> RemoteProtocolError:
    """The exception a received ERROR frame stands for (unknown codes map to InternalError)."""
    cls = _BY_CODE.get(code, InternalError)
    return cls(message, retry_after_ms=retry_after_ms, sealed=sealed)


# ---------------------------------------------------------------------------------------
# The failures both implementations raise. The pure modules and the extension's .pyx files
# build them here, so the two cannot drift apart in wording (the differential tests and the
# fuzz harness compare the class and the message). Each returns the exception; the caller
# raises it. Sizes and limits come in as arguments: no protocol number is repeated here.


def truncated_or_invalid(what: str) -> MalformedFrame:
    """``what`` ends before its last field, or a field does not parse."""
    return MalformedFrame(f"truncated or invalid {what}")


def trailing_bytes(count: int, what: str) -> MalformedFrame:
    """``count`` bytes follow one whole ``what``."""
    return MalformedFrame(f"{count} trailing bytes after {what}")


def unsupported_version(version: int) -> UnsupportedVersion:
    return UnsupportedVersion(f"protocol version {version} is not supported")


def unknown_message_type(msg_type: int) -> UnknownMessageType:
    return UnknownMessageType(f"message type 0x{msg_type:02x} is unknown")


def flags_not_allowed(flags: int, msg_type: int) -> MalformedFrame:
    return MalformedFrame(f"flags 0x{flags:02x} not allowed on message type 0x{msg_type:02x}")


def frame_too_large(frame_size: int, max_frame_size: int) -> FrameTooLarge:
    return FrameTooLarge(f"frame of {frame_size} bytes exceeds {max_frame_size}")


def bad_max_frame_size(header_size: int, absolute_max: int) -> LocalProtocolError:
    return LocalProtocolError(f"max_frame_size must be in ({header_size}, {absolute_max}]")


def unknown_registration_flags(flags: int) -> MalformedFrame:
    return MalformedFrame(f"unknown registration flags 0x{flags:02x}")


def invalid_registration_payload(reason: BaseException) -> MalformedFrame:
    """A payload that parses, but whose fields the message refuses (``reason``)."""
    return MalformedFrame(f"invalid registration payload: {reason}")


def negative_cache_size() -> LocalProtocolError:
    return LocalProtocolError("cache_size must be >= 0")


def reconnect_needs_stored_key() -> LocalProtocolError:
    return LocalProtocolError("a reconnect needs the stored key_der")


def stored_key_does_not_match() -> UnknownKeyHash:
    return UnknownKeyHash("stored key does not match the endpoint id sent")


def algorithm_does_not_fit_key(algorithm: int) -> UnsupportedAlgorithm:
    return UnsupportedAlgorithm(f"signature algorithm {algorithm} does not fit the endpoint key")


def proof_does_not_verify() -> BadSignature:
    return BadSignature("proof of possession does not verify")


def register_request_too_short() -> MalformedFrame:
    return MalformedFrame("register request too short to hold a sealed payload")


def unsupported_key_exchange(algorithm: int) -> UnsupportedAlgorithm:
    return UnsupportedAlgorithm(f"key exchange {algorithm} is not supported")


def unsupported_aead(algorithm: int) -> UnsupportedAlgorithm:
    return UnsupportedAlgorithm(f"AEAD {algorithm} is not supported")


def invalid_ephemeral_key() -> BadSeal:
    """A low-order ephemeral X25519 key: the shared secret would be all zero."""
    return BadSeal("invalid ephemeral X25519 key")


def sealed_payload_does_not_authenticate() -> BadSeal:
    return BadSeal("sealed payload does not authenticate")


def bad_response_secret_size(required: int) -> ValueError:
    """A caller's bug (not a wire error): a response secret must have ``required`` bytes."""
    return ValueError(f"a response secret has {required} bytes")


def bad_response_nonce_size(required: int) -> ValueError:
    """A caller's bug (not a wire error): a response nonce must have ``required`` bytes."""
    return ValueError(f"a response nonce has {required} bytes")
