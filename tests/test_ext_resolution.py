"""The extension's resolution functions == kaa_wire._codec's construct ones, differentially.

As in tests/test_ext_build.py: the same input goes to both, and the result must be the same
bytes or object, or the same exception (kaa_wire errors compare class and message). The
extension hands every input it does not take to the pure function, so the last tests here
check that ordinary input never gets that far.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaa_wire import _codec
from kaa_wire._constants import MAX_HOST_SIZE, MAX_TOKEN_SIZE, NONCE_SIZE
from kaa_wire._messages import OperationsNode, ResolveRequest
from tests.test_ext_build import same

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
NONCE = bytes(range(NONCE_SIZE))
KEY = bytes(range(32))
NODE = OperationsNode(200, 10, 1, "ops-1.example.net", 9997, KEY)
FUNCTIONS = (
    "decode_resolve_request",
    "resolve_response_signed_part",
    "resolve_signed_data",
    "encode_resolve_response",
)


@pytest.fixture(scope="module")
def ext() -> Any:
    return pytest.importorskip("kaa_wire_ext._ext")


def request_body(
    token: bytes = b"demo-app", nonce: bytes = NONCE, transports: bytes = b"\x01"
) -> bytes:
    """A RESOLVE_REQUEST body laid out by hand (so invalid field values can be written)."""
    return nonce + bytes([len(token)]) + token + bytes([len(transports)]) + transports


def decode_alike(ext: Any, body: Any) -> Any:
    return same(
        lambda: _codec.decode_resolve_request(body), lambda: ext.decode_resolve_request(body)
    )


def signed_part_alike(ext: Any, *args: Any) -> Any:
    return same(
        lambda: _codec.resolve_response_signed_part(*args),
        lambda: ext.resolve_response_signed_part(*args),
    )


# ---------------------------------------------------------------------------------------
# Strategies: valid messages across their whole ranges

tokens = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=MAX_TOKEN_SIZE
)
nonces = st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE)
u8 = st.integers(0, 0xFF)
nodes = st.builds(
    OperationsNode,
    priority=u8,
    weight=st.integers(0, 0xFFFF),
    access_point_id=st.integers(0, 0xFFFFFFFF),
    host=st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=MAX_HOST_SIZE
    ),
    port=st.integers(0, 0xFFFF),
    kex_public_key=st.binary(min_size=32, max_size=32),
    kex_algorithm=u8,
)
node_lists = st.lists(nodes, max_size=12).map(tuple)


# ---------------------------------------------------------------------------------------
# decode_resolve_request


@SETTINGS
@given(tokens, nonces, st.lists(u8, max_size=255))
def test_random_requests_decode_alike(
    ext: Any, token: str, nonce: bytes, transports: list[int]
) -> None:
    body = _codec.encode_resolve_request(ResolveRequest(token, nonce, tuple(transports)))
    assert decode_alike(ext, body)[0] == "ok"
    decoded = ext.decode_resolve_request(body)
    assert type(decoded) is ResolveRequest
    assert type(decoded.transports) is tuple
    assert _codec.encode_resolve_request(decoded) == body


def test_every_truncation_and_trailing_bytes(ext: Any) -> None:
    body = request_body(b"demo-app-9ZkQ2wX", transports=b"\x01\x02\x03")
    for end in range(len(body)):
        decode_alike(ext, body[:end])
    for extra in (b"\x00", b"\xa5", b"\x01\x01", bytes(300)):
        decode_alike(ext, body + extra)


@pytest.mark.parametrize(
    "token",
    [
        b"",
        b"a" * MAX_TOKEN_SIZE,
        b"a" * (MAX_TOKEN_SIZE + 1),
        b"a" * 255,
        b"tab\there",
        b"del\x7f",
        b"bell\x07",
        b"\x80high",
        b"caf\xc3\xa9",
        b" ",
        b"~",
    ],
)
def test_token_values_accepted_and_refused_alike(ext: Any, token: bytes) -> None:
    decode_alike(ext, request_body(token))


@pytest.mark.parametrize(
    "body", [request_body(), bytearray(request_body()), memoryview(request_body()), "text", None, 5]
)
def test_body_argument_types(ext: Any, body: Any) -> None:
    decode_alike(ext, body)


@SETTINGS
@given(st.binary(max_size=120))
def test_random_bodies(ext: Any, data: bytes) -> None:
    decode_alike(ext, data)


@st.composite
def mutated_bodies(draw: st.DrawFn) -> bytes:
    """A valid body with a few bytes flipped, cut or inserted: past the first checks."""
    data = bytearray(request_body(draw(tokens).encode(), transports=draw(st.binary(max_size=4))))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and position < len(data):
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


@SETTINGS
@given(mutated_bodies())
def test_mutated_bodies(ext: Any, data: bytes) -> None:
    decode_alike(ext, data)


# ---------------------------------------------------------------------------------------
# resolve_response_signed_part, resolve_signed_data, encode_resolve_response


@SETTINGS
@given(
    nonces,
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    u8,
    node_lists,
    tokens,
    st.binary(max_size=600),
)
def test_random_responses_build_alike(
    ext: Any,
    nonce: bytes,
    server_time_ms: int,
    valid_for_s: int,
    algorithm: int,
    node_list: tuple[OperationsNode, ...],
    token: str,
    signature: bytes,
) -> None:
    args = (nonce, server_time_ms, valid_for_s, algorithm, node_list)
    kind, part = signed_part_alike(ext, *args)
    assert kind == "ok"
    assert ext.resolve_signed_data(token, part) == _codec.resolve_signed_data(token, part)
    body = ext.encode_resolve_response(part, signature)
    assert body == _codec.encode_resolve_response(part, signature)
    response = _codec.decode_resolve_response(body)
    assert (response.nodes, response.signature, response.signed_part) == (
        node_list,
        signature,
        part,
    )


def test_largest_answer_builds_alike(ext: Any) -> None:
    node = OperationsNode(255, 0xFFFF, 0xFFFFFFFF, "h" * MAX_HOST_SIZE, 0xFFFF, KEY, 0xFF)
    kind, part = signed_part_alike(ext, NONCE, 2**64 - 1, 2**32 - 1, 0xFF, (node,) * 255)
    assert kind == "ok"
    assert len(part) == 30 + 255 * (43 + MAX_HOST_SIZE)


class NodeLike:
    """Not an OperationsNode, but with its fields: the pure builder takes it."""

    def __init__(self, **changes: Any) -> None:
        fields = {name: getattr(NODE, name) for name in NODE.__dataclass_fields__}
        self.__dict__.update(fields, **changes)


def _forced(**changes: Any) -> OperationsNode:
    """An OperationsNode holding a value its constructor refuses."""
    node = OperationsNode(**{name: getattr(NODE, name) for name in NODE.__dataclass_fields__})
    for name, value in changes.items():
        object.__setattr__(node, name, value)
    return node


@pytest.mark.parametrize(
    "args",
    [
        (NONCE[:15], 0, 1, 1, (NODE,)),
        (NONCE + b"\x00", 0, 1, 1, (NODE,)),
        (bytearray(NONCE), 0, 1, 1, (NODE,)),
        ("0123456789abcdef", 0, 1, 1, (NODE,)),
        (NONCE, -1, 1, 1, (NODE,)),
        (NONCE, 2**64, 1, 1, (NODE,)),
        (NONCE, 1.5, 1, 1, (NODE,)),
        (NONCE, 0, -1, 1, (NODE,)),
        (NONCE, 0, 2**32, 1, (NODE,)),
        (NONCE, 0, 1, 256, (NODE,)),
        (NONCE, 0, 1, "1", (NODE,)),
        (NONCE, True, 1, 1, [NODE, NODE]),
        (NONCE, 0, 1, 1, ()),
        (NONCE, 0, 1, 1, (NODE,) * 256),
        (NONCE, 0, 1, 1, iter((NODE,))),
        (NONCE, 0, 1, 1, (NODE, None)),
        (NONCE, 0, 1, 1, (NodeLike(),)),
        (NONCE, 0, 1, 1, (NodeLike(port=70000),)),
        (NONCE, 0, 1, 1, (_forced(host="h\u00e9"),)),
        (NONCE, 0, 1, 1, (_forced(host="h" * 256),)),
        (NONCE, 0, 1, 1, (_forced(host=""),)),
        (NONCE, 0, 1, 1, (_forced(kex_public_key=KEY[:31]),)),
        (NONCE, 0, 1, 1, (_forced(kex_public_key=bytearray(KEY)),)),
        (NONCE, 0, 1, 1, (_forced(priority=256),)),
        (NONCE, 0, 1, 1, (_forced(weight=-1),)),
        (NONCE, 0, 1, 1, (_forced(access_point_id=2**32),)),
    ],
)
def test_odd_arguments_alike(ext: Any, args: tuple[Any, ...]) -> None:
    signed_part_alike(ext, *args)


@pytest.mark.parametrize(
    ("token", "part"),
    [
        ("a", b""),
        ("", b"x"),
        ("a" * 255, b"x"),
        ("a" * 256, b"x"),
        ("caf\u00e9", b"x"),
        (b"bytes", b"x"),
        ("a", bytearray(b"x")),
        ("a", "x"),
        (None, b"x"),
    ],
)
def test_signed_data_arguments_alike(ext: Any, token: Any, part: Any) -> None:
    same(
        lambda: _codec.resolve_signed_data(token, part),
        lambda: ext.resolve_signed_data(token, part),
    )


@pytest.mark.parametrize(
    ("part", "signature"),
    [
        (b"p", b""),
        (b"", b"s"),
        (b"p", bytes(0xFFFF)),
        (b"p", bytes(0x10000)),
        (bytearray(b"p"), b"s"),
        (b"p", bytearray(b"s")),
        ("p", b"s"),
        (b"p", None),
    ],
)
def test_response_arguments_alike(ext: Any, part: Any, signature: Any) -> None:
    same(
        lambda: _codec.encode_resolve_response(part, signature),
        lambda: ext.encode_resolve_response(part, signature),
    )


# ---------------------------------------------------------------------------------------
# The fast path


def test_ordinary_input_never_reaches_the_pure_functions(
    ext: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Valid requests and answers, at the edges of every range, are handled in C."""

    def refuse(*args: Any) -> None:
        raise AssertionError("the pure function was asked")

    for name in FUNCTIONS:
        monkeypatch.setattr(_codec, name, refuse)
    for token in (b"a", b" ~", b"t" * MAX_TOKEN_SIZE):
        for transports in (b"", b"\x01", bytes(range(255))):
            request = ext.decode_resolve_request(request_body(token, transports=transports))
            assert request.transports == tuple(transports)
    edge = OperationsNode(0, 0, 0, "h" * MAX_HOST_SIZE, 0, KEY, 0)
    for node_list in ((), (NODE,), [NODE, edge], (edge,) * 255):
        part = ext.resolve_response_signed_part(NONCE, 2**64 - 1, 0, 0xFF, node_list)
        ext.resolve_signed_data("t" * 255, part)
        ext.encode_resolve_response(part, bytes(0xFFFF))


def test_big_endian_fields_are_laid_out_as_documented(ext: Any) -> None:
    """One answer spelled out by hand (docs/protocol.md 4.2), against the extension."""
    node = OperationsNode(0x12, 0x3456, 0x789ABCDE, "h", 0xF00D, KEY, 0x01)
    part = ext.resolve_response_signed_part(NONCE, 0x0102030405060708, 0x0A0B0C0D, 2, (node,))
    expected = (
        NONCE
        + struct.pack(">QIBB", 0x0102030405060708, 0x0A0B0C0D, 2, 1)
        + struct.pack(">BHIHB", 0x12, 0x3456, 0x789ABCDE, 0xF00D, 1)
        + KEY
        + b"\x01h"
    )
    assert part == expected
