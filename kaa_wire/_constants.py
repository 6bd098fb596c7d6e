"""Numbers fixed by protocol v2 (docs/protocol.md). The extension's .pxd mirrors them."""

from __future__ import annotations

import enum

#: Version 2 replaced version 1's response sealing (docs/protocol-decisions.md).
PROTOCOL_VERSION = 2
HEADER_SIZE = 6
#: Default and absolute limits on a whole frame (header + body), in bytes.
DEFAULT_MAX_FRAME_SIZE = 64 * 1024
ABSOLUTE_MAX_FRAME_SIZE = HEADER_SIZE + 0xFFFFFF

NONCE_SIZE = 16
KEY_HASH_SIZE = 20
X25519_KEY_SIZE = 32
AEAD_TAG_SIZE = 16
MAX_TOKEN_SIZE = 64
MAX_HOST_SIZE = 255
#: A ``bytes16`` field's length prefix, e.g. before every signature.
SIGNATURE_LENGTH_PREFIX = 2
#: The largest profile: a ``bytes16`` field.
MAX_PROFILE_SIZE = 0xFFFF
#: Cleartext bytes of a REGISTER_REQUEST body before the sealed payload: kex id, AEAD id,
#: ephemeral public key.
ENVELOPE_SIZE = 2 + X25519_KEY_SIZE
#: Endpoint RSA key sizes accepted (docs/protocol.md 5.3).
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096

#: The server's fresh random bytes at the head of every sealed answer (docs/protocol.md 5.1).
RESPONSE_NONCE_SIZE = 32
#: A sealed ERROR's message is exactly this many bytes (space-padded or cut), so the length
#: of a refusal tells the path nothing about which refusal it is.
SEALED_ERROR_MESSAGE_SIZE = 48

#: The generation of the Bootstrap key ``servers.control init`` creates; each rotation adds
#: one. An SDK configuration that names no generation trusts this one.
FIRST_KEY_GENERATION = 1
#: At most this many rotation certificates in one RESOLVE_RESPONSE: an endpoint further
#: behind than that cannot follow the rotations and needs a new SDK configuration.
MAX_ROTATION_CHAIN = 16

#: Domain-separation prefixes: a signature or key made for one purpose, or for another
#: protocol version, never fits another.
_CONTEXT_PREFIX = f"KAA-WIRE/{PROTOCOL_VERSION} ".encode()
RESOLVE_SIGNATURE_CONTEXT = _CONTEXT_PREFIX + b"RESOLVE\x00"
REGISTER_SIGNATURE_CONTEXT = _CONTEXT_PREFIX + b"REGISTER\x00"
SEAL_KDF_INFO = _CONTEXT_PREFIX + b"SEAL"
RESPONSE_KDF_INFO = _CONTEXT_PREFIX + b"RESPONSE"
#: What a Bootstrap key signs when it hands over to its successor (docs/protocol.md 4.5).
ROTATE_SIGNATURE_CONTEXT = _CONTEXT_PREFIX + b"ROTATE\x00"


class MessageType(enum.IntEnum):
    RESOLVE_REQUEST = 0x01
    RESOLVE_RESPONSE = 0x02
    REGISTER_REQUEST = 0x03
    REGISTER_RESPONSE = 0x04
    ERROR = 0x7F


class FrameFlag(enum.IntFlag):
    #: On ERROR only: the body is sealed under a key from the registration response secret.
    SEALED = 0x01


class SignatureAlgorithm(enum.IntEnum):
    RSA_PKCS1V15_SHA256 = 1
    ED25519 = 2
    ECDSA_P256_SHA256 = 3


class KeyExchangeAlgorithm(enum.IntEnum):
    X25519 = 1


class AeadAlgorithm(enum.IntEnum):
    CHACHA20_POLY1305 = 1


class Transport(enum.IntEnum):
    TCP = 1


class RegistrationStatus(enum.IntEnum):
    NEW = 1
    EXISTING = 2
    PROFILE_UPDATED = 3


#: Registration payload flag: the key field is the 20-byte endpoint id, not the DER key.
PAYLOAD_FLAG_KEY_IS_HASH = 0x01

#: The one RSA public exponent an endpoint key may have (docs/protocol.md 5.3). Each bit of
#: e costs a verify one modular squaring: with e ~ 2^3071 one garbage signature costs ~150
#: verifies of e = 65537, and anyone may send one.
RSA_PUBLIC_EXPONENT = 65537

#: An ECDSA P-256 signature on the wire: r || s, each a 32-byte big-endian integer (as JWS
#: ES256, COSE and PSA psa_sign_hash emit it), never DER (docs/protocol-decisions.md).
P256_SIGNATURE_SIZE = 64
#: The one DER SubjectPublicKeyInfo prefix of a P-256 endpoint key: SEQUENCE { SEQUENCE {
#: id-ecPublicKey, namedCurve prime256v1 }, BIT STRING { 0 unused bits, 0x04 } }; X and Y
#: (32 bytes each, big-endian) follow, 91 bytes in all. Every other encoding of a P-256 key
#: (compressed or hybrid point, explicit parameters, long-form lengths) is refused, so one
#: key has one endpoint id. kaa_wire_ext reads this copy at import.
P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004")
#: P-256's field prime p and group order n (SEC 2, 2.4.2).
P256_FIELD_PRIME = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

#: The canonical encodings of the 8 points of small order on edwards25519, refused as
#: endpoint keys (docs/protocol.md 5.3): with the identity as the key, R = identity, S = 0
#: verifies every message, and with the others a forger needs a few tries. This is the one
#: copy; kaa_wire_ext reads it at import, tests/hostile_keys.py derives it on the curve.
ED25519_SMALL_ORDER_KEYS: tuple[bytes, ...] = tuple(
    bytes.fromhex(point)
    for point in (
        "0100000000000000000000000000000000000000000000000000000000000000",  # order 1
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
        "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
        "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    )
)
