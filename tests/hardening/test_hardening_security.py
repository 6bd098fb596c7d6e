"""Forgery, tampering, replay and downgrade against a real ``python -m servers``, over
real sockets; each refused with its own error code, and nothing of it written.

What tests/servers/test_servers_flow.py already refuses over the wire (a wrong SDK token,
an unknown key hash, bytes replayed on the same node, stale timestamps, revocation, a
resolution checked against the wrong key) is marked ``security`` there and not repeated.
Here: proofs of possession forged five ways, a degenerate RSA key, sealed payloads
tampered with byte by byte, a stolen SDK token of another application, a capture replayed
to another node inside and outside its window, downgrades of every version and algorithm
field, resolution answers rewritten on the path (the client library refuses each and
moves on), a tampered registration answer, and no secret in the debug logs of it all.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from client import Connected, Device
from kaa_wire import (
    BadSeal,
    BadSignature,
    ErrorCode,
    MessageType,
    OperationsNode,
    RegistrationStatus,
    ReplayedRequest,
    StaleRequest,
    UnsupportedAlgorithm,
    _codec,
    _crypto,
)
from kaa_wire._constants import PROTOCOL_VERSION, REGISTER_SIGNATURE_CONTEXT
from kaa_wire.sdk_config import BootstrapServer, SdkConfig
from tests.conftest import load_vectors
from tests.hardening.faultproxy import FaultProxy
from tests.hardening.tools import plain_error_code, probe, request_frame, split_frames
from tests.parity import rsa_spki
from tests.servers.servers_harness import (
    FAST_RETRIES,
    Endpoint,
    MainServer,
    control,
    control_json,
    exchange,
    send_registration,
    start_main,
    start_operations,
    top_nodes,
)

pytestmark = pytest.mark.security

PROFILE = b'{"model":"t1000","owner":"secret-owner-51d2","room":"secret-room-7f3a"}'
#: Strings that occur only in the profiles this module sends: none may reach a log.
PROFILE_MARKERS = ("secret-owner-51d2", "secret-room-7f3a", "secret-floor-0b9e")
DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainServer]:
    data = tmp_path_factory.mktemp("hardening-security") / "data"
    main = start_main(data, "--log-json", "--log-level", "debug")
    yield main
    assert main.process.stop() == 0, main.process.logs()


@pytest.fixture(scope="module")
def other_app(server: MainServer) -> SdkConfig:
    """A second application and its SDK token (a token stolen from another product)."""
    app = control_json(server.data, "app", "create", "--name", "other-product")
    token = control_json(server.data, "sdk", "create", app["token"])["sdk_token"]
    return dataclasses.replace(server.sdk, application_token=app["token"], sdk_token=token)


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    pems = load_vectors("keys.json")
    return {name: _crypto.load_private_key(pem.encode()) for name, pem in pems.items()}


# -- a registration built by hand, so that any field can lie ----------------------------------


@dataclasses.dataclass
class Crafted:
    frame: bytes
    session: _crypto.SessionKeys


def craft(
    node: OperationsNode,
    *,
    sdk_token: str,
    signing_key: Any,
    key_field: bytes,
    timestamp_ms: int,
    key_is_hash: bool = False,
    profile: bytes = PROFILE,
    signature_algorithm: int | None = None,
    context_node_key: bytes | None = None,
    context_ephemeral: bytes | None = None,
    sign: Callable[[bytes], bytes] | None = None,
    kex: int = 1,
    aead: int = 1,
    version: int = PROTOCOL_VERSION,
) -> Crafted:
    """A REGISTER_REQUEST laid out as RegisterClient does, with every input overridable:
    the key field, what signs and over which context, the algorithms and the version."""
    session = _crypto.client_session(node.kex_public_key)
    algorithm = signature_algorithm
    if algorithm is None:
        algorithm = _crypto.signature_algorithm_of(signing_key)
    signed_part = _codec.registration_signed_part(
        key_is_hash=key_is_hash,
        signature_algorithm=algorithm,
        timestamp_ms=timestamp_ms,
        sdk_token=sdk_token,
        key=key_field,
        profile=profile,
    )
    context = (
        REGISTER_SIGNATURE_CONTEXT
        + (context_node_key or node.kex_public_key)
        + (context_ephemeral or session.ephemeral_public_key)
    )
    signature = (sign or (lambda data: _crypto.sign(signing_key, data)))(context + signed_part)
    plaintext = _codec.registration_payload_bytes(signed_part, signature)
    head = bytes([kex, aead]) + session.ephemeral_public_key
    header = bytes([version, MessageType.REGISTER_REQUEST, 0])
    header += (len(head) + len(plaintext) + 16).to_bytes(3, "big")
    return Crafted(header + head + _crypto.seal(session.request, plaintext, header + head), session)


def outcome(crafted: Crafted, answer: bytes) -> tuple[str, bool]:
    """(what the server said, whether it was sealed): an error code name, or a status."""
    (frame,) = split_frames(answer)
    header, body = frame[:6], frame[6:]
    if frame[1] == MessageType.REGISTER_RESPONSE:
        result = _codec.decode_registration_result(
            _crypto.open_answer(crafted.session.response_secret, body, header)
        )
        return RegistrationStatus(result.status).name, True
    if frame[2] & 1:
        error = _codec.decode_error(
            _crypto.open_answer(crafted.session.response_secret, body, header)
        )
        return ErrorCode(error.code).name, True
    return plain_error_code(frame).name, False


def send(crafted: Crafted, node: OperationsNode) -> tuple[str, bool]:
    return outcome(crafted, exchange(node.host, node.port, crafted.frame))


def _stored(server: MainServer, endpoint_id: bytes) -> dict[str, Any]:
    shown: dict[str, Any] = control_json(server.data, "endpoint", "show", endpoint_id.hex())
    return shown


def _victim(server: MainServer, key: Any) -> tuple[Endpoint, OperationsNode]:
    """A device registered with ``key`` (NEW or EXISTING), and its node."""
    victim = Endpoint(server.sdk, key)
    node = top_nodes(victim.resolve())[0]
    assert victim.register(PROFILE, node=node).status in (
        RegistrationStatus.NEW,
        RegistrationStatus.EXISTING,
        RegistrationStatus.PROFILE_UPDATED,
    )
    return victim, node


# -- forged proofs of possession ---------------------------------------------------------------

FORGERIES = ["other-key-signs", "victim-id-other-key", "flipped-signature", "other-node", "lifted"]


@pytest.mark.parametrize("forgery", FORGERIES)
def test_forged_proofs_of_possession_are_bad_signature(
    server: MainServer, keys: dict[str, Any], forgery: str
) -> None:
    """An attacker who knows a registered device's public key (it is no secret) but not its
    private key cannot register as it: not with the full key, not by its id, not with a
    signature made for another node or lifted from a captured request into a new envelope.
    Every attempt is a sealed BAD_SIGNATURE and the victim's row is not touched."""
    victim, node = _victim(server, keys["endpoint_rsa"])
    victim_der = _crypto.public_key_der(keys["endpoint_rsa"])
    before = _stored(server, victim.endpoint_id)
    attacker = keys["other_rsa"]
    common: dict[str, Any] = {
        "sdk_token": server.sdk.sdk_token,
        "timestamp_ms": victim.timestamp_ms(),
    }
    if forgery == "other-key-signs":
        crafted = craft(node, signing_key=attacker, key_field=victim_der, **common)
    elif forgery == "victim-id-other-key":
        crafted = craft(
            node, signing_key=attacker, key_field=victim.endpoint_id, key_is_hash=True, **common
        )
    elif forgery == "flipped-signature":

        def flipped(data: bytes) -> bytes:
            signature = bytearray(_crypto.sign(keys["endpoint_rsa"], data))
            signature[100] ^= 0x10
            return bytes(signature)

        crafted = craft(
            node, signing_key=keys["endpoint_rsa"], key_field=victim_der, sign=flipped, **common
        )
    elif forgery == "other-node":  # a valid proof, for another deployment's node key
        other_node_key = _crypto.x25519_public_bytes(x25519.X25519PrivateKey.generate())
        crafted = craft(
            node,
            signing_key=keys["endpoint_rsa"],
            key_field=victim_der,
            context_node_key=other_node_key,
            **common,
        )
    else:  # the victim's real proof, for the envelope it was captured in, re-sealed
        captured = _crypto.x25519_public_bytes(x25519.X25519PrivateKey.generate())
        crafted = craft(
            node,
            signing_key=keys["endpoint_rsa"],
            key_field=victim_der,
            context_ephemeral=captured,
            **common,
        )
    assert send(crafted, node) == ("BAD_SIGNATURE", True)
    after = _stored(server, victim.endpoint_id)
    assert after["last_request_ms"] == before["last_request_ms"]
    assert after["profile"] == before["profile"]


