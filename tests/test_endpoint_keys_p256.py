"""ECDSA P-256 endpoint keys (signature algorithm 3) on both paths: the one canonical SPKI is
accepted, every other encoding of a P-256 key and every key that is no P-256 point is
refused before any verify, and the 64-byte r || s signature is held to its rules (exactly 64
bytes, 1 <= r, s <= n - 1; high S accepted). The hostile keys are built here byte by byte
(tests/hostile_keys.py has the curve), never taken from the code under test."""

from __future__ import annotations

import re
import types
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from kaa_wire import BadSignature, MalformedFrame, UnsupportedAlgorithm, _crypto
from kaa_wire._constants import P256_SPKI_PREFIX
from kaa_wire._errors import KaaWireError
from tests import hostile_keys
from tests.hostile_keys import P256_N, P256_P
from tests.parity import CONTEXT, der_int, der_tlv, payload_bytes, signed_payload, with_signature

EC_PUBLIC_KEY = der_tlv(6, bytes.fromhex("2a8648ce3d0201"))
PRIME256V1 = der_tlv(6, bytes.fromhex("2a8648ce3d030107"))
GX = 0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
GY = 0x4FE342E2FE1A7F9B8E7EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51


def ec_spki(point: bytes, parameters: bytes = PRIME256V1, *, long_form: bool = False) -> bytes:
    algorithm = der_tlv(0x30, EC_PUBLIC_KEY + parameters)
    return der_tlv(0x30, algorithm + der_tlv(3, b"\x00" + point), long_form)


def xy(x: int, y: int) -> bytes:
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def explicit_p256_parameters() -> bytes:
    """SEC 1 ECParameters spelling out P-256 itself: the same curve, not by name."""
    prime_field = der_tlv(0x30, der_tlv(6, bytes.fromhex("2a8648ce3d0101")) + der_int(P256_P))
    a = (P256_P - 3).to_bytes(32, "big")
    curve = der_tlv(0x30, der_tlv(4, a) + der_tlv(4, hostile_keys.P256_B.to_bytes(32, "big")))
    return der_tlv(
        0x30,
        der_int(1) + prime_field + curve + der_tlv(4, xy(GX, GY)) + der_int(P256_N) + der_int(1),
    )


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0xC0FFEE, ec.SECP256R1())


def _numbers(key: ec.EllipticCurvePrivateKey) -> tuple[int, int]:
    numbers = key.public_key().public_numbers()
    return numbers.x, numbers.y


def _point(key: ec.EllipticCurvePrivateKey, form: serialization.PublicFormat) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962, form)


def _verify(impl: types.SimpleNamespace, payload: bytes, stored: bytes | None = None) -> bytes:
    parsed = impl.parse_registration_payload(payload)
    result: bytes = impl.RegistrationVerifier(0).verify(parsed, CONTEXT, stored)
    return result


def _signed_with_key_field(
    key: ec.EllipticCurvePrivateKey, der: bytes, algorithm: int = 3
) -> bytes:
    """A payload carrying ``der`` as its key and a real P-256 proof by ``key``: only the
    refusal of the key's encoding stands between it and an accepted registration."""
    signed_part = payload_bytes(key=der, algorithm=algorithm, signature=b"")[:-2]
    return signed_part + with_signature(_crypto.sign(key, CONTEXT + signed_part))


def test_the_canonical_key_registers_and_reconnects(
    impl: types.SimpleNamespace, p256: ec.EllipticCurvePrivateKey
) -> None:
    der = _crypto.public_key_der(p256)
    assert len(der) == 91 and der.startswith(P256_SPKI_PREFIX)
    eid = _crypto.endpoint_id(der)
    assert _verify(impl, signed_payload(p256)) == eid
    # Reconnect by key hash: the stored key goes through the same checks.
    assert _verify(impl, signed_payload(p256, reconnect=True), der) == eid
    data = CONTEXT + b"batch"
    assert impl.verify_batch([(der, 3, data, _crypto.sign(p256, data))]) == [True]


