"""The client against real servers (``python -m servers``) over loopback TCP, both APIs."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client import Connected, Device, Revoked, StateDir
from client._state import key_type_of
from kaa_wire import BadSignature, RevokedEndpoint, UnknownKeyHash
from kaa_wire._crypto import load_private_key
from tests.client.conftest import (
    ROOT,
    Register,
    Servers,
    cli_json,
    run_cli,
    sdk_with_bootstraps,
    wait_until,
)
from tests.servers.servers_harness import FAST_RETRIES

PROFILE = b'{"model":"t1000","fw":"1.0.0"}'


def _open(directory: Path, sdk: Any, **options: Any) -> Device:
    options.setdefault("policy", FAST_RETRIES)
    return Device.open(directory, sdk, **options)


def _boot(directory: Path, sdk: Any, register: Register, profile: bytes, **options: Any) -> Any:
    """One boot of the device: open the state directory, register, close."""
    with _open(directory, sdk, **options) as device:
        return register(device, profile)


def _openssl_endpoint_id(public_pem: Path) -> str:
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(public_pem), "-outform", "DER"],
        capture_output=True,
        check=True,
    ).stdout
    digest = subprocess.run(["sha1sum"], input=der, capture_output=True, check=True).stdout
    return digest.split()[0].decode()


# -- boot sequence -------------------------------------------------------------------------


def test_fresh_device_registers_then_reconnects_then_updates_its_profile(
    servers: Servers, tmp_path: Path, register: Register
) -> None:
    directory = tmp_path / "device"
    first = _boot(directory, servers.sdk_path, register, PROFILE)
    assert isinstance(first, Connected), first
    assert first.status == "new"
    assert [a.reconnect for a in first.attempts if a.stage == "register"] == [False]
    assert first.endpoint_id == _openssl_endpoint_id(directory / "key.public")
    assert first.application_state.config == b"{}"  # the default application's

    again = _boot(directory, servers.sdk_path, register, PROFILE)
    assert isinstance(again, Connected) and again.status == "existing"
    assert again.endpoint_id == first.endpoint_id
    assert [a.reconnect for a in again.attempts if a.stage == "register"] == [True]
    assert again.timestamp_ms > first.timestamp_ms

    changed = _boot(directory, servers.sdk_path, register, b'{"model":"t1000","fw":"1.1.0"}')
    assert isinstance(changed, Connected) and changed.status == "profile_updated"
    assert [a.reconnect for a in changed.attempts if a.stage == "register"] == [True]

    with StateDir.open(directory) as opened:
        state = opened.state
    assert state.registered and state.status == "profile_updated"
    assert state.endpoint_id == first.endpoint_id
    assert state.operations_server == changed.server
    assert state.last_timestamp_ms == changed.timestamp_ms


def test_cli_boot_sequence_and_endpoint_id_from_openssl(
    servers: Servers, tmp_path: Path, api: str
) -> None:
    state = tmp_path / "device"
    common = ["register", "--sdk", str(servers.sdk_path), "--state", str(state), "--api", api]
    first = run_cli(*common, "--profile", '{"model": "t1000", "fw": "1.0.0"}')
    assert first.returncode == 0, first.stderr
    doc = cli_json(first)
    assert doc["status"] == "new" and doc["registered"] is True
    assert len(doc["endpoint_id"]) == 40 and int(doc["endpoint_id"], 16) >= 0
    assert doc["endpoint_id"] == _openssl_endpoint_id(state / "key.public")
    assert doc["application_state"]["config"] == "{}"

    # Same JSON with other spacing and key order: the same profile.
    profile_file = tmp_path / "profile.json"
    profile_file.write_text('{ "fw":"1.0.0",\n  "model":"t1000" }')
    again = run_cli(*common, "--profile", f"@{profile_file}")
    assert again.returncode == 0, again.stderr
    assert cli_json(again)["status"] == "existing"

    changed = run_cli(*common, "--profile", '{"model": "t1000", "fw": "2.0.0"}')
    assert changed.returncode == 0, changed.stderr
    assert cli_json(changed)["status"] == "profile_updated"
    assert cli_json(changed)["endpoint_id"] == doc["endpoint_id"]

    status = run_cli("status", "--state", str(state))
    assert status.returncode == 0, status.stderr
    shown = cli_json(status)
    assert shown["endpoint_id"] == doc["endpoint_id"]
    assert shown["registered"] is True and shown["status"] == "profile_updated"
    assert shown["revoked"] is False

    # No --profile: the device sends the profile the server last accepted, never an empty
    # one that would wipe it (the stored profile stays, the answer is EXISTING).
    kept = run_cli(*common)
    assert kept.returncode == 0, kept.stderr
    assert cli_json(kept)["status"] == "existing"
    assert (state / "profile").read_bytes() == b'{"fw":"2.0.0","model":"t1000"}'
    assert (state / "profile").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("key_type", ["p256", "ed25519"])
def test_cli_key_type_registers_reconnects_and_is_kept(
    servers: Servers, tmp_path: Path, key_type: str
) -> None:
    """``--key-type``: the first boot generates that key (private 0600), registers NEW,
    reconnects by key hash with it (the server re-checks the stored key) and updates its
    profile; naming another type later is exit 2, with the key and state untouched."""
    state = tmp_path / "device"
    common = ["register", "--sdk", str(servers.sdk_path), "--state", str(state)]
    first = run_cli(*common, "--key-type", key_type, "--profile", '{"fw": "1"}')
    assert first.returncode == 0, first.stderr
    doc = cli_json(first)
    assert doc["status"] == "new"
    assert doc["endpoint_id"] == _openssl_endpoint_id(state / "key.public")
    key = load_private_key((state / "key.private").read_bytes())
    assert key_type_of(key) == key_type  # type: ignore[arg-type]
    assert (state / "key.private").stat().st_mode & 0o777 == 0o600
    again = run_cli(*common, "--key-type", key_type, "--profile", '{"fw": "1"}')
    assert again.returncode == 0, again.stderr
    assert cli_json(again)["status"] == "existing"
    changed = run_cli(*common, "--profile", '{"fw": "2"}')  # no --key-type: the key is kept
    assert changed.returncode == 0, changed.stderr
    assert cli_json(changed)["status"] == "profile_updated"
    assert cli_json(changed)["endpoint_id"] == doc["endpoint_id"]

    before = {name: (state / name).read_bytes() for name in ("key.private", "state.json")}
    other = run_cli(*common, "--key-type", "rsa2048")
    assert other.returncode == 2
    assert f"is a {key_type} key, not rsa2048" in other.stderr
    assert other.stdout == ""
    assert {name: (state / name).read_bytes() for name in before} == before


# -- failover ------------------------------------------------------------------------------


class TamperingProxy:
    """A real TCP proxy to a Bootstrap that flips one bit of the signature on the way back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.served = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn, socket.create_connection(self.upstream, timeout=20) as upstream:
                conn.settimeout(20)
                upstream.sendall(_read_frame(conn))
                answer = bytearray(_read_to_eof(upstream))
                answer[-1] ^= 0x01  # the last byte of the frame is the signature's
                conn.sendall(bytes(answer))
                self.served += 1

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() on Linux
        self._listener.close()
        self._thread.join(20)


