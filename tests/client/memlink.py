"""An in-memory cluster for the client's policy tests, on kaa_wire's real server cores.

Not a mock: each Bootstrap answers through ``BootstrapServerConnection`` and signs with a
real RSA key; each Operations node opens, verifies and answers through
``OperationsServerConnection``. Only the sockets are replaced, by a direct call, and the
clock and sleep by a virtual clock, so the plan runs deterministically and instantly.
Knobs on each server inject the faults the policy must survive.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

from client import Exchange, Outcome, RegistrationPlan, RetryPolicy, _blocking
from client._state import DeviceState
from kaa_wire import (
    NEED_DATA,
    BootstrapServerConnection,
    KaaWireError,
    OperationsNode,
    OperationsServerConnection,
    Overloaded,
    RegistrationOpener,
    RegistrationResult,
    RegistrationStatus,
    RegistrationVerifier,
    ReplayedRequest,
    ResolveRequest,
    RevokedEndpoint,
    Signer,
    UnknownKeyHash,
    UnknownSdkToken,
    UnsupportedAlgorithm,
    _crypto,
    check_freshness,
)
from kaa_wire._messages import RotationCertificate
from kaa_wire.sdk_config import BootstrapServer, SdkConfig

APP_TOKEN = "app-token"
SDK_TOKEN = "sdk-token"
EPOCH_MS = 1_795_000_000_000
FRESHNESS_WINDOW_MS = 30_000
CONFIG = b'{"sampling_s": 60}'


class VirtualClock:
    """Monotonic seconds that move only when the plan sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@dataclasses.dataclass
class FakeBootstrap:
    """``signer`` signs as key generation ``1 + len(rotations)``; ``rotations`` are the
    certificates of generations 2, 3, ... (a rotated Bootstrap)."""

    signer: Any  # kaa_wire.Signer (either implementation)
    cluster: Cluster
    valid_for_s: int = 300
    time_offset_ms: int = 0
    tamper_signature: bool = False
    replay_nonce: bytes | None = None
    nodes: tuple[OperationsNode, ...] | None = None
    rotations: tuple[RotationCertificate, ...] = ()

    def respond(self, request: bytes) -> bytes:
        conn = BootstrapServerConnection()
        conn.receive_data(request)
        request_event = conn.next_event()
        assert isinstance(request_event, ResolveRequest)
        if self.replay_nonce is not None:  # answer as if to an earlier request
            conn.request = dataclasses.replace(request_event, nonce=self.replay_nonce)
        generation = 1 + len(self.rotations)
        if request_event.key_generation > generation:
            return conn.send_error(UnsupportedAlgorithm("a newer key generation"))
        data = conn.data_to_sign(
            self.cluster.operations_nodes() if self.nodes is None else self.nodes,
            server_time_ms=self.cluster.server_time_ms() + self.time_offset_ms,
            valid_for_s=self.valid_for_s,
            signature_algorithm=self.signer.algorithm,
            key_generation=generation,
            rotations=self.rotations[request_event.key_generation - 1 :],
        )
        answer = bytearray(conn.send_response(self.signer.sign(data)))
        if self.tamper_signature:
            answer[-7] ^= 0x01  # a byte inside the trailing signature
        return bytes(answer)


@dataclasses.dataclass
class FakeOperations:
    node: OperationsNode
    opener: Any
    cluster: Cluster
    overloaded_ms: int | None = None
    forged_revocation: bool = False
    wrong_endpoint_id: bool = False
    #: The timestamp of every request this node opened, in order.
    timestamps: list[int] = dataclasses.field(default_factory=list)

    def respond(self, request: bytes) -> bytes:
        conn = OperationsServerConnection(self.opener, RegistrationVerifier())
        if self.forged_revocation:  # what anyone on the path could send: a plain error
            return conn.send_error(RevokedEndpoint("forged"))
        if self.overloaded_ms is not None:  # refused before opening: a plain error
            return conn.send_error(Overloaded(retry_after_ms=self.overloaded_ms))
        conn.receive_data(request)
        payload = conn.next_event()
        self.timestamps.append(payload.timestamp_ms)
        try:
            return self._register(conn, payload)
        except KaaWireError as exc:
            return conn.send_error(exc)

    def _register(self, conn: OperationsServerConnection, payload: Any) -> bytes:
        cluster = self.cluster
        if payload.sdk_token != SDK_TOKEN:
            raise UnknownSdkToken()
        check_freshness(payload.timestamp_ms, cluster.server_time_ms(), FRESHNESS_WINDOW_MS)
        if payload.key_is_hash:
            cluster.key_hash_requests += 1
            known = cluster.endpoints.get(payload.key)
            if known is None:
                raise UnknownKeyHash()
            endpoint_id = conn.verify(known[0])
        else:
            cluster.full_key_requests += 1
            endpoint_id = conn.verify()
        if endpoint_id in cluster.revoked:
            raise RevokedEndpoint("revoked by the operator")
        if payload.timestamp_ms <= cluster.last_accepted_ms.get(endpoint_id, -1):
            raise ReplayedRequest("timestamp not newer than the last accepted one")
        cluster.last_accepted_ms[endpoint_id] = payload.timestamp_ms
        known = cluster.endpoints.get(endpoint_id)
        if known is None:
            status = RegistrationStatus.NEW
            key_der = payload.key
        else:
            key_der = known[0]
            same = known[1] == payload.profile
            status = RegistrationStatus.EXISTING if same else RegistrationStatus.PROFILE_UPDATED
        cluster.endpoints[endpoint_id] = (key_der, payload.profile)
        if self.wrong_endpoint_id:
            endpoint_id = bytes(20)
        result = RegistrationResult(
            int(status), endpoint_id, cluster.server_time_ms(), 7, CONFIG, retry_base_ms=0
        )
        return conn.send_result(result)


