"""The extension's resolution functions == kaa_wire._codec's construct ones, differentially.

As in the other parity tests (tests/parity.py): the same input goes to both, and the result
must be the same bytes or object, or the same exception (kaa_wire errors compare class and
message). The
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
from kaa_wire._constants import MAX_HOST_SIZE, MAX_ROTATION_CHAIN, MAX_TOKEN_SIZE, NONCE_SIZE
from kaa_wire._errors import MalformedFrame
from kaa_wire._messages import OperationsNode, ResolveRequest, RotationCertificate
from tests.parity import same

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
NONCE = bytes(range(NONCE_SIZE))
KEY = bytes(range(32))
NODE = OperationsNode(200, 10, 1, "ops-1.example.net", 9997, KEY)
#: A certificate's bytes need not verify here: these tests are about the layout.
CERT = RotationCertificate(2, 1, b"\x30" * 294, b"\x5a" * 256)
FUNCTIONS = (
    "decode_resolve_request",
    "resolve_response_signed_part",
    "resolve_signed_data",
    "encode_resolve_response",
)



def request_body(
    token: bytes = b"demo-app",
    nonce: bytes = NONCE,
    transports: bytes = b"\x01",
    generation: int = 1,
) -> bytes:
    """A RESOLVE_REQUEST body laid out by hand (so invalid field values can be written)."""
    return (
        nonce
        + generation.to_bytes(4, "big")
        + bytes([len(token)])
        + token
        + bytes([len(transports)])
        + transports
    )


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
nonces = st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE).filter(any)
generations = st.integers(1, 2**32 - 1)
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


@st.composite
def chains(draw: st.DrawFn) -> tuple[int, tuple[RotationCertificate, ...]]:
    """(key_generation, the rotations leading to it): consecutive generations, any bytes."""
    count = draw(st.integers(0, MAX_ROTATION_CHAIN))
    key_generation = draw(st.integers(1 + count, 2**32 - 1))
    rotations = tuple(
        RotationCertificate(
            key_generation - count + 1 + i,
            draw(u8),
            draw(st.binary(min_size=1, max_size=600)),
            draw(st.binary(max_size=600)),
        )
        for i in range(count)
    )
    return key_generation, rotations


# ---------------------------------------------------------------------------------------
# decode_resolve_request


@SETTINGS
@given(tokens, nonces, st.lists(u8, min_size=1, max_size=255), generations)
def test_random_requests_decode_alike(
    ext: Any, token: str, nonce: bytes, transports: list[int], generation: int
) -> None:
    body = _codec.encode_resolve_request(
        ResolveRequest(token, nonce, tuple(transports), generation)
    )
    assert decode_alike(ext, body)[0] == "ok"
    decoded = ext.decode_resolve_request(body)
    assert type(decoded) is ResolveRequest
    assert type(decoded.transports) is tuple
    assert type(decoded.key_generation) is int
    assert _codec.encode_resolve_request(decoded) == body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (request_body(nonce=bytes(NONCE_SIZE)), "nonce must not be all zero"),
        (request_body(transports=b""), "transports must list 1 to 255 ids"),
        (request_body(generation=0), "key_generation must be 1 to 4294967295"),
    ],
    ids=["zero nonce", "no transport", "generation 0"],
)
def test_refused_by_both_decoders(ext: Any, body: bytes, reason: str) -> None:
    """docs/protocol.md 4.1: the decoder itself refuses these, with MALFORMED_FRAME."""
    kind, error = decode_alike(ext, body)
    assert kind == "error"
    assert error == MalformedFrame(f"invalid resolve request: {reason}")


@pytest.mark.parametrize("nonce", [bytes(15) + b"\x01", b"\x80" + bytes(15), b"\xff" * 16])
def test_any_nonce_with_a_set_bit_is_taken(ext: Any, nonce: bytes) -> None:
    assert ext.decode_resolve_request(request_body(nonce=nonce)).nonce == nonce


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
    data = bytearray(
        request_body(
            draw(tokens).encode(),
            transports=draw(st.binary(max_size=4)),
            generation=draw(st.integers(0, 2**32 - 1)),
        )
    )
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
    st.binary(min_size=NONCE_SIZE, max_size=NONCE_SIZE),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    chains(),
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
    chain: tuple[int, tuple[RotationCertificate, ...]],
    algorithm: int,
    node_list: tuple[OperationsNode, ...],
    token: str,
    signature: bytes,
) -> None:
    key_generation, rotations = chain
    args = (nonce, server_time_ms, valid_for_s, key_generation, algorithm, node_list, rotations)
    kind, part = signed_part_alike(ext, *args)
    assert kind == "ok"
    assert ext.resolve_signed_data(token, part) == _codec.resolve_signed_data(token, part)
    body = ext.encode_resolve_response(part, signature)
    assert body == _codec.encode_resolve_response(part, signature)
    response = _codec.decode_resolve_response(body)
    assert (
        response.nodes,
        response.key_generation,
        response.rotations,
        response.signature,
        response.signed_part,
    ) == (node_list, key_generation, rotations, signature, part)
    for decoded in response.rotations:
        assert decoded.signed_part == _codec.rotation_signed_part(
            decoded.generation, decoded.signature_algorithm, decoded.public_key
        )


def test_largest_answer_builds_alike(ext: Any) -> None:
    node = OperationsNode(255, 0xFFFF, 0xFFFFFFFF, "h" * MAX_HOST_SIZE, 0xFFFF, KEY, 0xFF)
    top = 2**32 - 1
    rotations = tuple(
        RotationCertificate(top - MAX_ROTATION_CHAIN + 1 + i, 0xFF, b"k" * 0xFFFF, b"s" * 0xFFFF)
        for i in range(MAX_ROTATION_CHAIN)
    )
    kind, part = signed_part_alike(
        ext, NONCE, 2**64 - 1, 2**32 - 1, top, 0xFF, (node,) * 255, rotations
    )
    assert kind == "ok"
    assert len(part) == 35 + 255 * (43 + MAX_HOST_SIZE) + MAX_ROTATION_CHAIN * (9 + 2 * 0xFFFF)


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


class CertificateLike:
    """Not a RotationCertificate, but with its fields: the pure builder takes it."""

    def __init__(self, **changes: Any) -> None:
        fields = {name: getattr(CERT, name) for name in ("generation", "signature_algorithm")}
        fields.update(public_key=CERT.public_key, signature=CERT.signature)
        self.__dict__.update(fields, **changes)


def _forced_certificate(**changes: Any) -> RotationCertificate:
    """A RotationCertificate holding a value its constructor refuses."""
    certificate = RotationCertificate(
        CERT.generation, CERT.signature_algorithm, CERT.public_key, CERT.signature
    )
    for name, value in changes.items():
        object.__setattr__(certificate, name, value)
    return certificate


def _args(nodes: Any = (NODE,), generation: Any = 1, rotations: Any = (), **fields: Any) -> Any:
    values = {"nonce": NONCE, "time": 0, "valid": 1, "algorithm": 1, **fields}
    return (
        values["nonce"], values["time"], values["valid"], generation, values["algorithm"],
        nodes, rotations,
    )  # fmt: skip


@pytest.mark.parametrize(
    "args",
    [
        _args(nonce=NONCE[:15]),
        _args(nonce=NONCE + b"\x00"),
        _args(nonce=bytearray(NONCE)),
        _args(nonce="0123456789abcdef"),
        _args(time=-1),
        _args(time=2**64),
        _args(time=1.5),
        _args(valid=-1),
        _args(valid=2**32),
        _args(algorithm=256),
        _args(algorithm="1"),
        _args([NODE, NODE], time=True),
        _args(()),
        _args((NODE,) * 256),
        _args(iter((NODE,))),
        _args((NODE, None)),
        _args((NodeLike(),)),
        _args((NodeLike(port=70000),)),
        _args((_forced(host="h\u00e9"),)),
        _args((_forced(host="h" * 256),)),
        _args((_forced(host=""),)),
        _args((_forced(kex_public_key=KEY[:31]),)),
        _args((_forced(kex_public_key=bytearray(KEY)),)),
        _args((_forced(priority=256),)),
        _args((_forced(weight=-1),)),
        _args((_forced(access_point_id=2**32),)),
        # the key generation and the rotations
        _args(generation=0),
        _args(generation=-1),
        _args(generation=2**32),
        _args(generation="1"),
        _args(generation=True),
        _args(generation=2, rotations=(CERT,)),
        _args(generation=2, rotations=[CERT]),
        _args(generation=3, rotations=(CERT,)),
        _args(generation=1, rotations=(CERT,)),
        _args(generation=2, rotations=(CERT, CERT)),
        _args(generation=2, rotations=iter((CERT,))),
        _args(generation=2, rotations=(None,)),
        _args(generation=2, rotations=(CertificateLike(),)),
        _args(generation=2, rotations=(CertificateLike(generation=3),)),
        _args(generation=40, rotations=(CERT,) * (MAX_ROTATION_CHAIN + 1)),
        _args(generation=2, rotations=(_forced_certificate(generation=1),)),
        _args(generation=2, rotations=(_forced_certificate(signature_algorithm=256),)),
        _args(generation=2, rotations=(_forced_certificate(public_key=b""),)),
        _args(generation=2, rotations=(_forced_certificate(public_key=bytes(0x10000)),)),
        _args(generation=2, rotations=(_forced_certificate(public_key=bytearray(b"k")),)),
        _args(generation=2, rotations=(_forced_certificate(signature=bytes(0x10000)),)),
        _args(generation=2, rotations=(_forced_certificate(signature="s"),)),
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
        for transports in (b"\x00", b"\x01", bytes(range(255))):
            for generation in (1, 2**32 - 1):
                body = request_body(token, transports=transports, generation=generation)
                request = ext.decode_resolve_request(body)
                assert request.transports == tuple(transports)
                assert request.key_generation == generation
    assert ext.decode_resolve_request(request_body(nonce=bytes(15) + b"\x01")).nonce[-1] == 1
    edge = OperationsNode(0, 0, 0, "h" * MAX_HOST_SIZE, 0, KEY, 0)
    edge_certificate = RotationCertificate(2**32 - 1, 0, b"k", b"")
    chains = (
        (1, ()),
        (2, (CERT,)),
        (2**32 - 1, (edge_certificate,)),
        (
            MAX_ROTATION_CHAIN + 1,
            tuple(RotationCertificate(2 + i, 2, b"k", b"s") for i in range(MAX_ROTATION_CHAIN)),
        ),
    )
    for node_list in ((), (NODE,), [NODE, edge], (edge,) * 255):
        for generation, rotations in chains:
            part = ext.resolve_response_signed_part(
                NONCE, 2**64 - 1, 0, generation, 0xFF, node_list, rotations
            )
            ext.resolve_signed_data("t" * 255, part)
            ext.encode_resolve_response(part, bytes(0xFFFF))
        third = RotationCertificate(3, 1, b"k", b"s")
        ext.resolve_response_signed_part(NONCE, 0, 0, 3, 1, node_list, [CERT, third])


def test_big_endian_fields_are_laid_out_as_documented(ext: Any) -> None:
    """One answer spelled out by hand (docs/protocol.md 4.2 and 4.5), against the extension."""
    node = OperationsNode(0x12, 0x3456, 0x789ABCDE, "h", 0xF00D, KEY, 0x01)
    certificate = RotationCertificate(0x11223344, 0x02, b"KEY", b"SIG")
    part = ext.resolve_response_signed_part(
        NONCE, 0x0102030405060708, 0x0A0B0C0D, 0x11223344, 2, (node,), (certificate,)
    )
    expected = (
        NONCE
        + struct.pack(">QIIBB", 0x0102030405060708, 0x0A0B0C0D, 0x11223344, 2, 1)
        + struct.pack(">BHIHB", 0x12, 0x3456, 0x789ABCDE, 0xF00D, 1)
        + KEY
        + b"\x01h"
        + b"\x01"
        + struct.pack(">IBH", 0x11223344, 2, 3)
        + b"KEY"
        + b"\x00\x03SIG"
    )
    assert part == expected


def test_request_laid_out_as_documented(ext: Any) -> None:
    """docs/protocol.md 4.1: nonce, key generation, token, transports."""
    body = NONCE + b"\x00\x00\x00\x03" + b"\x03app" + b"\x02\x01\x07"
    request = ext.decode_resolve_request(body)
    assert (request.nonce, request.key_generation, request.app_token, request.transports) == (
        NONCE,
        3,
        "app",
        (1, 7),
    )
