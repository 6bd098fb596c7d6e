"""Hypothesis on random and mutated input: only protocol errors escape, and both
implementations agree (same frames or payload, or the same error class)."""

from __future__ import annotations

import types
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaa_wire import _codec
from kaa_wire._errors import RemoteProtocolError
from kaa_wire._framing import Framer as PureFramer
from kaa_wire._registration import parse_registration_payload as pure_parse
from tests.conftest import load_vectors

EXCHANGE = load_vectors("exchange.json")
SEED_FRAMES = [bytes.fromhex(v) for k, v in EXCHANGE.items() if k.endswith("_frame")]
SEED_PAYLOADS = [
    bytes.fromhex(v["plaintext"]) for v in load_vectors("registration.json") if "ok" in v["expect"]
]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with a few bytes flipped, cut, or spliced: input that gets past the first checks."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[position]
    return bytes(data)


def _frames(framer_cls: Any, data: bytes) -> list[Any]:
    framer = framer_cls(65536)
    framer.receive_data(data)
    out: list[Any] = []
    try:
        while (frame := framer.next_frame()) is not None:
            out.append(frame)
            try:
                out.append(_codec.describe_frame(frame))
            except RemoteProtocolError as exc:
                out.append(type(exc))
    except RemoteProtocolError as exc:
        out.append(type(exc))
    return out


def _payload(parse: Any, data: bytes) -> Any:
    try:
        return parse(data)
    except RemoteProtocolError as exc:
        return type(exc)


frame_inputs = st.one_of(st.binary(max_size=96), mutated(SEED_FRAMES))
payload_inputs = st.one_of(st.binary(max_size=96), mutated(SEED_PAYLOADS))


@SETTINGS
@given(frame_inputs)
def test_framer_and_codec_raise_only_protocol_errors(data: bytes) -> None:
    _frames(PureFramer, data)  # anything but RemoteProtocolError fails the test


@SETTINGS
@given(payload_inputs)
def test_payload_parser_raises_only_protocol_errors(data: bytes) -> None:
    _payload(pure_parse, data)


@pytest.mark.parametrize("impl", ["ext"], indirect=True)
@SETTINGS
@given(data=frame_inputs)
def test_framers_agree(impl: types.SimpleNamespace, data: bytes) -> None:
    assert _frames(impl.Framer, data) == _frames(PureFramer, data)


@pytest.mark.parametrize("impl", ["ext"], indirect=True)
@SETTINGS
@given(data=payload_inputs)
def test_payload_parsers_agree(impl: types.SimpleNamespace, data: bytes) -> None:
    ours, theirs = _payload(impl.parse_registration_payload, data), _payload(pure_parse, data)
    assert ours == theirs
    if not isinstance(ours, type):
        assert ours.signed_part == theirs.signed_part
