"""The extension is built when it must be, and kaa_wire_ext._ext == the pure path, differentially.

Every test here feeds the same input to ``kaa_wire_ext._ext`` and to the pure modules
(``kaa_wire._framing``, ``kaa_wire._registration``, ``kaa_wire._signer``) and demands the same
result, or the same exception: kaa_wire errors compare equal only when class and message both
match (KaaWireError.__eq__), so the check is stricter than "the same class". The differential
tests skip when the extension is not built; the build check itself never skips, so CI
(KAA_WIRE_REQUIRE_EXT=1) cannot pass on a silent fallback.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import os
import re
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kaa_wire
from kaa_wire import _codec, _constants, _crypto, _framing, _opener, _registration, _signer
from kaa_wire._errors import KaaWireError, LocalProtocolError
from kaa_wire._messages import RegistrationResult, Topic

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = _constants.REGISTER_SIGNATURE_CONTEXT + bytes(range(64))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


# ---------------------------------------------------------------------------------------
# The build itself


def test_required_extension_is_built_and_selected() -> None:
    """CI sets KAA_WIRE_REQUIRE_EXT=1: then the extension must import, and be the one in use
    unless KAA_WIRE_PUREPYTHON=1 forces pure Python (then "py", whatever is built)."""
    if _flag("KAA_WIRE_PUREPYTHON"):
        assert kaa_wire.IMPLEMENTATION == "py"
    if _flag("KAA_WIRE_REQUIRE_EXT"):
        from kaa_wire_ext import _ext  # noqa: F401 - ImportError here is the failure

        if not _flag("KAA_WIRE_PUREPYTHON"):
            assert kaa_wire.IMPLEMENTATION == "ext"


#: protocol.pxd name -> the value it mirrors.
PXD_MIRRORS: dict[str, int] = {
    "PROTOCOL_VERSION": _constants.PROTOCOL_VERSION,
    "HEADER_SIZE": _constants.HEADER_SIZE,
    "DEFAULT_MAX_FRAME_SIZE": _constants.DEFAULT_MAX_FRAME_SIZE,
    "ABSOLUTE_MAX_FRAME_SIZE": _constants.ABSOLUTE_MAX_FRAME_SIZE,
    "MAX_BODY_LENGTH": _constants.ABSOLUTE_MAX_FRAME_SIZE - _constants.HEADER_SIZE,
    "NONCE_SIZE": _constants.NONCE_SIZE,
    "RESPONSE_NONCE_SIZE": _constants.RESPONSE_NONCE_SIZE,
    "KEY_HASH_SIZE": _constants.KEY_HASH_SIZE,
    "X25519_KEY_SIZE": _constants.X25519_KEY_SIZE,
    "AEAD_TAG_SIZE": _constants.AEAD_TAG_SIZE,
    "MAX_TOKEN_SIZE": _constants.MAX_TOKEN_SIZE,
    "MAX_HOST_SIZE": _constants.MAX_HOST_SIZE,
    "FIRST_KEY_GENERATION": _constants.FIRST_KEY_GENERATION,
    "MAX_ROTATION_CHAIN": _constants.MAX_ROTATION_CHAIN,
    **{f"MSG_{t.name}": int(t) for t in _constants.MessageType},
    **{f"FLAG_{f.name}": int(f) for f in _constants.FrameFlag},
    **{f"SIG_{a.name}": int(a) for a in _constants.SignatureAlgorithm},
    **{f"KEX_{a.name}": int(a) for a in _constants.KeyExchangeAlgorithm},
    **{f"AEAD_{a.name}": int(a) for a in _constants.AeadAlgorithm},
    "ENVELOPE_SIZE": _constants.ENVELOPE_SIZE,
    "PAYLOAD_FLAG_KEY_IS_HASH": _constants.PAYLOAD_FLAG_KEY_IS_HASH,
    "SIGNATURE_LENGTH_PREFIX": _constants.SIGNATURE_LENGTH_PREFIX,
    "MIN_RSA_BITS": _constants.MIN_RSA_BITS,
    "MAX_RSA_BITS": _constants.MAX_RSA_BITS,
    "RSA_PUBLIC_EXPONENT": _constants.RSA_PUBLIC_EXPONENT,
}


def test_the_extension_exports_exactly_the_fast_path_names() -> None:
    """kaa_wire/_impl.py's NAMES is the one list: the .pyx __all__ and the .pyi follow it."""
    from kaa_wire import _impl

    stub = (ROOT / "kaa_wire_ext" / "_ext.pyi").read_text()
    stub_all = re.search(r"^__all__ = \[(.*?)\]", stub, re.S | re.M)
    assert stub_all is not None
    assert set(re.findall(r'"(\w+)"', stub_all.group(1))) == set(_impl.NAMES)
    pyx = (ROOT / "kaa_wire_ext" / "_ext.pyx").read_text()
    pyx_all = re.search(r"^__all__ = \[(.*?)\]", pyx, re.S | re.M)
    assert pyx_all is not None
    assert set(re.findall(r'"(\w+)"', pyx_all.group(1))) == set(_impl.NAMES)
    try:
        from kaa_wire_ext import _ext
    except ImportError:
        return
    assert set(_ext.__all__) == set(_impl.NAMES)


