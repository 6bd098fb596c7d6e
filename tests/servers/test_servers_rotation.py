"""Bootstrap key rotation on a real data directory and a real running Bootstrap: the Control
command, the files it leaves, crash states, a Bootstrap that picks the rotation up while it
runs, and the RESOLVE_REQUEST checks over the wire (docs/protocol.md 4.1 and 4.5). The
device's side is tests/client/test_client_rotation.py."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers_harness import (
    MainServer,
    ServerProcess,
    control,
    control_json,
    error_frame,
    exchange,
    resolve,
    start_bootstrap,
    start_main,
    wait_until,
)

import kaa_files
from kaa_wire import (
    ErrorCode,
    KaaWireError,
    MessageType,
    ResolveClient,
    Resolved,
    UnsupportedAlgorithm,
    _codec,
    _crypto,
    encode_frame,
)
from kaa_wire._constants import MAX_ROTATION_CHAIN
from kaa_wire._messages import Frame
from kaa_wire._rotation import TrustedKey, bootstrap_public_key, certify, key_fingerprint
from kaa_wire.sdk_config import SdkConfig
from servers.keyring import Chain, KeyFiles, load_keyring, rotate
from tests.conftest import load_vectors

pytestmark = pytest.mark.security

NONCE = bytes(range(1, 17))


def _trusted(data: Path, generation: int) -> TrustedKey:
    """The key of ``generation`` as the data directory's chain (or key) names it."""
    files = KeyFiles(data)
    if files.chain.exists():
        chain = Chain.from_json(files.chain.read_text())
        der = chain.first_public_key if generation == chain.first_generation else next(
            c.public_key for c in chain.certificates if c.generation == generation
        )
    else:
        assert generation == 1
        der = _crypto.public_key_der(_crypto.load_private_key(files.key.read_bytes()))  # type: ignore[arg-type]
    return TrustedKey(generation, bootstrap_public_key(der))


def _signing_generation(server: MainServer) -> int:
    """The generation the running Bootstrap signs with, seen from a generation-1 device."""
    resolved = resolve(server.sdk, trusted=_trusted(server.data, 1))
    assert resolved.bootstrap_key is not None
    return resolved.bootstrap_key.generation


def _wait_for_generation(server: MainServer, generation: int) -> None:
    wait_until(lambda: _signing_generation(server) == generation, f"generation {generation}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MainServer]:
    main = start_main(tmp_path / "data", "--refresh-s", "0.2")
    yield main
    assert main.process.stop() == 0, main.process.logs()


def test_rotate_writes_the_chain_and_retires_the_key(server: MainServer) -> None:
    data = server.data
    before = control_json(data, "bootstrap", "show")
    assert before["generation"] == 1 and before["chain"] is None
    retired = (data / "bootstrap.key").read_bytes()

    first = control_json(data, "bootstrap", "rotate")
    second = control_json(data, "bootstrap", "rotate", "--key-type", "ed25519")
    assert (first["generation"], second["generation"]) == (2, 3)
    assert second["signature_algorithm"] == "ed25519"
    assert control_json(data, "bootstrap", "show") == second

    modes = {p.name: p.stat().st_mode & 0o777 for p in data.iterdir() if p.is_file()}
    assert modes["bootstrap.key"] == 0o600
    assert modes["bootstrap.pub"] == 0o644 and modes["bootstrap-chain.json"] == 0o644
    assert "bootstrap.key.next" not in modes
    # The retired private key is in no file of the directory any more.
    old_secret = retired.split(b"-----")[2]
    assert not any(old_secret in p.read_bytes() for p in data.iterdir() if p.is_file())

    chain = Chain.from_json((data / "bootstrap-chain.json").read_text()).verified()
    assert chain.generation == 3 and len(chain.certificates) == 2
    assert key_fingerprint(chain.public_key) == second["key_sha256"]
    public = _crypto.load_public_key((data / "bootstrap.pub").read_bytes())
    assert _crypto.public_key_der(public) == chain.public_key  # type: ignore[arg-type]
    actions = [e["action"] for e in control_json(data, "audit", "list")]
    assert actions[:2] == ["bootstrap.rotate", "bootstrap.rotate"]

    # An SDK exported now embeds the current key and its generation.
    out = data.parent / "after.json"
    control(
        data, "sdk", "export", "--app", server.sdk.application_token,
        "--sdk-token", json.loads((data / "defaults.json").read_text())["sdk_token"],
        "--out", str(out),
    )  # fmt: skip
    exported = SdkConfig.from_json(out.read_text()).bootstrap_servers[0]
    assert exported.key_generation == 3
    assert _crypto.public_key_der(exported.public_key()) == chain.public_key
    header = (data.parent / "after.h").read_text()
    # the struct's key_generation, then the members derived for the C SDK from the same
    # key: its 44-byte DER and Ed25519's algorithm id
    assert "      3u,\n      (const unsigned char *)" in header
    assert "      44u,\n      2u }" in header


def test_a_running_bootstrap_picks_up_each_rotation(server: MainServer) -> None:
    assert _signing_generation(server) == 1
    for generation in (2, 3):
        control(server.data, "bootstrap", "rotate")
        _wait_for_generation(server, generation)
        # A device on the new generation gets no chain; one on the old, the whole chain.
        current = resolve(server.sdk, trusted=_trusted(server.data, generation))
        assert current.bootstrap_key is not None
        assert current.bootstrap_key.generation == generation
    logs = server.process.logs()
    assert "bootstrap key loaded" in logs and "generation=3" in logs.replace('"', "")
    # The SDK export the running server wrote at start is still the generation-1 one: a
    # device built from it keeps working (tests/client/test_client_rotation.py).
    assert server.sdk.bootstrap_servers[0].key_generation == 1


def _request(
    *, nonce: bytes = NONCE, generation: int = 1, token: bytes = b"t", transports: bytes = b"\x01"
) -> bytes:
    body = (
        nonce + generation.to_bytes(4, "big") + bytes([len(token)]) + token
        + bytes([len(transports)]) + transports
    )  # fmt: skip
    return encode_frame(MessageType.RESOLVE_REQUEST, body)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"nonce": bytes(16)}, ErrorCode.MALFORMED_FRAME),
        ({"transports": b""}, ErrorCode.MALFORMED_FRAME),
        ({"generation": 0}, ErrorCode.MALFORMED_FRAME),
        ({"transports": b"\x07"}, ErrorCode.UNSUPPORTED_ALGORITHM),
        ({"transports": b"\x00\x02\x03"}, ErrorCode.UNSUPPORTED_ALGORITHM),
        ({"generation": 2}, ErrorCode.UNSUPPORTED_ALGORITHM),
        ({"generation": 2**32 - 1}, ErrorCode.UNSUPPORTED_ALGORITHM),
    ],
    ids=[
        "zero nonce", "no transport", "generation 0", "unknown transport only",
        "no TCP among three", "newer generation", "far newer generation",
    ],
)  # fmt: skip
def test_requests_the_bootstrap_refuses(
    server: MainServer, fields: dict[str, object], code: ErrorCode
) -> None:
    token = server.sdk.application_token.encode()
    port = server.listeners["bootstrap_port"]
    answer = exchange("127.0.0.1", port, _request(token=token, **fields))  # type: ignore[arg-type]
    assert error_frame(answer) == (MessageType.ERROR, code)
    # Unknown ids beside TCP are ignored, and duplicates allowed: the full answer.
    good = exchange("127.0.0.1", port, _request(token=token, transports=b"\x07\x01\x01"))
    assert good[1] == MessageType.RESOLVE_RESPONSE


