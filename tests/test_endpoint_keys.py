"""Endpoint keys that are not real RSA keys are refused on both paths (a forgery vector:
with e = 1 every PKCS#1-padded digest is its own signature)."""

from __future__ import annotations

import hashlib
import types

import pytest

from kaa_wire import MalformedFrame
from tests.test_ext_build import CONTEXT, _with_signature, payload_bytes, rsa_spki

# An odd 2048-bit modulus; whether it factors does not matter to the checks under test.
N = 2**2047 + 2**1000 + 1
DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")


def _forged(der: bytes) -> bytes:
    """A payload whose 'signature' is the padded digest itself: valid exactly when e = 1."""
    signed_part = payload_bytes(key=der, algorithm=1, signature=b"")[:-2]
    digest = DIGEST_INFO_SHA256 + hashlib.sha256(CONTEXT + signed_part).digest()
    encoded = b"\x00\x01" + b"\xff" * (256 - 3 - len(digest)) + b"\x00" + digest
    return signed_part + _with_signature(encoded)


@pytest.mark.security
@pytest.mark.parametrize(
    ("n", "e"),
    [(N, 1), (N, 2), (N, 65536), (N - 1, 65537), (N, N + 2)],
    ids=["e=1", "e=2", "even e", "even n", "e>n"],
)
def test_degenerate_rsa_keys_are_refused(impl: types.SimpleNamespace, n: int, e: int) -> None:
    payload = impl.parse_registration_payload(_forged(rsa_spki(n, e)))
    with pytest.raises(MalformedFrame):
        impl.RegistrationVerifier(0).verify(payload, CONTEXT)
    assert impl.verify_batch(
        [(payload.key, 1, CONTEXT + payload.signed_part, payload.signature)]
    ) == [False]
