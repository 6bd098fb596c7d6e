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

#: The server's fresh random bytes at the head of every sealed answer (docs/protocol.md 5.1).
RESPONSE_NONCE_SIZE = 32
#: A sealed ERROR's message is exactly this many bytes (space-padded or cut), so the length
#: of a refusal tells the path nothing about which refusal it is.
SEALED_ERROR_MESSAGE_SIZE = 48

#: Domain-separation prefixes: a signature or key made for one purpose, or for another
#: protocol version, never fits another.
_CONTEXT_PREFIX = f"KAA-WIRE/{PROTOCOL_VERSION} ".encode()
RESOLVE_SIGNATURE_CONTEXT = _CONTEXT_PREFIX + b"RESOLVE\x00"
REGISTER_SIGNATURE_CONTEXT = _CONTEXT_PREFIX + b"REGISTER\x00"
SEAL_KDF_INFO = _CONTEXT_PREFIX + b"SEAL"
RESPONSE_KDF_INFO = _CONTEXT_PREFIX + b"RESPONSE"


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
