"""kill -9, then restart: nothing acknowledged is lost, no device loses its key.

* An Operations process is SIGKILLed several times during a registration storm (many
  concurrent clients over real sockets) and restarted on the same port. Every
  registration a client saw acknowledged (a REGISTER_RESPONSE it could open) must be in
  the store afterwards, with at least the acknowledged timestamp; on SQLite and on
  PostgreSQL.
* The client CLI is SIGKILLed at every step of a first boot and registration, and at
  random moments of later boots: its key pair is always whole, or absent because it was
  never written; once written it never changes; the next run registers with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519

from client import Connected, RetryPolicy
from client import Device as ClientDevice
from client._state import decode_state
from kaa_wire import (
    NEED_DATA,
    KaaWireError,
    OperationsNode,
    RegisterClient,
    Registered,
    RegistrationStatus,
    ReplayedRequest,
    _crypto,
)
from tests.servers.servers_harness import (
    REPO,
    START_TIMEOUT_S,
    MainServer,
    ServerProcess,
    control_json,
    read_to_eof,
    send_registration,
    start_main,
    wait_until,
)

pytestmark = pytest.mark.crash

# -- the store backends ------------------------------------------------------------------------


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_args(request: pytest.FixtureRequest) -> list[str]:
    """The flags that select the backend, for the services and the Control tool:
    PostgreSQL on a fresh database (tests/conftest.py skips it without
    KAA_TEST_POSTGRES_DSN, and fails it then under CI)."""
    if request.param == "sqlite":
        return []
    dsn: str = request.getfixturevalue("postgres_database")
    return ["--store", dsn]


# -- kill -9 during a registration storm -------------------------------------------------------

WORKERS = 12
KILLS = 3
#: Acknowledged registrations between two kills, drawn from this range (seeded).
ACKS_BETWEEN_KILLS = (150, 400)
STORM_SEED = 1234


@dataclasses.dataclass(frozen=True)
class Ack:
    endpoint_id: bytes
    timestamp_ms: int
    profile_sha256: str
    status: RegistrationStatus


@dataclasses.dataclass
class Device:
    key: ed25519.Ed25519PrivateKey
    last_ms: int = 0
    registered: bool = False

    def next_timestamp(self) -> int:
        self.last_ms = max(int(time.time() * 1000), self.last_ms + 1)
        return self.last_ms


class Storm:
    """WORKERS threads registering new devices (and updating the profiles of acknowledged
    ones) as fast as they can, one TCP connection per registration, until stopped."""

    def __init__(self, node: OperationsNode, sdk_token: str) -> None:
        self.node = node
        self.sdk_token = sdk_token
        self.acks: list[Ack] = []
        self.failures: Counter[str] = Counter()
        self.attempts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(WORKERS)
        ]
        #: One acknowledged request, kept to be replayed after the crashes.
        self.captured: tuple[Device, int, bytes, x25519.X25519PrivateKey, bytes] | None = None

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(START_TIMEOUT_S)

    def acked(self) -> int:
        with self._lock:
            return len(self.acks)

    def reached(self, target: int) -> Callable[[], bool]:
        return lambda: self.acked() >= target

    def _work(self, worker: int) -> None:
        rng = random.Random(STORM_SEED + worker)
        mine: list[Device] = []
        n = 0
        while not self._stop.is_set():
            n += 1
            update = bool(mine) and rng.random() < 0.25
            device = rng.choice(mine) if update else Device(ed25519.Ed25519PrivateKey.generate())
            profile = json.dumps({"worker": worker, "n": n}).encode()
            timestamp = device.next_timestamp()
            ephemeral = x25519.X25519PrivateKey.generate()
            client = RegisterClient(
                self.node,
                sdk_token=self.sdk_token,
                private_key=device.key,
                profile=profile,
                timestamp_ms=timestamp,
                reconnect=update,
                ephemeral_key=ephemeral,
            )
            request = client.send_request()
            with self._lock:
                self.attempts += 1
            outcome = self._exchange(client, request)
            if not isinstance(outcome, Registered):
                with self._lock:
                    self.failures[outcome] += 1
                if outcome == "ConnectionRefusedError":
                    time.sleep(0.005)  # the node is down: wait for its restart
                continue
            result = outcome.result
            assert result.endpoint_id == _crypto.endpoint_id(_crypto.public_key_der(device.key))
            with self._lock:
                self.acks.append(
                    Ack(
                        result.endpoint_id,
                        timestamp,
                        hashlib.sha256(profile).hexdigest(),
                        RegistrationStatus(result.status),
                    )
                )
                if self.captured is None:
                    self.captured = (device, timestamp, profile, ephemeral, request)
            if not update:
                mine.append(device)

    def _exchange(self, client: RegisterClient, request: bytes) -> Registered | str:
        """The opened answer, or the name of what went wrong instead."""
        try:
            with socket.create_connection((self.node.host, self.node.port), timeout=20) as sock:
                sock.sendall(request)
                answer = read_to_eof(sock)
            client.receive_data(answer)
            client.receive_data(b"")
            event = client.next_event()
        except (OSError, KaaWireError) as exc:
            return type(exc).__name__
        return "no answer" if event is NEED_DATA else event


def _start_node(
    data: Path, port: int, store_args: list[str], name: str
) -> tuple[ServerProcess, int]:
    process = ServerProcess(
        "servers.operations",
        ["--data", str(data), "--host", "127.0.0.1", "--port", str(port), *store_args],
        data.parent / "logs",
        name,
    )
    line = process.wait_for_line("operations ")
    return process, int(line.rsplit(":", 1)[1])


def test_kill_9_during_a_registration_storm_loses_nothing_acknowledged(
    tmp_path: Path, store_args: list[str]
) -> None:
    data = tmp_path / "data"
    control_json(data, *store_args, "init")
    app = control_json(data, *store_args, "app", "create", "--name", "storm")
    sdk_token = control_json(data, *store_args, "sdk", "create", app["token"])["sdk_token"]
    static = _crypto.load_private_key((data / "operations.key").read_bytes())
    assert isinstance(static, x25519.X25519PrivateKey)

    process, port = _start_node(data, 0, store_args, "ops-0")
    node = OperationsNode(1, 1, 1, "127.0.0.1", port, _crypto.x25519_public_bytes(static))
    storm = Storm(node, sdk_token)
    rng = random.Random(STORM_SEED)
    acked_at_kill: list[int] = []
    storm.start()
    try:
        for kill in range(1, KILLS + 1):
            target = storm.acked() + rng.randint(*ACKS_BETWEEN_KILLS)
            wait_until(storm.reached(target), f"{target} acknowledgements")
            process.proc.send_signal(signal.SIGKILL)
            process.proc.wait()
            acked_at_kill.append(storm.acked())
            process, _ = _start_node(data, port, store_args, f"ops-{kill}")
        target = storm.acked() + rng.randint(*ACKS_BETWEEN_KILLS)
        wait_until(storm.reached(target), "acknowledgements after the last restart")
    finally:
        storm.stop()

    # A capture from before the crashes, replayed after them: the replay defence is durable.
    assert storm.captured is not None
    device, timestamp, profile, ephemeral, request = storm.captured
    replay = RegisterClient(
        node,
        sdk_token=sdk_token,
        private_key=device.key,
        profile=profile,
        timestamp_ms=timestamp,
        ephemeral_key=ephemeral,
    )
    assert replay.send_request() == request
    with pytest.raises(ReplayedRequest):
        send_registration(replay, request)
    assert process.stop() == 0, process.logs()

    stored = {
        e["endpoint_id"]: e
        for e in control_json(data, *store_args, "endpoint", "list", "--limit", "10000000")
    }
    latest: dict[bytes, Ack] = {}
    for ack in storm.acks:
        if ack.endpoint_id not in latest or ack.timestamp_ms > latest[ack.endpoint_id].timestamp_ms:
            latest[ack.endpoint_id] = ack
    lost = [a for a in latest.values() if a.endpoint_id.hex() not in stored]
    older = [
        a
        for a in latest.values()
        if a.endpoint_id.hex() in stored
        and stored[a.endpoint_id.hex()]["last_request_ms"] < a.timestamp_ms
    ]
    changed = [
        a
        for a in latest.values()
        if a.endpoint_id.hex() in stored
        and stored[a.endpoint_id.hex()]["last_request_ms"] == a.timestamp_ms
        and stored[a.endpoint_id.hex()]["profile_sha256"] != a.profile_sha256
    ]
    statuses = Counter(a.status.name for a in storm.acks)
    print(
        f"storm [{'postgresql' if store_args else 'sqlite'}]: {storm.attempts} attempts, "
        f"{len(storm.acks)} acknowledged ({dict(statuses)}) for {len(latest)} endpoints, "
        f"{len(latest) - len(lost)} found, {len(lost)} lost, {len(older)} rolled back, "
        f"{KILLS} kills at {acked_at_kill} acks, failures {dict(storm.failures)}"
    )
    assert not lost, f"{len(lost)} acknowledged registrations lost"
    assert not older, f"{len(older)} acknowledged updates rolled back"
    assert not changed, f"{len(changed)} acknowledged profiles replaced"
    assert statuses["PROFILE_UPDATED"] > 0 and statuses["NEW"] > 0
    assert sum(storm.failures.values()) > 0  # the kills did hit the storm


# -- kill -9 of the client while it writes its state -------------------------------------------

KILLED_CLIENT = Path(__file__).with_name("killed_client.py")
TIMED_DEVICES = 6
TIMED_KILLS_PER_DEVICE = 2
CLIENT_SEED = 99


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainServer]:
    main = start_main(tmp_path_factory.mktemp("client-kills") / "data")
    yield main
    assert main.process.stop() == 0, main.process.logs()


def _client(server: MainServer, state: Path, kill_at: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(KILLED_CLIENT), str(kill_at), str(state), "register",
         "--sdk", str(server.data / "sdk.json"), "--state", str(state), "--timeout", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def _finish(child: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = child.communicate(timeout=START_TIMEOUT_S)
    return child.returncode, out, err


#: The files a state directory may hold: its own, and temp files of atomic_write.
_EXPECTED_FILE = re.compile(
    r"^(key\.private|key\.public|state\.json|profile|bootstrap-trust\.json|\.lock"
    r"|\.(key\.private|key\.public|state\.json|profile|bootstrap-trust\.json)\..+)$"
)


def _intact(state: Path, known_key: bytes | None) -> bytes | None:
    """Check the device's files after a kill; the private key bytes, or None if absent.

    key.private is whole (it loads) or absent; absent only if it was never written (then
    nothing else that names an identity exists either); once written it never changes.
    key.public, if present, is its public key. state.json, if present, is intact and names
    that key. Leftover temp files are allowed (the next open removes them).
    """
    private_path = state / "key.private"
    if not private_path.exists():
        assert known_key is None, "the private key was lost"
        assert not (state / "key.public").exists()
        assert not (state / "state.json").exists()
        return None
    private = private_path.read_bytes()
    if known_key is not None:
        assert private == known_key, "the private key was replaced"
    key = _crypto.load_private_key(private)  # whole, or this raises
    assert not isinstance(key, x25519.X25519PrivateKey)
    if (state / "key.public").exists():
        assert (state / "key.public").read_bytes() == _crypto.public_key_pem(key)
    if (state / "state.json").exists():
        saved = decode_state((state / "state.json").read_bytes())
        assert saved.endpoint_id == _crypto.endpoint_id(_crypto.public_key_der(key)).hex()
    strays = [p.name for p in state.iterdir() if not _EXPECTED_FILE.match(p.name)]
    assert not strays, strays
    return private


def _completes(server: MainServer, state: Path, known_key: bytes | None) -> str:
    """The next boot, in this process (the same library the CLI runs), to the end: it
    registers, with the key that was there if there was one."""
    policy = RetryPolicy(base_delay_s=0.02, max_delay_s=0.2, exchange_timeout_s=20, deadline_s=120)
    with ClientDevice.open(state, server.data / "sdk.json", policy=policy) as device:
        outcome = device.register(b"")  # the CLI's default profile
    assert isinstance(outcome, Connected), outcome
    assert outcome.status in ("new", "existing")
    private = _intact(state, known_key)
    assert private is not None
    key = _crypto.load_private_key(private)
    assert not isinstance(key, x25519.X25519PrivateKey)
    assert outcome.endpoint_id == _crypto.endpoint_id(_crypto.public_key_der(key)).hex()
    return outcome.endpoint_id


def test_kill_9_of_the_client_never_loses_or_replaces_its_key(
    servers: MainServer, tmp_path: Path
) -> None:
    # A clean first boot lists the steps: the exhaustive kill points.
    code, _, err = _finish(_client(servers, tmp_path / "calibration", 0))
    assert code == 0, err
    steps = err.split("steps:\n", 1)[1].split()
    first_boot_steps = len(err.split("steps:\n", 1)[1].splitlines())
    assert first_boot_steps >= 15 and "socket.connect" in steps

    def at_step(k: int) -> tuple[str, str]:
        """Kill a first boot before step k; check; then a run to the end."""
        state = tmp_path / f"step-{k}"
        code, _, err = _finish(_client(servers, state, k))
        assert code == -signal.SIGKILL, err
        key = _intact(state, None)
        return f"step {k}", _completes(servers, state, key)

    def timed(device: int) -> list[tuple[str, str]]:
        """Kill boots of one device at random moments; check after each; then finish."""
        rng = random.Random(CLIENT_SEED + device)
        state = tmp_path / f"timed-{device}"
        key: bytes | None = None
        outcomes = []
        for _ in range(TIMED_KILLS_PER_DEVICE):
            child = _client(servers, state, 0)
            time.sleep(rng.uniform(0.05, 0.6))
            child.send_signal(signal.SIGKILL)
            code, _, err = _finish(child)
            assert code in (0, -signal.SIGKILL), err
            outcomes.append(("killed" if code else "finished first", ""))
            key = _intact(state, key)
        outcomes.append(("timed", _completes(servers, state, key)))
        return outcomes

    with ThreadPoolExecutor(8) as pool:
        stepped = list(pool.map(at_step, range(1, first_boot_steps + 1)))
        timed_runs = [o for runs in pool.map(timed, range(TIMED_DEVICES)) for o in runs]
    registered = [endpoint for _, endpoint in stepped] + [e for what, e in timed_runs if e]
    stored = {
        e["endpoint_id"]
        for e in control_json(servers.data, "endpoint", "list", "--limit", "100000")
    }
    assert set(registered) <= stored
    kills = len(stepped) + sum(1 for what, _ in timed_runs if what == "killed")
    print(
        f"client kills: {len(stepped)} at each step of a first boot, "
        f"{kills - len(stepped)} at random moments, {len(registered)} devices registered, "
        "0 keys lost or replaced"
    )
