"""Opening a registration request on the Operations side, pure-Python implementation.

``kaa_wire_ext`` provides the same two names with identical behaviour (same results, same
exception classes and messages, checks in the same order); ``kaa_wire`` exports whichever
implementation is active.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import x25519

from kaa_wire import _codec, _crypto
from kaa_wire._constants import ENVELOPE_SIZE, AeadAlgorithm, KeyExchangeAlgorithm
from kaa_wire._errors import unsupported_aead, unsupported_key_exchange

__all__ = ["RegistrationOpener", "seal_response"]


class RegistrationOpener:
    """An Operations node's static X25519 key, ready to open REGISTER_REQUEST bodies.

    Built once per node; ``open`` keeps no state, so one opener serves every connection.
    """

    def __init__(self, static_key: x25519.X25519PrivateKey) -> None:
        if not isinstance(static_key, x25519.X25519PrivateKey):
            raise TypeError("an opener needs an X25519 private key")
        self._static_key = static_key
        self.public_key = _crypto.x25519_public_bytes(static_key)

    def open(self, header: bytes, body: bytes) -> tuple[bytes, bytes, bytes]:
        """``(payload plaintext, ephemeral public key, response secret)`` of one request.

        ``header`` and ``body`` are the request frame's; the header is part of the AAD.
        Raises MalformedFrame, UnsupportedAlgorithm or BadSeal, checked in that order.
        """
        envelope = _codec.decode_register_envelope(body)
        if envelope.kex_algorithm != KeyExchangeAlgorithm.X25519:
            raise unsupported_key_exchange(envelope.kex_algorithm)
        if envelope.aead_algorithm != AeadAlgorithm.CHACHA20_POLY1305:
            raise unsupported_aead(envelope.aead_algorithm)
        session = _crypto.server_session(
            self._static_key, self.public_key, envelope.ephemeral_public_key
        )
        aad = header + body[:ENVELOPE_SIZE]
        plaintext = _crypto.unseal(session.request, envelope.sealed_payload, aad)
        return plaintext, envelope.ephemeral_public_key, session.response_secret


def seal_response(
    response_secret: bytes, plaintext: bytes, header: bytes, response_nonce: bytes
) -> bytes:
    """The body of one sealed answer: ``response_nonce || ciphertext || tag``.

    ``response_nonce`` must be fresh random bytes for every answer (the caller draws them):
    the answer's key and nonce derive from it, so replays of one request never make the
    server seal twice under one key and nonce.
    """
    return _crypto.seal_answer(response_secret, plaintext, header, response_nonce)
