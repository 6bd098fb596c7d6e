"""Keys, endpoint ids and signatures: the public crypto API of kaa-wire.

For the client, the servers and applications. The protocol's sealing stays inside the
connections (``kaa_wire._connection``); nothing here does I/O (key files: ``kaa_files``).
"""

from __future__ import annotations

from kaa_wire._crypto import (
    PrivateKey,
    PublicKey,
    endpoint_id,
    generate_ed25519_key,
    generate_p256_key,
    generate_rsa_key,
    generate_x25519_key,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_der,
    public_key_pem,
    sign,
    signature_algorithm_of,
    signature_valid,
    verify_signature,
    x25519_public_bytes,
)

__all__ = [
    "PrivateKey",
    "PublicKey",
    "endpoint_id",
    "generate_ed25519_key",
    "generate_p256_key",
    "generate_rsa_key",
    "generate_x25519_key",
    "load_private_key",
    "load_public_key",
    "private_key_pem",
    "public_key_der",
    "public_key_pem",
    "sign",
    "signature_algorithm_of",
    "signature_valid",
    "verify_signature",
    "x25519_public_bytes",
]