def test_a_device_too_far_behind_is_told_so(tmp_path: Path) -> None:
    """More rotations than one answer carries: the device needs a new SDK configuration."""
    data = tmp_path / "data"
    control(data, "init")
    files = KeyFiles(data)
    for _ in range(MAX_ROTATION_CHAIN + 1):
        rotate(files, _crypto.generate_ed25519_key())
    keyring = load_keyring(files)
    assert keyring.generation == MAX_ROTATION_CHAIN + 2
    assert len(keyring.chain_from(2)) == MAX_ROTATION_CHAIN
    with pytest.raises(UnsupportedAlgorithm, match="needs a new SDK configuration"):
        keyring.chain_from(1)
    with pytest.raises(UnsupportedAlgorithm, match="newer than this Bootstrap's"):
        keyring.chain_from(keyring.generation + 1)


# -- crash states and broken directories ----------------------------------------------------


def _interrupted_rotation(data: Path) -> bytes:
    """The directory as a crash right after the chain write leaves it (rotation step 2 of
    servers/keyring.py): the chain names generation 2, whose key is only in .next. The
    new key's DER."""
    files = KeyFiles(data)
    current = _crypto.load_private_key(files.key.read_bytes())
    upcoming = _crypto.generate_rsa_key()
    certificate = certify(current, 2, upcoming)  # type: ignore[arg-type]
    chain = Chain(1, _crypto.public_key_der(current))  # type: ignore[arg-type]
    kaa_files.atomic_write(files.next_key, _crypto.private_key_pem(upcoming), 0o600)
    kaa_files.atomic_write(files.chain, chain.extended(certificate).to_json().encode(), 0o644)
    return _crypto.public_key_der(upcoming)