def _read_frame(sock: socket.socket) -> bytes:
    data = b""
    while len(data) < 6 or len(data) < 6 + int.from_bytes(data[3:6], "big"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def tampering_proxy(servers: Servers) -> Iterator[TamperingProxy]:
    real = servers.sdk.bootstrap_servers[0]
    proxy = TamperingProxy((real.host, real.port))
    yield proxy
    proxy.close()


def _seed_starting_at(index: int, count: int) -> int:
    """A seed whose first draw picks Bootstrap ``index`` of ``count`` (the plan's first)."""
    return next(s for s in range(1000) if random.Random(s).randrange(count) == index)


@pytest.mark.security
def test_failover_past_a_dead_and_a_tampering_bootstrap(
    servers: Servers,
    tmp_path: Path,
    register: Register,
    closed_port: int,
    tampering_proxy: TamperingProxy,
) -> None:
    real = servers.sdk.bootstrap_servers[0]
    sdk = sdk_with_bootstraps(
        servers.sdk,
        [
            ("127.0.0.1", closed_port, real.public_key_pem),
            ("127.0.0.1", tampering_proxy.port, real.public_key_pem),
            (real.host, real.port, real.public_key_pem),
        ],
    )
    rng = random.Random(_seed_starting_at(0, 3))
    outcome = _boot(tmp_path / "device", sdk, register, PROFILE, rng=rng)
    assert isinstance(outcome, Connected), outcome
    assert outcome.status == "new"
    steps = [(a.stage, a.port, type(a.cause)) for a in outcome.attempts]
    assert steps == [
        ("resolve", closed_port, ConnectionRefusedError),
        ("resolve", tampering_proxy.port, BadSignature),
        ("resolve", real.port, type(None)),
        ("register", outcome.server.port, type(None)),
    ]
    assert tampering_proxy.served == 1


@pytest.fixture(scope="module")
def dead_top_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Servers, int]]:
    """Servers whose top-priority Operations node was SIGKILLed while its lease is valid.

    The extra node's lease (600 s) outlives the module, so the Bootstrap keeps listing the
    dead node first: every device here meets it.
    """
    running = Servers(tmp_path_factory.mktemp("deadtop") / "data")
    try:
        node, port = running.start_operations("--priority", "200", "--lease-s", "600")
        wait_until(lambda: port in running.resolve_ports(), "the Bootstrap to list the node")
        node.kill()
        yield running, port
    finally:
        running.stop()


