"""The four sans-IO connections, paired over an in-memory link."""

from __future__ import annotations

from typing import Any

import pytest

from kaa_wire import (
    NEED_DATA,
    UNBOUND_NONCE,
    BadSeal,
    BadSignature,
    BootstrapServerConnection,
    LocalProtocolError,
    MalformedFrame,
    OperationsNode,
    OperationsServerConnection,
    Overloaded,
    RegisterClient,
    RegistrationOpener,
    RegistrationResult,
    RegistrationVerifier,
    ReplayedRequest,
    ResolveClient,
    RevokedEndpoint,
    Signer,
    StaleRequest,
    UnexpectedMessage,
    UnknownApplication,
    UnsupportedAlgorithm,
    _codec,
    _crypto,
    check_freshness,
)

NONCE = bytes(range(16))
APP = "app-token"
SDK = "sdk-token"
NOW_MS = 1_795_000_000_000


@pytest.fixture
def keys(vector_keys: dict[str, Any]) -> dict[str, Any]:
    return vector_keys


def _opener(keys: dict[str, Any]) -> RegistrationOpener:
    return RegistrationOpener(keys["operations_x25519"])


def _node(keys: dict[str, Any], priority: int = 1) -> OperationsNode:
    public = _crypto.x25519_public_bytes(keys["operations_x25519"])
    return OperationsNode(priority, 1, 1, "127.0.0.1", 9997, public)


def _resolve(
    keys: dict[str, Any],
    *,
    tamper: bool = False,
    nonce: bytes | None = None,
    signer_key: str = "bootstrap_rsa",
    accept_unbound: bool = False,
) -> Any:
    client = ResolveClient(
        APP, keys["bootstrap_rsa"].public_key(), nonce=NONCE, accept_unbound=accept_unbound
    )
    server = BootstrapServerConnection()
    server.receive_data(client.send_request())
    request = server.next_event()
    assert request.app_token == APP
    signer = Signer(_crypto.private_key_pem(keys[signer_key]))
    if nonce is None:
        data = server.data_to_sign(
            (_node(keys),),
            server_time_ms=NOW_MS,
            valid_for_s=60,
            signature_algorithm=signer.algorithm,
        )
        answer = server.send_response(signer.sign(data))
    else:
        signed = _codec.resolve_response_signed_part(
            nonce, NOW_MS, 60, 1, signer.algorithm, (_node(keys),), ()
        )
        answer = server.send_presigned(signed, signer.sign(_codec.resolve_signed_data(APP, signed)))
    if tamper:
        answer = answer[:-1] + bytes([answer[-1] ^ 0x01])
    client.receive_data(answer)
    return client.next_event(now=100.0)


def test_resolution_verifies_and_keeps_server_time(keys: dict[str, Any]) -> None:
    resolved = _resolve(keys)
    assert resolved.nodes == (_node(keys),)
    assert resolved.server_time_at(102.5) == NOW_MS + 2500
    assert not resolved.expired(159.0) and resolved.expired(160.0)


@pytest.mark.parametrize("signer_key", ["other_rsa", "bootstrap_ed25519"])
def test_resolution_signed_by_another_key_is_refused(keys: dict[str, Any], signer_key: str) -> None:
    with pytest.raises((BadSignature, UnsupportedAlgorithm)):
        _resolve(keys, signer_key=signer_key)


def test_tampered_resolution_is_refused(keys: dict[str, Any]) -> None:
    with pytest.raises(BadSignature):
        _resolve(keys, tamper=True)


def test_answer_for_another_nonce_is_refused(keys: dict[str, Any]) -> None:
    with pytest.raises(ReplayedRequest):
        _resolve(keys, nonce=bytes(15) + b"\x01")


def test_unbound_answer_needs_consent(keys: dict[str, Any]) -> None:
    with pytest.raises(ReplayedRequest):
        _resolve(keys, nonce=UNBOUND_NONCE)
    assert _resolve(keys, nonce=UNBOUND_NONCE, accept_unbound=True).nodes == (_node(keys),)


def test_ed25519_bootstrap_key(keys: dict[str, Any]) -> None:
    client = ResolveClient(APP, keys["bootstrap_ed25519"].public_key(), nonce=NONCE)
    server = BootstrapServerConnection()
    server.receive_data(client.send_request())
    server.next_event()
    signer = Signer(_crypto.private_key_pem(keys["bootstrap_ed25519"]))
    data = server.data_to_sign((), server_time_ms=1, valid_for_s=5, signature_algorithm=2)
    client.receive_data(server.send_response(signer.sign(data)))
    assert client.next_event(now=0.0).nodes == ()


