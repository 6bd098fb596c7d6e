"""Registration processing, pure-Python implementation: parse, load key, verify, hash.

``kaa_wire_ext`` provides the same three names with identical behaviour; ``kaa_wire``
exports whichever implementation is active.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable

from cryptography.exceptions import UnsupportedAlgorithm as _CryptoUnsupported
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from kaa_wire._constants import (
    ED25519_SMALL_ORDER_KEYS,
    MAX_RSA_BITS,
    MIN_RSA_BITS,
    P256_FIELD_PRIME,
    P256_SPKI_PREFIX,
    PAYLOAD_FLAG_KEY_IS_HASH,
    RSA_PUBLIC_EXPONENT,
    SIGNATURE_LENGTH_PREFIX,
    SignatureAlgorithm,
)
from kaa_wire._crypto import PublicKey, public_key_der, signature_valid
from kaa_wire._errors import (
    LocalProtocolError,
    MalformedFrame,
    UnsupportedAlgorithm,
    algorithm_does_not_fit_key,
    invalid_registration_payload,
    negative_cache_size,
    proof_does_not_verify,
    reconnect_needs_stored_key,
    stored_key_does_not_match,
    unknown_registration_flags,
)
from kaa_wire._messages import RegistrationPayload
from kaa_wire._schema import REGISTER_PAYLOAD, parse_exact

__all__ = [
    "parse_registration_payload",
    "RegistrationVerifier",
    "verify_batch",
    # The hook kaa_wire_ext calls for every key its fast path does not take.
    "load_endpoint_key",
]

#: Larger endpoint keys would let one request cost the server many verify times.
#: edwards25519's field prime, and the sign bit of x in a point's 32-byte encoding.
_ED25519_P = 2**255 - 19
_ED25519_SIGN_BIT = 1 << 255
_ED25519_SMALL_ORDER = frozenset(ED25519_SMALL_ORDER_KEYS)


def parse_registration_payload(plaintext: bytes) -> RegistrationPayload:
    """Decode an opened registration payload, or raise MalformedFrame."""
    fields = parse_exact(REGISTER_PAYLOAD, plaintext, "registration payload")
    if fields.flags & ~PAYLOAD_FLAG_KEY_IS_HASH:
        raise unknown_registration_flags(fields.flags)
    signed_length = len(plaintext) - SIGNATURE_LENGTH_PREFIX - len(fields.signature)
    try:
        return RegistrationPayload(
            key_is_hash=bool(fields.flags & PAYLOAD_FLAG_KEY_IS_HASH),
            signature_algorithm=fields.signature_algorithm,
            timestamp_ms=fields.timestamp_ms,
            sdk_token=fields.sdk_token.decode("ascii"),
            key=fields.key,
            profile=fields.profile,
            signature=fields.signature,
            signed_part=plaintext[:signed_length],
        )
    except (LocalProtocolError, UnicodeDecodeError) as exc:
        raise invalid_registration_payload(exc) from None


def load_endpoint_key(key_der: bytes) -> PublicKey:
    """Load and vet an endpoint key: canonical DER; RSA of 2048-4096 bits with e = 65537, an
    Ed25519 point in canonical encoding and not of small order, or a P-256 point on the curve
    in the one uncompressed named-curve encoding (docs/protocol.md 5.3).

    Raises MalformedFrame or UnsupportedAlgorithm for any other key. The one acceptance
    policy for endpoint keys: kaa_wire_ext hands every key its fast path does not recognise
    to this function (looked up on this module at each call), so both paths accept and
    refuse the same keys with the same errors.
    """
    ec_parts = _ec_spki_parts(key_der)
    if ec_parts is not None:
        return _load_p256_key(key_der, *ec_parts)
    try:
        key = serialization.load_der_public_key(key_der)
    except (ValueError, _CryptoUnsupported):
        raise MalformedFrame("endpoint key is not a DER SubjectPublicKeyInfo") from None
    if isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise UnsupportedAlgorithm(
                f"RSA endpoint keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
            )
        numbers = key.public_numbers()
        # One e, so every accepted key verifies at the cost of e = 65537 at its size; it
        # also shuts out e = 1, with which every padded digest is its own signature.
        if numbers.e != RSA_PUBLIC_EXPONENT:
            raise MalformedFrame(
                f"RSA endpoint keys must have the public exponent {RSA_PUBLIC_EXPONENT}"
            )
        if numbers.n % 2 == 0:
            raise MalformedFrame("endpoint key is not a valid RSA public key")
    elif isinstance(key, ed25519.Ed25519PublicKey):
        _vet_ed25519_point(key.public_bytes_raw())
    elif isinstance(key, ec.EllipticCurvePublicKey):
        # An EC key whose DER the walker above could not follow: a P-256 one cannot be in
        # the canonical encoding, and no other curve is supported.
        if not isinstance(key.curve, ec.SECP256R1):
            raise _unsupported_curve()
        raise MalformedFrame("endpoint key is not canonical DER")
    else:
        raise UnsupportedAlgorithm("endpoint keys must be RSA, Ed25519 or P-256")
    # The endpoint id hashes these bytes, so one key must have exactly one encoding.
    if public_key_der(key) != key_der:
        raise MalformedFrame("endpoint key is not canonical DER")
    return key


#: DER of the OID id-ecPublicKey (1.2.840.10045.2.1), and of the namedCurve parameters
#: prime256v1 (1.2.840.10045.3.1.7): both inside P256_SPKI_PREFIX.
_EC_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")
_P256_CURVE_OID = bytes.fromhex("06082a8648ce3d030107")
_P256_COORDINATE_SIZE = 32


def _der_tlv(data: bytes, at: int, end: int) -> tuple[int, int, int] | None:
    """(tag, content start, content end) of the DER TLV at ``at`` that fits before ``end``;
    None when there is none. Definite lengths only; how minimal they are is not checked
    here (only one exact encoding is ever accepted, see _load_p256_key)."""
    if end - at < 2:
        return None
    tag, first = data[at], data[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        size = first & 0x7F
        if size == 0 or size > 4 or end - at < size:
            return None
        length = int.from_bytes(data[at : at + size], "big")
        at += size
    if length > end - at:
        return None
    return tag, at, at + length


def _ec_spki_parts(der: bytes) -> tuple[bytes, bytes] | None:
    """(the parameters' DER, the BIT STRING's content) when ``der`` is a
    SubjectPublicKeyInfo with the algorithm id-ecPublicKey; else None.

    A small walker, not ``cryptography``: which curve a key claims decides between
    MALFORMED_FRAME and UNSUPPORTED_ALGORITHM, and ``cryptography`` refuses curves it does
    not know with the same error as garbage, and loads explicit parameters that match a named
    curve as that curve.
    """
    outer = _der_tlv(der, 0, len(der))
    if outer is None or outer[0] != 0x30 or outer[2] != len(der):
        return None
    algorithm = _der_tlv(der, outer[1], outer[2])
    if algorithm is None or algorithm[0] != 0x30:
        return None
    oid_end = algorithm[1] + len(_EC_PUBLIC_KEY_OID)
    if der[algorithm[1] : oid_end] != _EC_PUBLIC_KEY_OID or oid_end > algorithm[2]:
        return None
    key = _der_tlv(der, algorithm[2], outer[2])
    if key is None or key[0] != 0x03 or key[2] != outer[2] or key[2] == key[1]:
        return None
    if der[key[1]] != 0:  # unused bits in the BIT STRING
        return None
    if oid_end < algorithm[2]:  # the parameters: one whole TLV, or none
        parameters = _der_tlv(der, oid_end, algorithm[2])
        if parameters is None or parameters[2] != algorithm[2]:
            return None
    return der[oid_end : algorithm[2]], der[key[1] + 1 : key[2]]


def _unsupported_curve() -> UnsupportedAlgorithm:
    return UnsupportedAlgorithm("EC endpoint keys must be on P-256 (named curve prime256v1)")


def _load_p256_key(key_der: bytes, parameters: bytes, point: bytes) -> ec.EllipticCurvePublicKey:
    """Vet an id-ecPublicKey SubjectPublicKeyInfo: another curve or explicit parameters are
    UNSUPPORTED_ALGORITHM; for P-256, only P256_SPKI_PREFIX || X || Y with X, Y < p and the
    point on the curve loads, anything else is MALFORMED_FRAME."""
    if parameters != _P256_CURVE_OID:
        raise _unsupported_curve()
    if point == b"\x00":
        raise MalformedFrame("endpoint key is the P-256 point at infinity")
    if len(point) == 1 + _P256_COORDINATE_SIZE and point[0] in (2, 3):
        # Another encoding of a key that has an uncompressed one: a second endpoint id.
        raise MalformedFrame("endpoint key is a compressed P-256 point")
    if len(key_der) != len(P256_SPKI_PREFIX) + 2 * _P256_COORDINATE_SIZE or not (
        key_der.startswith(P256_SPKI_PREFIX)
    ):
        raise MalformedFrame("endpoint key is not canonical DER")
    x = int.from_bytes(point[1 : 1 + _P256_COORDINATE_SIZE], "big")
    y = int.from_bytes(point[1 + _P256_COORDINATE_SIZE :], "big")
    if x >= P256_FIELD_PRIME or y >= P256_FIELD_PRIME:
        raise MalformedFrame("endpoint key has a P-256 coordinate not below p")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise MalformedFrame("endpoint key is not a point on P-256") from None


def _vet_ed25519_point(raw: bytes) -> None:
    """Refuse a non-canonical encoding and the small-order points, as libsodium does.

    A point has one canonical encoding: y < p, and the sign bit clear when x = 0 (which is
    exactly when y = 1 or y = p - 1), so one key cannot have two endpoint ids. A small-order
    key lets anyone forge a proof (with the identity, R = identity, S = 0 verifies every
    message); every non-canonical encoding of a small-order point has y >= p or x = 0 with
    the sign bit set, so the canonical check and the list of 8 cover them all.
    """
    encoded = int.from_bytes(raw, "little")
    y = encoded & (_ED25519_SIGN_BIT - 1)
    if y >= _ED25519_P or (encoded & _ED25519_SIGN_BIT and y in (1, _ED25519_P - 1)):
        raise MalformedFrame("endpoint key is not a canonical Ed25519 point encoding")
    if raw in _ED25519_SMALL_ORDER:
        raise MalformedFrame("endpoint key is an Ed25519 point of small order")


def _algorithm_matches(key: PublicKey, algorithm: int) -> bool:
    if isinstance(key, rsa.RSAPublicKey):
        return algorithm == SignatureAlgorithm.RSA_PKCS1V15_SHA256
    if isinstance(key, ec.EllipticCurvePublicKey):
        return algorithm == SignatureAlgorithm.ECDSA_P256_SHA256
    return algorithm == SignatureAlgorithm.ED25519


class RegistrationVerifier:
    """Checks proofs of possession, keeping recently used endpoint keys loaded.

    The cache is keyed by endpoint id and bounded (least recently used goes first), so a
    flood of new keys costs loads, never memory.
    """

    def __init__(self, cache_size: int = 4096) -> None:
        if cache_size < 0:
            raise negative_cache_size()
        self.cache_size = cache_size
        self._keys: OrderedDict[bytes, PublicKey] = OrderedDict()

    def verify(
        self, payload: RegistrationPayload, context: bytes, key_der: bytes | None = None
    ) -> bytes:
        """Return the endpoint id once ``payload``'s signature verifies.

        ``context`` is the signature context of the exchange. On reconnect
        (``payload.key_is_hash``) the caller passes the stored ``key_der``; it must hash
        to the id the endpoint sent.
        """
        if payload.key_is_hash:
            if key_der is None:
                raise reconnect_needs_stored_key()
            endpoint_id = hashlib.sha1(key_der).digest()
            if endpoint_id != payload.key:
                raise stored_key_does_not_match()
        else:
            key_der = payload.key
            endpoint_id = hashlib.sha1(key_der).digest()
        key = self._key(endpoint_id, key_der)
        if not _algorithm_matches(key, payload.signature_algorithm):
            raise algorithm_does_not_fit_key(payload.signature_algorithm)
        if not signature_valid(key, context + payload.signed_part, payload.signature):
            raise proof_does_not_verify()
        return endpoint_id

    def _key(self, endpoint_id: bytes, key_der: bytes) -> PublicKey:
        key = self._keys.get(endpoint_id)
        if key is not None:
            self._keys.move_to_end(endpoint_id)
            return key
        key = load_endpoint_key(key_der)
        if self.cache_size:
            self._keys[endpoint_id] = key
            if len(self._keys) > self.cache_size:
                self._keys.popitem(last=False)
        return key


def verify_batch(items: Iterable[tuple[bytes, int, bytes, bytes]]) -> list[bool]:
    """Verify many (key_der, algorithm, data, signature) at once; True where valid.

    A key that does not load, or an algorithm that does not fit it, gives False.
    """
    results = []
    for key_der, algorithm, data, signature in items:
        try:
            key = load_endpoint_key(key_der)
        except (MalformedFrame, UnsupportedAlgorithm):
            results.append(False)
            continue
        results.append(_algorithm_matches(key, algorithm) and signature_valid(key, data, signature))
    return results