def test_failover_past_a_dead_top_priority_operations_node(
    dead_top_node: tuple[Servers, int], tmp_path: Path, register: Register
) -> None:
    servers, dead_port = dead_top_node
    assert dead_port in servers.resolve_ports()  # still listed: the failover is the client's
    outcome = _boot(tmp_path / "device", servers.sdk_path, register, PROFILE)
    assert isinstance(outcome, Connected), outcome
    assert outcome.status == "new"
    assert outcome.server.port != dead_port and outcome.server.priority == 100
    steps = [(a.stage, a.port, type(a.cause)) for a in outcome.attempts]
    assert steps == [
        ("resolve", servers.sdk.bootstrap_servers[0].port, type(None)),
        ("register", dead_port, ConnectionRefusedError),
        ("register", outcome.server.port, type(None)),
    ]


# -- reconnect fallback, revocation ---------------------------------------------------------


def test_reconnect_unknown_to_the_server_falls_back_to_full_registration(
    servers: Servers, seed_dir: Callable[[str], Path], register: Register
) -> None:
    directory = seed_dir("device")
    with StateDir.open(directory) as opened:  # a device that believes it is registered
        opened.save(dataclasses.replace(opened.state, registered=True, status="existing"))
    outcome = _boot(directory, servers.sdk_path, register, PROFILE)
    assert isinstance(outcome, Connected) and outcome.status == "new"
    registers = [(a.reconnect, a.cause) for a in outcome.attempts if a.stage == "register"]
    assert len(registers) == 2
    assert registers[0][0] is True and isinstance(registers[0][1], UnknownKeyHash)
    assert registers[0][1].sealed
    assert registers[1] == (False, None)


def test_revoked_endpoint_is_reported_revoked(
    servers: Servers, seed_dir: Callable[[str], Path], register: Register
) -> None:
    directory = seed_dir("device")
    first = _boot(directory, servers.sdk_path, register, PROFILE)
    assert isinstance(first, Connected)
    servers.control("endpoint", "revoke", first.endpoint_id, "--reason", "test")

    outcome = _boot(directory, servers.sdk_path, register, PROFILE)
    assert isinstance(outcome, Revoked), outcome
    assert outcome.status == "revoked" and outcome.endpoint_id == first.endpoint_id
    cause = outcome.attempts[-1].cause
    assert isinstance(cause, RevokedEndpoint) and cause.sealed
    with StateDir.open(directory) as opened:
        assert opened.state.revoked and not opened.state.registered

    status = cli_json(run_cli("status", "--state", str(directory)))
    assert status["status"] == "revoked" and status["revoked"] is True

    # Reinstated by the operator: the very next boot registers again (in full: the state
    # forgot the registration), and the store says active.
    servers.control("endpoint", "reinstate", first.endpoint_id, "--reason", "found")
    back = _boot(directory, servers.sdk_path, register, PROFILE)
    assert isinstance(back, Connected) and back.status == "existing", back
    assert back.endpoint_id == first.endpoint_id


def test_cli_reports_revoked_with_its_own_exit_status(
    servers: Servers, seed_dir: Callable[[str], Path], api: str
) -> None:
    directory = seed_dir("device")
    common = ["register", "--sdk", str(servers.sdk_path), "--state", str(directory)]
    first = cli_json(run_cli(*common, "--api", api))
    servers.control("endpoint", "revoke", first["endpoint_id"])
    result = run_cli(*common, "--api", api)
    assert result.returncode == 3
    doc = cli_json(result)
    assert doc["status"] == "revoked" and doc["registered"] is False
    assert doc["endpoint_id"] == first["endpoint_id"]
    assert "revoked" in result.stderr


# -- a real crash between the state write and its rename -----------------------------------

_KILLED_CLI = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    renames = 0

    def kill_at_second_state_rename(event, args):
        # Rename 1 of state.json is the first boot's own; 2 is the save after registering.
        global renames
        if event == "os.rename" and Path(args[1]).name == "state.json":
            renames += 1
            if renames == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(kill_at_second_state_rename)
    from client.__main__ import main
    main(sys.argv[1:])
    """
)


@pytest.mark.crash
def test_kill_between_state_write_and_rename_after_registering(
    servers: Servers, tmp_path: Path, api: str
) -> None:
    directory = tmp_path / "device"
    args = ["register", "--sdk", str(servers.sdk_path), "--state", str(directory), "--api", api]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_CLI, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    assert child.stdout == ""  # killed before it could report
    keys = {name: (directory / name).read_bytes() for name in ("key.private", "key.public")}
    (pending,) = directory.glob(".state.json.*")  # the new state, written, never renamed
    assert json.loads(pending.read_text())["registered"] is True
    assert json.loads((directory / "state.json").read_text())["registered"] is False

    after = run_cli(*args)
    assert after.returncode == 0, after.stderr
    doc = cli_json(after)
    # The server registered it before the crash; the device, which did not learn that,
    # registers in full with the same key and is told EXISTING.
    assert doc["status"] == "existing"
    assert doc["endpoint_id"] == _openssl_endpoint_id(directory / "key.public")
    assert {name: (directory / name).read_bytes() for name in keys} == keys
    assert not list(directory.glob(".state.json.*"))
    assert json.loads((directory / "state.json").read_text())["registered"] is True
