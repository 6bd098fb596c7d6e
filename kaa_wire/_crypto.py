"""Keys, endpoint ids, signatures and sealing, on ``cryptography``.

Shared by both implementations: the extension only replaces the hot registration open and
verify and the Bootstrap signer (see ``_opener.py``, ``_registration.py`` and ``_signer.py``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.exceptions import UnsupportedAlgorithm as _CUA
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kaa_wire._constants import (
    AEAD_TAG_SIZE,
    MIN_RSA_BITS,
    P256_ORDER,
    P256_SIGNATURE_SIZE,
    REGISTER_SIGNATURE_CONTEXT,
    RESPONSE_KDF_INFO,
    RESPONSE_NONCE_SIZE,
    SEAL_KDF_INFO,
    SignatureAlgorithm,
)
from kaa_wire._errors import (
    BadSeal,
    BadSignature,
    LocalProtocolError,
    MalformedFrame,
    UnsupportedAlgorithm,
    bad_response_nonce_size,
    bad_response_secret_size,
    invalid_ephemeral_key,
    sealed_payload_does_not_authenticate,
)

__all__ = [
    "PrivateKey",
    "PublicKey",
    "generate_rsa_key",
    "generate_ed25519_key",
    "generate_p256_key",
    "generate_x25519_key",
    "load_private_key",
    "load_public_key",
    "public_key_der",
    "private_key_pem",
    "public_key_pem",
    "endpoint_id",
    "signature_algorithm_of",
    "sign",
    "signature_valid",
    "verify_signature",
    "x25519_public_bytes",
    "SessionKeys",
    "registration_signature_context",
    "client_session",
    "server_session",
    "seal",
    "unseal",
    "answer_key",
    "seal_answer",
    "open_answer",
]

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
_PRIVATE_TYPES = (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)
_PUBLIC_TYPES = (rsa.RSAPublicKey, ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)

_ZERO_NONCE = bytes(12)
_PEM_MARK = b"-----BEGIN"


def generate_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def generate_ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def generate_p256_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def generate_x25519_key() -> x25519.X25519PrivateKey:
    return x25519.X25519PrivateKey.generate()


def _only_p256(key: Any) -> None:
    """EC keys are protocol keys on P-256 only (docs/protocol.md 8)."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and not (
        isinstance(key.curve, ec.SECP256R1)
    ):
        raise LocalProtocolError(f"unsupported EC curve {key.curve.name}: only P-256")


def load_private_key(
    data: bytes,
) -> PrivateKey | x25519.X25519PrivateKey:
    """A private key from PEM or DER (PKCS#8 or traditional), unencrypted."""
    try:
        if data.lstrip().startswith(_PEM_MARK):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError, _CUA) as exc:
        raise LocalProtocolError(f"not a usable private key: {exc}") from None
    if not isinstance(key, (*_PRIVATE_TYPES, x25519.X25519PrivateKey)):
        raise LocalProtocolError(f"unsupported private key type {type(key).__name__}")
    _only_p256(key)
    return key


def load_public_key(
    data: bytes,
) -> PublicKey | x25519.X25519PublicKey:
    """A public key from PEM or DER SubjectPublicKeyInfo, or the public half of a private key."""
    try:
        if data.lstrip().startswith(_PEM_MARK):
            if b"PRIVATE KEY" in data:
                return load_private_key(data).public_key()
            key = serialization.load_pem_public_key(data)
        else:
            try:
                key = serialization.load_der_public_key(data)
            except ValueError:
                return load_private_key(data).public_key()
    except (ValueError, TypeError, _CUA) as exc:
        raise LocalProtocolError(f"not a usable public key: {exc}") from None
    if not isinstance(key, (*_PUBLIC_TYPES, x25519.X25519PublicKey)):
        raise LocalProtocolError(f"unsupported public key type {type(key).__name__}")
    _only_p256(key)
    return key