def test_openssl_signatures_in_both_s_halves_verify(
    impl: types.SimpleNamespace, p256: ec.EllipticCurvePrivateKey
) -> None:
    """A signature from OpenSSL (random nonce, DER) converted to r || s verifies, and so
    does the same r with n - s: high S is accepted (docs/protocol.md 8)."""
    signed_part = payload_bytes(key=_crypto.public_key_der(p256), algorithm=3)[:-2]
    r, s = decode_dss_signature(p256.sign(CONTEXT + signed_part, ec.ECDSA(hashes.SHA256())))
    for s_value in (s, P256_N - s):
        signature = r.to_bytes(32, "big") + s_value.to_bytes(32, "big")
        assert _verify(impl, signed_part + with_signature(signature))


def _refusal(impl: types.SimpleNamespace, payload: bytes, stored: bytes | None = None) -> Any:
    with pytest.raises(KaaWireError) as info:
        _verify(impl, payload, stored)
    return info.value


@pytest.mark.security
@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("compressed point", MalformedFrame, "compressed P-256 point"),
        ("hybrid point", MalformedFrame, "not canonical DER"),
        ("off the curve", MalformedFrame, "not a point on P-256"),
        ("point at infinity", MalformedFrame, "point at infinity"),
        ("X + p (the same point)", MalformedFrame, "coordinate not below p"),
        ("Y = p", MalformedFrame, "coordinate not below p"),
        ("X, Y = 0", MalformedFrame, "not a point on P-256"),
        ("long-form outer length", MalformedFrame, "not canonical DER"),
        ("long-form BIT STRING length", MalformedFrame, "not canonical DER"),
        ("trailing byte", MalformedFrame, "not a DER SubjectPublicKeyInfo"),
        # cryptography loads it as a key (then it is not canonical), or not: either way refused
        ("unused bits", MalformedFrame, "not (a DER SubjectPublicKeyInfo|canonical DER)"),
        ("truncated point", MalformedFrame, "not canonical DER"),
        ("explicit P-256 parameters", UnsupportedAlgorithm, "must be on P-256"),
        ("no parameters", UnsupportedAlgorithm, "must be on P-256"),
        ("NULL parameters", UnsupportedAlgorithm, "must be on P-256"),
        ("unknown curve OID", UnsupportedAlgorithm, "must be on P-256"),
        ("secp256k1", UnsupportedAlgorithm, "must be on P-256"),
        ("P-384", UnsupportedAlgorithm, "must be on P-256"),
    ],
)
def test_hostile_p256_keys_are_refused(
    impl: types.SimpleNamespace,
    p256: ec.EllipticCurvePrivateKey,
    case: str,
    error: type[Exception],
    message: str,
) -> None:
    x, y = _numbers(p256)
    small_x, small_y = hostile_keys.p256_point_with_small_x()
    canonical = _crypto.public_key_der(p256)
    compressed = _point(p256, serialization.PublicFormat.CompressedPoint)
    other_curves = {
        "secp256k1": ec.SECP256K1(),
        "P-384": ec.SECP384R1(),
    }
    if case in other_curves:
        other = ec.generate_private_key(other_curves[case])
        der = other.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        der = {
            "compressed point": ec_spki(compressed),
            "hybrid point": ec_spki(bytes([6 + (y & 1)]) + xy(x, y)[1:]),
            "off the curve": ec_spki(xy(x, y ^ 1)),
            "point at infinity": ec_spki(b"\x00"),
            "X + p (the same point)": ec_spki(xy(small_x + P256_P, small_y)),
            "Y = p": ec_spki(xy(x, P256_P)),
            "X, Y = 0": ec_spki(xy(0, 0)),
            "long-form outer length": ec_spki(xy(x, y), long_form=True),
            "long-form BIT STRING length": der_tlv(
                0x30,
                der_tlv(0x30, EC_PUBLIC_KEY + PRIME256V1) + der_tlv(3, b"\x00" + xy(x, y), True),
            ),
            "trailing byte": canonical + b"\x00",
            "unused bits": canonical[:25] + b"\x01" + canonical[26:],
            "truncated point": ec_spki(xy(x, y)[:-1]),
            "explicit P-256 parameters": ec_spki(xy(x, y), explicit_p256_parameters()),
            "no parameters": ec_spki(xy(x, y), b""),
            "NULL parameters": ec_spki(xy(x, y), b"\x05\x00"),
            "unknown curve OID": ec_spki(xy(x, y), der_tlv(6, bytes.fromhex("2b8104000a99"))),
        }[case]
    assert der != canonical
    if case == "X + p (the same point)":
        assert hostile_keys.p256_on_curve(small_x + P256_P, small_y)
    if case == "off the curve":
        assert not hostile_keys.p256_on_curve(x, y ^ 1)
    payload = _signed_with_key_field(p256, der)
    refusal = _refusal(impl, payload)
    assert type(refusal) is error
    assert re.search(message, str(refusal))
    item = (der, 3, CONTEXT + b"m", _crypto.sign(p256, CONTEXT + b"m"))
    assert impl.verify_batch([item]) == [False]
    # A key stored before the rules (or by a bug) cannot reconnect either.
    reconnect = payload_bytes(flags=1, algorithm=3, key=_crypto.endpoint_id(der),
                              signature=bytes(64))
    stored_refusal = _refusal(impl, reconnect, der)
    assert type(stored_refusal) is error and re.search(message, str(stored_refusal))