def test_pxd_constants_equal_kaa_wire_constants() -> None:
    text = (ROOT / "kaa_wire_ext" / "protocol.pxd").read_text()
    declared = {
        name: int(value, 0)
        for name, value in re.findall(
            r"^\s+([A-Z][A-Z0-9_]+)\s*=\s*(0x[0-9A-Fa-f]+|\d+)", text, re.M
        )
    }
    assert declared == PXD_MIRRORS
    try:
        from kaa_wire_ext import _ext
    except ImportError:
        return
    assert _ext._constants() == PXD_MIRRORS


# ---------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def ext() -> Any:
    return pytest.importorskip("kaa_wire_ext._ext")


def outcome(call: Callable[[], Any]) -> Any:
    """The value, or the exception: kaa_wire errors by equality, others by class."""
    try:
        return ("ok", call())
    except KaaWireError as exc:
        return ("error", exc)
    except Exception as exc:
        return ("raised", type(exc))


def same(pure: Callable[[], Any], compiled: Callable[[], Any]) -> Any:
    expected = outcome(pure)
    got = outcome(compiled)
    assert got == expected
    if expected[0] == "ok" and hasattr(expected[1], "signed_part"):
        assert got[1].signed_part == expected[1].signed_part
        assert type(got[1].signed_part) is type(expected[1].signed_part)
    return expected


def payload_bytes(
    *,
    flags: int = 0,
    algorithm: int = 1,
    timestamp: int = 1_700_000_000_000,
    token: bytes = b"sdk-token",
    key: bytes = b"",
    profile: bytes = b'{"model":"kaa-1"}',
    signature: bytes = b"",
    key_is_hash: bool | None = None,
) -> bytes:
    """A registration payload laid out by hand (so invalid field values can be written)."""
    is_hash = bool(flags & 1) if key_is_hash is None else key_is_hash
    key_field = key if is_hash else struct.pack(">H", len(key)) + key
    return (
        struct.pack(">BBQB", flags, algorithm, timestamp, len(token))
        + token
        + key_field
        + struct.pack(">H", len(profile))
        + profile
        + struct.pack(">H", len(signature))
        + signature
    )


def signed_payload(private_key: Any, *, reconnect: bool = False, **fields: Any) -> bytes:
    """A payload whose signature verifies over CONTEXT (as an endpoint would send it)."""
    der = _crypto.public_key_der(private_key)
    algorithm = int(_crypto.signature_algorithm_of(private_key))
    key = _crypto.endpoint_id(der) if reconnect else der
    fields = {"algorithm": algorithm, "key": key, "flags": int(reconnect), **fields}
    signed_part = payload_bytes(**fields, signature=b"")[:-2]  # less the empty signature
    return signed_part + _with_signature(_crypto.sign(private_key, CONTEXT + signed_part))


def _with_signature(signature: bytes) -> bytes:
    return struct.pack(">H", len(signature)) + signature


