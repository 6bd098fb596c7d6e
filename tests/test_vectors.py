"""The shared binary vectors (tests/vectors/), on both implementations.

Every framer vector is fed three ways: whole, one byte at a time, and followed by trailing
bytes. Every vector that decodes is re-serialised and must give back the same bytes.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from kaa_wire import _codec, _crypto
from kaa_wire._connection import (
    BootstrapServerConnection,
    OperationsServerConnection,
    RegisterClient,
    ResolveClient,
)
from kaa_wire._constants import HEADER_SIZE, RESPONSE_NONCE_SIZE
from kaa_wire._errors import KaaWireError, RevokedEndpoint
from kaa_wire._messages import Frame
from tests.conftest import load_vectors
from tests.vectors.generate import exchange_vectors, framer_outcome

FRAMES = load_vectors("frames.json")
MESSAGES = load_vectors("messages.json")
REGISTRATIONS = load_vectors("registration.json")
EXCHANGE = load_vectors("exchange.json")


@pytest.mark.parametrize("vector", FRAMES, ids=[v["name"] for v in FRAMES])
def test_framer_whole(impl: types.SimpleNamespace, vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    assert framer_outcome(impl.Framer, [data], vector["max_frame_size"]) == vector["expect"]


@pytest.mark.parametrize("vector", FRAMES, ids=[v["name"] for v in FRAMES])
def test_framer_byte_at_a_time(impl: types.SimpleNamespace, vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert framer_outcome(impl.Framer, chunks, vector["max_frame_size"]) == vector["expect"]


# Streams that end on a frame boundary or fail: extra bytes must not change what came out.
COMPLETE = [v for v in FRAMES if v["expect"].get("buffered", 0) == 0]


@pytest.mark.parametrize("vector", COMPLETE, ids=[v["name"] for v in COMPLETE])
def test_framer_with_trailing_data(impl: types.SimpleNamespace, vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    expect = vector["expect"]
    got = framer_outcome(impl.Framer, [data + b"\x01\x01"], vector["max_frame_size"])
    assert got["frames"] == expect["frames"]
    assert got.get("error") == expect.get("error")
    if "error" not in expect:
        assert got["buffered"] == 2


def test_framer_error_is_sticky(impl: types.SimpleNamespace) -> None:
    framer = impl.Framer()
    framer.receive_data(b"\x01\x01\x00\x00\x00\x00")  # version 1, retired
    errors = []
    for _ in range(2):
        with pytest.raises(KaaWireError) as info:
            framer.next_frame()
        errors.append(info.value)
    assert errors[0] is errors[1]


def test_encode_frame_round_trips(impl: types.SimpleNamespace) -> None:
    for vector in FRAMES:
        for frame in vector["expect"]["frames"]:
            body = bytes.fromhex(frame["body"])
            encoded = impl.encode_frame(frame["msg_type"], body, frame["flags"])
            assert encoded[6:] == body
            framer = impl.Framer()
            framer.receive_data(encoded)
            assert framer.next_frame() == Frame(
                frame["msg_type"], frame["flags"], encoded[:6], body
            )


def _frame(data: bytes) -> Frame:
    frame = Frame(data[1], data[2], data[:6], data[6:])
    assert int.from_bytes(data[3:6], "big") == len(frame.body)
    return frame


def _reencode(frame: Frame, impl: types.SimpleNamespace) -> bytes:
    """Build a decoded frame back from its message, through the encoders (the Bootstrap's
    resolution functions from ``impl``)."""
    if frame.msg_type == 1:
        body = _codec.encode_resolve_request(impl.decode_resolve_request(frame.body))
    elif frame.msg_type == 2:
        response = _codec.decode_resolve_response(frame.body)
        signed = impl.resolve_response_signed_part(
            response.nonce,
            response.server_time_ms,
            response.valid_for_s,
            response.key_generation,
            response.signature_algorithm,
            response.nodes,
            response.rotations,
        )
        assert signed == response.signed_part
        body = impl.encode_resolve_response(signed, response.signature)
    elif frame.msg_type == 3:
        body = _codec.encode_register_envelope(_codec.decode_register_envelope(frame.body))
    elif frame.msg_type == 0x7F and not frame.flags:
        body = _codec.encode_error(_codec.decode_error(frame.body))
    else:
        body = frame.body  # sealed: opaque here, checked in the exchange tests
    return frame.header + body


@pytest.mark.parametrize("vector", MESSAGES, ids=[v["name"] for v in MESSAGES])
def test_message_vectors(impl: types.SimpleNamespace, vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    frame = _frame(data)
    try:
        got: dict[str, Any] = {"ok": _codec.describe_frame(frame)}
    except KaaWireError as exc:
        got = {"error": type(exc).__name__}
    assert got == vector["expect"]
    if "ok" in got:
        assert _reencode(frame, impl) == data


def _payload_fields(parsed: Any) -> dict[str, Any]:
    return {
        "key_is_hash": parsed.key_is_hash,
        "signature_algorithm": parsed.signature_algorithm,
        "timestamp_ms": parsed.timestamp_ms,
        "sdk_token": parsed.sdk_token,
        "key": parsed.key.hex(),
        "profile": parsed.profile.hex(),
        "signature": parsed.signature.hex(),
        "signed_length": len(parsed.signed_part),
    }


@pytest.mark.parametrize("vector", REGISTRATIONS, ids=[v["name"] for v in REGISTRATIONS])
def test_registration_vectors(impl: types.SimpleNamespace, vector: dict[str, Any]) -> None:
    plaintext = bytes.fromhex(vector["plaintext"])
    expect = vector["expect"]
    try:
        parsed = impl.parse_registration_payload(plaintext)
    except KaaWireError as exc:
        assert expect == {"error": type(exc).__name__}
        return
    assert _payload_fields(parsed) == expect["ok"]
    assert parsed.signed_part == plaintext[: expect["ok"]["signed_length"]]
    rebuilt = _codec.registration_payload_bytes(
        _codec.registration_signed_part(
            key_is_hash=parsed.key_is_hash,
            signature_algorithm=parsed.signature_algorithm,
            timestamp_ms=parsed.timestamp_ms,
            sdk_token=parsed.sdk_token,
            key=parsed.key,
            profile=parsed.profile,
        ),
        parsed.signature,
    )
    assert rebuilt == plaintext
    stored = bytes.fromhex(vector["stored_key"]) if vector["stored_key"] else None
    context = bytes.fromhex(vector["context"])
    for cache_size in (0, 16):
        verifier = impl.RegistrationVerifier(cache_size)
        for _ in range(2):  # the second call takes the cached key, when caching
            try:
                got = {"ok": verifier.verify(parsed, context, stored).hex()}
            except KaaWireError as exc:
                got = {"error": type(exc).__name__}
            assert got == expect["verify"]


def _keys() -> dict[str, Any]:
    pems = load_vectors("keys.json")
    return {name: _crypto.load_private_key(pem.encode()) for name, pem in pems.items()}


def test_exchange_is_reproduced_byte_for_byte() -> None:
    """The fixed exchange, rebuilt by this checkout's state machines, matches the vectors."""
    keys = _keys()
    regenerated = exchange_vectors(keys)
    assert regenerated == {k: v for k, v in EXCHANGE.items() if k in regenerated}


