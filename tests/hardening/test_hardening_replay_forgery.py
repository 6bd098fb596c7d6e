"""The outside review's attack on version 1, done end to end against version 2.

An on-path attacker with a recording proxy forwards a real device's registration, holds
back the genuine answer, and replays the same request bytes: to the same node (several
times), to a second node on the same store, and to a node after the replay window. In
version 1 every one of those answers was sealed under the genuine answer's (key, nonce),
which gave away the keystream and the Poly1305 key, and let the review forge a sealed
revocation and a sealed configuration. Here:

* every sealed answer the servers sent (the genuine one and every replay's) is sealed under
  a (key, nonce) pair of its own: the test is the device, so it holds the response secret
  and derives each answer's key and nonce from the response nonce on the wire;
* answers with identical plaintexts have different ciphertexts;
* forgeries built the attacker's way (the keystream of a replay's answer, whose plaintext
  the attacker knows, laid over a forged revocation or configuration, with every tag and
  response nonce the attacker has) are refused by the device's client core (``BadSeal``),
  which never reports "revoked"; the endpoint stays active and registers again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kaa_wire import (
    BadSeal,
    ErrorCode,
    MessageType,
    OperationsNode,
    RegisterClient,
    RegistrationStatus,
    _crypto,
)
from kaa_wire._codec import decode_error, decode_registration_result, encode_registration_result
from kaa_wire._connection import error_body
from kaa_wire._constants import AEAD_TAG_SIZE, HEADER_SIZE, RESPONSE_NONCE_SIZE, FrameFlag
from kaa_wire._errors import RevokedEndpoint
from tests.hardening.faultproxy import Carried, FaultProxy
from tests.hardening.tools import split_frames
from tests.servers.servers_harness import (
    Endpoint,
    MainServer,
    control_json,
    exchange,
    start_main,
    start_operations,
    top_nodes,
)

pytestmark = pytest.mark.security

PROFILE = b'{"model":"t1000","fw":"1.0.4"}'
SAME_NODE_REPLAYS = 5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainServer]:
    data = tmp_path_factory.mktemp("replay-forgery") / "data"
    main = start_main(data)
    yield main
    assert main.process.stop() == 0, main.process.logs()


@dataclasses.dataclass(frozen=True)
class Sealed:
    """One sealed answer as the path saw it."""

    where: str
    frame: bytes

    @property
    def header(self) -> bytes:
        return self.frame[:HEADER_SIZE]

    @property
    def response_nonce(self) -> bytes:
        return self.frame[HEADER_SIZE : HEADER_SIZE + RESPONSE_NONCE_SIZE]

    @property
    def ciphertext(self) -> bytes:
        return self.frame[HEADER_SIZE + RESPONSE_NONCE_SIZE : -AEAD_TAG_SIZE]

    @property
    def tag(self) -> bytes:
        return self.frame[-AEAD_TAG_SIZE:]


def _sealed(where: str, record: Carried) -> Sealed:
    (frame,) = split_frames(bytes(record.answer))
    assert frame[1] == MessageType.REGISTER_RESPONSE or frame[2] & FrameFlag.SEALED, (
        where,
        frame[:8].hex(),
    )
    return Sealed(where, frame)


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=False))


def _device_opens(client: RegisterClient, frame: bytes) -> Any:
    """What the waiting device makes of ``frame``: the result, or the exception raised."""
    client.receive_data(frame)
    client.receive_data(b"")
    try:
        return client.next_event()
    except Exception as exc:  # the verdict is what the test checks
        return exc


def test_replays_never_reuse_a_key_and_nonce_and_forged_answers_are_refused(
    server: MainServer,
) -> None:
    short, short_port = start_operations(
        server.data, "--replay-window-s", "1", "--priority", "1", name="short-window"
    )
    try:
        endpoint = Endpoint(server.sdk, _crypto.generate_ed25519_key())
        node = top_nodes(endpoint.resolve())[0]
        ephemeral = _crypto.generate_x25519_key()
        timestamp = endpoint.timestamp_ms()

        def device() -> RegisterClient:
            """The device in the state of its one request, waiting for the answer."""
            client = endpoint.client(node, PROFILE, timestamp_ms=timestamp, ephemeral_key=ephemeral)
            client.send_request()
            return client

        # The device's one request; every copy below is these very bytes.
        waiting = endpoint.client(node, PROFILE, timestamp_ms=timestamp, ephemeral_key=ephemeral)
        request = waiting.send_request()
        response_secret = _crypto.client_session(node.kex_public_key, ephemeral).response_secret

        answers: list[Sealed] = []
        held_back = b""  # what the attacker lets through: nothing
        with FaultProxy((node.host, node.port), "tamper", tamper=lambda _: held_back) as proxy:
            # The genuine exchange, through the attacker's proxy; the device gets nothing.
            assert exchange("127.0.0.1", proxy.port, request) == b""
            # The same bytes again, to the same node, on new connections.
            for _ in range(SAME_NODE_REPLAYS):
                exchange("127.0.0.1", proxy.port, request)
            deadline = time.monotonic() + 10
            while not all(r.done for r in proxy.carried) and time.monotonic() < deadline:
                time.sleep(0.01)
            records = list(proxy.carried)
        assert len(records) == 1 + SAME_NODE_REPLAYS
        answers.append(_sealed("genuine", records[0]))
        answers += [_sealed(f"same node #{i}", r) for i, r in enumerate(records[1:])]
        # To a second node on the same store, inside its window...
        second = dataclasses.replace(node, port=short_port)
        answers.append(Sealed("second node", exchange(second.host, second.port, request)))
        # ...and after it (the short node's window is 1 s).
        time.sleep(1.5)
        answers.append(Sealed("after the window", exchange(second.host, second.port, request)))

        # The device (the test) opens each one: they are all the server's, to this request.
        opened = {
            a.where: _crypto.open_answer(response_secret, a.frame[HEADER_SIZE:], a.header)
            for a in answers
        }
        genuine = decode_registration_result(opened["genuine"])
        assert genuine.status == RegistrationStatus.NEW
        codes = {
            a.where: ErrorCode(decode_error(opened[a.where]).code).name for a in answers[1:]
        }
        assert codes == {
            **{f"same node #{i}": "REPLAYED_REQUEST" for i in range(SAME_NODE_REPLAYS)},
            "second node": "REPLAYED_REQUEST",
            "after the window": "STALE_REQUEST",
        }

        # No (key, nonce) twice, across connections, nodes and the window.
        pairs = [_crypto.answer_key(response_secret, a.response_nonce) for a in answers]
        assert len(set(pairs)) == len(answers)
        assert len({a.response_nonce for a in answers}) == len(answers)
        # Identical plaintexts (the same-node replays' refusals) give different ciphertexts.
        replays = answers[1 : 1 + SAME_NODE_REPLAYS]
        assert len({opened[a.where] for a in replays}) == 1
        assert len({a.ciphertext for a in replays}) == SAME_NODE_REPLAYS
        # Every sealed refusal has one length, whatever its code.
        assert len({len(a.frame) for a in answers[1:]}) == 1

        # The attacker's forgeries. It knows each refusal's plaintext (the code and the fixed
        # message format are public), so it has each refusal's keystream. In version 1 that
        # keystream was also the genuine answer's; it lays it over a forged revocation.
        forged_revocation = error_body(RevokedEndpoint("endpoint revoked"), sealed=True)
        forged_config = encode_registration_result(
            dataclasses.replace(
                genuine, config=b'{"evil":1}', config_version=999, reconnect_after_s=2**32 - 1
            )
        )
        forgeries: list[bytes] = []
        for replay in answers[1:]:
            keystream = _xor(replay.ciphertext, opened[replay.where])
            for nonce_source in (answers[0], replay):
                for tag_source in (answers[0], replay):
                    body = (
                        nonce_source.response_nonce
                        + _xor(forged_revocation, keystream)
                        + tag_source.tag
                    )
                    forgeries.append(replay.header + body)
            # A forged configuration: the genuine answer's bytes with the forged result
            # XORed in where the keystream reaches (the attacker's best guess).
            delta = _xor(opened["genuine"], forged_config)
            body = bytearray(answers[0].frame[HEADER_SIZE:])
            start = RESPONSE_NONCE_SIZE
            for i, d in enumerate(delta[: len(keystream)]):
                body[start + i] ^= d
            forgeries.append(answers[0].header + bytes(body))
        for forged in forgeries:
            verdict = _device_opens(device(), forged)
            assert isinstance(verdict, BadSeal), verdict
            assert not isinstance(verdict, RevokedEndpoint)

        # The genuine answer, had it been let through, opens for the device; the endpoint is
        # active, and registers again.
        verdict = _device_opens(device(), answers[0].frame)
        assert verdict.result.endpoint_id == endpoint.endpoint_id
        shown = control_json(server.data, "endpoint", "show", endpoint.endpoint_id.hex())
        assert shown["status"] == "active"
        assert endpoint.register(PROFILE, node=node).status == RegistrationStatus.EXISTING
    finally:
        assert short.stop() == 0, short.logs()


def test_the_sealed_answer_of_every_node_differs_for_one_request(server: MainServer) -> None:
    """Two nodes sharing the node key answer one request: no shared (key, nonce)."""
    second, second_port = start_operations(server.data, "--priority", "1", name="second")
    try:
        endpoint = Endpoint(server.sdk, _crypto.generate_ed25519_key())
        node: OperationsNode = top_nodes(endpoint.resolve())[0]
        ephemeral = _crypto.generate_x25519_key()
        client = endpoint.client(node, PROFILE, ephemeral_key=ephemeral)
        request = client.send_request()
        secret = _crypto.client_session(node.kex_public_key, ephemeral).response_secret
        frames = [exchange(node.host, port, request) for port in (second_port, node.port)]
        nonces = [frame[HEADER_SIZE : HEADER_SIZE + RESPONSE_NONCE_SIZE] for frame in frames]
        assert nonces[0] != nonces[1]
        assert _crypto.answer_key(secret, nonces[0]) != _crypto.answer_key(secret, nonces[1])
    finally:
        assert second.stop() == 0, second.logs()
