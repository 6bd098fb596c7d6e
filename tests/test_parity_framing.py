"""Framer and encode_frame: kaa_wire_ext._ext against kaa_wire._framing, differentially (whole and
byte-at-a-time streams, header errors and their stickiness, limits, random and mutated
streams).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaa_wire import _constants, _framing
from kaa_wire._errors import KaaWireError, LocalProtocolError
from tests.parity import SETTINGS, mutated, same


def _frames() -> bytes:
    return b"".join(
        [
            _framing.encode_frame(1, b"resolve"),
            _framing.encode_frame(3, b""),
            _framing.encode_frame(0x7F, b"sealed", 1),
            _framing.encode_frame(0x7F, b"plain"),
            _framing.encode_frame(2, bytes(300)),
            _framing.encode_frame(4, b"x"),
        ]
    )


def framer_trace(framer: Any, chunks: list[bytes]) -> list[Any]:
    """Everything a framer says while fed `chunks`, ending at its first error."""
    trace: list[Any] = []
    for chunk in chunks:
        framer.receive_data(chunk)
        try:
            while (frame := framer.next_frame()) is not None:
                trace.append(frame)
        except KaaWireError as exc:
            trace.append(exc)
            return trace
        trace.append(("buffered", framer.buffered))
    return trace


def test_framer_whole_and_byte_at_a_time(ext: Any) -> None:
    stream = _frames()
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))],
                   [stream[:7], stream[7:20], stream[20:]]):
        expected = framer_trace(_framing.Framer(), chunks)
        assert framer_trace(ext.Framer(), chunks) == expected
    assert len([f for f in expected if isinstance(f, tuple) and len(f) == 4]) == 6


def test_framer_accepts_any_bytes_like(ext: Any) -> None:
    stream = _frames()
    for wrap in (bytes, bytearray, memoryview):
        expected = framer_trace(_framing.Framer(), [wrap(stream)])
        assert framer_trace(ext.Framer(), [wrap(stream)]) == expected


@pytest.mark.parametrize(
    "header",
    [
        b"\x01\x01\x00\x00\x00\x00",  # version
        b"\x00\x01\x00\x00\x00\x00",
        b"\x02\x00\x00\x00\x00\x00",  # unknown message types
        b"\x02\x05\x00\x00\x00\x00",
        b"\x02\x7e\x00\x00\x00\x00",
        b"\x02\xff\x00\x00\x00\x00",
        b"\x02\x01\x01\x00\x00\x00",  # SEALED only on ERROR
        b"\x02\x03\x80\x00\x00\x00",
        b"\x02\x7f\x02\x00\x00\x00",
        b"\x02\x7f\x03\x00\x00\x00",
        b"\x02\x01\x00\x01\x00\x00",  # too large for the default limit
        b"\x02\x01\x00\xff\xff\xff",
        b"\x03\xff\xff\xff\xff\xff",  # every check fails: the first one wins
    ],
)
def test_framer_header_errors_are_identical_and_sticky(ext: Any, header: bytes) -> None:
    for framer_cls in (_framing.Framer, ext.Framer):
        framer = framer_cls()
        framer.receive_data(header[:5])
        assert framer.next_frame() is None
        framer.receive_data(header[5:])
        with pytest.raises(KaaWireError) as first:
            framer.next_frame()
        framer.receive_data(_framing.encode_frame(1, b"later"))
        with pytest.raises(KaaWireError) as again:
            framer.next_frame()
        assert again.value is first.value
        if framer_cls is _framing.Framer:
            expected = first.value
    assert first.value == expected


@pytest.mark.parametrize(
    "limit", [7, 8, 100, 306, 307, _constants.ABSOLUTE_MAX_FRAME_SIZE, 65536.5]
)
def test_framer_limits(ext: Any, limit: Any) -> None:
    stream = _frames()
    expected = framer_trace(_framing.Framer(limit), [stream])
    assert framer_trace(ext.Framer(limit), [stream]) == expected
    assert ext.Framer(limit).max_frame_size == limit


@pytest.mark.parametrize(
    "limit", [6, 0, -1, _constants.ABSOLUTE_MAX_FRAME_SIZE + 1, 2**70]
)
def test_framer_refuses_bad_limits(ext: Any, limit: int) -> None:
    result = same(lambda: _framing.Framer(limit), lambda: ext.Framer(limit))
    assert result[0] == "error"
    assert isinstance(result[1], LocalProtocolError)


def test_framer_limit_can_be_changed_later(ext: Any) -> None:
    stream = _frames()
    traces = []
    for framer_cls in (_framing.Framer, ext.Framer):
        framer = framer_cls()
        framer.max_frame_size = 20
        traces.append(framer_trace(framer, [stream]))
    assert traces[0] == traces[1]


def test_framer_init_again_starts_over(ext: Any) -> None:
    traces = []
    for framer_cls in (_framing.Framer, ext.Framer):
        framer = framer_cls()
        framer.receive_data(b"\x09\x01\x00\x00\x00\x00")
        with pytest.raises(KaaWireError):
            framer.next_frame()
        framer.__init__(100)  # type: ignore[misc]
        traces.append((framer.buffered, framer.max_frame_size, framer_trace(framer, [_frames()])))
    assert traces[0] == traces[1]


@pytest.mark.parametrize("msg_type", [0, 1, 2, 3, 4, 5, 0x7E, 0x7F, 0x80, 255, 256, -1])
@pytest.mark.parametrize("flags", [0, 1, 2, 0x80, 255, 256, -1])
def test_encode_frame_types_and_flags(ext: Any, msg_type: int, flags: int) -> None:
    same(
        lambda: _framing.encode_frame(msg_type, b"body", flags),
        lambda: ext.encode_frame(msg_type, b"body", flags),
    )


@pytest.mark.parametrize("size", [0, 1, 57, 58, 59, 65530, 65531])
@pytest.mark.parametrize("limit", [7, 64, 65536])
def test_encode_frame_sizes(ext: Any, size: int, limit: int) -> None:
    body = bytes(size)
    same(
        lambda: _framing.encode_frame(4, body, 0, limit),
        lambda: ext.encode_frame(4, body, 0, limit),
    )
    same(
        lambda: _framing.encode_frame(4, bytearray(body), max_frame_size=limit),
        lambda: ext.encode_frame(4, bytearray(body), max_frame_size=limit),
    )


def test_encode_frame_takes_enum_members(ext: Any) -> None:
    message_type = _constants.MessageType.ERROR
    flag = _constants.FrameFlag.SEALED
    assert ext.encode_frame(message_type, b"x", flag) == _framing.encode_frame(
        message_type, b"x", flag
    )


@SETTINGS
@given(
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    limit=st.sampled_from([7, 16, 64, 65536]),
)
def test_random_streams(ext: Any, data: bytes, cuts: list[int], limit: int) -> None:
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)] or [b""]
    assert framer_trace(ext.Framer(limit), chunks) == framer_trace(
        _framing.Framer(limit), chunks
    )


@SETTINGS
@given(data=mutated(_frames()), limit=st.sampled_from([64, 65536]))
def test_mutated_streams(ext: Any, data: bytes, limit: int) -> None:
    chunks = [data[i : i + 5] for i in range(0, len(data), 5)]
    assert framer_trace(ext.Framer(limit), chunks) == framer_trace(
        _framing.Framer(limit), chunks
    )


@SETTINGS
@given(
    msg_type=st.integers(-2, 260),
    flags=st.integers(-2, 260),
    size=st.integers(0, 80),
    limit=st.integers(0, 100),
)
def test_random_encodes(ext: Any, msg_type: int, flags: int, size: int, limit: int) -> None:
    body = bytes(size)
    same(
        lambda: _framing.encode_frame(msg_type, body, flags, limit),
        lambda: ext.encode_frame(msg_type, body, flags, limit),
    )