def test_exchange_opens_on_both_sides() -> None:
    keys = _keys()
    operations: x25519.X25519PrivateKey = keys["operations_x25519"]
    bootstrap_public = _crypto.load_public_key(bytes.fromhex(EXCHANGE["bootstrap_public_key"]))

    server = BootstrapServerConnection()
    server.receive_data(bytes.fromhex(EXCHANGE["resolve_request_frame"]))
    request = server.next_event()
    assert request.app_token == EXCHANGE["app_token"]  # type: ignore[union-attr]

    client = ResolveClient(
        EXCHANGE["app_token"],
        bootstrap_public,  # type: ignore[arg-type]
        nonce=request.nonce,  # type: ignore[union-attr]
    )
    client.send_request()
    client.receive_data(bytes.fromhex(EXCHANGE["resolve_response_frame"]))
    resolved = client.next_event(now=0.0)
    assert [n.priority for n in resolved.nodes] == [200, 100]  # type: ignore[union-attr]

    from kaa_wire._impl import RegistrationOpener, RegistrationVerifier

    opener = RegistrationOpener(operations)
    ops = OperationsServerConnection(opener, RegistrationVerifier())
    ops.receive_data(bytes.fromhex(EXCHANGE["register_request_frame"]))
    payload = ops.next_event()
    assert payload.profile == bytes.fromhex(EXCHANGE["profile"])  # type: ignore[union-attr]
    assert ops.verify().hex() == EXCHANGE["endpoint_id"]

    ops = OperationsServerConnection(opener, RegistrationVerifier())
    ops.receive_data(bytes.fromhex(EXCHANGE["reconnect_request_frame"]))
    payload = ops.next_event()
    assert payload.key_is_hash  # type: ignore[union-attr]
    assert (
        ops.verify(bytes.fromhex(EXCHANGE["endpoint_public_key"])).hex() == EXCHANGE["endpoint_id"]
    )

    # The endpoint opens the sealed answer and the sealed error with the ephemeral key of the
    # request each answers.
    for frame_name, reconnect, ephemeral in (
        ("register_response_frame", False, "ephemeral_x25519"),
        ("sealed_error_frame", True, "ephemeral_x25519_reconnect"),
    ):
        endpoint = RegisterClient(
            resolved.nodes[0],  # type: ignore[union-attr]
            sdk_token=EXCHANGE["sdk_token"],
            private_key=keys["endpoint_rsa"],
            profile=bytes.fromhex(EXCHANGE["profile"]),
            timestamp_ms=0,
            reconnect=reconnect,
            ephemeral_key=keys[ephemeral],
        )
        endpoint.send_request()
        endpoint.receive_data(bytes.fromhex(EXCHANGE[frame_name]))
        if reconnect:
            with pytest.raises(RevokedEndpoint) as info:
                endpoint.next_event()
            assert info.value.sealed
        else:
            result = endpoint.next_event().result  # type: ignore[union-attr]
            assert result.endpoint_id.hex() == EXCHANGE["endpoint_id"]
            assert [t.name for t in result.topics] == ["firmware", "alerts"]


