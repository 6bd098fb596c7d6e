"""Endpoint keys: the extension's fast path against kaa_wire._registration.load_endpoint_key,
differentially (hand-made DER variants, random and mutated keys), and proof that ordinary keys
never reach the pure loader.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from hypothesis import given
from hypothesis import strategies as st

from kaa_wire import _crypto, _registration
from tests.parity import (
    CONTEXT,
    SETTINGS,
    endpoint_key_variants,
    mutated,
    payload_bytes,
    rsa_spki,
    signed_payload,
    verify_both,
    with_signature,
)

#: The P-256 generator as an endpoint key: a point on the curve, to mutate.
P256_GENERATOR_SPKI = bytes.fromhex(
    "3059301306072a8648ce3d020106082a8648ce3d03010703420004"
    "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
    "4fe342e2fe1a7f9b8e7ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51"
)


def test_endpoint_key_variants(ext: Any, keys: dict[str, Any]) -> None:
    for name, der in endpoint_key_variants(keys).items():
        for algorithm in (1, 2, 3):
            data = payload_bytes(key=der, algorithm=algorithm, signature=bytes(256))
            try:
                verify_both(ext, data)
            except AssertionError:
                pytest.fail(f"paths disagree on the {name!r} endpoint key (algorithm {algorithm})")


@SETTINGS
@given(
    bits=st.integers(2030, 4110),
    e=st.one_of(st.sampled_from([0, 1, 2, 3, 17, 65537, 2**32 + 1]), st.integers(0, 2**80)),
    algorithm=st.sampled_from([1, 2]),
    n_pad=st.sampled_from([0, 0, 0, 1]),
    long_form=st.booleans(),
    data=st.data(),
)
def test_random_rsa_endpoint_keys(
    ext: Any, bits: int, e: int, algorithm: int, n_pad: int, long_form: bool, data: Any
) -> None:
    n = data.draw(st.integers(2 ** (bits - 1), 2**bits - 1))
    der = rsa_spki(n, e, n_pad=n_pad, long_form=long_form)
    verify_both(ext, payload_bytes(key=der, algorithm=algorithm, signature=bytes(256)))


@SETTINGS
@given(der=st.one_of(mutated(bytes.fromhex("302a300506032b6570032100") + bytes(range(32))),
                     mutated(rsa_spki(2**2047 + 12345, 65537)),
                     mutated(P256_GENERATOR_SPKI)),
       algorithm=st.sampled_from([1, 3]))
def test_mutated_endpoint_keys(ext: Any, der: bytes, algorithm: int) -> None:
    if not der:
        return  # an empty key is refused by the payload itself
    verify_both(ext, payload_bytes(key=der, algorithm=algorithm, signature=bytes(256)))


@SETTINGS
@given(signature=st.one_of(st.binary(min_size=62, max_size=66),
                           st.sampled_from([bytes(64), b"\xff" * 64])),
       flip=st.integers(0, 64 * 8 - 1))
def test_p256_signatures_are_judged_alike(
    ext: Any, keys: dict[str, Any], signature: bytes, flip: int
) -> None:
    """Random r || s, and a real signature with one bit flipped, on each path."""
    verify_both(ext, signed_payload(keys["p256"])[:-66] + with_signature(signature))
    real = bytearray(signed_payload(keys["p256"]))
    real[-64 + flip // 8] ^= 1 << (flip % 8)
    verify_both(ext, bytes(real))


def test_e_equal_one_keys_are_judged_alike(ext: Any) -> None:
    """An RSA "key" with e = 1 makes any signature s = EM verify. The pure loader refuses it
    (only e = 65537 is accepted); the extension leaves every key whose e is not 65537 to the
    pure loader, so it must refuse it the same way, with the same message."""
    n = 2**2047 + 2**1000 + 1
    der = rsa_spki(n, 1)
    signed_part = payload_bytes(key=der, algorithm=1, signature=b"")[:-2]
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    digest_info += _sha256(CONTEXT + signed_part)
    em = b"\x00\x01" + b"\xff" * (256 - 3 - len(digest_info)) + b"\x00" + digest_info
    verify_both(ext, signed_part + with_signature(em))
    item = [(der, 1, CONTEXT + signed_part, em)]
    assert ext.verify_batch(item) == _registration.verify_batch(item)


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def test_ordinary_keys_never_reach_the_pure_loader(
    ext: Any, keys: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path: ordinary RSA and Ed25519 keys are parsed and built in C."""

    def refuse(key_der: bytes) -> None:
        raise AssertionError("the pure loader was asked")

    monkeypatch.setattr(_registration, "load_endpoint_key", refuse)
    for name in ("rsa", "rsa4096", "ed25519", "p256"):
        data = signed_payload(keys[name])
        assert ext.RegistrationVerifier(0).verify(ext.parse_registration_payload(data), CONTEXT)
        der = _crypto.public_key_der(keys[name])
        algorithm = int(_crypto.signature_algorithm_of(keys[name]))
        assert ext.verify_batch([(der, algorithm, b"m", _crypto.sign(keys[name], b"m"))]) == [
            True
        ]