def test_bootstrap_error_reaches_client(keys: dict[str, Any]) -> None:
    client = ResolveClient(APP, keys["bootstrap_rsa"].public_key(), nonce=NONCE)
    server = BootstrapServerConnection()
    server.receive_data(client.send_request())
    server.next_event()
    client.receive_data(server.send_error(Overloaded("busy", retry_after_ms=1500)))
    with pytest.raises(Overloaded) as info:
        client.next_event(now=0.0)
    assert info.value.retry_after_ms == 1500 and not info.value.sealed


def test_client_needs_data_until_the_whole_frame(keys: dict[str, Any]) -> None:
    client = ResolveClient(APP, keys["bootstrap_rsa"].public_key(), nonce=NONCE)
    server = BootstrapServerConnection()
    server.receive_data(client.send_request())
    server.next_event()
    frame = server.send_error(UnknownApplication())
    for byte in frame[:-1]:
        client.receive_data(bytes([byte]))
        assert client.next_event(now=0.0) is NEED_DATA
    client.receive_data(frame[-1:])
    with pytest.raises(UnknownApplication):
        client.next_event(now=0.0)


def test_eof_mid_frame_is_malformed() -> None:
    server = BootstrapServerConnection()
    server.receive_data(b"\x02\x01\x00\x00")
    assert server.next_event() is NEED_DATA
    server.receive_data(b"")
    with pytest.raises(MalformedFrame):
        server.next_event()


def test_servers_take_one_exchange_per_connection(keys: dict[str, Any]) -> None:
    request = ResolveClient(APP, keys["bootstrap_rsa"].public_key(), nonce=NONCE).send_request()
    server = BootstrapServerConnection()
    server.receive_data(request + request)
    with pytest.raises(UnexpectedMessage):
        server.next_event()
    ops = OperationsServerConnection(_opener(keys), RegistrationVerifier())
    ops.receive_data(request)
    with pytest.raises(UnexpectedMessage):
        ops.next_event()


def test_misuse_is_a_local_error(keys: dict[str, Any]) -> None:
    client = ResolveClient(APP, keys["bootstrap_rsa"].public_key(), nonce=NONCE)
    with pytest.raises(LocalProtocolError):
        client.next_event(now=0.0)
    client.send_request()
    with pytest.raises(LocalProtocolError):
        client.send_request()
    with pytest.raises(LocalProtocolError):
        BootstrapServerConnection().send_response(b"sig")


def _register(
    keys: dict[str, Any], *, reconnect: bool = False, device: str = "endpoint_rsa"
) -> tuple[RegisterClient, OperationsServerConnection]:
    client = RegisterClient(
        _node(keys),
        sdk_token=SDK,
        private_key=keys[device],
        profile=b'{"a":1}',
        timestamp_ms=NOW_MS,
        reconnect=reconnect,
    )
    request = client.send_request()
    server = OperationsServerConnection(_opener(keys), RegistrationVerifier())
    server.receive_data(request)
    return client, server


@pytest.mark.parametrize("device", ["endpoint_rsa", "endpoint_ed25519"])
def test_registration_round_trip(keys: dict[str, Any], device: str) -> None:
    client, server = _register(keys, device=device)
    payload = server.next_event()
    assert payload.sdk_token == SDK and payload.timestamp_ms == NOW_MS
    endpoint_id = server.verify()
    assert endpoint_id == _crypto.endpoint_id(_crypto.public_key_der(keys[device]))
    result = RegistrationResult(
        status=1, endpoint_id=endpoint_id, server_time_ms=NOW_MS, config_version=1, config=b"{}"
    )
    client.receive_data(server.send_result(result))
    assert client.next_event().result == result


def test_reconnect_sends_the_key_hash(keys: dict[str, Any]) -> None:
    _, server = _register(keys, reconnect=True)
    payload = server.next_event()
    der = _crypto.public_key_der(keys["endpoint_rsa"])
    assert payload.key_is_hash and payload.key == _crypto.endpoint_id(der)
    with pytest.raises(LocalProtocolError):
        server.verify()  # the caller must pass the stored key
    assert server.verify(der) == payload.key