def test_an_interrupted_rotation_is_read_forward_and_finished_by_the_next(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    control(data, "init")
    upcoming = _interrupted_rotation(data)
    shown = control_json(data, "bootstrap", "show")
    assert shown["generation"] == 2 and shown["pending_rotation"] is True
    assert shown["key_sha256"] == key_fingerprint(upcoming)

    main = start_main(data)
    try:
        assert _signing_generation(main) == 2  # the Bootstrap signs with the .next key
    finally:
        assert main.process.stop() == 0, main.process.logs()

    third = control_json(data, "bootstrap", "rotate")
    assert third["generation"] == 3 and third["pending_rotation"] is False
    assert not (data / "bootstrap.key.next").exists()
    chain = Chain.from_json((data / "bootstrap-chain.json").read_text()).verified()
    assert chain.certificates[0].public_key == upcoming


def test_a_stray_next_key_from_before_the_chain_write_is_ignored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    control(data, "init")
    key = (data / "bootstrap.key").read_bytes()
    stray = _crypto.private_key_pem(_crypto.generate_rsa_key())
    kaa_files.atomic_write(data / "bootstrap.key.next", stray, 0o600)
    assert control_json(data, "bootstrap", "show")["generation"] == 1
    assert (data / "bootstrap.key").read_bytes() == key
    assert control_json(data, "bootstrap", "rotate")["generation"] == 2
    assert not (data / "bootstrap.key.next").exists()
    assert (data / "bootstrap.key").read_bytes() not in (key, stray)


@pytest.mark.parametrize("damage", ["replaced key", "tampered chain", "unreadable chain"])
def test_a_key_ring_that_does_not_fit_together_stops_the_bootstrap(
    tmp_path: Path, damage: str
) -> None:
    data = tmp_path / "data"
    control(data, "init")
    control(data, "bootstrap", "rotate")
    chain_file = data / "bootstrap-chain.json"
    if damage == "replaced key":  # the old way to "rotate": a new key, no certificate
        kaa_files.save_private_key(data / "bootstrap.key", _crypto.generate_rsa_key())
    elif damage == "tampered chain":
        document = json.loads(chain_file.read_text())
        certificate = bytearray.fromhex(document["certificates"][0])
        certificate[-1] ^= 0x01  # the certificate signature's last byte
        document["certificates"][0] = certificate.hex()
        chain_file.write_text(json.dumps(document))
    else:
        chain_file.write_text("{")
    process = ServerProcess(
        "servers.bootstrap",
        ["--data", str(data), "--host", "127.0.0.1", "--port", "0"],
        tmp_path / "logs",
        "broken",
    )
    assert process.proc.wait(timeout=60) == 1
    logs = process.logs()
    assert "error:" in logs and "Traceback" not in logs
    refused = control(data, "bootstrap", "show", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("error:")


def test_a_bad_key_ring_on_disk_keeps_a_running_bootstrap_on_its_last_good_key(
    server: MainServer,
) -> None:
    data = server.data
    control(data, "bootstrap", "rotate")
    _wait_for_generation(server, 2)
    saved = (data / "bootstrap.key").read_bytes()
    kaa_files.save_private_key(data / "bootstrap.key", _crypto.generate_rsa_key())
    wait_until(lambda: "bootstrap key reload failed" in server.process.logs(), "the warning")
    assert _signing_generation(server) == 2
    kaa_files.atomic_write(data / "bootstrap.key", saved, 0o600)
    assert _signing_generation(server) == 2


def test_cached_signature_answers_carry_the_chain_the_device_needs(server: MainServer) -> None:
    data = server.data
    app = control_json(data, "app", "create", "--name", "cached", "--cached-signature")
    sdk = SdkConfig(
        app["token"],
        server.sdk.sdk_token,
        server.sdk.bootstrap_servers,
        accept_unbound_resolution=True,
    )
    before = resolve(sdk, trusted=_trusted(data, 1))
    control(data, "bootstrap", "rotate")
    _wait_for_generation(server, 2)
    old_device = resolve(sdk, trusted=_trusted(data, 1))
    new_device = resolve(sdk, trusted=_trusted(data, 2))
    for resolved in (before, old_device, new_device):
        assert isinstance(resolved, Resolved) and resolved.nodes
    assert before.bootstrap_key is not None and before.bootstrap_key.generation == 1
    assert old_device.bootstrap_key is not None and old_device.bootstrap_key.generation == 2
    assert new_device.bootstrap_key is not None and new_device.bootstrap_key.generation == 2


def test_the_old_directory_copy_is_a_bootstrap_on_the_retired_key(tmp_path: Path) -> None:
    """What a second Bootstrap still on the old key answers a device that rotated: a plain
    UNSUPPORTED_ALGORITHM, before any store lookup."""
    data = tmp_path / "data"
    control(data, "init")
    old = tmp_path / "old-data"
    old.mkdir(mode=0o700)
    for name in ("bootstrap.key", "bootstrap.pub", "operations.key"):
        shutil.copy2(data / name, old / name)
    control(data, "bootstrap", "rotate")
    process, port = start_bootstrap(old, name="old")
    try:
        new_key = _trusted(data, 2)
        client = ResolveClient("t", new_key.public_key, nonce=os.urandom(16), key_generation=2)
        client.receive_data(exchange("127.0.0.1", port, client.send_request()))
        client.receive_data(b"")
        with pytest.raises(UnsupportedAlgorithm, match="newer than this Bootstrap's") as info:
            client.next_event(now=0.0)
        assert isinstance(info.value, KaaWireError) and not info.value.sealed
    finally:
        assert process.stop() == 0


def test_describe_frame_shows_the_rotation_fields() -> None:
    """``python -m kaa_wire decode`` of a rotated answer names the generation and chain."""
    frame = bytes.fromhex(load_vectors("exchange.json")["resolve_response_rotated_frame"])
    described = _codec.describe_frame(Frame(frame[1], frame[2], frame[:6], frame[6:]))
    assert described["key_generation"] == 2
    assert [r["generation"] for r in described["rotations"]] == [2]
