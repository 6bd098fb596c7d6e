"""Signer: kaa_wire_ext._ext against kaa_wire._signer, differentially (signatures, refusals,
threads).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from kaa_wire import _crypto, _registration, _signer
from tests.parity import same


def _private_encodings(key: Any) -> dict[str, bytes]:
    out = {
        "pem pkcs8": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
        "der pkcs8": key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
    }
    if isinstance(key, rsa.RSAPrivateKey):
        for label, encoding in (("pem", serialization.Encoding.PEM),
                                ("der", serialization.Encoding.DER)):
            out[f"{label} traditional"] = key.private_bytes(
                encoding, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption())
    out["pem with leading blank line"] = b"\n  " + out["pem pkcs8"]
    return out


@pytest.mark.parametrize("name", ["rsa", "ed25519", "rsa4096"])
def test_signer_signs_like_the_pure_signer(ext: Any, keys: dict[str, Any], name: str) -> None:
    key = keys[name]
    public = key.public_key()
    for label, encoded in _private_encodings(key).items():
        pure = _signer.Signer(encoded)
        compiled = ext.Signer(encoded)
        assert compiled.algorithm == pure.algorithm, label
        for message in (b"", b"resolve answer", bytes(5000), bytearray(b"ba"), memoryview(b"mv")):
            signature = compiled.sign(message)
            # Both schemes are deterministic: byte-identical signatures.
            assert signature == pure.sign(message), label
            if isinstance(public, rsa.RSAPublicKey):
                public.verify(signature, bytes(message), padding.PKCS1v15(), hashes.SHA256())
            else:
                public.verify(signature, bytes(message))


def test_signatures_cross_verify(ext: Any, keys: dict[str, Any]) -> None:
    """Extension signatures pass the pure verifier, and pure signatures the extension's."""
    for name in ("rsa", "ed25519"):
        pem = _crypto.private_key_pem(keys[name])
        der = _crypto.public_key_der(keys[name])
        algorithm = int(_crypto.signature_algorithm_of(keys[name]))
        for signer in (ext.Signer(pem), _signer.Signer(pem)):
            signature = signer.sign(b"cross")
            item = [(der, algorithm, b"cross", signature)]
            assert ext.verify_batch(item) == _registration.verify_batch(item) == [True]


def test_signer_refuses_what_the_pure_signer_refuses(ext: Any, keys: dict[str, Any]) -> None:
    encrypted = keys["rsa"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"))
    refused = {
        "garbage": b"not a key",
        "empty": b"",
        "truncated pem": _crypto.private_key_pem(keys["rsa"])[:200],
        "encrypted": encrypted,
        "rsa1024": _crypto.private_key_pem(keys["rsa1024"]),
        "p256": keys["p256"].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
        "x25519": _crypto.private_key_pem(keys["x25519"]),
        "public key": _crypto.public_key_pem(keys["rsa"]),
    }
    for name, data in refused.items():
        result = same(lambda d=data: _signer.Signer(d), lambda d=data: ext.Signer(d))
        assert result[0] != "ok", name


def test_signer_from_several_threads(ext: Any, keys: dict[str, Any]) -> None:
    for name in ("rsa", "ed25519"):
        signer = ext.Signer(_crypto.private_key_pem(keys[name]))
        expected = {i: _signer.Signer(_crypto.private_key_pem(keys[name])).sign(b"%d" % i)
                    for i in range(24)}
        results: dict[int, bytes] = {}

        def run(indexes: range, signer: Any = signer, results: dict[int, bytes] = results) -> None:
            for i in indexes:
                results[i] = signer.sign(b"%d" % i)

        threads = [threading.Thread(target=run, args=(range(t, 24, 4),)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == expected