def test_a_degenerate_rsa_key_cannot_forge_a_proof(server: MainServer) -> None:
    """With e = 1 every PKCS#1-padded digest is its own signature: anyone could 'prove'
    possession. The server refuses the key itself (sealed MALFORMED_FRAME), stores nothing."""
    node = top_nodes(Endpoint(server.sdk, _crypto.generate_ed25519_key()).resolve())[0]
    modulus = 2**2047 + 2**1000 + 1  # odd, 2048 bits
    der = rsa_spki(modulus, 1)

    def padded_digest(data: bytes) -> bytes:
        digest = DIGEST_INFO_SHA256 + hashlib.sha256(data).digest()
        return b"\x00\x01" + b"\xff" * (256 - 3 - len(digest)) + b"\x00" + digest

    crafted = craft(
        node,
        sdk_token=server.sdk.sdk_token,
        signing_key=None,
        key_field=der,
        signature_algorithm=1,
        timestamp_ms=int(time.time() * 1000),
        sign=padded_digest,
    )
    assert send(crafted, node) == ("MALFORMED_FRAME", True)
    endpoint_id = _crypto.endpoint_id(der).hex()
    shown = control(server.data, "endpoint", "show", endpoint_id, check=False)
    assert shown.returncode != 0  # never stored


# -- tampered sealed payloads ------------------------------------------------------------------


