"""Framing: the 6-byte header, and a framer that enforces limits before any body parse.

This is the pure-Python implementation; ``kaa_wire_ext`` provides the same ``Framer`` and
``encode_frame`` with identical behaviour (tests/test_vectors.py holds both to it).

Header checks, in this order, as soon as 6 bytes are buffered and before the body arrives:
version, message type, flags, then size. An error is sticky: the framer raises the same
error on every later call, so a broken stream is never half-parsed.
"""

from __future__ import annotations

from kaa_wire._constants import (
    ABSOLUTE_MAX_FRAME_SIZE,
    DEFAULT_MAX_FRAME_SIZE,
    HEADER_SIZE,
    PROTOCOL_VERSION,
    FrameFlag,
    MessageType,
)
from kaa_wire._errors import (
    LocalProtocolError,
    RemoteProtocolError,
    bad_max_frame_size,
    flags_not_allowed,
    frame_too_large,
    unknown_message_type,
    unsupported_version,
)
from kaa_wire._messages import Frame
from kaa_wire._schema import HEADER

__all__ = ["Framer", "encode_frame", "check_max_frame_size"]

_KNOWN_TYPES = frozenset(int(t) for t in MessageType)


def check_max_frame_size(max_frame_size: int) -> None:
    if not HEADER_SIZE < max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
        raise bad_max_frame_size(HEADER_SIZE, ABSOLUTE_MAX_FRAME_SIZE)


def _check_header(
    version: int, msg_type: int, flags: int, length: int, max_frame_size: int
) -> None:
    if version != PROTOCOL_VERSION:
        raise unsupported_version(version)
    if msg_type not in _KNOWN_TYPES:
        raise unknown_message_type(msg_type)
    allowed_flags = int(FrameFlag.SEALED) if msg_type == MessageType.ERROR else 0
    if flags & ~allowed_flags:
        raise flags_not_allowed(flags, msg_type)
    if HEADER_SIZE + length > max_frame_size:
        raise frame_too_large(HEADER_SIZE + length, max_frame_size)


def encode_frame(
    msg_type: int, body: bytes, flags: int = 0, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> bytes:
    """Header + body. Raises LocalProtocolError for a frame the peer would refuse."""
    check_max_frame_size(max_frame_size)
    try:
        _check_header(PROTOCOL_VERSION, msg_type, flags, len(body), max_frame_size)
    except RemoteProtocolError as exc:
        raise LocalProtocolError(str(exc)) from None
    header = HEADER.build(
        {"version": PROTOCOL_VERSION, "msg_type": msg_type, "flags": flags, "length": len(body)}
    )
    return header + body


class Framer:
    """Splits a byte stream into frames: ``receive_data`` then ``next_frame`` until None."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        check_max_frame_size(max_frame_size)
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handed out as frames."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next whole frame, or None when more bytes are needed."""
        if self._error is not None:
            raise self._error
        if len(self._buffer) < HEADER_SIZE:
            return None
        header = bytes(self._buffer[:HEADER_SIZE])
        fields = HEADER.parse(header)
        try:
            _check_header(
                fields.version, fields.msg_type, fields.flags, fields.length, self.max_frame_size
            )
        except RemoteProtocolError as exc:
            self._error = exc
            raise
        end = HEADER_SIZE + fields.length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[HEADER_SIZE:end])
        del self._buffer[:end]
        return Frame(fields.msg_type, fields.flags, header, body)
