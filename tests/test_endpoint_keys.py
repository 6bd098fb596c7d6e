"""Endpoint keys a hostile device would pick are refused on both paths, before any verify:
RSA keys that are not real (with e = 1 every PKCS#1-padded digest is its own signature) or
whose e is not 65537 (a large e makes every verify, even of garbage, cost up to ~150
normal ones), and Ed25519 keys that are small-order points (with the identity, R =
identity, S = 0 verifies every message) or not canonically encoded. The hostile keys are
real: their proofs verify under ``cryptography``, so only the refusal stops them."""

from __future__ import annotations

import collections
import hashlib
import types

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, padding

from kaa_wire import BadSignature, MalformedFrame, _crypto
from kaa_wire._constants import ED25519_SMALL_ORDER_KEYS, RSA_PUBLIC_EXPONENT
from tests import hostile_keys
from tests.hostile_keys import RawRsaKey
from tests.parity import CONTEXT, payload_bytes, rsa_spki, with_signature

# An odd 2048-bit modulus; whether it factors does not matter to the checks under test.
N = 2**2047 + 2**1000 + 1
DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")


def _forged(der: bytes) -> bytes:
    """A payload whose 'signature' is the padded digest itself: valid exactly when e = 1."""
    signed_part = payload_bytes(key=der, algorithm=1, signature=b"")[:-2]
    digest = DIGEST_INFO_SHA256 + hashlib.sha256(CONTEXT + signed_part).digest()
    encoded = b"\x00\x01" + b"\xff" * (256 - 3 - len(digest)) + b"\x00" + digest
    return signed_part + with_signature(encoded)


@pytest.mark.security
@pytest.mark.parametrize(
    ("n", "e"),
    [(N, 1), (N, 2), (N, 65536), (N - 1, 65537), (N, N + 2)],
    ids=["e=1", "e=2", "even e", "even n", "e>n"],
)
def test_degenerate_rsa_keys_are_refused(impl: types.SimpleNamespace, n: int, e: int) -> None:
    payload = impl.parse_registration_payload(_forged(rsa_spki(n, e)))
    with pytest.raises(MalformedFrame):
        impl.RegistrationVerifier(0).verify(payload, CONTEXT)
    assert impl.verify_batch(
        [(payload.key, 1, CONTEXT + payload.signed_part, payload.signature)]
    ) == [False]


# -- RSA: e = 65537 only -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_keys() -> dict[str, RawRsaKey]:
    """Real key pairs: every one of them signs proofs that verify."""
    return {
        "e=3": hostile_keys.rsa_key_with_exponent(2048, 3),
        "e=65539": hostile_keys.rsa_key_with_exponent(2048, 65539),
        "e~2^3071, RSA-3072": hostile_keys.rsa_key_with_exponent(3072, near=2**3071),
        "e=65537, RSA-3072": hostile_keys.rsa_key_with_exponent(3072, RSA_PUBLIC_EXPONENT),
    }


def _signed_by(key: RawRsaKey) -> bytes:
    signed_part = payload_bytes(key=key.der, algorithm=1, signature=b"")[:-2]
    return signed_part + with_signature(key.sign(CONTEXT + signed_part))