def test_tampered_sealed_payloads_are_bad_seal(server: MainServer) -> None:
    """One bit flipped anywhere the AEAD covers (the ephemeral key, the ciphertext, the
    tag) or the request cut short of its tag: a plain BAD_SEAL (the server cannot seal to
    a key it could not agree on), and nothing stored. Flips in the header or algorithm
    bytes are framing and downgrade refusals (below)."""
    endpoint = Endpoint(server.sdk, _crypto.generate_ed25519_key())
    node = top_nodes(endpoint.resolve())[0]
    client = endpoint.client(node, PROFILE)
    request = client.send_request()
    positions = [8, 20, 39, 40, 41, len(request) // 2, len(request) - 17, len(request) - 1]
    for position in positions:
        for bit in (0x01, 0x80):
            tampered = bytearray(request)
            tampered[position] ^= bit
            answer = exchange(node.host, node.port, bytes(tampered))
            assert plain_error_code(answer) == ErrorCode.BAD_SEAL, (position, bit)
    # The tag itself cut off, the header's length matching: no tag, no trust.
    body = request[6:-16]
    short = bytes([PROTOCOL_VERSION, MessageType.REGISTER_REQUEST, 0])
    short += len(body).to_bytes(3, "big") + body
    assert plain_error_code(exchange(node.host, node.port, short)) == ErrorCode.BAD_SEAL
    shown = control(server.data, "endpoint", "show", endpoint.endpoint_id.hex(), check=False)
    assert shown.returncode != 0
    # The untouched request still works: nothing above burnt its timestamp.
    assert send_registration(client, request).status == RegistrationStatus.NEW


def test_a_tampered_registration_answer_is_refused_by_the_client(server: MainServer) -> None:
    endpoint = Endpoint(server.sdk, _crypto.generate_ed25519_key())
    node = top_nodes(endpoint.resolve())[0]
    client = endpoint.client(node, PROFILE)
    answer = bytearray(exchange(node.host, node.port, client.send_request()))
    answer[10] ^= 0x04  # inside the sealed result (status, endpoint id...)
    client.receive_data(bytes(answer))
    client.receive_data(b"")
    with pytest.raises(BadSeal):
        client.next_event()


# -- a stolen SDK token, and replays across nodes ----------------------------------------------


def test_an_sdk_token_of_another_application_cannot_move_an_endpoint(
    server: MainServer, other_app: SdkConfig, keys: dict[str, Any]
) -> None:
    """A stolen SDK token of application B, used with a device of application A (proved
    with the device's own key): sealed UNKNOWN_SDK_TOKEN; the device stays in A."""
    victim, node = _victim(server, keys["endpoint_ed25519"])
    crafted = craft(
        node,
        sdk_token=other_app.sdk_token,
        signing_key=keys["endpoint_ed25519"],
        key_field=_crypto.public_key_der(keys["endpoint_ed25519"]),
        timestamp_ms=victim.timestamp_ms(),
    )
    assert send(crafted, node) == ("UNKNOWN_SDK_TOKEN", True)
    assert _stored(server, victim.endpoint_id)["application"] == server.sdk.application_token


def test_a_capture_replayed_to_another_node_inside_and_outside_its_window(
    server: MainServer,
) -> None:
    """A registration captured on one node and replayed to a second node on the same
    store: REPLAYED_REQUEST inside the window (the last timestamp is in the row, shared by
    every node), STALE_REQUEST once outside it; both sealed, readable only by the device."""
    short, short_port = start_operations(
        server.data, "--replay-window-s", "1", "--priority", "1", name="short-window"
    )
    try:
        endpoint = Endpoint(server.sdk, _crypto.generate_ed25519_key())
        main_node = top_nodes(endpoint.resolve())[0]
        short_node = dataclasses.replace(main_node, port=short_port)
        ephemeral = _crypto.generate_x25519_key()
        timestamp = endpoint.timestamp_ms()
        captured = endpoint.client(
            main_node, PROFILE, timestamp_ms=timestamp, ephemeral_key=ephemeral
        ).send_request()

        def deliver(node: OperationsNode) -> Any:
            """The captured bytes to ``node``, opened by the device that made them."""
            device = endpoint.client(node, PROFILE, timestamp_ms=timestamp, ephemeral_key=ephemeral)
            assert device.send_request() == captured  # same inputs, same bytes
            return send_registration(device, captured)

        assert deliver(main_node).status == RegistrationStatus.NEW
        with pytest.raises(ReplayedRequest) as inside:
            deliver(short_node)
        assert inside.value.sealed
        time.sleep(1.5)  # now the capture is older than the short node's 1 s window
        with pytest.raises(StaleRequest) as outside:
            deliver(short_node)
        assert outside.value.sealed
        with pytest.raises(ReplayedRequest):
            deliver(main_node)  # still inside the main node's 120 s window
    finally:
        assert short.stop() == 0, short.logs()


# -- downgrades: versions and algorithms ---------------------------------------------------


@pytest.mark.parametrize("version", [0, 1, 3, 0x7F, 0xFF])
@pytest.mark.parametrize("service", ["bootstrap", "operations"])
def test_unknown_protocol_versions_are_refused(
    server: MainServer, service: str, version: int
) -> None:
    """A valid request with another version byte: UNSUPPORTED_VERSION, never a fallback."""
    endpoint = Endpoint(server.sdk, _crypto.generate_ed25519_key())
    node = top_nodes(endpoint.resolve())[0]
    request = request_frame(server.sdk, service, endpoint, node, PROFILE)
    answer = exchange(
        "127.0.0.1", server.listeners[f"{service}_port"], bytes([version]) + request[1:]
    )
    assert plain_error_code(answer) == ErrorCode.UNSUPPORTED_VERSION


ALGORITHM_DOWNGRADES = [
    ("kex=0", {"kex": 0}, False),
    ("kex=2", {"kex": 2}, False),
    ("kex=255", {"kex": 255}, False),
    ("aead=0", {"aead": 0}, False),
    ("aead=2", {"aead": 2}, False),
    ("aead=255", {"aead": 255}, False),
    ("signature=0", {"signature_algorithm": 0}, True),
    ("signature=4", {"signature_algorithm": 4}, True),
    ("p256-id-on-rsa-key", {"signature_algorithm": 3}, True),
    ("ed25519-id-on-rsa-key", {"signature_algorithm": 2}, True),
    ("rsa-1024", {"key": "rsa1024"}, True),
    ("rsa-id-on-p256-key", {"key": "p256"}, True),
    ("p-384", {"key": "p384"}, True),
]


@pytest.mark.parametrize(
    ("change", "sealed"),
    [pytest.param(c, s, id=name) for name, c, s in ALGORITHM_DOWNGRADES],
)
def test_unknown_or_weak_algorithms_are_refused(
    server: MainServer, keys: dict[str, Any], change: dict[str, Any], sealed: bool
) -> None:
    """Every algorithm field set to something unknown, a key id that does not fit the key,
    a key too weak or of another type: UNSUPPORTED_ALGORITHM. Envelope algorithms are
    refused before opening (plain); payload ones after (sealed)."""
    node = top_nodes(Endpoint(server.sdk, _crypto.generate_ed25519_key()).resolve())[0]
    key = keys["endpoint_rsa"]
    options: dict[str, Any] = dict(change)
    kind = options.pop("key", None)
    if kind == "rsa1024":
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(65537, 1024)
        options["signature_algorithm"] = 1
    elif kind == "p256":
        key = ec.generate_private_key(ec.SECP256R1())
        options["signature_algorithm"] = 1
    elif kind == "p384":
        key = ec.generate_private_key(ec.SECP384R1())
        options["signature_algorithm"] = 3
        options["sign"] = lambda data: b"\x00" * 64
    crafted = craft(
        node,
        sdk_token=server.sdk.sdk_token,
        signing_key=key,
        key_field=_crypto.public_key_der(key),
        timestamp_ms=Endpoint(server.sdk, key).timestamp_ms(),
        **options,
    )
    assert send(crafted, node) == ("UNSUPPORTED_ALGORITHM", sealed)


# -- resolution answers rewritten on the path ---------------------------------------------------


#: Offsets in a RESOLVE_RESPONSE frame (docs/protocol.md 4.2): header 6, nonce 16, server
#: time 8, validity 4, key generation 4, signature algorithm 1, node count 1, then the
#: first node record.
_NONCE, _TIME, _VALID, _GENERATION, _ALGORITHM, _NODE = 6, 22, 30, 34, 38, 40
_PORT, _KEX_KEY = _NODE + 7, _NODE + 10


def _patch(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value) :]


