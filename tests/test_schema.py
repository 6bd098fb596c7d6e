"""Every construct schema, interpreted and compiled, agrees on the vectors' bytes."""

from __future__ import annotations

from typing import Any

import pytest

from kaa_wire import _codec, _schema
from kaa_wire._errors import MalformedFrame
from tests.conftest import load_vectors

EXCHANGE = load_vectors("exchange.json")
REGISTRATIONS = load_vectors("registration.json")


def _body(name: str) -> bytes:
    return bytes.fromhex(EXCHANGE[name])[6:]


def _certificate() -> bytes:
    """The rotation certificate of the rotated answer, alone."""
    response = _codec.decode_resolve_response(_body("resolve_response_rotated_frame"))
    return _codec.encode_rotation_certificate(response.rotations[0])


def _samples() -> list[tuple[str, bytes]]:
    register_body = _body("register_request_frame")
    samples = [
        ("HEADER", bytes.fromhex(EXCHANGE["resolve_request_frame"])[:6]),
        ("RESOLVE_REQUEST", _body("resolve_request_frame")),
        ("RESOLVE_RESPONSE", _body("resolve_response_frame")),
        ("RESOLVE_RESPONSE", _body("resolve_response_rotated_frame")),
        ("ROTATION_CERTIFICATE", _certificate()),
        ("REGISTER_ENVELOPE", register_body[:34]),
        ("ERROR_BODY", _body("error_frame")),
    ]
    samples += [
        ("REGISTER_PAYLOAD", bytes.fromhex(v["plaintext"]))
        for v in REGISTRATIONS
        if "ok" in v["expect"]
    ]
    return samples


SAMPLES = _samples()


def _plain(value: Any) -> Any:
    """A parsed Container as plain dicts and lists (drops construct's private keys)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not k.startswith("_")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize(("name", "data"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_interpreted_and_compiled_agree(name: str, data: bytes) -> None:
    compiled = getattr(_schema, name)
    interpreted = _schema.INTERPRETED[name]
    parsed_c = _schema.parse_exact(compiled, data, name)
    parsed_i = _schema.parse_exact(interpreted, data, name)
    assert _plain(parsed_c) == _plain(parsed_i)
    assert compiled.build(parsed_c) == interpreted.build(parsed_i) == data


@pytest.mark.parametrize(("name", "data"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_every_truncation_and_any_trailing_byte_is_refused(name: str, data: bytes) -> None:
    for schema in (getattr(_schema, name), _schema.INTERPRETED[name]):
        # One text for every short read, whatever byte the parser met past the end.
        for cut in range(len(data)):
            with pytest.raises(MalformedFrame, match=f"^truncated or invalid {name}$"):
                _schema.parse_exact(schema, data[:cut], name)
        for extra in (b"\x00", b"\xa5", b"\xa5\xa5"):
            with pytest.raises(MalformedFrame, match=f"^{len(extra)} trailing bytes after {name}$"):
                _schema.parse_exact(schema, data + extra, name)