def public_key_der(key: PublicKey | PrivateKey) -> bytes:
    """DER SubjectPublicKeyInfo, as ``openssl pkey -pubin -outform DER`` prints it."""
    if not isinstance(key, _PUBLIC_TYPES):
        key = key.public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_pem(
    key: PublicKey | PrivateKey | x25519.X25519PrivateKey | x25519.X25519PublicKey,
) -> bytes:
    if isinstance(key, (*_PRIVATE_TYPES, x25519.X25519PrivateKey)):
        key = key.public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_key_pem(key: PrivateKey | x25519.X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def endpoint_id(spki_der: bytes) -> bytes:
    """The 20-byte endpoint id: SHA-1 over the DER SubjectPublicKeyInfo."""
    return hashlib.sha1(spki_der).digest()


def signature_algorithm_of(key: PublicKey | PrivateKey) -> SignatureAlgorithm:
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        if key.key_size < MIN_RSA_BITS:
            raise UnsupportedAlgorithm(f"RSA keys need at least {MIN_RSA_BITS} bits")
        return SignatureAlgorithm.RSA_PKCS1V15_SHA256
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return SignatureAlgorithm.ED25519
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return SignatureAlgorithm.ECDSA_P256_SHA256
    raise UnsupportedAlgorithm(f"no signature algorithm for {type(key).__name__}")


def _ecdsa_sha256() -> ec.ECDSA:
    """ECDSA with SHA-256, with RFC 6979 deterministic nonces where the OpenSSL under
    ``cryptography`` has them (3.2 and later): a weak random source cannot then leak the key
    through its nonces, and a signature is a reproducible test vector. The verifier cannot
    tell the two kinds apart, and need not."""
    try:
        return ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    except _CUA:
        return ec.ECDSA(hashes.SHA256())


def sign(key: PrivateKey, data: bytes) -> bytes:
    """Sign with the key's protocol algorithm: RSA PKCS#1 v1.5 SHA-256, Ed25519, or ECDSA
    P-256 SHA-256 as the fixed 64 bytes r || s (docs/protocol.md 8)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature_algorithm_of(key)  # P-256 only
        r, s = decode_dss_signature(key.sign(data, _ecdsa_sha256()))
        half = P256_SIGNATURE_SIZE // 2
        return r.to_bytes(half, "big") + s.to_bytes(half, "big")
    return key.sign(data)


def _p256_signature_der(signature: bytes) -> bytes | None:
    """The DER ECDSA-Sig-Value of a wire signature r || s, or None unless it has exactly
    64 bytes and 1 <= r, s <= n - 1 (what every verifier must check, checked here in the
    open rather than left to OpenSSL). s and n - s both verify: see docs/protocol.md 8."""
    if len(signature) != P256_SIGNATURE_SIZE:
        return None
    half = P256_SIGNATURE_SIZE // 2
    r = int.from_bytes(signature[:half], "big")
    s = int.from_bytes(signature[half:], "big")
    if not (0 < r < P256_ORDER and 0 < s < P256_ORDER):
        return None
    return encode_dss_signature(r, s)


def signature_valid(key: PublicKey, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s over ``data`` with the key's protocol algorithm."""
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            der = _p256_signature_der(signature)
            if der is None:
                return False
            key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def verify_signature(key: PublicKey, algorithm: int, data: bytes, signature: bytes) -> None:
    """Raise BadSignature unless ``signature`` is ``key``'s over ``data`` with ``algorithm``."""
    if algorithm != signature_algorithm_of(key):
        raise UnsupportedAlgorithm(f"signature algorithm {algorithm} does not match the key")
    if not signature_valid(key, data, signature):
        raise BadSignature("signature does not verify")


def x25519_public_bytes(key: x25519.X25519PrivateKey | x25519.X25519PublicKey) -> bytes:
    if isinstance(key, x25519.X25519PrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class SessionKeys:
    """The secrets of one registration exchange.

    ``request`` seals exactly one message, the request, made with a fresh ephemeral key, so
    its all-zero nonce never repeats. ``response_secret`` is not a key: every answer the
    server seals under it gets a key and nonce of its own from the server's fresh random
    ``response_nonce`` (:func:`answer_key`), however often a peer replays the request.
    """

    __slots__ = ("ephemeral_public_key", "request", "response_secret", "server_public_key")

    def __init__(
        self, shared: bytes, ephemeral_public_key: bytes, server_public_key: bytes
    ) -> None:
        okm = HKDF(
            algorithm=hashes.SHA256(),
            length=64,
            salt=ephemeral_public_key + server_public_key,
            info=SEAL_KDF_INFO,
        ).derive(shared)
        self.request = ChaCha20Poly1305(okm[:32])
        self.response_secret = okm[32:]
        self.ephemeral_public_key = ephemeral_public_key
        self.server_public_key = server_public_key


def answer_key(response_secret: bytes, response_nonce: bytes) -> tuple[bytes, bytes]:
    """The AEAD key (32 bytes) and nonce (12) of one sealed answer (docs/protocol.md 5.1)."""
    okm = HKDF(
        algorithm=hashes.SHA256(), length=44, salt=response_nonce, info=RESPONSE_KDF_INFO
    ).derive(response_secret)
    return okm[:32], okm[32:]


def seal_answer(
    response_secret: bytes, plaintext: bytes, header: bytes, response_nonce: bytes
) -> bytes:
    """``response_nonce || ciphertext || tag``: the body of a sealed answer."""
    if len(response_secret) != 32:
        raise bad_response_secret_size(32)
    if len(response_nonce) != RESPONSE_NONCE_SIZE:
        raise bad_response_nonce_size(RESPONSE_NONCE_SIZE)
    key, nonce = answer_key(response_secret, response_nonce)
    return response_nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, header)


def open_answer(response_secret: bytes, body: bytes, header: bytes) -> bytes:
    """The plaintext of a sealed answer's ``body``; MalformedFrame or BadSeal."""
    if len(body) < RESPONSE_NONCE_SIZE + AEAD_TAG_SIZE:
        raise MalformedFrame("sealed answer too short to hold its nonce and tag")
    key, nonce = answer_key(response_secret, body[:RESPONSE_NONCE_SIZE])
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, body[RESPONSE_NONCE_SIZE:], header)
    except InvalidTag:
        raise BadSeal("sealed answer does not authenticate") from None