ATTACKER_X25519 = _crypto.x25519_public_bytes(x25519.X25519PrivateKey.generate())
RESOLUTION_TAMPERING: dict[str, tuple[Callable[[bytes], bytes], type[Exception]]] = {
    "redirect-node": (lambda f: _patch(f, _PORT, (1).to_bytes(2, "big")), BadSignature),
    "attacker-node-key": (lambda f: _patch(f, _KEX_KEY, ATTACKER_X25519), BadSignature),
    "old-server-time": (lambda f: _patch(f, _TIME, (10**12).to_bytes(8, "big")), BadSignature),
    "longer-validity": (lambda f: _patch(f, _VALID, b"\xff" * 4), BadSignature),
    "other-nonce": (lambda f: _patch(f, _NONCE, bytes(16)), BadSignature),
    "downgrade-algorithm": (lambda f: _patch(f, _ALGORITHM, b"\x02"), UnsupportedAlgorithm),
    "claim-a-later-key": (lambda f: _patch(f, _GENERATION, (2).to_bytes(4, "big")), BadSignature),
}


@pytest.mark.parametrize("tampering", sorted(RESOLUTION_TAMPERING))
def test_rewritten_resolution_answers_are_refused_and_the_client_moves_on(
    server: MainServer, tmp_path: Path, tampering: str
) -> None:
    """The client library, with an on-path attacker in front of its first Bootstrap who
    rewrites a signed field of the answer: the client refuses the answer (the signature
    covers every field; the algorithm is the build-time key's), uses nothing of it, moves
    on to the next Bootstrap and registers."""
    rewrite, refusal = RESOLUTION_TAMPERING[tampering]
    real = server.sdk.bootstrap_servers[0]
    with FaultProxy((real.host, real.port), "tamper", tamper=rewrite) as proxy:
        sdk = dataclasses.replace(
            server.sdk,
            bootstrap_servers=(
                BootstrapServer("127.0.0.1", proxy.port, real.public_key_pem),
                real,
            ),
        )
        seed = next(s for s in range(1000) if random.Random(s).randrange(2) == 0)
        with Device.open(
            tmp_path / "device", sdk, policy=FAST_RETRIES, rng=random.Random(seed)
        ) as dev:
            result = dev.register(PROFILE)
        assert len(proxy.carried) == 1
    assert isinstance(result, Connected), result
    assert result.status == "new"
    steps = [(a.stage, a.port, type(a.cause)) for a in result.attempts]
    assert steps == [
        ("resolve", proxy.port, refusal),
        ("resolve", real.port, type(None)),
        ("register", server.listeners["operations_port"], type(None)),
    ]


