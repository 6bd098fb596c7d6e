"""A cluster on one PostgreSQL database, each process on its own loopback address.

Two Bootstraps (127.0.0.2, and 127.0.0.3 with two worker processes) and two Operations
nodes (127.0.0.4 and 127.0.0.5, with a 2 s lease) share one database and one data
directory (the keys). Devices are the real client library (client/): they resolve through
either Bootstrap and register on either node. The Bootstraps poll the node table only
once an hour (``--refresh-s 3600``), so what they learn in time here they learned from the
store: nodes joining by LISTEN/NOTIFY, a killed node dropping out when its lease expires.

The tests run in file order on one cluster; the last one kills a node.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from servers_harness import (
    Endpoint,
    ServerProcess,
    control,
    exchange,
    send_registration,
    wait_until,
)

from benchmarks.throwaway_db import drop_database, new_database
from client import Attempt, Connected, Device, Event, Revoked
from kaa_wire import (
    RegistrationStatus,
    ReplayedRequest,
    ResolveClient,
    Resolved,
    _crypto,
)
from kaa_wire.sdk_config import SdkConfig

pytestmark = pytest.mark.postgres

BOOTSTRAPS = {"bootstrap-a": "127.0.0.2", "bootstrap-b": "127.0.0.3"}
OPERATIONS = {"ops-1": "127.0.0.4", "ops-2": "127.0.0.5"}
LEASE_S = "2"
PROFILE = json.dumps({"model": "meter-9", "firmware": "2.0.1"}).encode()


@dataclasses.dataclass
class Cluster:
    dsn: str
    data: Path
    sdk_path: Path
    sdk: SdkConfig
    processes: dict[str, ServerProcess]
    root: Path

    def control(self, *args: str) -> Any:
        return json.loads(control(self.data, "--store", self.dsn, *args).stdout)

    def query(self, sql: str, *params: object) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.dsn)
            try:
                return list(await conn.fetch(sql, *params))
            finally:
                await conn.close()

        return asyncio.run(run())

    def device(self, name: str, seed: int, events: list[Event] | None = None) -> Device:
        """A device with its own state directory; ``seed`` fixes its choices of servers."""
        return Device.open(
            self.root / "devices" / name,
            self.sdk,
            rng=random.Random(seed),
            on_event=None if events is None else events.append,
        )


def _start(name: str, module: str, host: str, cluster_args: list[str], root: Path) -> ServerProcess:
    return ServerProcess(
        module,
        ["--host", host, "--port", "0", *cluster_args],
        root / "logs",
        name,
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_dsn: str) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    data = root / "data"
    dsn = new_database(postgres_dsn, "kaa_test_")
    processes: dict[str, ServerProcess] = {}
    try:
        store = ["--data", str(data), "--store", dsn]

        def on_store(*args: str) -> Any:
            return json.loads(control(data, "--store", dsn, *args).stdout)

        on_store("init")
        app = on_store("app", "create", "--name", "meters")
        sdk_token = on_store("sdk", "create", app["token"])["sdk_token"]
        # Bootstraps first: they can learn of the nodes only from the store's notifications.
        processes["bootstrap-a"] = _start(
            "bootstrap-a", "servers.bootstrap", BOOTSTRAPS["bootstrap-a"],
            [*store, "--refresh-s", "3600"], root,
        )  # fmt: skip
        processes["bootstrap-b"] = _start(
            "bootstrap-b", "servers.bootstrap", BOOTSTRAPS["bootstrap-b"],
            [*store, "--refresh-s", "3600", "--workers", "2"], root,
        )  # fmt: skip
        ports = {
            name: int(processes[name].wait_for_line("bootstrap ").rsplit(":", 1)[1])
            for name in BOOTSTRAPS
        }
        for name, host in OPERATIONS.items():
            processes[name] = _start(
                name, "servers.operations", host,
                [*store, "--node-id", name, "--lease-s", LEASE_S], root,
            )  # fmt: skip
        for name in OPERATIONS:
            processes[name].wait_for_line("operations ")
        sdk_path = root / "sdk.json"
        on_store(
            "sdk", "export", "--app", app["token"], "--sdk-token", sdk_token,
            "--out", str(sdk_path), "--no-header",
            *(f"--bootstrap={host}:{ports[name]}" for name, host in BOOTSTRAPS.items()),
        )  # fmt: skip
        sdk = SdkConfig.from_json(sdk_path.read_text())
        yield Cluster(dsn, data, sdk_path, sdk, processes, root)
        for name, process in processes.items():
            if process.proc.poll() is None:
                assert process.stop() == 0, f"{name}:\n{process.logs()}"
    finally:
        for process in processes.values():
            if process.proc.poll() is None:
                process.kill()
        drop_database(postgres_dsn, dsn)


def resolve_via(sdk: SdkConfig, index: int) -> Resolved:
    """One verified resolution from the SDK's ``index``-th Bootstrap."""
    server = sdk.bootstrap_servers[index]
    client = ResolveClient(
        sdk.application_token,
        server.public_key(),
        nonce=os.urandom(16),
        max_frame_size=sdk.max_frame_size,
    )
    client.receive_data(exchange(server.host, server.port, client.send_request()))
    client.receive_data(b"")
    event = client.next_event(0.0)
    assert isinstance(event, Resolved)
    return event


