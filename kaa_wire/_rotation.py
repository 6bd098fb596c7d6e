"""Bootstrap key rotation: certificates that hand one key generation over to the next, and
the endpoint's rule for following them (docs/protocol.md 4.5).

A Bootstrap key of generation g signs a certificate naming the key of generation g + 1.
An endpoint that trusts generation t and gets an answer signed by generation c > t checks
the certificates t + 1 .. c link by link, each with the key before it, and then the answer
with the last key; only a whole chain makes the new key trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from kaa_wire import _codec
from kaa_wire._constants import FIRST_KEY_GENERATION, MAX_ROTATION_CHAIN, MIN_RSA_BITS
from kaa_wire._crypto import (
    PrivateKey,
    PublicKey,
    load_public_key,
    public_key_der,
    sign,
    signature_algorithm_of,
    signature_valid,
)
from kaa_wire._errors import BadSignature, LocalProtocolError, MalformedFrame, UnsupportedAlgorithm
from kaa_wire._messages import RotationCertificate

__all__ = [
    "MAX_BOOTSTRAP_RSA_BITS",
    "TrustedKey",
    "bootstrap_public_key",
    "certify",
    "follow_chain",
    "follow_link",
    "key_fingerprint",
]

#: Bootstrap keys are RSA of 2048 to this many bits, or Ed25519 (docs/protocol.md section 8).
MAX_BOOTSTRAP_RSA_BITS = 4096


def key_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER SubjectPublicKeyInfo, 64 hex digits: how people and files name a key."""
    return hashlib.sha256(der).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class TrustedKey:
    """A Bootstrap public key and its generation: what an endpoint trusts to sign answers."""

    generation: int
    public_key: PublicKey

    def __post_init__(self) -> None:
        if not FIRST_KEY_GENERATION <= self.generation <= 0xFFFFFFFF:
            raise LocalProtocolError(f"a key generation is {FIRST_KEY_GENERATION} to 4294967295")

    @property
    def der(self) -> bytes:
        return public_key_der(self.public_key)

    @property
    def algorithm(self) -> int:
        return int(signature_algorithm_of(self.public_key))


def bootstrap_public_key(der: bytes, algorithm: int | None = None) -> PublicKey:
    """A Bootstrap key from its DER SubjectPublicKeyInfo, vetted.

    RSA of 2048 to 4096 bits or Ed25519, in canonical DER (so a key has one encoding, and
    one fingerprint); with ``algorithm``, the key must sign with that algorithm. A key that
    does not parse is MalformedFrame; another type, size or algorithm UnsupportedAlgorithm.
    """
    try:
        key = load_public_key(der)
    except LocalProtocolError:
        raise MalformedFrame("the Bootstrap key is not a DER public key") from None
    if not isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise UnsupportedAlgorithm("a Bootstrap key must be RSA or Ed25519")
    if isinstance(key, rsa.RSAPublicKey) and not (
        MIN_RSA_BITS <= key.key_size <= MAX_BOOTSTRAP_RSA_BITS
    ):
        raise UnsupportedAlgorithm(
            f"a Bootstrap RSA key has {MIN_RSA_BITS} to {MAX_BOOTSTRAP_RSA_BITS} bits"
        )
    if public_key_der(key) != der:
        raise MalformedFrame("the Bootstrap key is not in canonical DER")
    if algorithm is not None and algorithm != signature_algorithm_of(key):
        raise UnsupportedAlgorithm(f"signature algorithm {algorithm} does not fit the key")
    return key


def certify(
    signing_key: PrivateKey, generation: int, new_key: PublicKey | PrivateKey
) -> RotationCertificate:
    """The certificate by which ``signing_key`` (generation ``generation - 1``) hands over
    to ``new_key`` (generation ``generation``)."""
    der = public_key_der(new_key)
    signed_part = _codec.rotation_signed_part(generation, signature_algorithm_of(new_key), der)
    signature = sign(signing_key, _codec.rotation_signed_data(signed_part))
    return RotationCertificate(
        generation, signature_algorithm_of(new_key), der, signature, signed_part
    )


def follow_chain(
    trusted: TrustedKey, key_generation: int, rotations: tuple[RotationCertificate, ...]
) -> TrustedKey:
    """The key that must have signed an answer of generation ``key_generation``.

    Raises BadSignature when the answer's generation is older than the trusted one (a
    retired key), when the certificates do not start right after the trusted generation,
    or when one does not verify with the key before it; MalformedFrame or
    UnsupportedAlgorithm when a certified key is not a usable Bootstrap key.
    """
    if key_generation < trusted.generation:
        raise BadSignature(
            f"answer signed by key generation {key_generation}, "
            f"older than the trusted generation {trusted.generation}"
        )
    if len(rotations) != key_generation - trusted.generation:
        raise BadSignature(
            f"{len(rotations)} rotations do not lead from generation {trusted.generation} "
            f"to {key_generation}"
        )
    if len(rotations) > MAX_ROTATION_CHAIN:  # a decoded answer never has more
        raise BadSignature(f"more than {MAX_ROTATION_CHAIN} rotations")
    current = trusted
    for certificate in rotations:
        current = follow_link(current, certificate)
    return current


def follow_link(current: TrustedKey, certificate: RotationCertificate) -> TrustedKey:
    """The key ``certificate`` hands over to, once ``current`` is shown to have signed it."""
    if certificate.generation != current.generation + 1:
        raise BadSignature(f"rotation to generation {certificate.generation} is out of order")
    signed = _codec.rotation_signed_data(
        certificate.signed_part
        or _codec.rotation_signed_part(
            certificate.generation, certificate.signature_algorithm, certificate.public_key
        )
    )
    # Verify first, parse the new key second: only a key the trusted one vouched for is
    # looked at.
    if not signature_valid(current.public_key, signed, certificate.signature):
        raise BadSignature(
            f"rotation to generation {certificate.generation} is not signed by "
            f"generation {current.generation}"
        )
    key = bootstrap_public_key(certificate.public_key, certificate.signature_algorithm)
    return TrustedKey(certificate.generation, key)
