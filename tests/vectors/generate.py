"""Writes the shared test vectors in this folder from fixed keys and fixed inputs.

Run ``python tests/vectors/generate.py`` after a deliberate change to the wire format (it
also rewrites the hex examples of docs/protocol.md); the
output is deterministic (RSA PKCS#1 v1.5 and Ed25519 signatures are, ECDSA P-256 ones are
with RFC 6979 nonces, which ``kaa_wire._crypto.sign`` uses when the OpenSSL under
``cryptography`` has them (3.2 and later; the pip wheels have), and every nonce, response nonce
and ephemeral key here is fixed), so an unchanged format rewrites identical files. The keys
live in keys.json and are made once; they are test keys and protect nothing.
exchange.json states every input of its frames under "inputs". The vectors follow the
protocol's own rules: each registration has its own ephemeral key and a later timestamp
than the one before, and each sealed answer its own response nonce. A real server draws
response nonces at random; fixing them here is what makes the frames reproducible.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import x25519

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from kaa_wire import _codec, _crypto  # noqa: E402
from kaa_wire._connection import (  # noqa: E402
    BootstrapServerConnection,
    OperationsServerConnection,
    RegisterClient,
    ResolveClient,
    error_body,
    sealed_frame,
)
from kaa_wire._constants import (  # noqa: E402
    PROTOCOL_VERSION,
    REGISTER_SIGNATURE_CONTEXT,
    FrameFlag,
    MessageType,
)
from kaa_wire._errors import KaaWireError, ReplayedRequest, RevokedEndpoint  # noqa: E402
from kaa_wire._framing import Framer, encode_frame  # noqa: E402
from kaa_wire._messages import OperationsNode, RegistrationResult, Topic  # noqa: E402
from kaa_wire._opener import RegistrationOpener  # noqa: E402
from kaa_wire._registration import RegistrationVerifier, parse_registration_payload  # noqa: E402
from kaa_wire._rotation import certify  # noqa: E402

SERVER_TIME_MS = 1_795_000_000_000  # 2026-11-18T09:46:40Z
APP_TOKEN = "demo-app-9ZkQ2wX"
SDK_TOKEN = "sdk-3vJ8pLqR0tYc2NfB6dWe"
NONCE = bytes(range(16))
#: The endpoint's timestamps: the registration, then the reconnect, strictly later.
REGISTER_TIMESTAMP_MS = SERVER_TIME_MS + 120
RECONNECT_TIMESTAMP_MS = SERVER_TIME_MS + 60_120
#: The server's response nonces: one per sealed answer, never repeated.
RESPONSE_NONCE = bytes(range(0x20, 0x40))
ERROR_RESPONSE_NONCE = bytes(range(0x40, 0x60))
V = bytes([PROTOCOL_VERSION])
#: Key generation 1 (the first Bootstrap key) as the 4 bytes of a RESOLVE_REQUEST.
GENERATION_1 = (1).to_bytes(4, "big")
PROFILE = json.dumps(
    {
        "model": "thermo-9",
        "serial": "SN-00042-A7",
        "firmware": "2.4.1",
        "location": {"building": "B7", "floor": 3, "room": "3.14"},
        "capabilities": ["temperature", "humidity", "co2"],
        "battery": 87,
        "tags": ["lab", "pilot"],
    },
    separators=(",", ":"),
).encode()


def _keys() -> dict[str, Any]:
    path = HERE / "keys.json"
    if path.exists():
        pems = json.loads(path.read_text())
    else:
        pems = {
            "bootstrap_rsa": _crypto.private_key_pem(_crypto.generate_rsa_key()).decode(),
            "bootstrap_ed25519": _crypto.private_key_pem(_crypto.generate_ed25519_key()).decode(),
            "endpoint_rsa": _crypto.private_key_pem(_crypto.generate_rsa_key()).decode(),
            "endpoint_ed25519": _crypto.private_key_pem(_crypto.generate_ed25519_key()).decode(),
            "other_rsa": _crypto.private_key_pem(_crypto.generate_rsa_key()).decode(),
            "operations_x25519": _crypto.private_key_pem(_crypto.generate_x25519_key()).decode(),
            "ephemeral_x25519": _crypto.private_key_pem(_crypto.generate_x25519_key()).decode(),
        }
    # Added later: the reconnect's own ephemeral key (an endpoint never reuses one).
    if "ephemeral_x25519_reconnect" not in pems:
        pems["ephemeral_x25519_reconnect"] = _crypto.private_key_pem(
            _crypto.generate_x25519_key()
        ).decode()
    # Added with P-256 endpoint keys (signature algorithm 3), and the ephemeral key of the
    # P-256 registration of the exchange.
    if "endpoint_p256" not in pems:
        pems["endpoint_p256"] = _crypto.private_key_pem(_crypto.generate_p256_key()).decode()
    if "ephemeral_x25519_p256" not in pems:
        pems["ephemeral_x25519_p256"] = _crypto.private_key_pem(
            _crypto.generate_x25519_key()
        ).decode()
    if not path.exists() or json.loads(path.read_text()) != pems:
        path.write_text(json.dumps(pems, indent=2) + "\n")
    return {name: _crypto.load_private_key(pem.encode()) for name, pem in pems.items()}


def _outcome(fn: Any) -> dict[str, Any]:
    try:
        return {"ok": fn()}
    except KaaWireError as exc:
        return {"error": type(exc).__name__}


def framer_outcome(framer_cls: Any, chunks: list[bytes], max_frame_size: int) -> dict[str, Any]:
    """The frames a framer hands out for ``chunks`` fed in turn, and the error that ended
    the stream; the test suite runs every implementation's framer through this too."""
    framer = framer_cls(max_frame_size)
    frames: list[dict[str, Any]] = []
    result: dict[str, Any] = {"frames": frames}
    try:
        for chunk in chunks:
            framer.receive_data(chunk)
            while (frame := framer.next_frame()) is not None:
                frames.append(
                    {"msg_type": frame.msg_type, "flags": frame.flags, "body": frame.body.hex()}
                )
    except KaaWireError as exc:
        result["error"] = type(exc).__name__  # what stays buffered then is of no interest
    else:
        result["buffered"] = framer.buffered
    return result