def listed_hosts(sdk: SdkConfig, index: int) -> set[str]:
    try:
        return {node.host for node in resolve_via(sdk, index).nodes}
    except Exception:  # OVERLOADED while no node is live: nothing listed
        return set()


def every_answer_lists(sdk: SdkConfig, hosts: set[str], tries: int = 10) -> bool:
    """Whether ``tries`` resolutions from each Bootstrap (reaching each of its worker
    processes, most likely) all list exactly ``hosts``."""
    return all(
        listed_hosts(sdk, index) == hosts
        for index in range(len(sdk.bootstrap_servers))
        for _ in range(tries)
    )


def test_bootstraps_learn_of_joining_nodes_from_the_store(cluster: Cluster) -> None:
    everything = set(OPERATIONS.values())
    wait_until(lambda: every_answer_lists(cluster.sdk, everything), "both nodes in answers")
    nodes = cluster.control("nodes", "list")
    assert {(n["node_id"], n["host"], n["live"]) for n in nodes} == {
        (name, host, True) for name, host in OPERATIONS.items()
    }


def test_registrations_land_once_whichever_servers_devices_use(cluster: Cluster) -> None:
    events: list[Event] = []
    ids = []
    for i in range(6):
        with cluster.device(f"d{i}", seed=i, events=events) as device:
            first = device.register(PROFILE)
            assert isinstance(first, Connected) and first.status == "new", first
            again = device.register(PROFILE)
            assert isinstance(again, Connected) and again.status == "existing", again
            ids.append((bytes.fromhex(device.endpoint_id), device.state.last_timestamp_ms))
    attempts = [e for e in events if isinstance(e, Attempt)]
    assert all(a.ok for a in attempts), [a.describe() for a in attempts if not a.ok]
    # The seeds make the devices start from both Bootstraps.
    assert {a.host for a in attempts if a.stage == "resolve"} == set(BOOTSTRAPS.values())
    rows = cluster.query(
        "SELECT endpoint_id, last_request_ms, registration_status FROM endpoints "
        "WHERE endpoint_id = ANY($1::bytea[])",
        [endpoint_id for endpoint_id, _ in ids],
    )
    assert sorted((bytes(r[0]), r[1], r[2]) for r in rows) == sorted(
        (endpoint_id, last_ms, "EXISTING") for endpoint_id, last_ms in ids
    )


def test_one_request_sent_to_both_nodes_is_accepted_once(
    cluster: Cluster, endpoint_keys: list[_crypto.PrivateKey]
) -> None:
    endpoint = Endpoint(cluster.sdk, endpoint_keys[0])
    resolved = endpoint.resolve()
    nodes = {node.host: node for node in resolved.nodes}
    timestamp = endpoint.timestamp_ms()
    ephemeral = _crypto.generate_x25519_key()
    clients = [
        endpoint.client(nodes[host], PROFILE, timestamp_ms=timestamp, ephemeral_key=ephemeral)
        for host in OPERATIONS.values()
    ]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(send_registration, client) for client in clients]
        results = []
        for future in futures:
            try:
                results.append(future.result().status)
            except ReplayedRequest as refused:
                assert refused.sealed
                results.append("replayed")
    assert sorted(map(str, results)) == sorted([str(RegistrationStatus.NEW), "replayed"])
    rows = cluster.query(
        "SELECT last_request_ms FROM endpoints WHERE endpoint_id = $1", endpoint.endpoint_id
    )
    assert [r[0] for r in rows] == [timestamp]


def test_control_tool_works_on_the_cluster_database(cluster: Cluster) -> None:
    endpoints = cluster.control("endpoint", "list", "--limit", "1000")
    assert len(endpoints) == 7
    victim = endpoints[0]["endpoint_id"]
    cluster.control("endpoint", "revoke", victim, "--reason", "lost")
    with cluster.device("d0", seed=0) as device:
        assert device.endpoint_id == victim
        outcome = device.register(PROFILE)
    assert isinstance(outcome, Revoked), outcome
    audit = cluster.control("audit", "list")
    assert (audit[0]["action"], audit[0]["subject"], audit[0]["detail"]) == (
        "endpoint.revoke",
        victim,
        "lost",
    )


def test_a_killed_node_drops_out_when_its_lease_lapses(cluster: Cluster) -> None:
    cluster.processes["ops-1"].kill()  # SIGKILL: no clean release of the lease
    survivor = {OPERATIONS["ops-2"]}
    wait_until(lambda: every_answer_lists(cluster.sdk, survivor), "answers without ops-1")
    nodes = {n["node_id"]: n["live"] for n in cluster.control("nodes", "list")}
    assert nodes == {"ops-1": False, "ops-2": True}
    events: list[Event] = []
    with cluster.device("late", seed=7, events=events) as device:
        outcome = device.register(PROFILE)
        assert isinstance(outcome, Connected) and outcome.status == "new", outcome
        assert outcome.server.host == OPERATIONS["ops-2"]
        late_id = bytes.fromhex(device.endpoint_id)
    assert all(e.ok for e in events if isinstance(e, Attempt))
    rows = cluster.query("SELECT count(*) FROM endpoints WHERE endpoint_id = $1", late_id)
    assert rows[0][0] == 1
    assert cluster.query("SELECT count(*) FROM endpoints")[0][0] == 8
