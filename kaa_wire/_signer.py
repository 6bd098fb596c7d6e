"""The Bootstrap signer, pure-Python implementation (``kaa_wire_ext`` has the same class)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from kaa_wire._crypto import PrivateKey, load_private_key, sign, signature_algorithm_of
from kaa_wire._errors import LocalProtocolError

__all__ = ["Signer"]


class Signer:
    """Signs with one private key (PEM or DER): RSA PKCS#1 v1.5 SHA-256, or Ed25519.

    ``sign`` is safe to call from several threads at once, so a server can run it on a pool.
    """

    def __init__(self, private_key: bytes) -> None:
        key = load_private_key(private_key)
        if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
            raise LocalProtocolError("a signer needs an RSA or Ed25519 private key")
        self.algorithm = int(signature_algorithm_of(key))
        self._key = key

    @property
    def private_key(self) -> PrivateKey:
        """The vetted private key. kaa_wire_ext's Signer builds one of these to run the
        checks above, then loads this key into OpenSSL: the hook it uses instead of a
        private attribute."""
        return self._key

    def sign(self, data: bytes) -> bytes:
        return sign(self._key, data)