@pytest.mark.security
@pytest.mark.parametrize("name", ["e=3", "e=65539", "e~2^3071, RSA-3072"])
def test_rsa_keys_with_another_exponent_are_refused(
    impl: types.SimpleNamespace, rsa_keys: dict[str, RawRsaKey], name: str
) -> None:
    key = rsa_keys[name]
    payload = impl.parse_registration_payload(_signed_by(key))
    data = CONTEXT + payload.signed_part
    key.public_key().verify(payload.signature, data, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(MalformedFrame, match="must have the public exponent 65537"):
        impl.RegistrationVerifier(0).verify(payload, CONTEXT)
    assert impl.verify_batch([(key.der, 1, data, payload.signature)]) == [False]
    # A key stored before the rule came in cannot reconnect either.
    reconnect = payload_bytes(flags=1, key=_crypto.endpoint_id(key.der), signature=bytes(384))
    with pytest.raises(MalformedFrame, match="must have the public exponent 65537"):
        impl.RegistrationVerifier(0).verify(
            impl.parse_registration_payload(reconnect), CONTEXT, key.der
        )


def test_rsa_keys_with_e_65537_are_accepted(
    impl: types.SimpleNamespace, rsa_keys: dict[str, RawRsaKey]
) -> None:
    """The control of the test above: the same construction with e = 65537 verifies."""
    key = rsa_keys["e=65537, RSA-3072"]
    payload = impl.parse_registration_payload(_signed_by(key))
    assert impl.RegistrationVerifier(0).verify(payload, CONTEXT) == _crypto.endpoint_id(key.der)


# -- Ed25519: no small-order point, canonical encodings only -----------------------------------

ED25519_PREFIX = bytes.fromhex("302a300506032b6570032100")


def test_the_small_order_list_is_the_curves() -> None:
    """The 8 refused encodings are exactly the 8-torsion of edwards25519, derived here."""
    derived = hostile_keys.small_order_points()
    assert set(derived) == set(ED25519_SMALL_ORDER_KEYS)
    assert len(ED25519_SMALL_ORDER_KEYS) == 8
    assert collections.Counter(derived.values()) == {1: 1, 2: 1, 4: 2, 8: 4}


def _forged_proof(point: bytes) -> bytes:
    """A payload carrying the small-order key ``point`` and R = identity, S = 0 as its
    signature, with a timestamp ground until that signature verifies (1 try in ord(A))."""
    der = ED25519_PREFIX + point
    for timestamp in range(1_700_000_000_000, 1_700_000_000_000 + 1000):
        signed_part = payload_bytes(key=der, algorithm=2, timestamp=timestamp)[:-2]
        if hostile_keys.forgery_verifies(point, CONTEXT + signed_part):
            return signed_part + with_signature(hostile_keys.IDENTITY_SIGNATURE)
    raise AssertionError("no forgery in 1000 tries")


@pytest.mark.security
@pytest.mark.parametrize("point", ED25519_SMALL_ORDER_KEYS, ids=lambda p: p.hex()[:8])
def test_small_order_ed25519_keys_cannot_forge_a_proof(
    impl: types.SimpleNamespace, point: bytes
) -> None:
    payload = impl.parse_registration_payload(_forged_proof(point))
    data = CONTEXT + payload.signed_part
    # The forgery is real: OpenSSL, through cryptography, accepts it for this key.
    ed25519.Ed25519PublicKey.from_public_bytes(point).verify(payload.signature, data)
    with pytest.raises(MalformedFrame, match="Ed25519 point of small order"):
        impl.RegistrationVerifier(0).verify(payload, CONTEXT)
    assert impl.verify_batch([(payload.key, 2, data, payload.signature)]) == [False]
    reconnect = payload_bytes(
        flags=1, algorithm=2, key=_crypto.endpoint_id(payload.key), signature=bytes(64)
    )
    with pytest.raises(MalformedFrame, match="Ed25519 point of small order"):
        impl.RegistrationVerifier(0).verify(
            impl.parse_registration_payload(reconnect), CONTEXT, payload.key
        )


@pytest.mark.security
@pytest.mark.parametrize(
    "encoding",
    list(hostile_keys.non_canonical_encodings().values()),
    ids=list(hostile_keys.non_canonical_encodings()),
)
def test_non_canonical_ed25519_encodings_are_refused(
    impl: types.SimpleNamespace, encoding: bytes
) -> None:
    der = ED25519_PREFIX + encoding
    data = payload_bytes(key=der, algorithm=2, signature=hostile_keys.IDENTITY_SIGNATURE)
    payload = impl.parse_registration_payload(data)
    with pytest.raises(MalformedFrame, match="not a canonical Ed25519 point encoding"):
        impl.RegistrationVerifier(0).verify(payload, CONTEXT)
    assert impl.verify_batch([(der, 2, CONTEXT + payload.signed_part, payload.signature)]) == [
        False
    ]


def _points_near(y0: int, count: int) -> list[bytes]:
    """Canonical encodings of the first ``count`` points with y >= y0 (both signs)."""
    found: list[bytes] = []
    y = y0
    while len(found) < count and y < hostile_keys.P:
        for sign in (0, 1):
            x = hostile_keys.x_for(y, sign)
            if x is not None:
                found.append(hostile_keys.encode((x, y)))
        y += 1
    return found


@pytest.mark.parametrize(
    "encoding",
    _points_near(hostile_keys.P - 40, 4) + _points_near(2, 4),
    ids=lambda e: e.hex()[:4] + ".." + e.hex()[-2:],
)
def test_ordinary_ed25519_points_near_the_edges_are_accepted(
    impl: types.SimpleNamespace, encoding: bytes
) -> None:
    """Points of large order whose encodings sit next to the refused ones (y just below p,
    y small, either sign) load; a garbage signature is then BAD_SIGNATURE, not a refusal
    of the key."""
    assert hostile_keys.order(hostile_keys.decode(encoding) or (0, 0)) == 0
    der = ED25519_PREFIX + encoding
    payload = impl.parse_registration_payload(
        payload_bytes(key=der, algorithm=2, signature=bytes(64))
    )
    with pytest.raises(BadSignature):
        impl.RegistrationVerifier(0).verify(payload, CONTEXT)