# -- no secret in the logs ------------------------------------------------------------------


def _pem_lines(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


def _encodings(raw: bytes) -> list[str]:
    """How raw bytes could appear in a log: hex (either case), base64, and a 24-byte window
    of each from the middle (a truncated dump)."""
    middle = raw[len(raw) // 2 - 12 : len(raw) // 2 + 12] if len(raw) > 24 else raw
    forms = []
    for chunk in {raw, middle}:
        forms += [chunk.hex(), chunk.hex().upper(), base64.b64encode(chunk).decode()]
        forms.append(base64.urlsafe_b64encode(chunk).decode().rstrip("="))
    return forms


def test_no_secret_reaches_the_logs(
    server: MainServer, other_app: SdkConfig, keys: dict[str, Any], tmp_path: Path
) -> None:
    """A whole flow at debug level with JSON logs (first boot, reconnect, profile update,
    and a refusal of every kind this module makes), then a search of the server's logs and
    output for tokens, private-key PEM lines, raw key bytes and profile bodies."""
    device_dir = tmp_path / "device"
    with Device.open(device_dir, server.sdk, policy=FAST_RETRIES) as device:
        assert device.register(PROFILE).status == "new"
        assert device.register(PROFILE).status == "existing"
        updated = PROFILE.replace(b"secret-room-7f3a", b"secret-floor-0b9e")
        assert device.register(updated).status == "profile_updated"
    # One refusal of each kind, so that every error path logs.
    test_forged_proofs_of_possession_are_bad_signature(server, keys, "other-key-signs")
    test_tampered_sealed_payloads_are_bad_seal(server)
    test_an_sdk_token_of_another_application_cannot_move_an_endpoint(server, other_app, keys)
    test_a_degenerate_rsa_key_cannot_forge_a_proof(server)
    test_unknown_protocol_versions_are_refused(server, "operations", 1)
    test_unknown_or_weak_algorithms_are_refused(server, keys, {"signature_algorithm": 3}, True)
    endpoint = Endpoint(server.sdk, keys["endpoint_rsa"])
    for wrong in ({"sdk_token": "not-a-token-of-this-server"}, {"reconnect": True}):
        with pytest.raises(Exception):  # noqa: B017 - UNKNOWN_SDK_TOKEN / UNKNOWN_KEY_HASH
            Endpoint(server.sdk, _crypto.generate_ed25519_key()).register(PROFILE, **wrong)
    endpoint.register(PROFILE)
    probe(server.sdk)

    logs = server.process.logs() + server.process.output()
    events = [json.loads(line) for line in server.process.logs().splitlines()]
    codes = {e.get("code") for e in events if e["event"] == "refused"}
    expected = {
        "BAD_SIGNATURE", "BAD_SEAL", "UNKNOWN_SDK_TOKEN", "MALFORMED_FRAME",
        "UNSUPPORTED_VERSION", "UNSUPPORTED_ALGORITHM", "UNKNOWN_KEY_HASH",
    }  # fmt: skip
    assert expected <= codes, codes  # the failures did log
    statuses = {e.get("status") for e in events if e["event"] == "registered"}
    assert {"NEW", "EXISTING", "PROFILE_UPDATED"} <= statuses

    secrets: list[str] = [
        server.sdk.sdk_token,
        server.sdk.application_token,
        other_app.sdk_token,
        other_app.application_token,
        *PROFILE_MARKERS,
        "PRIVATE KEY",
    ]
    for pem_file in ("bootstrap.key", "operations.key"):
        secrets += _pem_lines((server.data / pem_file).read_bytes())
    secrets += _pem_lines((device_dir / "key.private").read_bytes())
    for key in (keys["endpoint_rsa"], keys["other_rsa"], keys["endpoint_ed25519"]):
        secrets += _pem_lines(_crypto.private_key_pem(key))
        secrets += _encodings(_crypto.public_key_der(key))
    operations_key = _crypto.load_private_key((server.data / "operations.key").read_bytes())
    assert isinstance(operations_key, x25519.X25519PrivateKey)
    secrets += _encodings(operations_key.private_bytes_raw())
    secrets += _encodings(_crypto.x25519_public_bytes(operations_key))
    device_key = _crypto.load_private_key((device_dir / "key.private").read_bytes())
    assert not isinstance(device_key, x25519.X25519PrivateKey)
    secrets += _encodings(_crypto.public_key_der(device_key))
    for token in (server.sdk.sdk_token, other_app.sdk_token):  # as stored: SHA-256
        secrets += _encodings(hashlib.sha256(token.encode()).digest())
    leaks = [s for s in secrets if len(s) >= 8 and s in logs]
    assert not leaks, f"secrets in the logs: {leaks[:5]}"
    # Endpoint ids are logged (they are public); nothing else that looks like key bytes.
    long_hex = set(re.findall(r"[0-9a-fA-F]{48,}", logs))
    assert not long_hex, long_hex
