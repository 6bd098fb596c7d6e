"""RegistrationVerifier and verify_batch: kaa_wire_ext._ext against kaa_wire._registration,
differentially (registrations and reconnects, the key cache, algorithms, bad signatures, batches
and the GIL).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from kaa_wire import _crypto, _registration
from kaa_wire._errors import LocalProtocolError
from tests.parity import (
    CONTEXT,
    endpoint_key_variants,
    same,
    signed_payload,
    spki,
    verify_both,
    with_signature,
)


@pytest.mark.parametrize("name", ["rsa", "ed25519", "rsa4096", "p256"])
def test_good_registrations_and_reconnects(ext: Any, keys: dict[str, Any], name: str) -> None:
    key = keys[name]
    der = _crypto.public_key_der(key)
    result = verify_both(ext, signed_payload(key))
    assert result == ("ok", _crypto.endpoint_id(der))
    for cache_size in (0, 4096):
        assert verify_both(ext, signed_payload(key, reconnect=True), der, cache_size=cache_size)[
            0
        ] == "ok"


def test_reconnect_rules(ext: Any, keys: dict[str, Any]) -> None:
    key = keys["rsa"]
    data = signed_payload(key, reconnect=True)
    assert verify_both(ext, data)[1].__class__ is LocalProtocolError  # no key_der
    wrong = verify_both(ext, data, _crypto.public_key_der(keys["rsa2"]))
    assert type(wrong[1]).__name__ == "UnknownKeyHash"
    # key_der is ignored on a first registration, as in the pure path
    assert verify_both(ext, signed_payload(key), b"ignored")[0] == "ok"


def test_cached_keys_are_reused_like_the_pure_cache(ext: Any, keys: dict[str, Any]) -> None:
    names = ["rsa", "rsa2", "ed25519", "ed25519_2", "p256"]
    plan = [names[i % 5] for i in range(15)] + ["rsa", "ed25519", "p256"]
    for cache_size in (0, 1, 2, 4096):
        pure = _registration.RegistrationVerifier(cache_size)
        compiled = ext.RegistrationVerifier(cache_size)
        assert compiled.cache_size == cache_size
        for name in plan:
            key = keys[name]
            der = _crypto.public_key_der(key)
            for data, key_der in ((signed_payload(key), None),
                                  (signed_payload(key, reconnect=True), der)):
                same(
                    lambda d=data, k=key_der, v=pure: v.verify(
                        _registration.parse_registration_payload(d), CONTEXT, k),
                    lambda d=data, k=key_der, v=compiled: v.verify(
                        ext.parse_registration_payload(d), CONTEXT, k),
                )


def test_negative_cache_size(ext: Any) -> None:
    result = same(
        lambda: _registration.RegistrationVerifier(-1), lambda: ext.RegistrationVerifier(-1)
    )
    assert isinstance(result[1], LocalProtocolError)


@pytest.mark.parametrize("name", ["rsa", "ed25519", "p256"])
@pytest.mark.parametrize("algorithm", [0, 1, 2, 3, 4, 255])
def test_algorithm_must_fit_the_key(
    ext: Any, keys: dict[str, Any], name: str, algorithm: int
) -> None:
    verify_both(ext, signed_payload(keys[name], algorithm=algorithm))


@pytest.mark.parametrize("name", ["rsa", "ed25519", "p256"])
def test_bad_signatures(ext: Any, keys: dict[str, Any], name: str) -> None:
    data = signed_payload(keys[name])
    flipped = data[:-1] + bytes([data[-1] ^ 1])
    assert type(verify_both(ext, flipped)[1]).__name__ == "BadSignature"
    assert type(verify_both(ext, data, context=CONTEXT[:-1] + b"!")[1]).__name__ == (
        "BadSignature"
    )
    # a signature of the wrong length, and none at all
    signed_part = _registration.parse_registration_payload(data).signed_part
    for signature in (b"", b"\x00", bytes(255), bytes(257), bytes(63), bytes(64), bytes(65)):
        verify_both(ext, signed_part + with_signature(signature))


def test_verify_batch_mixed(ext: Any, keys: dict[str, Any]) -> None:
    items: list[tuple[Any, Any, Any, Any]] = []
    for name in ("rsa", "ed25519", "rsa4096", "p256"):
        key = keys[name]
        der = _crypto.public_key_der(key)
        algorithm = int(_crypto.signature_algorithm_of(key))
        message = f"batch {name}".encode()
        signature = _crypto.sign(key, message)
        items += [
            (der, algorithm, message, signature),
            (der, algorithm, message + b"!", signature),
            (der, 1 + algorithm % 3, message, signature),
            (der, algorithm, message, signature[:-1]),
            (der, algorithm, bytearray(message), memoryview(signature)),
        ]
    for der in endpoint_key_variants(keys).values():
        items.append((der, 1, b"m", bytes(256)))
        items.append((der, 2, b"m", bytes(64)))
        items.append((der, 3, b"m", bytes(64)))
    expected = _registration.verify_batch(items)
    assert ext.verify_batch(items) == expected
    assert ext.verify_batch(iter(items)) == expected
    assert expected.count(True) == 8
    assert ext.verify_batch([]) == _registration.verify_batch([]) == []


def test_verify_batch_argument_errors(ext: Any, keys: dict[str, Any]) -> None:
    der = spki(keys["ed25519"])
    for items in ([(der, 2, "text", bytes(64))], [(der, 2, b"m")], [5], [("text", 2, b"", b"")],
                  [(None, 2, b"", b"")], [(12, 1, b"", b"")]):
        same(lambda i=items: _registration.verify_batch(i), lambda i=items: ext.verify_batch(i))
    # data is only looked at when the key loaded and fits: a bad key excuses a bad type
    items = [(b"junk", 2, "text", None)]
    assert ext.verify_batch(items) == _registration.verify_batch(items) == [False]


def test_verify_batch_releases_the_gil(ext: Any, keys: dict[str, Any]) -> None:
    """With a huge switch interval the main thread can only run while the worker is inside
    verify_batch if verify_batch has released the GIL."""
    key = keys["rsa"]
    der = _crypto.public_key_der(key)
    signature = _crypto.sign(key, b"m")
    batch = [(der, 1, b"m", signature)] * 256  # ~5 ms of verifies
    started = threading.Event()
    done: list[bool] = []

    def worker() -> None:
        started.set()  # the main thread wakes only when this thread lets go of the GIL
        assert all(ext.verify_batch(batch))
        done.append(True)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        started.wait()
        finished_first = bool(done)
    finally:
        sys.setswitchinterval(interval)
    thread.join()
    assert done == [True]
    assert not finished_first, "the main thread could not run during verify_batch"
