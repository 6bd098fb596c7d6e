"""RegistrationOpener and seal_response: kaa_wire_ext._ext against kaa_wire._opener,
differentially (opening, refusals, low-order points, sealing, a fresh key and nonce per answer,
threads).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kaa_wire
from kaa_wire import _constants, _crypto, _opener, _registration
from tests.parity import SETTINGS, mutated, same, sealed_request

#: X25519 public keys whose shared secret is all zero with any private key: the low-order
#: points, their non-canonical encodings (u + p) and the same with the ignored top bit set.
LOW_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    (2**255 - 19 - 1).to_bytes(32, "little"),
    (2**255 - 19).to_bytes(32, "little"),
    (2**255 - 19 + 1).to_bytes(32, "little"),
    bytes(31) + b"\x80",
]


@pytest.fixture(scope="module")
def openers(ext: Any, keys: dict[str, Any]) -> tuple[Any, Any]:
    return _opener.RegistrationOpener(keys["x25519"]), ext.RegistrationOpener(keys["x25519"])


def open_both(openers: tuple[Any, Any], header: bytes, body: bytes) -> Any:
    pure, compiled = openers
    return same(lambda: pure.open(header, body), lambda: compiled.open(header, body))


@pytest.mark.parametrize("device", ["rsa", "ed25519"])
@pytest.mark.parametrize("reconnect", [False, True])
def test_opener_opens_like_the_pure_opener(
    keys: dict[str, Any], openers: tuple[Any, Any], device: str, reconnect: bool
) -> None:
    assert openers[1].public_key == openers[0].public_key
    for profile in (b"", b"p", bytes(5000)):
        header, body = sealed_request(keys, device, reconnect, profile)
        result = open_both(openers, header, body)
        assert result[0] == "ok"
        plaintext, ephemeral, response_key = result[1]
        assert ephemeral == body[2:34] and len(response_key) == 32
        assert _registration.parse_registration_payload(plaintext).profile == profile
        for argument_type in (bytearray, memoryview):  # any buffer, like the framer
            assert openers[1].open(argument_type(header), argument_type(body)) == result[1]


def test_opener_refuses_alike(keys: dict[str, Any], openers: tuple[Any, Any]) -> None:
    """Short bodies, algorithm ids, low-order keys and every tampered byte: same error."""
    header, body = sealed_request(keys)
    refused = [body[:size] for size in range(_constants.ENVELOPE_SIZE + 17)]
    refused += [bytes([kex, aead]) + body[2:] for kex in (0, 2, 255) for aead in (0, 1, 2, 255)]
    refused += [body[:1] + bytes([aead]) + body[2:] for aead in (0, 2, 255)]
    refused += [body[:2] + point + body[34:] for point in LOW_ORDER_POINTS]
    refused += [body[:i] + bytes([body[i] ^ bit]) + body[i + 1:]
                for i in range(2, len(body)) for bit in (0x01, 0x80)]
    for tampered in refused:
        result = open_both(openers, header, tampered)
        assert result[0] == "error", tampered.hex()
    for point in LOW_ORDER_POINTS:
        assert open_both(openers, header, body[:2] + point + body[34:])[1] == kaa_wire.BadSeal(
            "invalid ephemeral X25519 key")
    for i in range(len(header)):  # the header is authenticated data
        result = open_both(openers, header[:i] + bytes([header[i] ^ 1]) + header[i + 1:], body)
        assert result[0] == "error"
    assert open_both(openers, b"", body)[0] == "error"


@SETTINGS
@given(data=st.data())
def test_mutated_requests(keys: dict[str, Any], openers: tuple[Any, Any], data: Any) -> None:
    header, body = sealed_request(keys)
    open_both(openers, header, data.draw(mutated(body)))


def test_opener_refuses_other_keys_alike(ext: Any, keys: dict[str, Any]) -> None:
    for key in (keys["ed25519"], keys["x25519"].public_key(), b"\x00" * 32, None):
        result = same(lambda k=key: _opener.RegistrationOpener(k),
                      lambda k=key: ext.RegistrationOpener(k))
        assert result == ("raised", TypeError)


@SETTINGS
@given(secret=st.binary(min_size=32, max_size=32), plaintext=st.binary(max_size=300),
       header=st.binary(max_size=8), nonce=st.binary(min_size=32, max_size=32))
def test_seal_response_like_the_pure_seal(
    ext: Any, secret: bytes, plaintext: bytes, header: bytes, nonce: bytes
) -> None:
    result = same(lambda: _opener.seal_response(secret, plaintext, header, nonce),
                  lambda: ext.seal_response(secret, plaintext, header, nonce))
    assert result[0] == "ok"
    assert _crypto.open_answer(secret, result[1], header) == plaintext


def test_seal_response_refuses_alike(ext: Any) -> None:
    nonce = bytes(range(32))
    for secret in (b"", bytes(31), bytes(33)):
        result = same(lambda k=secret: _opener.seal_response(k, b"p", b"h", nonce),
                      lambda k=secret: ext.seal_response(k, b"p", b"h", nonce))
        assert result == ("raised", ValueError)
    for bad_nonce in (b"", bytes(16), bytes(31), bytes(33)):
        result = same(lambda n=bad_nonce: _opener.seal_response(bytes(32), b"p", b"h", n),
                      lambda n=bad_nonce: ext.seal_response(bytes(32), b"p", b"h", n))
        assert result == ("raised", ValueError)
    # (No None header: cryptography reads it as empty AAD; the header is typed bytes.)
    for plaintext, header in ((None, b"h"), ("text", b"h"), (b"p", "h")):
        result = same(
            lambda p=plaintext, h=header: _opener.seal_response(bytes(32), p, h, nonce),
            lambda p=plaintext, h=header: ext.seal_response(bytes(32), p, h, nonce),
        )
        assert result == ("raised", TypeError)


def test_every_answer_to_one_request_has_its_own_key_and_nonce(
    openers: tuple[Any, Any], keys: dict[str, Any]
) -> None:
    """However often one request is answered, on either path, no (key, nonce) repeats."""
    header, body = sealed_request(keys)
    seen: set[tuple[bytes, bytes]] = set()
    for opener in openers:
        secret = opener.open(header, body)[2]
        for _ in range(50):
            response_nonce = os.urandom(32)
            seen.add(_crypto.answer_key(secret, response_nonce))
    assert len(seen) == 100


def test_opener_from_several_threads(keys: dict[str, Any], openers: tuple[Any, Any]) -> None:
    requests = [sealed_request(keys, profile=b"%d" % i) for i in range(24)]
    expected = [openers[0].open(header, body) for header, body in requests]
    results: dict[int, Any] = {}

    def run(indexes: range) -> None:
        for i in indexes:
            results[i] = openers[1].open(*requests[i])

    threads = [threading.Thread(target=run, args=(range(t, 24, 4),)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(24)] == expected
