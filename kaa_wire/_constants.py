"""Numbers fixed by protocol v1 (docs/protocol.md). The extension's .pxd mirrors them."""

from __future__ import annotations

import enum

PROTOCOL_VERSION = 1
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

#: The generation of the Bootstrap key ``servers.control init`` creates; each rotation adds
#: one. An SDK configuration that names no generation trusts this one.
FIRST_KEY_GENERATION = 1
#: At most this many rotation certificates in one RESOLVE_RESPONSE: an endpoint further
#: behind than that cannot follow the rotations and needs a new SDK configuration.
MAX_ROTATION_CHAIN = 16

#: Domain-separation prefixes: a signature or key made for one purpose never fits another.
RESOLVE_SIGNATURE_CONTEXT = b"KAA-WIRE/1 RESOLVE\x00"
REGISTER_SIGNATURE_CONTEXT = b"KAA-WIRE/1 REGISTER\x00"
SEAL_KDF_INFO = b"KAA-WIRE/1 SEAL"
#: What a Bootstrap key signs when it hands over to its successor (docs/protocol.md 4.5).
ROTATE_SIGNATURE_CONTEXT = f"KAA-WIRE/{PROTOCOL_VERSION} ROTATE\x00".encode("ascii")


class MessageType(enum.IntEnum):
    RESOLVE_REQUEST = 0x01
    RESOLVE_RESPONSE = 0x02
    REGISTER_REQUEST = 0x03
    REGISTER_RESPONSE = 0x04
    ERROR = 0x7F


class FrameFlag(enum.IntFlag):
    #: On ERROR only: the body is sealed with the registration response key.
    SEALED = 0x01


class SignatureAlgorithm(enum.IntEnum):
    RSA_PKCS1V15_SHA256 = 1
    ED25519 = 2


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
