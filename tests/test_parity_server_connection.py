"""kaa_wire_ext's OperationsServerConnection == kaa_wire._connection's, step by step.

Both sides get the same bytes and the same calls; every step must give the same value or
the same exception (class and message, tests/parity.py), and the same state. Sealed
answers carry fresh randomness, so they are compared by what the endpoint opens from them
(RegisterClient), and plain frames byte for byte.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaa_wire import (
    RegisterClient,
    RegistrationOpener,
    RegistrationResult,
    RegistrationVerifier,
    ResolveClient,
    RevokedEndpoint,
    Topic,
    UnknownSdkToken,
    _connection,
    _crypto,
)
from kaa_wire._impl import Framer
from kaa_wire._messages import OperationsNode
from tests.parity import SETTINGS, outcome

NOW_MS = 1_795_000_000_000


@pytest.fixture(scope="module")
def setup(vector_keys: dict[str, Any]) -> dict[str, Any]:
    static = vector_keys["operations_x25519"]
    node = OperationsNode(1, 1, 1, "127.0.0.1", 9997, _crypto.x25519_public_bytes(static))
    return {"keys": vector_keys, "opener": RegistrationOpener(static), "node": node}


def _client(setup: dict[str, Any], *, reconnect: bool = False, device: str = "endpoint_rsa",
            profile: bytes = b'{"a":1}') -> RegisterClient:
    return RegisterClient(
        setup["node"], sdk_token="sdk-token", private_key=setup["keys"][device],
        profile=profile, timestamp_ms=NOW_MS, reconnect=reconnect,
    )  # fmt: skip


def _pair(ext: Any, setup: dict[str, Any], **kwargs: Any) -> list[Any]:
    """A pure and a compiled server connection, built alike."""
    return [
        cls(setup["opener"], RegistrationVerifier(), **kwargs)
        for cls in (_connection.OperationsServerConnection, ext.OperationsServerConnection)
    ]


def _step(conns: list[Any], call: Callable[[Any], Any]) -> Any:
    """``call`` on both; the same outcome and state. Returns the pure outcome.

    A sealed frame holds fresh randomness: two are the same when their headers are (the
    tests that open them check the rest).
    """
    pure, compiled = (outcome(lambda c=c: call(c)) for c in conns)
    if _sealed(pure) and _sealed(compiled):
        assert compiled[1][:6] == pure[1][:6] and len(compiled[1]) == len(pure[1])
    else:
        assert compiled == pure
    assert conns[1].state is conns[0].state
    return pure


def _sealed(result: Any) -> bool:
    return result[0] == "ok" and isinstance(result[1], bytes) and result[1][1:2] in (
        b"\x04", b"\x7f"
    ) and (result[1][1] == 4 or result[1][2] & 1)


def _answer_seen_by(client: RegisterClient, frame: bytes) -> Any:
    client.receive_data(frame)
    got = outcome(client.next_event)
    if got[0] == "error":
        return ("error", got[1], got[1].sealed)
    return got


# -- a whole exchange -------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["endpoint_rsa", "endpoint_ed25519"])
@pytest.mark.parametrize("chunk", [0, 1, 7])
def test_a_registration_and_its_sealed_answers(
    ext: Any, setup: dict[str, Any], device: str, chunk: int
) -> None:
    """Fed whole or in pieces, then verified and answered: the same payload, id and answer
    (as the endpoint opens it) from both."""
    client = _client(setup, device=device)
    request = client.send_request()
    conns = _pair(ext, setup)
    pieces = [request] if not chunk else [
        request[i:i + chunk] for i in range(0, len(request), chunk)
    ]
    for piece in pieces[:-1]:
        _step(conns, lambda c, p=piece: c.receive_data(p))
        _step(conns, lambda c: c.next_event())
    _step(conns, lambda c: c.receive_data(pieces[-1]))
    payload = _step(conns, lambda c: c.next_event())
    assert payload[0] == "ok" and conns[1].payload == conns[0].payload
    endpoint_id = _step(conns, lambda c: c.verify())
    result = RegistrationResult(
        status=1, endpoint_id=endpoint_id[1], server_time_ms=NOW_MS, config_version=3,
        config=b'{"x":1}', topics=(Topic(7, "t"),), reconnect_after_s=60, retry_base_ms=500,
    )  # fmt: skip
    frames = [conn.send_result(result) for conn in conns]
    assert conns[1].state is conns[0].state
    assert len(frames[0]) == len(frames[1]) and frames[0][:6] == frames[1][:6]
    # The endpoint opens each: the client's session is the one that sent the request.
    opened = []
    for frame in frames:
        fresh = _reopen(client)
        fresh.receive_data(frame)
        opened.append(fresh.next_event().result)
    assert opened == [result, result]
    _step(conns, lambda c: c.send_error(RevokedEndpoint("too late")))
    _step(conns, lambda c: c.send_result(result))


def _reopen(client: RegisterClient) -> RegisterClient:
    """A copy of ``client`` still awaiting its answer, with a framer of its own."""
    again = copy.copy(client)
    again._framer = Framer(client._max_frame_size)
    return again


@pytest.mark.parametrize(
    "error", [RevokedEndpoint("endpoint is revoked"), UnknownSdkToken("x" * 300)]
)
def test_errors_after_the_open_are_sealed_alike(
    ext: Any, setup: dict[str, Any], error: Exception
) -> None:
    client = _client(setup)
    request = client.send_request()
    conns = _pair(ext, setup)
    _step(conns, lambda c: c.receive_data(request))
    _step(conns, lambda c: c.next_event())
    frames = [conn.send_error(error) for conn in conns]
    assert len(frames[0]) == len(frames[1]) == 108 and frames[0][:6] == frames[1][:6]
    seen = [_answer_seen_by(_reopen(client), frame) for frame in frames]
    assert seen[0] == seen[1] and seen[0][2] is True


def test_a_reconnect_needs_the_stored_key(ext: Any, setup: dict[str, Any]) -> None:
    client = _client(setup, reconnect=True)
    der = _crypto.public_key_der(setup["keys"]["endpoint_rsa"])
    other = _crypto.public_key_der(setup["keys"]["other_rsa"])
    request = client.send_request()
    conns = _pair(ext, setup)
    _step(conns, lambda c: c.receive_data(request))
    assert _step(conns, lambda c: c.next_event())[0] == "ok"
    assert _step(conns, lambda c: c.verify())[0] == "error"
    assert _step(conns, lambda c: c.verify(other))[0] == "error"
    assert _step(conns, lambda c: c.verify(der))[1] == _crypto.endpoint_id(der)


# -- refusals before and during the open --------------------------------------------------------


def test_misuse_and_stream_end(ext: Any, setup: dict[str, Any]) -> None:
    request = _client(setup).send_request()
    conns = _pair(ext, setup)
    _step(conns, lambda c: c.verify())
    _step(conns, lambda c: c.send_result(None))
    _step(conns, lambda c: c.receive_data(request[:20]))
    _step(conns, lambda c: c.next_event())
    _step(conns, lambda c: c.receive_data(b""))
    _step(conns, lambda c: c.receive_data(b"more"))
    assert _step(conns, lambda c: c.next_event())[0] == "error"  # closed mid-frame
    _step(conns, lambda c: c.next_event())  # wrong state now
    # A refusal before the open is a plain frame: byte for byte the same.
    assert _step(conns, lambda c: c.send_error(RevokedEndpoint("no")))[0] == "ok"
    _step(conns, lambda c: c.send_error(RevokedEndpoint("twice")))


def test_plain_refusals_are_the_same_bytes(ext: Any, setup: dict[str, Any]) -> None:
    conns = _pair(ext, setup)
    _step(conns, lambda c: c.receive_data(b"\x09" * 10))
    assert _step(conns, lambda c: c.next_event())[0] == "error"
    _step(conns, lambda c: c.send_error(UnknownSdkToken("u" * 400)))


def test_another_message_type_and_trailing_bytes(ext: Any, setup: dict[str, Any]) -> None:
    resolve = ResolveClient("app", setup["keys"]["bootstrap_rsa"].public_key(),
                            nonce=bytes(range(16))).send_request()  # fmt: skip
    request = _client(setup).send_request()
    for data in (resolve, request + b"\x02", request + request):
        conns = _pair(ext, setup)
        _step(conns, lambda c, d=data: c.receive_data(d))
        assert _step(conns, lambda c: c.next_event())[0] == "error"


@pytest.mark.parametrize("limit", [7, 100, 300, "bad"])
def test_frame_limits(ext: Any, setup: dict[str, Any], limit: Any) -> None:
    """A request over the limit, and an answer that would not fit it, fail alike."""
    if limit == "bad":
        classes = (_connection.OperationsServerConnection, ext.OperationsServerConnection)
        opener = setup["opener"]
        made = [
            outcome(lambda c=c: c(opener, RegistrationVerifier(), max_frame_size=3))
            for c in classes
        ]
        assert made[0] == made[1] and made[0][0] == "error"
        return
    request = _client(setup).send_request()
    conns = _pair(ext, setup, max_frame_size=limit)
    _step(conns, lambda c: c.receive_data(request))
    _step(conns, lambda c: c.next_event())
    _step(conns, lambda c: c.send_error(RevokedEndpoint("r")))


def test_an_answer_too_large_for_the_frame_limit(ext: Any, setup: dict[str, Any]) -> None:
    client = _client(setup, profile=b"")
    request = client.send_request()
    conns = _pair(ext, setup, max_frame_size=len(request) + 40)
    _step(conns, lambda c: c.receive_data(request))
    _step(conns, lambda c: c.next_event())
    endpoint_id = _step(conns, lambda c: c.verify())[1]
    big = RegistrationResult(
        status=1, endpoint_id=endpoint_id, server_time_ms=NOW_MS, config_version=1,
        config=b"c" * 2000,
    )  # fmt: skip
    assert _step(conns, lambda c: c.send_result(big))[0] == "error"


@SETTINGS
@given(data=st.data())
def test_mutated_requests_fail_alike(ext: Any, setup: dict[str, Any], data: st.DataObject) -> None:
    """Any byte flipped, the request cut or lengthened, in any chunks: the same steps."""
    request = bytearray(_REQUEST_CACHE.setdefault("r", _client(setup).send_request()))
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.integers(0, len(request) - 1))
        request[where] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(request) + 4))
    mutated = bytes(request[:cut]) + (b"\x00" * (cut - len(request)) if cut > len(request) else b"")
    chunk = data.draw(st.integers(1, max(1, len(mutated))))
    conns = _pair(ext, setup)
    for i in range(0, len(mutated), chunk):
        _step(conns, lambda c, p=mutated[i:i + chunk]: c.receive_data(p))
        _step(conns, lambda c: c.next_event())
    if data.draw(st.booleans()):
        _step(conns, lambda c: c.receive_data(b""))
        _step(conns, lambda c: c.next_event())
    if conns[0].state is _connection._State.RECEIVED:
        _step(conns, lambda c: c.verify())
    _step(conns, lambda c: c.send_error(RevokedEndpoint("refused")))


_REQUEST_CACHE: dict[str, bytes] = {}


# -- the Bootstrap side ----------------------------------------------------------------------


def _bootstrap_pair(ext: Any, **kwargs: Any) -> list[Any]:
    return [
        cls(**kwargs)
        for cls in (_connection.BootstrapServerConnection, ext.BootstrapServerConnection)
    ]


def _resolve_request(keys: dict[str, Any], **kwargs: Any) -> bytes:
    client = ResolveClient("app-token", keys["bootstrap_rsa"].public_key(),
                           nonce=bytes(range(16)), **kwargs)  # fmt: skip
    return client.send_request()


def _udp_only_request() -> bytes:
    from kaa_wire import MessageType, ResolveRequest, _codec, encode_frame

    body = _codec.encode_resolve_request(ResolveRequest("app-token", bytes(range(16)), (2,)))
    return encode_frame(MessageType.RESOLVE_REQUEST, body)


@pytest.mark.parametrize("chunk", [0, 1, 5])
def test_a_resolution_step_by_step(ext: Any, setup: dict[str, Any], chunk: int) -> None:
    """Fed whole or in pieces; then the data to sign, the answer, and every misuse."""
    request = _resolve_request(setup["keys"])
    conns = _bootstrap_pair(ext)
    _step(conns, lambda c: c.send_response(b"sig"))
    pieces = [request] if not chunk else [
        request[i:i + chunk] for i in range(0, len(request), chunk)
    ]
    for piece in pieces:
        _step(conns, lambda c, p=piece: c.receive_data(p))
        _step(conns, lambda c: c.next_event())
    assert conns[1].request == conns[0].request
    _step(conns, lambda c: c.send_response(b"sig"))  # before data_to_sign
    node = setup["node"]
    sign = {"server_time_ms": NOW_MS, "valid_for_s": 300, "signature_algorithm": 1}
    _step(conns, lambda c: c.data_to_sign((node,), key_generation=2, **sign))  # no rotations
    assert _step(conns, lambda c: c.data_to_sign((node, node), **sign))[0] == "ok"
    _step(conns, lambda c: c.send_response(b"s" * 256))
    _step(conns, lambda c: c.send_response(b"s" * 256))
    _step(conns, lambda c: c.send_error(UnknownSdkToken("after")))


def test_a_presigned_answer_and_refusals(ext: Any, setup: dict[str, Any]) -> None:
    from kaa_wire import _codec

    request = _resolve_request(setup["keys"])
    conns = _bootstrap_pair(ext)
    _step(conns, lambda c: c.receive_data(request))
    _step(conns, lambda c: c.next_event())
    part = _codec.resolve_response_signed_part(
        bytes(16), NOW_MS, 300, 1, 1, (setup["node"],), ()
    )
    _step(conns, lambda c: c.send_presigned(part, b"p" * 256))
    for data in (
        request + b"\x00",
        _udp_only_request(),
        _client(setup).send_request(),
        b"\x02\x01\x00\x00\x00\x01\x00",
    ):
        conns = _bootstrap_pair(ext)
        _step(conns, lambda c, d=data: c.receive_data(d))
        assert _step(conns, lambda c: c.next_event())[0] == "error"
        _step(conns, lambda c: c.send_error(UnknownSdkToken("x" * 300)))


@SETTINGS
@given(data=st.data())
def test_mutated_resolutions_fail_alike(
    ext: Any, setup: dict[str, Any], data: st.DataObject
) -> None:
    request = bytearray(_REQUEST_CACHE.setdefault("b", _resolve_request(setup["keys"])))
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.integers(0, len(request) - 1))
        request[where] ^= data.draw(st.integers(1, 255))
    mutated = bytes(request[: data.draw(st.integers(0, len(request) + 2))])
    limit = data.draw(st.sampled_from([65536, 40]))
    conns = _bootstrap_pair(ext, max_frame_size=limit)
    _step(conns, lambda c: c.receive_data(mutated))
    _step(conns, lambda c: c.next_event())
    _step(conns, lambda c: c.receive_data(b""))
    _step(conns, lambda c: c.next_event())
    _step(conns, lambda c: c.send_error(UnknownSdkToken("refused")))