class Cluster:
    """Bootstrap servers on ports 7001.., Operations nodes on 8001.., all on 127.0.0.1."""

    def __init__(self, keys: dict[str, Any], clock: VirtualClock) -> None:
        self.keys = keys
        self.clock = clock
        self.bootstraps: dict[int, FakeBootstrap] = {}
        self.operations: dict[int, FakeOperations] = {}
        self.dead: set[int] = set()
        self.contacted: list[tuple[str, int]] = []
        self.endpoints: dict[bytes, tuple[bytes, bytes]] = {}
        self.revoked: set[bytes] = set()
        self.last_accepted_ms: dict[bytes, int] = {}
        self.key_hash_requests = 0
        self.full_key_requests = 0

    def server_time_ms(self) -> int:
        return EPOCH_MS + round(self.clock.now * 1000)

    def add_bootstrap(self, **knobs: Any) -> FakeBootstrap:
        signer = Signer(_crypto.private_key_pem(self.keys["bootstrap_rsa"]))
        bootstrap = FakeBootstrap(signer, self, **knobs)
        self.bootstraps[7001 + len(self.bootstraps)] = bootstrap
        return bootstrap

    def add_operations(self, priority: int = 1, weight: int = 1, **knobs: Any) -> FakeOperations:
        port = 8001 + len(self.operations)
        static = _crypto.generate_x25519_key()
        node = OperationsNode(
            priority, weight, port, "127.0.0.1", port, _crypto.x25519_public_bytes(static)
        )
        operations = FakeOperations(node, RegistrationOpener(static), self, **knobs)
        self.operations[port] = operations
        return operations

    def operations_nodes(self) -> tuple[OperationsNode, ...]:
        return tuple(ops.node for ops in self.operations.values())

    def sdk_config(self, *, dead_ports: tuple[int, ...] = ()) -> SdkConfig:
        pem = _crypto.public_key_pem(self.keys["bootstrap_rsa"]).decode()
        ports = (*self.bootstraps, *dead_ports)
        return SdkConfig(
            APP_TOKEN, SDK_TOKEN, tuple(BootstrapServer("127.0.0.1", p, pem) for p in ports)
        )

    def exchange(self, exchange: Exchange) -> Any:
        """Carry one exchange, as a transport would, minus the socket."""
        self.contacted.append((exchange.stage, exchange.port))
        server = self.bootstraps.get(exchange.port) or self.operations.get(exchange.port)
        if server is None or exchange.port in self.dead:
            raise ConnectionRefusedError(f"port {exchange.port} is closed")
        exchange.sent = len(exchange.request)
        event = exchange.receive(server.respond(exchange.request))
        if event is NEED_DATA:
            event = exchange.receive(b"")
        return event


def drive(plan: RegistrationPlan, cluster: Cluster) -> Outcome:
    """Run ``plan`` with the blocking transport's loop, over the in-memory cluster."""
    return _blocking.run(
        plan,
        timeout_s=10,
        sleep=cluster.clock.sleep,
        carry=lambda exchange, _timeout: cluster.exchange(exchange),
    )


def make_plan(
    cluster: Cluster,
    state: DeviceState,
    *,
    profile: bytes = b'{"model":"t1000"}',
    config: SdkConfig | None = None,
    policy: RetryPolicy | None = None,
    seed: int = 1,
    on_event: Callable[[Any], None] | None = None,
    resolved: Any = None,
    trust: Any = None,
) -> RegistrationPlan:
    config = config or cluster.sdk_config()
    return RegistrationPlan(
        config,
        [server.trusted_key() for server in config.bootstrap_servers],
        cluster.keys["endpoint_rsa"],
        state,
        profile,
        policy=policy or RetryPolicy(),
        rng=random.Random(seed),
        clock=cluster.clock,
        on_event=on_event,
        resolved=resolved,
        trust=trust,
    )
