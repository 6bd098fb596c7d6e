"""Helpers of the parity tests (tests/test_parity_*.py): kaa_wire_ext._ext == the pure path.

Every parity test feeds the same input to ``kaa_wire_ext._ext`` and to the pure modules
(``kaa_wire._framing``, ``kaa_wire._registration``, ``kaa_wire._signer``, ``kaa_wire._opener``,
``kaa_wire._codec``) and demands the same result, or the same exception: kaa_wire errors compare
equal only when class and message both match (KaaWireError.__eq__), so the check is stricter
than "the same class". They skip when the extension is not built (the ``ext`` fixture of
tests/conftest.py); tests/test_ext_build.py's build check never skips, so CI
(KAA_WIRE_REQUIRE_EXT=1) cannot pass on a silent fallback.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import kaa_wire
from kaa_wire import _constants, _crypto, _registration
from kaa_wire._errors import KaaWireError

CONTEXT = _constants.REGISTER_SIGNATURE_CONTEXT + bytes(range(64))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


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
    return signed_part + with_signature(_crypto.sign(private_key, CONTEXT + signed_part))


def with_signature(signature: bytes) -> bytes:
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


def sealed_request(keys: dict[str, Any], device: str = "ed25519", reconnect: bool = False,
                   profile: bytes = b'{"model":"kaa-1"}') -> tuple[bytes, bytes]:
    """A real REGISTER_REQUEST to keys["x25519"]: (header, body)."""
    node = kaa_wire.OperationsNode(1, 1, 1, "127.0.0.1", 9000,
                                   _crypto.x25519_public_bytes(keys["x25519"]))
    frame = kaa_wire.RegisterClient(node, sdk_token="sdk", private_key=keys[device],
                                    profile=profile, timestamp_ms=1, reconnect=reconnect
                                    ).send_request()
    return frame[:_constants.HEADER_SIZE], frame[_constants.HEADER_SIZE:]


def rsa_numbers(key: Any) -> tuple[int, int]:
    numbers = key.public_key().public_numbers()
    return numbers.n, numbers.e


def endpoint_key_variants(keys: dict[str, Any]) -> dict[str, bytes]:
    """Endpoint keys each path must judge alike: canonical, non-canonical, wrong kind..."""
    n, e = rsa_numbers(keys["rsa"])
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
        **p256_key_variants(keys["p256"]),
    }


EC_ALGORITHM = der_tlv(0x30, der_tlv(6, bytes.fromhex("2a8648ce3d0201"))
                       + der_tlv(6, bytes.fromhex("2a8648ce3d030107")))


def p256_key_variants(key: Any) -> dict[str, bytes]:
    """P-256 keys each path must judge alike: the canonical SPKI and its neighbours."""
    good = spki(key)
    point = good[26:]
    x, y = point[1:33], point[33:]
    p = (2**256 - 2**224 + 2**192 + 2**96 - 1).to_bytes(32, "big")
    compressed = bytes([2 + (y[-1] & 1)]) + x
    return {
        "p256 rebuilt": der_tlv(0x30, EC_ALGORITHM + der_tlv(3, b"\x00" + point)),
        "p256 compressed": der_tlv(0x30, EC_ALGORITHM + der_tlv(3, b"\x00" + compressed)),
        "p256 hybrid": good[:26] + bytes([6 + (y[-1] & 1)]) + good[27:],
        "p256 off curve": good[:-1] + bytes([good[-1] ^ 1]),
        "p256 x = p": good[:27] + p + y,
        "p256 y = p": good[:59] + p,
        "p256 x, y = ff..": good[:27] + b"\xff" * 64,
        "p256 zero point": good[:27] + bytes(64),
        "p256 infinity": der_tlv(0x30, EC_ALGORITHM + der_tlv(3, b"\x00\x00")),
        "p256 long form": der_tlv(0x30, EC_ALGORITHM + der_tlv(3, b"\x00" + point), True),
        "p256 trailing byte": good + b"\x00",
        "p256 truncated": good[:-1],
        "p256 unused bits": good[:25] + b"\x01" + good[26:],
        "p256 wrong curve OID": good[:22] + b"\x08" + good[23:],
        "p256 no parameters": der_tlv(
            0x30, der_tlv(0x30, der_tlv(6, bytes.fromhex("2a8648ce3d0201")))
            + der_tlv(3, b"\x00" + point)),
    }