def der_tlv(tag: int, content: bytes, long_form: bool = False) -> bytes:
    n = len(content)
    if n < 0x80 and not long_form:
        return bytes([tag, n]) + content
    size = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def der_int(value: int, pad: int = 0) -> bytes:
    length = max(1, (value.bit_length() + 8) // 8)
    return der_tlv(2, b"\x00" * pad + value.to_bytes(length, "big", signed=True))


RSA_ALGORITHM = der_tlv(0x30, der_tlv(6, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")


def rsa_spki(n: int, e: int, *, algorithm: bytes = RSA_ALGORITHM, n_pad: int = 0,
             e_pad: int = 0, long_form: bool = False) -> bytes:
    rsa_key = der_tlv(0x30, der_int(n, n_pad) + der_int(e, e_pad), long_form)
    return der_tlv(0x30, algorithm + der_tlv(3, b"\x00" + rsa_key), long_form)


@pytest.fixture(scope="module")
def keys(vector_keys: dict[str, Any]) -> dict[str, Any]:
    """The fixed vector keys, plus a few generated once: RSA-1024 (too small), RSA-4096
    (the largest allowed), P-256 and X25519 (wrong kinds)."""
    return {
        "rsa": vector_keys["endpoint_rsa"],
        "rsa2": vector_keys["other_rsa"],
        "ed25519": vector_keys["endpoint_ed25519"],
        "ed25519_2": ed25519.Ed25519PrivateKey.generate(),
        "rsa1024": rsa.generate_private_key(65537, 1024),
        "rsa4096": rsa.generate_private_key(65537, 4096),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "x25519": x25519.X25519PrivateKey.generate(),
    }


def spki(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verify_both(ext: Any, payload: bytes, key_der: bytes | None = None,
                context: bytes = CONTEXT, cache_size: int = 0) -> Any:
    """Parse + verify on each path; the outcome (endpoint id or exception) must agree."""

    def run(parse: Any, verifier_cls: Any) -> Any:
        parsed = parse(payload)
        return verifier_cls(cache_size).verify(parsed, context, key_der)

    return same(
        lambda: run(_registration.parse_registration_payload, _registration.RegistrationVerifier),
        lambda: run(ext.parse_registration_payload, ext.RegistrationVerifier),
    )


# ---------------------------------------------------------------------------------------
# parse_registration_payload


def test_good_payloads_parse_identically(ext: Any, keys: dict[str, Any]) -> None:
    for name in ("rsa", "ed25519", "rsa4096"):
        for reconnect in (False, True):
            data = signed_payload(keys[name], reconnect=reconnect)
            result = same(
                lambda d=data: _registration.parse_registration_payload(d),
                lambda d=data: ext.parse_registration_payload(d),
            )
            assert result[0] == "ok"
            assert result[1].key_is_hash is reconnect
    data = bytearray(signed_payload(keys["rsa"]))
    result = same(
        lambda: _registration.parse_registration_payload(data),
        lambda: ext.parse_registration_payload(data),
    )
    assert type(result[1].signed_part) is bytearray


@pytest.mark.parametrize("reconnect", [False, True])
def test_every_truncation_and_trailing_bytes(
    ext: Any, keys: dict[str, Any], reconnect: bool
) -> None:
    data = signed_payload(keys["ed25519"], reconnect=reconnect)
    for end in range(len(data)):
        same(
            lambda d=data[:end]: _registration.parse_registration_payload(d),
            lambda d=data[:end]: ext.parse_registration_payload(d),
        )
    for extra in (b"\x00", b"\xa5", b"\xa5\xa5", bytes(7)):
        result = same(
            lambda d=data + extra: _registration.parse_registration_payload(d),
            lambda d=data + extra: ext.parse_registration_payload(d),
        )
        assert result[0] == "error"


@pytest.mark.parametrize(
    "fields",
    [
        {"flags": 0x02},
        {"flags": 0x80},
        {"flags": 0x03, "key": bytes(20)},
        {"flags": 0xFF, "key": bytes(20)},
        {"token": b""},
        {"token": b"t" * 64},
        {"token": b"t" * 65},
        {"token": b"tab\there"},
        {"token": b"\x7f"},
        {"token": b"caf\xc3\xa9"},
        {"token": b"\xa5"},
        {"token": b"with space"},
        {"key": b""},
        {"key": b"k"},
        {"flags": 1, "key": bytes(20)},
        {"profile": b""},
        {"profile": bytes(0xFFFF)},
        {"signature": b""},
        {"signature": bytes(0xFFFF)},
        {"algorithm": 0},
        {"algorithm": 255},
        {"timestamp": 0},
        {"timestamp": 2**64 - 1},
    ],
)
def test_field_values_accepted_and_refused_alike(ext: Any, fields: dict[str, Any]) -> None:
    fields = {"key": b"\x30\x00", **fields}
    data = payload_bytes(**fields)
    same(
        lambda: _registration.parse_registration_payload(data),
        lambda: ext.parse_registration_payload(data),
    )


def test_payload_argument_types(ext: Any) -> None:
    for value in ("text", memoryview(b"abc"), None, 5):
        same(
            lambda v=value: _registration.parse_registration_payload(v),
            lambda v=value: ext.parse_registration_payload(v),
        )


@SETTINGS
@given(st.binary(max_size=400))
def test_random_payloads(ext: Any, data: bytes) -> None:
    same(
        lambda: _registration.parse_registration_payload(data),
        lambda: ext.parse_registration_payload(data),
    )


_GOOD_PAYLOAD = payload_bytes(key=b"\x30\x03\x02\x01\x01", signature=b"s" * 64)
_GOOD_RECONNECT = payload_bytes(flags=1, key=bytes(range(20)), signature=b"s" * 64)


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and data:
            del data[at]
        elif op == "cut":
            del data[at:]
    return bytes(data)


@SETTINGS
@given(st.one_of(mutated(_GOOD_PAYLOAD), mutated(_GOOD_RECONNECT)))
def test_mutated_payloads(ext: Any, data: bytes) -> None:
    same(
        lambda: _registration.parse_registration_payload(data),
        lambda: ext.parse_registration_payload(data),
    )


# ---------------------------------------------------------------------------------------
# Framer and encode_frame


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


# ---------------------------------------------------------------------------------------
# RegistrationVerifier


@pytest.mark.parametrize("name", ["rsa", "ed25519", "rsa4096"])
def test_good_registrations_and_reconnects(ext: Any, keys: dict[str, Any], name: str) -> None:
    key = keys[name]
    der = _crypto.public_key_der(key)
    result = verify_both(ext, signed_payload(key))
    assert result == ("ok", _crypto.endpoint_id(der))
    for cache_size in (0, 4096):
        assert verify_both(ext, signed_payload(key, reconnect=True), der, cache_size=cache_size)[
            0
        ] == "ok"


def test_reconnect_rules(ext: Any, keys: dict[str, Any]) -> None:
    key = keys["rsa"]
    data = signed_payload(key, reconnect=True)
    assert verify_both(ext, data)[1].__class__ is LocalProtocolError  # no key_der
    wrong = verify_both(ext, data, _crypto.public_key_der(keys["rsa2"]))
    assert type(wrong[1]).__name__ == "UnknownKeyHash"
    # key_der is ignored on a first registration, as in the pure path
    assert verify_both(ext, signed_payload(key), b"ignored")[0] == "ok"


def test_cached_keys_are_reused_like_the_pure_cache(ext: Any, keys: dict[str, Any]) -> None:
    names = ["rsa", "rsa2", "ed25519", "ed25519_2"]
    plan = [names[i % 4] for i in range(12)] + ["rsa", "ed25519"]
    for cache_size in (0, 1, 2, 4096):
        pure = _registration.RegistrationVerifier(cache_size)
        compiled = ext.RegistrationVerifier(cache_size)
        assert compiled.cache_size == cache_size
        for name in plan:
            key = keys[name]
            der = _crypto.public_key_der(key)
            for data, key_der in ((signed_payload(key), None),
                                  (signed_payload(key, reconnect=True), der)):
                same(
                    lambda d=data, k=key_der, v=pure: v.verify(
                        _registration.parse_registration_payload(d), CONTEXT, k),
                    lambda d=data, k=key_der, v=compiled: v.verify(
                        ext.parse_registration_payload(d), CONTEXT, k),
                )


def test_negative_cache_size(ext: Any) -> None:
    result = same(
        lambda: _registration.RegistrationVerifier(-1), lambda: ext.RegistrationVerifier(-1)
    )
    assert isinstance(result[1], LocalProtocolError)


@pytest.mark.parametrize("name", ["rsa", "ed25519"])
@pytest.mark.parametrize("algorithm", [0, 1, 2, 3, 255])
def test_algorithm_must_fit_the_key(
    ext: Any, keys: dict[str, Any], name: str, algorithm: int
) -> None:
    verify_both(ext, signed_payload(keys[name], algorithm=algorithm))


@pytest.mark.parametrize("name", ["rsa", "ed25519"])
def test_bad_signatures(ext: Any, keys: dict[str, Any], name: str) -> None:
    data = signed_payload(keys[name])
    flipped = data[:-1] + bytes([data[-1] ^ 1])
    assert type(verify_both(ext, flipped)[1]).__name__ == "BadSignature"
    assert type(verify_both(ext, data, context=CONTEXT[:-1] + b"!")[1]).__name__ == (
        "BadSignature"
    )
    # a signature of the wrong length, and none at all
    signed_part = _registration.parse_registration_payload(data).signed_part
    for signature in (b"", b"\x00", bytes(255), bytes(257), bytes(64), bytes(65)):
        verify_both(ext, signed_part + _with_signature(signature))


def _rsa_numbers(key: Any) -> tuple[int, int]:
    numbers = key.public_key().public_numbers()
    return numbers.n, numbers.e


def endpoint_key_variants(keys: dict[str, Any]) -> dict[str, bytes]:
    """Endpoint keys each path must judge alike: canonical, non-canonical, wrong kind..."""
    n, e = _rsa_numbers(keys["rsa"])
    ed = spki(keys["ed25519"])
    good = spki(keys["rsa"])
    rsa_oid = der_tlv(6, bytes.fromhex("2a864886f70d010101"))
    return {
        "rsa": good,
        "rsa rebuilt": rsa_spki(n, e),
        "rsa4096": spki(keys["rsa4096"]),
        "ed25519": ed,
        "rsa1024": spki(keys["rsa1024"]),
        "p256": spki(keys["p256"]),
        "x25519": spki(keys["x25519"]),
        "ed448-shaped": bytes.fromhex("3043300506032b6571033a00") + bytes(57),
        "long-form lengths": rsa_spki(n, e, long_form=True),
        "no NULL parameters": rsa_spki(n, e, algorithm=der_tlv(0x30, rsa_oid)),
        "other parameters": rsa_spki(n, e, algorithm=der_tlv(0x30, rsa_oid + b"\x04\x00")),
        "padded n": rsa_spki(n, e, n_pad=1),
        "padded e": rsa_spki(n, e, e_pad=1),
        "negative n": rsa_spki(-n, e),
        "negative e": rsa_spki(n, -e),
        "e = 0": rsa_spki(n, 0),
        "e = 1": rsa_spki(n, 1),
        "e = 2": rsa_spki(n, 2),
        "e = 3": rsa_spki(n, 3),
        "e > n": rsa_spki(n, n + 2),
        "e of 100 bits": rsa_spki(n, 2**100 + 1),
        "even n": rsa_spki(n ^ 1, e),
        "2047 bits": rsa_spki(n >> 1 | 1, e),
        "4096 bits": rsa_spki(n << 2048 | 1, e),
        "4097 bits": rsa_spki(n << 2049 | 1, e),
        "trailing byte": good + b"\x00",
        "inner trailing byte": der_tlv(
            0x30, RSA_ALGORITHM + der_tlv(3, b"\x00" + der_tlv(0x30, der_int(n) + der_int(e))
                                          + b"\x00")),
        "unused bits": good[:23] + b"\x01" + good[24:],
        "wrong outer tag": b"\x31" + good[1:],
        "ed25519 truncated": ed[:-1],
        "ed25519 long": ed + b"\x00",
        "ed25519 zero key": ed[:12] + bytes(32),
        **{f"ed25519 small order {i}": ed[:12] + point
           for i, point in enumerate(_constants.ED25519_SMALL_ORDER_KEYS)},
        "ed25519 y = p": ed[:12] + bytes.fromhex("ed" + "ff" * 30 + "7f"),
        "ed25519 y = p + 18, sign": ed[:12] + bytes.fromhex("ff" * 32),
        "ed25519 y = 1, sign": ed[:12] + bytes.fromhex("01" + "00" * 30 + "80"),
        "ed25519 y = p - 1, sign": ed[:12] + bytes.fromhex("ec" + "ff" * 31),
        "ed25519 y = p - 2": ed[:12] + bytes.fromhex("eb" + "ff" * 30 + "7f"),
        "ed25519 sign flipped": ed[:-1] + bytes([ed[-1] ^ 0x80]),
        "e = 65539": rsa_spki(n, 65539),
        "e = 2**64 + 1": rsa_spki(n, 2**64 + 1),
        "e of 3071 bits": rsa_spki(n << 1024 | 1, 2**3070 + 1),
        "ed25519 wrong BIT STRING": ed[:11] + b"\x01" + ed[12:],
        "empty": b"",
        "junk": b"\x30\x00",
        "truncated rsa": good[:100],
    }


def test_endpoint_key_variants(ext: Any, keys: dict[str, Any]) -> None:
    for name, der in endpoint_key_variants(keys).items():
        for algorithm in (1, 2):
            data = payload_bytes(key=der, algorithm=algorithm, signature=bytes(256))
            try:
                verify_both(ext, data)
            except AssertionError:
                pytest.fail(f"paths disagree on the {name!r} endpoint key (algorithm {algorithm})")


@SETTINGS
@given(
    bits=st.integers(2030, 4110),
    e=st.one_of(st.sampled_from([0, 1, 2, 3, 17, 65537, 2**32 + 1]), st.integers(0, 2**80)),
    algorithm=st.sampled_from([1, 2]),
    n_pad=st.sampled_from([0, 0, 0, 1]),
    long_form=st.booleans(),
    data=st.data(),
)
def test_random_rsa_endpoint_keys(
    ext: Any, bits: int, e: int, algorithm: int, n_pad: int, long_form: bool, data: Any
) -> None:
    n = data.draw(st.integers(2 ** (bits - 1), 2**bits - 1))
    der = rsa_spki(n, e, n_pad=n_pad, long_form=long_form)
    verify_both(ext, payload_bytes(key=der, algorithm=algorithm, signature=bytes(256)))


@SETTINGS
@given(der=st.one_of(mutated(bytes.fromhex("302a300506032b6570032100") + bytes(range(32))),
                     mutated(rsa_spki(2**2047 + 12345, 65537))))
def test_mutated_endpoint_keys(ext: Any, der: bytes) -> None:
    if not der:
        return  # an empty key is refused by the payload itself
    verify_both(ext, payload_bytes(key=der, algorithm=1, signature=bytes(256)))


def test_e_equal_one_keys_are_judged_alike(ext: Any) -> None:
    """An RSA "key" with e = 1 makes any signature s = EM verify. The pure loader refuses it
    (only e = 65537 is accepted); the extension leaves every key whose e is not 65537 to the
    pure loader, so it must refuse it the same way, with the same message."""
    n = 2**2047 + 2**1000 + 1
    der = rsa_spki(n, 1)
    signed_part = payload_bytes(key=der, algorithm=1, signature=b"")[:-2]
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    digest_info += _sha256(CONTEXT + signed_part)
    em = b"\x00\x01" + b"\xff" * (256 - 3 - len(digest_info)) + b"\x00" + digest_info
    verify_both(ext, signed_part + _with_signature(em))
    item = [(der, 1, CONTEXT + signed_part, em)]
    assert ext.verify_batch(item) == _registration.verify_batch(item)


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def test_ordinary_keys_never_reach_the_pure_loader(
    ext: Any, keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path: ordinary RSA and Ed25519 keys are parsed and built in C."""

    def refuse(key_der: bytes) -> None:
        raise AssertionError("the pure loader was asked")

    monkeypatch.setattr(_registration, "load_endpoint_key", refuse)
    for name in ("rsa", "rsa4096", "ed25519"):
        data = signed_payload(keys[name])
        assert ext.RegistrationVerifier(0).verify(ext.parse_registration_payload(data), CONTEXT)
        der = _crypto.public_key_der(keys[name])
        algorithm = int(_crypto.signature_algorithm_of(keys[name]))
        assert ext.verify_batch([(der, algorithm, b"m", _crypto.sign(keys[name], b"m"))]) == [
            True
        ]


# ---------------------------------------------------------------------------------------
# verify_batch


def test_verify_batch_mixed(ext: Any, keys: dict[str, Any]) -> None:
    items: list[tuple[Any, Any, Any, Any]] = []
    for name in ("rsa", "ed25519", "rsa4096"):
        key = keys[name]
        der = _crypto.public_key_der(key)
        algorithm = int(_crypto.signature_algorithm_of(key))
        message = f"batch {name}".encode()
        signature = _crypto.sign(key, message)
        items += [
            (der, algorithm, message, signature),
            (der, algorithm, message + b"!", signature),
            (der, 3 - algorithm, message, signature),
            (der, algorithm, message, signature[:-1]),
            (der, algorithm, bytearray(message), memoryview(signature)),
        ]
    for der in endpoint_key_variants(keys).values():
        items.append((der, 1, b"m", bytes(256)))
        items.append((der, 2, b"m", bytes(64)))
    expected = _registration.verify_batch(items)
    assert ext.verify_batch(items) == expected
    assert ext.verify_batch(iter(items)) == expected
    assert expected.count(True) == 6
    assert ext.verify_batch([]) == _registration.verify_batch([]) == []


def test_verify_batch_argument_errors(ext: Any, keys: dict[str, Any]) -> None:
    der = spki(keys["ed25519"])
    for items in ([(der, 2, "text", bytes(64))], [(der, 2, b"m")], [5], [("text", 2, b"", b"")],
                  [(None, 2, b"", b"")], [(12, 1, b"", b"")]):
        same(lambda i=items: _registration.verify_batch(i), lambda i=items: ext.verify_batch(i))
    # data is only looked at when the key loaded and fits: a bad key excuses a bad type
    items = [(b"junk", 2, "text", None)]
    assert ext.verify_batch(items) == _registration.verify_batch(items) == [False]


def test_verify_batch_releases_the_gil(ext: Any, keys: dict[str, Any]) -> None:
    """With a huge switch interval the main thread can only run while the worker is inside
    verify_batch if verify_batch has released the GIL."""
    key = keys["rsa"]
    der = _crypto.public_key_der(key)
    signature = _crypto.sign(key, b"m")
    batch = [(der, 1, b"m", signature)] * 256  # ~5 ms of verifies
    started = threading.Event()
    done: list[bool] = []

    def worker() -> None:
        started.set()  # the main thread wakes only when this thread lets go of the GIL
        assert all(ext.verify_batch(batch))
        done.append(True)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        started.wait()
        finished_first = bool(done)
    finally:
        sys.setswitchinterval(interval)
    thread.join()
    assert done == [True]
    assert not finished_first, "the main thread could not run during verify_batch"


# ---------------------------------------------------------------------------------------
# Signer


def _private_encodings(key: Any) -> dict[str, bytes]:
    out = {
        "pem pkcs8": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
        "der pkcs8": key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
    }
    if isinstance(key, rsa.RSAPrivateKey):
        for label, encoding in (("pem", serialization.Encoding.PEM),
                                ("der", serialization.Encoding.DER)):
            out[f"{label} traditional"] = key.private_bytes(
                encoding, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption())
    out["pem with leading blank line"] = b"\n  " + out["pem pkcs8"]
    return out


@pytest.mark.parametrize("name", ["rsa", "ed25519", "rsa4096"])
def test_signer_signs_like_the_pure_signer(ext: Any, keys: dict[str, Any], name: str) -> None:
    key = keys[name]
    public = key.public_key()
    for label, encoded in _private_encodings(key).items():
        pure = _signer.Signer(encoded)
        compiled = ext.Signer(encoded)
        assert compiled.algorithm == pure.algorithm, label
        for message in (b"", b"resolve answer", bytes(5000), bytearray(b"ba"), memoryview(b"mv")):
            signature = compiled.sign(message)
            # Both schemes are deterministic: byte-identical signatures.
            assert signature == pure.sign(message), label
            if isinstance(public, rsa.RSAPublicKey):
                public.verify(signature, bytes(message), padding.PKCS1v15(), hashes.SHA256())
            else:
                public.verify(signature, bytes(message))


def test_signatures_cross_verify(ext: Any, keys: dict[str, Any]) -> None:
    """Extension signatures pass the pure verifier, and pure signatures the extension's."""
    for name in ("rsa", "ed25519"):
        pem = _crypto.private_key_pem(keys[name])
        der = _crypto.public_key_der(keys[name])
        algorithm = int(_crypto.signature_algorithm_of(keys[name]))
        for signer in (ext.Signer(pem), _signer.Signer(pem)):
            signature = signer.sign(b"cross")
            item = [(der, algorithm, b"cross", signature)]
            assert ext.verify_batch(item) == _registration.verify_batch(item) == [True]


def test_signer_refuses_what_the_pure_signer_refuses(ext: Any, keys: dict[str, Any]) -> None:
    encrypted = keys["rsa"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    refused = {
        "garbage": b"not a key",
        "empty": b"",
        "truncated pem": _crypto.private_key_pem(keys["rsa"])[:200],
        "encrypted": encrypted,
        "rsa1024": _crypto.private_key_pem(keys["rsa1024"]),
        "p256": keys["p256"].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
        "x25519": _crypto.private_key_pem(keys["x25519"]),
        "public key": _crypto.public_key_pem(keys["rsa"]),
    }
    for name, data in refused.items():
        result = same(lambda d=data: _signer.Signer(d), lambda d=data: ext.Signer(d))
        assert result[0] != "ok", name


def test_signer_from_several_threads(ext: Any, keys: dict[str, Any]) -> None:
    for name in ("rsa", "ed25519"):
        signer = ext.Signer(_crypto.private_key_pem(keys[name]))
        expected = {i: _signer.Signer(_crypto.private_key_pem(keys[name])).sign(b"%d" % i)
                    for i in range(24)}
        results: dict[int, bytes] = {}

        def run(indexes: range, signer: Any = signer, results: dict[int, bytes] = results) -> None:
            for i in indexes:
                results[i] = signer.sign(b"%d" % i)

        threads = [threading.Thread(target=run, args=(range(t, 24, 4),)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == expected


# ---------------------------------------------------------------------------------------
# RegistrationOpener, seal_response

#: X25519 public keys whose shared secret is all zero with any private key: the low-order
#: points, their non-canonical encodings (u + p) and the same with the ignored top bit set.
LOW_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    (2**255 - 19 - 1).to_bytes(32, "little"),
    (2**255 - 19).to_bytes(32, "little"),
    (2**255 - 19 + 1).to_bytes(32, "little"),
    bytes(31) + b"\x80",
]


def sealed_request(keys: dict[str, Any], device: str = "ed25519", reconnect: bool = False,
                   profile: bytes = b'{"model":"kaa-1"}') -> tuple[bytes, bytes]:
    """A real REGISTER_REQUEST to keys["x25519"]: (header, body)."""
    node = kaa_wire.OperationsNode(1, 1, 1, "127.0.0.1", 9000,
                                   _crypto.x25519_public_bytes(keys["x25519"]))
    frame = kaa_wire.RegisterClient(node, sdk_token="sdk", private_key=keys[device],
                                    profile=profile, timestamp_ms=1, reconnect=reconnect
                                    ).send_request()
    return frame[:_constants.HEADER_SIZE], frame[_constants.HEADER_SIZE:]


@pytest.fixture(scope="module")
def openers(ext: Any, keys: dict[str, Any]) -> tuple[Any, Any]:
    return _opener.RegistrationOpener(keys["x25519"]), ext.RegistrationOpener(keys["x25519"])


def open_both(openers: tuple[Any, Any], header: bytes, body: bytes) -> Any:
    pure, compiled = openers
    return same(lambda: pure.open(header, body), lambda: compiled.open(header, body))


@pytest.mark.parametrize("device", ["rsa", "ed25519"])
@pytest.mark.parametrize("reconnect", [False, True])
def test_opener_opens_like_the_pure_opener(
    keys: dict[str, Any], openers: tuple[Any, Any], device: str, reconnect: bool
) -> None:
    assert openers[1].public_key == openers[0].public_key
    for profile in (b"", b"p", bytes(5000)):
        header, body = sealed_request(keys, device, reconnect, profile)
        result = open_both(openers, header, body)
        assert result[0] == "ok"
        plaintext, ephemeral, response_key = result[1]
        assert ephemeral == body[2:34] and len(response_key) == 32
        assert _registration.parse_registration_payload(plaintext).profile == profile
        for argument_type in (bytearray, memoryview):  # any buffer, like the framer
            assert openers[1].open(argument_type(header), argument_type(body)) == result[1]


def test_opener_refuses_alike(keys: dict[str, Any], openers: tuple[Any, Any]) -> None:
    """Short bodies, algorithm ids, low-order keys and every tampered byte: same error."""
    header, body = sealed_request(keys)
    refused = [body[:size] for size in range(_constants.ENVELOPE_SIZE + 17)]
    refused += [bytes([kex, aead]) + body[2:] for kex in (0, 2, 255) for aead in (0, 1, 2, 255)]
    refused += [body[:1] + bytes([aead]) + body[2:] for aead in (0, 2, 255)]
    refused += [body[:2] + point + body[34:] for point in LOW_ORDER_POINTS]
    refused += [body[:i] + bytes([body[i] ^ bit]) + body[i + 1:]
                for i in range(2, len(body)) for bit in (0x01, 0x80)]
    for tampered in refused:
        result = open_both(openers, header, tampered)
        assert result[0] == "error", tampered.hex()
    for point in LOW_ORDER_POINTS:
        assert open_both(openers, header, body[:2] + point + body[34:])[1] == kaa_wire.BadSeal(
            "invalid ephemeral X25519 key")
    for i in range(len(header)):  # the header is authenticated data
        result = open_both(openers, header[:i] + bytes([header[i] ^ 1]) + header[i + 1:], body)
        assert result[0] == "error"
    assert open_both(openers, b"", body)[0] == "error"


@SETTINGS
@given(data=st.data())
def test_mutated_requests(keys: dict[str, Any], openers: tuple[Any, Any], data: Any) -> None:
    header, body = sealed_request(keys)
    open_both(openers, header, data.draw(mutated(body)))


def test_opener_refuses_other_keys_alike(ext: Any, keys: dict[str, Any]) -> None:
    for key in (keys["ed25519"], keys["x25519"].public_key(), b"\x00" * 32, None):
        result = same(lambda k=key: _opener.RegistrationOpener(k),
                      lambda k=key: ext.RegistrationOpener(k))
        assert result == ("raised", TypeError)


@SETTINGS
@given(secret=st.binary(min_size=32, max_size=32), plaintext=st.binary(max_size=300),
       header=st.binary(max_size=8), nonce=st.binary(min_size=32, max_size=32))
def test_seal_response_like_the_pure_seal(
    ext: Any, secret: bytes, plaintext: bytes, header: bytes, nonce: bytes
) -> None:
    result = same(lambda: _opener.seal_response(secret, plaintext, header, nonce),
                  lambda: ext.seal_response(secret, plaintext, header, nonce))
    assert result[0] == "ok"
    assert _crypto.open_answer(secret, result[1], header) == plaintext


def test_seal_response_refuses_alike(ext: Any) -> None:
    nonce = bytes(range(32))
    for secret in (b"", bytes(31), bytes(33)):
        result = same(lambda k=secret: _opener.seal_response(k, b"p", b"h", nonce),
                      lambda k=secret: ext.seal_response(k, b"p", b"h", nonce))
        assert result == ("raised", ValueError)
    for bad_nonce in (b"", bytes(16), bytes(31), bytes(33)):
        result = same(lambda n=bad_nonce: _opener.seal_response(bytes(32), b"p", b"h", n),
                      lambda n=bad_nonce: ext.seal_response(bytes(32), b"p", b"h", n))
        assert result == ("raised", ValueError)
    # (No None header: cryptography reads it as empty AAD; the header is typed bytes.)
    for plaintext, header in ((None, b"h"), ("text", b"h"), (b"p", "h")):
        result = same(
            lambda p=plaintext, h=header: _opener.seal_response(bytes(32), p, h, nonce),
            lambda p=plaintext, h=header: ext.seal_response(bytes(32), p, h, nonce),
        )
        assert result == ("raised", TypeError)


def test_every_answer_to_one_request_has_its_own_key_and_nonce(
    openers: tuple[Any, Any], keys: dict[str, Any]
) -> None:
    """However often one request is answered, on either path, no (key, nonce) repeats."""
    header, body = sealed_request(keys)
    seen: set[tuple[bytes, bytes]] = set()
    for opener in openers:
        secret = opener.open(header, body)[2]
        for _ in range(50):
            response_nonce = os.urandom(32)
            seen.add(_crypto.answer_key(secret, response_nonce))
    assert len(seen) == 100


def test_opener_from_several_threads(keys: dict[str, Any], openers: tuple[Any, Any]) -> None:
    requests = [sealed_request(keys, profile=b"%d" % i) for i in range(24)]
    expected = [openers[0].open(header, body) for header, body in requests]
    results: dict[int, Any] = {}

    def run(indexes: range) -> None:
        for i in indexes:
            results[i] = openers[1].open(*requests[i])

    threads = [threading.Thread(target=run, args=(range(t, 24, 4),)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(24)] == expected


# ---------------------------------------------------------------------------------------
# encode_registration_result

u32 = st.integers(0, 2**32 - 1)
registration_results = st.builds(
    RegistrationResult,
    status=st.sampled_from(list(_constants.RegistrationStatus)),
    endpoint_id=st.one_of(st.binary(min_size=20, max_size=20),
                          st.binary(min_size=20, max_size=20).map(bytearray)),
    server_time_ms=st.integers(0, 2**64 - 1),
    config_version=u32,
    config=st.one_of(st.binary(max_size=600), st.binary(max_size=40).map(bytearray)),
    topics=st.lists(
        st.builds(Topic, topic_id=u32,
                  name=st.text(max_size=85).filter(lambda t: len(t.encode()) <= 255)),
        max_size=5,
    ).map(tuple),
    reconnect_after_s=u32,
    retry_base_ms=u32,
)


@SETTINGS
@given(result=registration_results)
def test_results_encode_like_construct(ext: Any, result: RegistrationResult) -> None:
    expected = _codec.encode_registration_result(result)
    assert ext.encode_registration_result(result) == expected
    assert _codec.decode_registration_result(expected) == result


def test_result_extremes_encode_like_construct(ext: Any) -> None:
    longest = "\u00e9" * 127 + "x"  # 255 bytes of UTF-8
    for result in (
        RegistrationResult(1, bytes(20), 0, 0, b""),
        RegistrationResult(3, b"\xff" * 20, 2**64 - 1, 2**32 - 1, bytes(70000),
                           tuple(Topic(2**32 - 1, longest) for _ in range(300)),
                           2**32 - 1, 2**32 - 1),
    ):
        assert ext.encode_registration_result(result) == _codec.encode_registration_result(result)


# ---------------------------------------------------------------------------------------
# OpenSSL hygiene


def test_no_openssl_error_survives_a_call(ext: Any, keys: dict[str, Any]) -> None:
    """Failures inside libcrypto leave nothing in this thread's OpenSSL error queue."""
    name = ctypes.util.find_library("crypto")
    if name is None:
        pytest.skip("libcrypto not found by ctypes")
    libcrypto = ctypes.CDLL(name)
    libcrypto.ERR_peek_error.restype = ctypes.c_ulong
    libcrypto.ERR_clear_error()
    der = _crypto.public_key_der(keys["rsa"])
    ed = _crypto.public_key_der(keys["ed25519"])
    ext.verify_batch([(der, 1, b"m", bytes(256)), (der, 1, b"m", b"short"),
                      (ed, 2, b"m", bytes(64)), (ed[:12] + b"\xff" * 32, 2, b"m", bytes(64))])
    for key_der, algorithm in ((der, 1), (ed, 2)):
        data = payload_bytes(key=key_der, algorithm=algorithm, signature=bytes(256))
        with pytest.raises(KaaWireError):
            ext.RegistrationVerifier().verify(ext.parse_registration_payload(data), CONTEXT)
    with pytest.raises(KaaWireError):
        ext.Signer(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    header, body = sealed_request(keys)
    opener = ext.RegistrationOpener(keys["x25519"])
    for refused in (body[:2] + bytes(32) + body[34:], body[:-1] + bytes([body[-1] ^ 1])):
        with pytest.raises(KaaWireError):
            opener.open(header, refused)
    assert libcrypto.ERR_peek_error() == 0