def test_exchange_opens_with_each_opener(impl: types.SimpleNamespace) -> None:
    """Each implementation opens the fixed requests, and encodes and seals the fixed answers,
    byte for byte."""
    keys = _keys()
    opener = impl.RegistrationOpener(keys["operations_x25519"])
    assert opener.public_key.hex() == EXCHANGE["operations_public_key"]
    inputs = EXCHANGE["inputs"]
    for request_name, answer_name, ephemeral, secret in (
        (
            "register_request_frame",
            "register_response_frame",
            "ephemeral_x25519",
            "register_response_secret",
        ),
        (
            "reconnect_request_frame",
            "sealed_error_frame",
            "ephemeral_x25519_reconnect",
            "reconnect_response_secret",
        ),
    ):
        request = bytes.fromhex(EXCHANGE[request_name])
        plaintext, ephemeral_public, response_secret = opener.open(
            request[:HEADER_SIZE], request[HEADER_SIZE:]
        )
        assert ephemeral_public == _crypto.x25519_public_bytes(keys[ephemeral])
        assert response_secret.hex() == inputs[secret]
        payload = impl.parse_registration_payload(plaintext)
        assert payload.profile == bytes.fromhex(EXCHANGE["profile"])
        answer = bytes.fromhex(EXCHANGE[answer_name])
        header, sealed = answer[:HEADER_SIZE], answer[HEADER_SIZE:]
        opened = _crypto.open_answer(response_secret, sealed, header)
        response_nonce = sealed[:RESPONSE_NONCE_SIZE]
        assert impl.seal_response(response_secret, opened, header, response_nonce) == sealed
        if answer_name == "register_response_frame":
            result = _codec.decode_registration_result(opened)
            assert impl.encode_registration_result(result) == opened


def test_the_p256_registration_opens_and_verifies_on_each_path(
    impl: types.SimpleNamespace,
) -> None:
    """The fixed P-256 first registration (signature algorithm 3, r || s) opens and verifies
    on each implementation, and its endpoint id is SHA-1 of the 91-byte DER key."""
    keys = _keys()
    request = bytes.fromhex(EXCHANGE["register_request_p256_frame"])
    plaintext, ephemeral_public, _ = impl.RegistrationOpener(keys["operations_x25519"]).open(
        request[:HEADER_SIZE], request[HEADER_SIZE:]
    )
    assert ephemeral_public == _crypto.x25519_public_bytes(keys["ephemeral_x25519_p256"])
    payload = impl.parse_registration_payload(plaintext)
    der = bytes.fromhex(EXCHANGE["endpoint_p256_public_key"])
    assert payload.signature_algorithm == 3 and payload.key == der and len(der) == 91
    assert len(payload.signature) == 64
    context = _crypto.registration_signature_context(
        bytes.fromhex(EXCHANGE["operations_public_key"]), ephemeral_public
    )
    endpoint_id = impl.RegistrationVerifier().verify(payload, context)
    assert endpoint_id.hex() == EXCHANGE["endpoint_p256_id"] == _crypto.endpoint_id(der).hex()
