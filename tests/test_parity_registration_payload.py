"""parse_registration_payload: kaa_wire_ext._ext against kaa_wire._registration, differentially
(good payloads, every truncation and trailing byte, field values, argument types, random and
mutated input).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaa_wire import _registration
from tests.parity import SETTINGS, mutated, payload_bytes, same, signed_payload


def test_good_payloads_parse_identically(ext: Any, keys: dict[str, Any]) -> None:
    for name in ("rsa", "ed25519", "rsa4096"):
        for reconnect in (False, True):
            data = signed_payload(keys[name], reconnect=reconnect)
            result = same(
                lambda d=data: _registration.parse_registration_payload(d),
                lambda d=data: ext.parse_registration_payload(d),
            )
            assert result[0] == "ok"
            assert result[1].key_is_hash is reconnect
    data = bytearray(signed_payload(keys["rsa"]))
    result = same(
        lambda: _registration.parse_registration_payload(data),
        lambda: ext.parse_registration_payload(data),
    )
    assert type(result[1].signed_part) is bytearray


@pytest.mark.parametrize("reconnect", [False, True])
def test_every_truncation_and_trailing_bytes(
    ext: Any, keys: dict[str, Any], reconnect: bool
) -> None:
    data = signed_payload(keys["ed25519"], reconnect=reconnect)
    for end in range(len(data)):
        same(
            lambda d=data[:end]: _registration.parse_registration_payload(d),
            lambda d=data[:end]: ext.parse_registration_payload(d),
        )
    for extra in (b"\x00", b"\xa5", b"\xa5\xa5", bytes(7)):
        result = same(
            lambda d=data + extra: _registration.parse_registration_payload(d),
            lambda d=data + extra: ext.parse_registration_payload(d),
        )
        assert result[0] == "error"


@pytest.mark.parametrize(
    "fields",
    [
        {"flags": 0x02},
        {"flags": 0x80},
        {"flags": 0x03, "key": bytes(20)},
        {"flags": 0xFF, "key": bytes(20)},
        {"token": b""},
        {"token": b"t" * 64},
        {"token": b"t" * 65},
        {"token": b"tab\there"},
        {"token": b"\x7f"},
        {"token": b"caf\xc3\xa9"},
        {"token": b"\xa5"},
        {"token": b"with space"},
        {"key": b""},
        {"key": b"k"},
        {"flags": 1, "key": bytes(20)},
        {"profile": b""},
        {"profile": bytes(0xFFFF)},
        {"signature": b""},
        {"signature": bytes(0xFFFF)},
        {"algorithm": 0},
        {"algorithm": 255},
        {"timestamp": 0},
        {"timestamp": 2**64 - 1},
    ],
)
def test_field_values_accepted_and_refused_alike(ext: Any, fields: dict[str, Any]) -> None:
    fields = {"key": b"\x30\x00", **fields}
    data = payload_bytes(**fields)
    same(
        lambda: _registration.parse_registration_payload(data),
        lambda: ext.parse_registration_payload(data),
    )


def test_payload_argument_types(ext: Any) -> None:
    for value in ("text", memoryview(b"abc"), None, 5):
        same(
            lambda v=value: _registration.parse_registration_payload(v),
            lambda v=value: ext.parse_registration_payload(v),
        )


@SETTINGS
@given(st.binary(max_size=400))
def test_random_payloads(ext: Any, data: bytes) -> None:
    same(
        lambda: _registration.parse_registration_payload(data),
        lambda: ext.parse_registration_payload(data),
    )


_GOOD_PAYLOAD = payload_bytes(key=b"\x30\x03\x02\x01\x01", signature=b"s" * 64)
_GOOD_RECONNECT = payload_bytes(flags=1, key=bytes(range(20)), signature=b"s" * 64)


@SETTINGS
@given(st.one_of(mutated(_GOOD_PAYLOAD), mutated(_GOOD_RECONNECT)))
def test_mutated_payloads(ext: Any, data: bytes) -> None:
    same(
        lambda: _registration.parse_registration_payload(data),
        lambda: ext.parse_registration_payload(data),
    )