@pytest.mark.security
@pytest.mark.parametrize(
    "case",
    ["r = 0", "s = 0", "r = n", "s = n", "s = 2^256 - 1", "63 bytes", "65 bytes", "DER",
     "empty", "r, s swapped"],
)
def test_bad_p256_signatures_are_bad_signature(
    impl: types.SimpleNamespace, p256: ec.EllipticCurvePrivateKey, case: str
) -> None:
    good = signed_payload(p256)
    signed_part = good[: -2 - 64]
    signature = good[-64:]
    r, s = signature[:32], signature[32:]
    n = P256_N.to_bytes(32, "big")
    bad = {
        "r = 0": bytes(32) + s,
        "s = 0": r + bytes(32),
        "r = n": n + s,
        "s = n": r + n,
        "s = 2^256 - 1": r + b"\xff" * 32,
        "63 bytes": signature[:-1],
        "65 bytes": signature + b"\x00",
        "DER": p256.sign(CONTEXT + signed_part, ec.ECDSA(hashes.SHA256())),
        "empty": b"",
        "r, s swapped": s + r,
    }[case]
    with pytest.raises(BadSignature, match="proof of possession does not verify"):
        _verify(impl, signed_part + with_signature(bad))
    der = _crypto.public_key_der(p256)
    assert impl.verify_batch([(der, 3, CONTEXT + signed_part, bad)]) == [False]


def test_a_wrong_length_ed25519_signature_is_bad_signature_too(
    impl: types.SimpleNamespace, keys: dict[str, Any]
) -> None:
    """The rule P-256 follows: a signature of the wrong length is BAD_SIGNATURE, as it has
    always been for Ed25519."""
    good = signed_payload(keys["ed25519"])
    with pytest.raises(BadSignature, match="proof of possession does not verify"):
        _verify(impl, good[: -2 - 64] + with_signature(good[-64:] + b"\x00"))


@pytest.mark.security
@pytest.mark.parametrize(
    ("owner", "algorithm"),
    [("p256", 1), ("p256", 2), ("rsa", 3), ("ed25519", 3)],
)
def test_algorithm_id_must_fit_the_key(
    impl: types.SimpleNamespace,
    keys: dict[str, Any],
    p256: ec.EllipticCurvePrivateKey,
    owner: str,
    algorithm: int,
) -> None:
    key = p256 if owner == "p256" else keys[owner]
    payload = signed_payload(key, algorithm=algorithm)
    with pytest.raises(UnsupportedAlgorithm, match=f"signature algorithm {algorithm} does not fit"):
        _verify(impl, payload)


def test_the_payload_signature_over_the_context_is_what_verifies(
    impl: types.SimpleNamespace, p256: ec.EllipticCurvePrivateKey
) -> None:
    """A proof over the payload alone, or for another exchange's context, does not verify."""
    signed_part = payload_bytes(key=_crypto.public_key_der(p256), algorithm=3)[:-2]
    for data in (signed_part, CONTEXT[:-1] + b"\x00" + signed_part):
        with pytest.raises(BadSignature):
            _verify(impl, signed_part + with_signature(_crypto.sign(p256, data)))