def frame_vectors(exchange: dict[str, str]) -> list[dict[str, Any]]:
    whole = {
        name: bytes.fromhex(value) for name, value in exchange.items() if name.endswith("_frame")
    }
    cases: list[tuple[str, bytes, int]] = [(name, data, 65536) for name, data in whole.items()]
    resolve = whole["resolve_request_frame"]
    cases += [
        ("empty", b"", 65536),
        ("header only, body pending", resolve[:6], 65536),
        ("truncated body", resolve[:-1], 65536),
        ("two frames back to back", resolve + resolve, 65536),
        ("frame then a partial header", resolve + resolve[:3], 65536),
        ("version 0", b"\x00" + resolve[1:], 65536),
        ("version 1 (retired)", b"\x01" + resolve[1:], 65536),
        ("version 3", b"\x03" + resolve[1:], 65536),
        ("HTTP request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 65536),
        ("unknown type 0x05", V + b"\x05\x00\x00\x00\x00", 65536),
        ("unknown type 0x00", V + b"\x00\x00\x00\x00\x00", 65536),
        ("flags on a request", V + b"\x01\x01" + resolve[3:], 65536),
        ("reserved flag on error", V + b"\x7f\x02\x00\x00\x00", 65536),
        ("sealed flag on error", V + b"\x7f\x01\x00\x00\x10" + bytes(16), 65536),
        ("length over the default limit", V + b"\x03\x00\x00\xff\xfb", 65536),
        ("length at the default limit", V + b"\x03\x00\x00\xff\xfa", 65536),
        ("length at maximum u24", V + b"\x03\x00\xff\xff\xff", 65536),
        ("over a small limit", resolve, 32),
        ("exactly a small limit", resolve, len(resolve)),
        ("empty body", V + b"\x02\x00\x00\x00\x00", 65536),
    ]
    return [
        {
            "name": name,
            "hex": data.hex(),
            "max_frame_size": limit,
            "expect": framer_outcome(Framer, [data], limit),
        }
        for name, data, limit in cases
    ]


def message_vectors(exchange: dict[str, str]) -> list[dict[str, Any]]:
    def describe(data: bytes) -> dict[str, Any]:
        framer = Framer(65536)
        framer.receive_data(data)
        frame = framer.next_frame()
        assert frame is not None
        return _outcome(lambda: _codec.describe_frame(frame))

    request = bytes.fromhex(exchange["resolve_request_frame"])
    response = bytes.fromhex(exchange["resolve_response_frame"])
    rotated = bytes.fromhex(exchange["resolve_response_rotated_frame"])
    error = bytes.fromhex(exchange["error_frame"])
    token = bytes([len(APP_TOKEN)]) + APP_TOKEN.encode()
    head = NONCE + GENERATION_1  # a request body up to its token
    count_at = 6 + 16 + 8 + 4 + 4 + 1  # a response frame's node count
    # The rotated answer: its one certificate's generation, right after the node list.
    rotation_at = len(rotated) - 2 - 64 - (4 + 1 + 2 + 44 + 2 + 256)
    cases = {name: bytes.fromhex(v) for name, v in exchange.items() if name.endswith("_frame")}
    cases.update(
        {
            "resolve request, token length past the body": request[:26] + b"\x40" + request[27:],
            "resolve request, empty token": encode_frame(1, head + b"\x00\x01\x01"),
            "resolve request, non-ASCII token": encode_frame(1, head + b"\x02\xc3\xa9\x01\x01"),
            "resolve request, control character in token": encode_frame(
                1, head + b"\x01\n\x01\x01"
            ),
            "resolve request, trailing byte": encode_frame(1, request[6:] + b"\x00"),
            "resolve request, short nonce": encode_frame(1, NONCE[:8]),
            "resolve request, transports past the body": encode_frame(
                1, request[6:-2] + b"\x05\x01"
            ),
            "resolve request, all-zero nonce": encode_frame(
                1, bytes(16) + GENERATION_1 + token + b"\x01\x01"
            ),
            "resolve request, no transport": encode_frame(1, head + token + b"\x00"),
            "resolve request, key generation 0": encode_frame(
                1, NONCE + bytes(4) + token + b"\x01\x01"
            ),
            "resolve request, unknown transports besides TCP": encode_frame(
                1, head + token + b"\x03\x07\x01\x01"
            ),
            "resolve request, key generation 7": encode_frame(
                1, NONCE + (7).to_bytes(4, "big") + token + b"\x01\x01"
            ),
            "resolve response, truncated signature": encode_frame(2, response[6:-1]),
            "resolve response, node count too high": encode_frame(
                2, response[6:count_at] + bytes([response[count_at] + 1]) + response[count_at + 1 :]
            ),
            "resolve response, rotation of the wrong generation": encode_frame(
                2, rotated[6:rotation_at] + (3).to_bytes(4, "big") + rotated[rotation_at + 4 :]
            ),
            "resolve response, rotation count too high": encode_frame(
                2, rotated[6 : rotation_at - 1] + b"\x02" + rotated[rotation_at:]
            ),
            "register request, too short for a tag": encode_frame(3, bytes(49)),
            "error, message not UTF-8": encode_frame(0x7F, b"\x01\x00\x00\x00\x00\x01\xff"),
            "error, missing retry": encode_frame(0x7F, b"\x01\x00"),
            "error, trailing byte": encode_frame(0x7F, error[6:] + b"\x00"),
        }
    )
    return [
        {"name": name, "hex": data.hex(), "expect": describe(data)} for name, data in cases.items()
    ]


def registration_vectors(keys: dict[str, Any]) -> list[dict[str, Any]]:
    endpoint = keys["endpoint_rsa"]
    der = _crypto.public_key_der(endpoint)
    eid = _crypto.endpoint_id(der)
    context = REGISTER_SIGNATURE_CONTEXT + bytes(range(64))

    def payload(key_is_hash: bool = False, owner: Any = endpoint, **overrides: Any) -> bytes:
        fields = {
            "key_is_hash": key_is_hash,
            "signature_algorithm": _crypto.signature_algorithm_of(owner),
            "timestamp_ms": SERVER_TIME_MS,
            "sdk_token": SDK_TOKEN,
            "key": eid if key_is_hash else _crypto.public_key_der(owner),
            "profile": PROFILE,
        }
        signer = overrides.pop("signer", owner)
        fields.update(overrides)
        signed = _codec.registration_signed_part(**fields)
        return _codec.registration_payload_bytes(signed, _crypto.sign(signer, context + signed))

    good = payload()
    sig_at = len(good) - 256
    flipped_sig = good[:sig_at] + bytes([good[sig_at] ^ 1]) + good[sig_at + 1 :]
    other_der = _crypto.public_key_der(keys["other_rsa"])
    cases: list[tuple[str, bytes, bytes | None]] = [
        ("first registration, RSA-2048", good, None),
        ("reconnect with key hash", payload(key_is_hash=True), der),
        ("reconnect, stored key of another endpoint", payload(key_is_hash=True), other_der),
        ("Ed25519 endpoint key", payload(owner=keys["endpoint_ed25519"]), None),
        ("empty profile", payload(profile=b""), None),
        ("flipped signature bit", flipped_sig, None),
        ("signed by another key", payload(signer=keys["other_rsa"]), None),
        ("algorithm id does not fit the key", payload(signature_algorithm=2), None),
        ("unknown algorithm id", payload(signature_algorithm=9), None),
        *p256_registration_cases(payload, keys["endpoint_p256"]),
        ("unknown flag bit", b"\x02" + good[1:], None),
        ("key is not DER", payload(key=b"\x30\x03\x02\x01\x01"), None),
        ("truncated by one byte", good[:-1], None),
        ("trailing byte", good + b"\x00", None),
        ("empty", b"", None),
        (
            "empty SDK token",
            payload(sdk_token="x")[:10] + b"\x00" + payload(sdk_token="x")[12:],
            None,
        ),
    ]
    vectors = []
    for name, plaintext, stored in cases:
        expect = _outcome(lambda plaintext=plaintext: _describe_payload(plaintext))
        if "ok" in expect:
            verifier = RegistrationVerifier()
            parsed = parse_registration_payload(plaintext)
            expect["verify"] = _outcome(
                lambda p=parsed, s=stored, v=verifier: v.verify(p, context, s).hex()
            )
        vectors.append(
            {
                "name": name,
                "plaintext": plaintext.hex(),
                "context": context.hex(),
                "stored_key": stored.hex() if stored else None,
                "expect": expect,
            }
        )
    return vectors


def p256_registration_cases(
    payload: Any, key: Any
) -> list[tuple[str, bytes, bytes | None]]:
    """P-256 (signature algorithm 3): the good cases, and one of each refusal."""
    from cryptography.hazmat.primitives import serialization

    from kaa_wire._constants import P256_ORDER

    der = _crypto.public_key_der(key)
    good = payload(owner=key)
    signed, signature = good[: -2 - 64], good[-64:]

    def with_signature(sig: bytes) -> bytes:
        return signed + len(sig).to_bytes(2, "big") + sig

    r, s = signature[:32], int.from_bytes(signature[32:], "big")
    compressed = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    # The canonical SPKI with the compressed point: SEQUENCE and BIT STRING lengths redone.
    compressed_der = bytes([0x30, 0x39]) + der[2:23] + bytes([0x03, 0x22, 0x00]) + compressed
    off_curve = der[:-1] + bytes([der[-1] ^ 1])
    return [
        ("P-256 endpoint key", good, None),
        ("P-256 reconnect with key hash", payload(owner=key, key_is_hash=True,
                                                  key=_crypto.endpoint_id(der)), der),
        ("P-256 high S (n - s) also verifies",
         with_signature(r + (P256_ORDER - s).to_bytes(32, "big")), None),
        ("P-256 signature of 63 bytes", with_signature(signature[:-1]), None),
        ("P-256 signature of 65 bytes", with_signature(signature + b"\x00"), None),
        ("P-256 signature with r = 0", with_signature(bytes(32) + signature[32:]), None),
        ("P-256 signature with s = n", with_signature(r + P256_ORDER.to_bytes(32, "big")), None),
        ("P-256 key with the RSA algorithm id", payload(owner=key, signature_algorithm=1), None),
        ("P-256 compressed point", payload(owner=key, key=compressed_der), None),
        ("P-256 point off the curve", payload(owner=key, key=off_curve), None),
    ]


def _describe_payload(plaintext: bytes) -> dict[str, Any]:
    parsed = parse_registration_payload(plaintext)
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


def exchange_vectors(keys: dict[str, Any]) -> dict[str, str]:
    """One full resolution and registration with fixed keys, nonce and ephemeral key; and
    the same resolution answered after one key rotation (generation 2: the Ed25519 key)."""
    bootstrap, endpoint = keys["bootstrap_rsa"], keys["endpoint_rsa"]
    successor = keys["bootstrap_ed25519"]
    operations: x25519.X25519PrivateKey = keys["operations_x25519"]
    nodes = (
        OperationsNode(
            200, 10, 1, "ops-1.example.net", 9997, _crypto.x25519_public_bytes(operations)
        ),
        OperationsNode(100, 5, 2, "10.0.0.2", 9997, _crypto.x25519_public_bytes(operations)),
    )
    client = ResolveClient(APP_TOKEN, bootstrap.public_key(), nonce=NONCE)
    resolve_request = client.send_request()
    server = BootstrapServerConnection()
    server.receive_data(resolve_request)
    server.next_event()
    signed = server.data_to_sign(
        nodes, server_time_ms=SERVER_TIME_MS, valid_for_s=300, signature_algorithm=1
    )
    resolve_response = server.send_response(_crypto.sign(bootstrap, signed))
    rotated = BootstrapServerConnection()
    rotated.receive_data(resolve_request)
    rotated.next_event()
    signed = rotated.data_to_sign(
        nodes[:1],
        server_time_ms=SERVER_TIME_MS,
        valid_for_s=300,
        signature_algorithm=2,
        key_generation=2,
        rotations=(certify(bootstrap, 2, successor),),
    )
    resolve_response_rotated = rotated.send_response(_crypto.sign(successor, signed))

    def register(
        reconnect: bool,
        ephemeral: x25519.X25519PrivateKey,
        timestamp_ms: int,
        private_key: Any = endpoint,
    ) -> tuple[bytes, OperationsServerConnection, bytes]:
        reg = RegisterClient(
            nodes[0],
            sdk_token=SDK_TOKEN,
            private_key=private_key,
            profile=PROFILE,
            timestamp_ms=timestamp_ms,
            reconnect=reconnect,
            ephemeral_key=ephemeral,
        )
        frame = reg.send_request()
        opener = RegistrationOpener(operations)
        ops = OperationsServerConnection(opener, RegistrationVerifier())
        ops.receive_data(frame)
        ops.next_event()
        response_secret = opener.open(frame[:6], frame[6:])[2]
        return frame, ops, response_secret

    register_request, ops, response_secret = register(
        False, keys["ephemeral_x25519"], REGISTER_TIMESTAMP_MS
    )
    eid = ops.verify()
    result = RegistrationResult(
        status=1,
        endpoint_id=eid,
        server_time_ms=SERVER_TIME_MS + 130,
        config_version=3,
        config=b'{"sample_period_s":60}',
        topics=(Topic(1, "firmware"), Topic(2, "alerts")),
        reconnect_after_s=86400,
        retry_base_ms=500,
    )
    # What OperationsServerConnection.send_result sends, with a fixed response nonce.
    register_response = sealed_frame(
        MessageType.REGISTER_RESPONSE,
        0,
        _codec.encode_registration_result(result),
        response_secret,
        RESPONSE_NONCE,
    )
    reconnect_request, _, reconnect_secret = register(
        True, keys["ephemeral_x25519_reconnect"], RECONNECT_TIMESTAMP_MS
    )
    sealed_error = sealed_frame(
        MessageType.ERROR,
        FrameFlag.SEALED,
        error_body(RevokedEndpoint("endpoint revoked"), sealed=True),
        reconnect_secret,
        ERROR_RESPONSE_NONCE,
    )
    plain_error = BootstrapServerConnection().send_error(ReplayedRequest("seen before"))
    # The same first registration by a P-256 device (signature algorithm 3).
    p256 = keys["endpoint_p256"]
    register_request_p256, p256_ops, _ = register(
        False, keys["ephemeral_x25519_p256"], REGISTER_TIMESTAMP_MS, p256
    )
    p256_id = p256_ops.verify()
    return {
        "inputs": {
            "keys": "keys.json: bootstrap_rsa signs the resolution answer; operations_x25519 "
            "is the node key of both nodes; endpoint_rsa is the endpoint key",
            "resolve_nonce": NONCE.hex(),
            "resolve_server_time_ms": SERVER_TIME_MS,
            "resolve_valid_for_s": 300,
            "register_ephemeral_key": "keys.json ephemeral_x25519, public "
            + _crypto.x25519_public_bytes(keys["ephemeral_x25519"]).hex(),
            "register_timestamp_ms": REGISTER_TIMESTAMP_MS,
            "register_response_nonce": RESPONSE_NONCE.hex(),
            "register_response_secret": response_secret.hex(),
            "reconnect_ephemeral_key": "keys.json ephemeral_x25519_reconnect, public "
            + _crypto.x25519_public_bytes(keys["ephemeral_x25519_reconnect"]).hex(),
            "reconnect_timestamp_ms": RECONNECT_TIMESTAMP_MS,
            "sealed_error": "the answer to the reconnect request, sealed under its response "
            "secret with the error response nonce",
            "sealed_error_response_nonce": ERROR_RESPONSE_NONCE.hex(),
            "reconnect_response_secret": reconnect_secret.hex(),
            "register_p256": "register_request_p256_frame: endpoint_p256 registers at "
            "register_timestamp_ms through keys.json ephemeral_x25519_p256, public "
            + _crypto.x25519_public_bytes(keys["ephemeral_x25519_p256"]).hex()
            + "; its signature is ECDSA P-256 SHA-256 r || s with an RFC 6979 nonce",
        },
        "bootstrap_public_key": _crypto.public_key_der(bootstrap).hex(),
        "bootstrap_generation_2_public_key": _crypto.public_key_der(successor).hex(),
        "operations_public_key": _crypto.x25519_public_bytes(operations).hex(),
        "endpoint_public_key": _crypto.public_key_der(endpoint).hex(),
        "endpoint_id": eid.hex(),
        "endpoint_p256_public_key": _crypto.public_key_der(p256).hex(),
        "endpoint_p256_id": p256_id.hex(),
        "app_token": APP_TOKEN,
        "sdk_token": SDK_TOKEN,
        "profile": PROFILE.hex(),
        "resolve_request_frame": resolve_request.hex(),
        "resolve_response_frame": resolve_response.hex(),
        "resolve_response_rotated_frame": resolve_response_rotated.hex(),
        "register_request_frame": register_request.hex(),
        "register_response_frame": register_response.hex(),
        "reconnect_request_frame": reconnect_request.hex(),
        "register_request_p256_frame": register_request_p256.hex(),
        "sealed_error_frame": sealed_error.hex(),
        "error_frame": plain_error.hex(),
    }


PROTOCOL_DOC = HERE.parents[1] / "docs" / "protocol.md"


def hex_block(data: str, width: int = 64) -> str:
    """A frame as docs/protocol.md prints it: 64 hex digits a line."""
    return "".join(data[i : i + width] + "\n" for i in range(0, len(data), width))


def update_protocol_doc(exchange: dict[str, Any]) -> None:
    """Rewrite every ```hex NAME block of docs/protocol.md from the exchange vector."""
    text = PROTOCOL_DOC.read_text()
    updated = re.sub(
        r"```hex (\w+)\n[0-9a-f\n]*```",
        lambda m: f"```hex {m.group(1)}\n{hex_block(exchange[m.group(1)])}```",
        text,
    )
    if updated != text:
        PROTOCOL_DOC.write_text(updated)
        print(f"wrote {PROTOCOL_DOC}")


def main() -> None:
    keys = _keys()
    exchange = exchange_vectors(keys)
    outputs = {
        "exchange.json": exchange,
        "frames.json": frame_vectors(exchange),
        "messages.json": message_vectors(exchange),
        "registration.json": registration_vectors(keys),
    }
    for name, content in outputs.items():
        (HERE / name).write_text(json.dumps(content, indent=1) + "\n")
        print(f"wrote {HERE / name}")
    update_protocol_doc(exchange)


if __name__ == "__main__":
    main()
