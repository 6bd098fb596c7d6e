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
