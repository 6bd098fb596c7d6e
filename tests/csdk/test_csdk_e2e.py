"""The C device SDK (sdk/c) end to end: its example program, built with one make against the
sdk.h a real ``python -m servers`` exported, registering over loopback (docs/c-sdk.md)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy
from servers_harness import MainServer, control, control_json, start_main

from kaa_wire import _crypto

pytestmark = pytest.mark.csdk

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "sdk" / "c" / "examples" / "register"
RUN_TIMEOUT_S = 120
#: The crypto port calls of one boot that resolves once and registers once (the random
#: source: the Bootstrap draw, the nonce, the node order; SHA-256 (the port's hash calls;
#: the signatures hash inside verify and sign): the anchor's fingerprint, once for the
#: request and once for the answer, and the state's checksum on save, plus on load when
#: there is a state; HKDF: the request keys and the answer's key).
CRYPTO_FIRST_BOOT = {
    "key_generation": 1,
    "verify": 1,
    "check_key": 0,
    "x25519_keypair": 1,
    "x25519": 1,
    "sign": 1,
    "hkdf": 2,
    "aead_seal": 1,
    "aead_open": 1,
    "sha256": 3,
    "sha1": 1,
    "random": 3,
}


@dataclass
class Run:
    code: int
    out: dict[str, Any]
    log: str


class Device:
    """One example binary (built against one sdk.h) and a state directory."""

    def __init__(self, binary: Path, state: Path) -> None:
        self.binary = binary
        self.state = state

    def args(self, *extra: str, profile: str = '{"model":"c-demo"}') -> list[str]:
        return [
            str(self.binary),
            "--state",
            str(self.state),
            "--profile",
            profile,
            "--base-delay-ms",
            "50",
            "--max-delay-ms",
            "200",
            "--timeout-ms",
            "5000",
            *extra,
        ]

    def run(self, *extra: str, profile: str = '{"model":"c-demo"}') -> Run:
        done = subprocess.run(
            self.args(*extra, profile=profile),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
        out = json.loads(done.stdout) if done.stdout.strip() else {}
        return Run(done.returncode, out, done.stderr)


def build(header: Path, out: Path) -> Path:
    """The README's one make, against ``header``."""
    subprocess.run(
        ["make", "-s", "-C", str(EXAMPLE), f"SDK_H={header}", f"OUT={out}"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def export(server: MainServer, out: Path, *bootstraps: tuple[str, int]) -> Path:
    """An SDK export (JSON and sdk.h) that lists ``bootstraps`` in this order."""
    args = [
        "sdk",
        "export",
        "--app",
        server.sdk.application_token,
        "--sdk-token",
        server.sdk.sdk_token,
        "--out",
        str(out),
    ]
    for host, port in bootstraps:
        args += ["--bootstrap", f"{host}:{port}"]
    control(server.data, *args)
    return out.with_suffix(".h")


def dead_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def endpoint_id_of(key_file: Path) -> str:
    key = _crypto.load_private_key(key_file.read_bytes())
    return hashlib.sha1(_crypto.public_key_der(key)).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("csdk")
    main = start_main(root / "data", "--admin-port", "-1")
    yield main
    main.process.stop()


@pytest.fixture(scope="module")
def bootstrap(server: MainServer) -> tuple[str, int]:
    entry = server.sdk.bootstrap_servers[0]
    return entry.host, entry.port


@pytest.fixture(scope="module")
def binary(server: MainServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(server.data / "sdk.h", tmp_path_factory.mktemp("bin") / "register")


def test_first_registration_reconnect_and_profile_update_rsa(
    binary: Path, tmp_path: Path, server: MainServer
) -> None:
    device = Device(binary, tmp_path / "device")
    first = device.run()
    assert first.code == 0, first.log
    assert first.out["status"] == "new" and first.out["key_created"] is True
    # docs/c-sdk.md, "Cost on a device": one resolution, one registration, nothing more.
    assert first.out["crypto"] == CRYPTO_FIRST_BOOT
    endpoint_id = first.out["endpoint_id"]
    assert endpoint_id == endpoint_id_of(device.state / "key.der")
    assert (device.state / "key.der").stat().st_mode & 0o777 == 0o600
    assert (device.state / "state.bin").stat().st_mode & 0o777 == 0o600
    assert "register 127.0.0.1" in first.log and "[key hash]" not in first.log
    shown = control_json(server.data, "endpoint", "show", endpoint_id)
    assert json.dumps(shown).find("c-demo") >= 0

    again = device.run()
    assert again.code == 0, again.log
    assert (again.out["status"], again.out["endpoint_id"]) == ("existing", endpoint_id)
    assert again.out["key_created"] is False and "[key hash]" in again.log
    assert again.out["crypto"] == {**CRYPTO_FIRST_BOOT, "key_generation": 0, "sha256": 4}

    changed = device.run(profile='{"model":"c-demo","fw":"2"}')
    assert (changed.out["status"], changed.out["endpoint_id"]) == ("profile_updated", endpoint_id)


def test_sealed_revocation(binary: Path, tmp_path: Path, server: MainServer) -> None:
    device = Device(binary, tmp_path / "device")
    first = device.run()
    assert first.code == 0, first.log
    control(server.data, "endpoint", "revoke", first.out["endpoint_id"], "--reason", "csdk test")
    revoked = device.run()
    assert revoked.code == 3, revoked.log
    assert revoked.out["status"] == "revoked" and revoked.out["message"]
    assert "REVOKED_ENDPOINT (sealed)" in revoked.log
    # Not registered any more: the next boot sends the full key, and is refused again.
    again = device.run()
    assert again.code == 3 and "[key hash]" not in again.log.splitlines()[-1]


def _runs_until(device: Device, first_attempt: str, tries: int = 30) -> list[Run]:
    """Run the (registered) device until one run's first Bootstrap attempt starts with
    ``first_attempt``: the first Bootstrap is drawn at random, as it must be."""
    runs = []
    for _ in range(tries):
        run = device.run()
        assert run.code == 0, run.log
        runs.append(run)
        if run.log.splitlines()[0].startswith(first_attempt):
            return runs
    raise AssertionError(f"no run tried {first_attempt!r} first in {tries}")


def test_failover_past_a_dead_bootstrap(
    server: MainServer, bootstrap: tuple[str, int], tmp_path: Path
) -> None:
    dead = dead_port()
    header = export(server, tmp_path / "dead-first.json", ("127.0.0.1", dead), bootstrap)
    device = Device(build(header, tmp_path / "register"), tmp_path / "device")
    runs = _runs_until(device, f"resolve 127.0.0.1:{dead}: TRANSPORT")
    log = runs[-1].log.splitlines()
    assert log[1].startswith("waiting ")
    assert log[2] == f"resolve 127.0.0.1:{bootstrap[1]}: ok"
    assert runs[-1].out["status"] in ("new", "existing")


def test_failover_past_a_tampering_bootstrap(
    server: MainServer, bootstrap: tuple[str, int], tmp_path: Path
) -> None:
    def flip_a_node_byte(answer: bytes) -> bytes:
        data = bytearray(answer)
        if len(data) > 60 and data[1] == 0x02:  # a RESOLVE_RESPONSE: change the node list
            data[60] ^= 0x01
        return bytes(data)

    with FaultProxy(bootstrap, "tamper", tamper=flip_a_node_byte) as proxy:
        header = export(
            server, tmp_path / "tamper-first.json", ("127.0.0.1", proxy.port), bootstrap
        )
        device = Device(build(header, tmp_path / "register"), tmp_path / "device")
        runs = _runs_until(device, f"resolve 127.0.0.1:{proxy.port}: BAD_SIGNATURE")
        assert proxy.carried, "the proxy carried nothing"
    log = runs[-1].log.splitlines()
    assert log[2] == f"resolve 127.0.0.1:{bootstrap[1]}: ok"
    assert runs[-1].out["status"] in ("new", "existing")


def test_state_survives_a_kill(
    server: MainServer, bootstrap: tuple[str, int], binary: Path, tmp_path: Path
) -> None:
    # An export whose only Bootstrap is dead: the device keeps retrying until it is killed.
    header = export(server, tmp_path / "dead.json", ("127.0.0.1", dead_port()))
    stuck = build(header, tmp_path / "register-dead")
    state = tmp_path / "device"

    def kill_while_retrying() -> None:
        proc = subprocess.Popen(
            Device(stuck, state).args(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if line.startswith("waiting"):
                    break
            time.sleep(0.05)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            assert proc.returncode == -signal.SIGKILL

    # 1. killed on first boot, after the key was made and before any registration
    kill_while_retrying()
    endpoint_id = endpoint_id_of(state / "key.der")
    first = Device(binary, state).run()
    assert first.code == 0, first.log
    assert (first.out["status"], first.out["endpoint_id"]) == ("new", endpoint_id)
    assert first.out["key_created"] is False
    # 2. killed while registered: the state (registered, last timestamp) is intact
    kill_while_retrying()
    again = Device(binary, state).run()
    assert (again.out["status"], again.out["endpoint_id"]) == ("existing", endpoint_id)
    assert "[key hash]" in again.log
    assert not list(state.glob("*.tmp"))


def test_corrupt_state_is_refused_not_forgotten(binary: Path, tmp_path: Path) -> None:
    device = Device(binary, tmp_path / "device")
    assert device.run().code == 0
    state = device.state / "state.bin"
    data = bytearray(state.read_bytes())
    data[7] ^= 0xFF
    state.write_bytes(bytes(data))
    broken = device.run()
    assert broken.code == 2 and "CORRUPT_STATE" in broken.log
    assert state.read_bytes() == bytes(data)  # left for the operator, never overwritten


def test_usage_errors(binary: Path, tmp_path: Path) -> None:
    for args in (
        [],
        ["--state"],
        ["--state", str(tmp_path), "--key-type", "dsa"],
        ["--state", str(tmp_path), "--max-failures", "x"],
    ):
        done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and done.stderr.startswith("usage:") and not done.stdout


def test_first_registration_and_reconnect_p256(
    binary: Path, tmp_path: Path, server: MainServer
) -> None:
    device = Device(binary, tmp_path / "device")
    first = device.run("--key-type", "p256")
    assert first.code == 0, first.log
    assert first.out["status"] == "new" and first.out["key_created"] is True
    key = _crypto.load_private_key((device.state / "key.der").read_bytes())
    der = _crypto.public_key_der(key)
    assert len(der) == 91 and der.startswith(bytes.fromhex("3059301306072a8648ce3d0201"))
    assert first.out["endpoint_id"] == hashlib.sha1(der).hexdigest()
    shown = control_json(server.data, "endpoint", "show", first.out["endpoint_id"])
    assert "c-demo" in json.dumps(shown)
    again = device.run("--key-type", "p256")
    assert (again.out["status"], again.out["endpoint_id"]) == ("existing", first.out["endpoint_id"])
    assert "[key hash]" in again.log


def test_follows_a_bootstrap_key_rotation(tmp_path: Path) -> None:
    """A device built before a rotation follows it through the certificate, keeps the new
    key in its state, and asks with the new generation from then on."""
    main = start_main(tmp_path / "data", "--admin-port", "-1", name="rotation")
    try:
        old = build(main.data / "sdk.h", tmp_path / "register")
        device = Device(old, tmp_path / "device")
        assert device.run().code == 0
        control(main.data, "bootstrap", "rotate", "--key-type", "rsa-2048")
        # the running Bootstrap reloads its key ring within refresh_s (1 s)
        deadline = time.monotonic() + 60
        while "generation=2" not in main.process.logs():
            assert time.monotonic() < deadline, main.process.logs()
            time.sleep(0.1)
        state_before = (device.state / "state.bin").read_bytes()
        rotated = device.run()
        assert rotated.code == 0, rotated.log
        assert "bootstrap key rotated to generation 2" in rotated.log
        assert rotated.out["crypto"]["check_key"] == 1
        assert rotated.out["crypto"]["verify"] == 2  # the certificate, then the answer
        state = (device.state / "state.bin").read_bytes()
        assert len(state) == len(state_before) + 294  # the learned RSA-2048 key, kept
        again = device.run()
        assert again.code == 0 and "rotated" not in again.log
        assert again.out["crypto"]["verify"] == 1  # asked with generation 2: no certificate
    finally:
        main.process.stop()