@pytest.mark.parametrize(
    ("where", "error"),
    [
        (2, MalformedFrame),  # header flags
        (6, UnsupportedAlgorithm),  # key exchange id
        (7, UnsupportedAlgorithm),  # AEAD id
        (10, BadSeal),  # ephemeral key
        (100, BadSeal),  # ciphertext
        (-1, BadSeal),  # tag
    ],
)
def test_tampered_request_is_refused(keys: dict[str, Any], where: int, error: type) -> None:
    """Header, envelope, ciphertext and tag are all covered by some check."""
    client = RegisterClient(
        _node(keys),
        sdk_token=SDK,
        private_key=keys["endpoint_rsa"],
        profile=b"{}",
        timestamp_ms=NOW_MS,
    )
    request = bytearray(client.send_request())
    request[where] ^= 0x80
    server = OperationsServerConnection(_opener(keys), RegistrationVerifier())
    server.receive_data(bytes(request))
    with pytest.raises(error):
        server.next_event()


def test_request_sealed_to_another_server_is_refused(keys: dict[str, Any]) -> None:
    client = RegisterClient(
        _node(keys),
        sdk_token=SDK,
        private_key=keys["endpoint_rsa"],
        profile=b"",
        timestamp_ms=NOW_MS,
    )
    server = OperationsServerConnection(
        RegistrationOpener(_crypto.generate_x25519_key()), RegistrationVerifier()
    )
    server.receive_data(client.send_request())
    with pytest.raises(BadSeal):
        server.next_event()


def test_errors_after_opening_are_sealed(keys: dict[str, Any]) -> None:
    client, server = _register(keys)
    server.next_event()
    client.receive_data(server.send_error(RevokedEndpoint("revoked")))
    with pytest.raises(RevokedEndpoint) as info:
        client.next_event()
    assert info.value.sealed


def test_no_second_message_after_the_result(keys: dict[str, Any]) -> None:
    """One exchange, one answer: nothing can follow the result on the same connection."""
    _, server = _register(keys)
    server.next_event()
    result = RegistrationResult(
        status=1, endpoint_id=server.verify(), server_time_ms=NOW_MS, config_version=1, config=b""
    )
    server.send_result(result)
    with pytest.raises(LocalProtocolError):
        server.send_error(RevokedEndpoint("too late"))
    with pytest.raises(LocalProtocolError):
        server.send_result(result)


def test_plain_error_is_not_authentic(keys: dict[str, Any]) -> None:
    client, _ = _register(keys)
    forged = BootstrapServerConnection().send_error(RevokedEndpoint("forged"))
    client.receive_data(forged)
    with pytest.raises(RevokedEndpoint) as info:
        client.next_event()
    assert not info.value.sealed


def test_forged_sealed_error_is_refused(keys: dict[str, Any]) -> None:
    client, _ = _register(keys)
    client.receive_data(b"\x02\x7f\x01\x00\x00\x40" + bytes(64))
    with pytest.raises(BadSeal):
        client.next_event()


def test_freshness_window() -> None:
    check_freshness(NOW_MS - 120_000, NOW_MS, 120_000)
    check_freshness(NOW_MS + 120_000, NOW_MS, 120_000)
    for skew in (-120_001, 120_001):
        with pytest.raises(StaleRequest):
            check_freshness(NOW_MS + skew, NOW_MS, 120_000)


def test_wire_budget(keys: dict[str, Any]) -> None:
    """docs/protocol.md: first registration < Kaa's 880 + profile; reconnect <= 400 + profile."""
    profile = b"p" * 200
    sizes = {}
    for reconnect in (False, True):
        client = RegisterClient(
            _node(keys),
            sdk_token="s" * 22,
            private_key=keys["endpoint_rsa"],
            profile=profile,
            timestamp_ms=NOW_MS,
            reconnect=reconnect,
        )
        sizes[reconnect] = len(client.send_request())
    assert sizes[False] == 845 and sizes[False] < 880 + 200
    assert sizes[True] == 569 and sizes[True] <= 400 + 200


@pytest.mark.parametrize(
    ("key_type", "first", "reconnect"),
    [("rsa2048", 845, 569), ("rsa4096", 1357, 825), ("ed25519", 403, 377), ("p256", 450, 377)],
)
def test_wire_budget_per_key_type(
    keys: dict[str, Any], key_type: str, first: int, reconnect: int
) -> None:
    """docs/protocol.md 10, the table by endpoint key type (22-character token, P = 200)."""
    private_key = {
        "rsa2048": lambda: keys["endpoint_rsa"],
        "rsa4096": lambda: _crypto.generate_rsa_key(4096),
        "ed25519": lambda: keys["endpoint_ed25519"],
        "p256": lambda: keys["endpoint_p256"],
    }[key_type]()
    sizes = [
        len(RegisterClient(_node(keys), sdk_token="s" * 22, private_key=private_key,
                           profile=b"p" * 200, timestamp_ms=NOW_MS,
                           reconnect=is_reconnect).send_request())
        for is_reconnect in (False, True)
    ]
    assert sizes == [first, reconnect]
