# Numbers fixed by protocol v2, mirrored from kaa_wire/_constants.py. tests/test_ext_build.py
# checks that every value here equals its Python original, so the two cannot drift apart.

cdef enum:
    PROTOCOL_VERSION = 2
    HEADER_SIZE = 6
    DEFAULT_MAX_FRAME_SIZE = 65536           # 64 * 1024
    ABSOLUTE_MAX_FRAME_SIZE = 16777221       # HEADER_SIZE + 0xFFFFFF
    MAX_BODY_LENGTH = 16777215               # 0xFFFFFF, the 24-bit length field

    NONCE_SIZE = 16
    RESPONSE_NONCE_SIZE = 32
    KEY_HASH_SIZE = 20
    X25519_KEY_SIZE = 32
    AEAD_TAG_SIZE = 16
    MAX_TOKEN_SIZE = 64
    MAX_HOST_SIZE = 255
    FIRST_KEY_GENERATION = 1
    MAX_ROTATION_CHAIN = 16

    # MessageType
    MSG_RESOLVE_REQUEST = 0x01
    MSG_RESOLVE_RESPONSE = 0x02
    MSG_REGISTER_REQUEST = 0x03
    MSG_REGISTER_RESPONSE = 0x04
    MSG_ERROR = 0x7F

    # FrameFlag
    FLAG_SEALED = 0x01

    # SignatureAlgorithm
    SIG_RSA_PKCS1V15_SHA256 = 1
    SIG_ED25519 = 2
    SIG_ECDSA_P256_SHA256 = 3

    # An ECDSA P-256 signature on the wire: r || s, 32 bytes each.
    P256_SIGNATURE_SIZE = 64

    # KeyExchangeAlgorithm, AeadAlgorithm
    KEX_X25519 = 1
    AEAD_CHACHA20_POLY1305 = 1

    # Cleartext bytes of a REGISTER_REQUEST body before the sealed payload.
    ENVELOPE_SIZE = 34

    # Registration payload flag: the key field is the 20-byte endpoint id.
    PAYLOAD_FLAG_KEY_IS_HASH = 0x01

    # A bytes16 field's length prefix, e.g. before every signature.
    SIGNATURE_LENGTH_PREFIX = 2

    # Endpoint RSA key sizes accepted.
    MIN_RSA_BITS = 2048
    MAX_RSA_BITS = 4096

    # The one RSA public exponent an endpoint key may have.
    RSA_PUBLIC_EXPONENT = 65537