def registration_signature_context(
    server_public_key: bytes, ephemeral_public_key: bytes
) -> bytes:
    """The prefix an endpoint signs before its payload: binds the proof to this exchange."""
    return REGISTER_SIGNATURE_CONTEXT + server_public_key + ephemeral_public_key


def client_session(
    server_public_key: bytes, ephemeral: x25519.X25519PrivateKey | None = None
) -> SessionKeys:
    """The endpoint side: a fresh ephemeral key against the server's static X25519 key."""
    ephemeral = ephemeral or x25519.X25519PrivateKey.generate()
    try:
        shared = ephemeral.exchange(x25519.X25519PublicKey.from_public_bytes(server_public_key))
    except ValueError:
        raise BadSeal("the server's X25519 key is invalid") from None
    return SessionKeys(shared, x25519_public_bytes(ephemeral), server_public_key)


def server_session(
    static_key: x25519.X25519PrivateKey, static_public: bytes, ephemeral_public_key: bytes
) -> SessionKeys:
    """The Operations side of :func:`client_session`."""
    try:
        peer = x25519.X25519PublicKey.from_public_bytes(ephemeral_public_key)
        shared = static_key.exchange(peer)
    except ValueError:
        # Low-order points give an all-zero secret, which cryptography refuses.
        raise invalid_ephemeral_key() from None
    return SessionKeys(shared, ephemeral_public_key, static_public)


def seal(aead: ChaCha20Poly1305, plaintext: bytes, aad: bytes) -> bytes:
    return aead.encrypt(_ZERO_NONCE, plaintext, aad)


def unseal(aead: ChaCha20Poly1305, ciphertext: bytes, aad: bytes) -> bytes:
    try:
        return aead.decrypt(_ZERO_NONCE, ciphertext, aad)
    except InvalidTag:
        raise sealed_payload_does_not_authenticate() from None
