"""Balancing: the strategies as pure functions, then a real cluster of Operations nodes
(one ``python -m servers`` plus extra ``python -m servers.operations`` processes)."""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Iterator

import pytest
from servers_harness import (
    Endpoint,
    MainServer,
    ServerProcess,
    control,
    control_json,
    resolve,
    start_main,
    start_operations,
    wait_until,
)

from kaa_wire import RegistrationStatus
from kaa_wire.sdk_config import SdkConfig
from servers.balancing import MAX_NODES, make_plan
from servers.store.base import Balancing, Node


def _node(name: str, priority: int = 100, weight: int = 100, load: int = 0) -> Node:
    return Node(
        node_id=name,
        host=f"{name}.example",
        port=9997,
        kex_public_key=bytes(32),
        priority=priority,
        weight=weight,
        load=load,
        lease_expires_ms=1,
        started_ms=0,
        renewed_ms=0,
    )


def _hosts(variant: tuple) -> list[tuple[str, int]]:
    return [(n.host.split(".")[0], n.priority) for n in variant]


# -- strategies --------------------------------------------------------------------------


def test_no_live_node_gives_an_empty_plan() -> None:
    for strategy in Balancing:
        assert not make_plan(strategy, [], "app")


def test_static_lists_by_priority_and_rotates_ties() -> None:
    plan = make_plan(Balancing.STATIC, [_node("a", 100), _node("b", 200), _node("c", 200)], "x")
    assert [_hosts(v) for v in plan.variants] == [
        [("b", 200), ("c", 200), ("a", 100)],
        [("c", 200), ("b", 200), ("a", 100)],
    ]
    assert plan.weights == (1, 1)
    single = make_plan(Balancing.STATIC, [_node("a", 100), _node("b", 200)], "x")
    assert [_hosts(v) for v in single.variants] == [[("b", 200), ("a", 100)]]


def test_least_loaded_prefers_the_lowest_load_per_weight() -> None:
    nodes = [_node("a", load=100), _node("b", load=50), _node("c", load=52), _node("d", load=400)]
    plan = make_plan(Balancing.LEAST_LOADED, nodes, "x")
    # b and c are within the tie tolerance of each other; a, then d, follow.
    assert [_hosts(v) for v in plan.variants] == [
        [("b", 255), ("c", 255), ("a", 254), ("d", 253)],
        [("c", 255), ("b", 255), ("a", 254), ("d", 253)],
    ]
    # Twice the weight carries twice the load at the same preference.
    heavy = make_plan(
        Balancing.LEAST_LOADED, [_node("a", weight=200, load=100), _node("b", load=60)], "x"
    )
    assert _hosts(heavy.variants[0])[0] == ("a", 255)
    assert len(heavy.variants) == 1


def test_weighted_random_puts_each_node_first_in_proportion_to_its_weight() -> None:
    nodes = [_node("a", weight=300), _node("b", weight=100), _node("z", weight=0)]
    plan = make_plan(Balancing.WEIGHTED_RANDOM, nodes, "x")
    assert plan.weights == (300, 100, 0)
    assert [_hosts(v)[0] for v in plan.variants] == [("a", 255), ("b", 255), ("z", 255)]
    assert all(sorted(p for _, p in _hosts(v)) == [253, 254, 255] for v in plan.variants)
    rng = random.Random(1234)  # a fixed seed: the counts below are exact, not statistical
    firsts = collections.Counter(plan.pick(rng)[0].host[0] for _ in range(4000))
    assert firsts["z"] == 0
    assert 2.5 < firsts["a"] / firsts["b"] < 3.5


def test_hash_affinity_is_stable_per_application_and_spreads_applications() -> None:
    nodes = [_node(name) for name in "abcd"]
    tops = {}
    for i in range(400):
        app = f"app-{i}"
        plan = make_plan(Balancing.HASH_AFFINITY, nodes, app)
        assert len(plan.variants) == 1
        assert (
            plan.variants == make_plan(Balancing.HASH_AFFINITY, list(reversed(nodes)), app).variants
        )
        tops[app] = plan.variants[0][0].host[0]
    assert set(collections.Counter(tops.values())) == set("abcd")
    # Losing node d moves only the applications whose first node was d.
    without_d = [n for n in nodes if n.node_id != "d"]
    for app, top in tops.items():
        if top != "d":
            assert make_plan(Balancing.HASH_AFFINITY, without_d, app).variants[0][0].host[0] == top


def test_answers_never_list_more_nodes_than_the_wire_allows() -> None:
    nodes = [_node(f"n{i:03d}", priority=i % 3) for i in range(300)]
    for strategy in Balancing:
        plan = make_plan(strategy, nodes, "x")
        assert all(len(v) == MAX_NODES for v in plan.variants)


# -- a real cluster --------------------------------------------------------------------------


class Cluster:
    def __init__(self, main: MainServer, extra: dict[str, tuple[ServerProcess, int]]) -> None:
        self.main = main
        self.extra = extra

    @property
    def sdk(self) -> SdkConfig:
        return self.main.sdk

    def port(self, name: str) -> int:
        return self.extra[name][1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    data = tmp_path_factory.mktemp("cluster") / "data"
    main = start_main(data, "--refresh-s", "0.2", "--priority", "100")
    extra = {}
    try:
        for name in ("b", "c"):
            extra[name] = start_operations(
                data, "--priority", "200", "--lease-s", "6", "--node-id", name, name=name
            )
        wanted = {extra["b"][1], extra["c"][1], main.listeners["operations_port"]}
        wait_until(lambda: {n.port for n in resolve(main.sdk).nodes} == wanted, "three nodes")
        yield Cluster(main, extra)
    finally:
        for process, _ in extra.values():
            assert process.stop() == 0, process.logs()
        assert main.process.stop() == 0, main.process.logs()


def test_top_priority_nodes_come_first_and_take_registrations(
    cluster: Cluster, rsa_keys: list
) -> None:
    resolved = resolve(cluster.sdk)
    priorities = [n.priority for n in resolved.nodes]
    assert priorities == [200, 200, 100]
    assert {n.port for n in resolved.nodes[:2]} == {cluster.port("b"), cluster.port("c")}
    # Both top nodes serve the same registry: a NEW on one is EXISTING on the other.
    endpoint = Endpoint(cluster.sdk, rsa_keys[0])
    first, second = resolved.nodes[:2]
    assert endpoint.register(b"{}", node=first).status == RegistrationStatus.NEW
    result = endpoint.register(b"{}", node=second, reconnect=True)
    assert result.status == RegistrationStatus.EXISTING


def test_ties_are_broken_at_random(cluster: Cluster) -> None:
    """Which tied node is listed first is a fair coin per answer.

    With n = 200 answers and a fair coin, P(count outside [60, 140]) is below 1e-8 (the
    exact binomial tail is computed below), so this fails only when the draw is not fair.
    """
    n, low, high = 200, 60, 140
    tail = 2 * sum(math.comb(n, k) for k in range(low)) / 2**n
    assert tail < 1e-8
    firsts = collections.Counter(resolve(cluster.sdk).nodes[0].port for _ in range(n))
    assert set(firsts) == {cluster.port("b"), cluster.port("c")}
    assert low <= firsts[cluster.port("b")] <= high


@pytest.mark.crash
def test_a_node_whose_lease_lapses_drops_out(cluster: Cluster) -> None:
    data = cluster.main.data
    process, port = start_operations(
        data, "--priority", "250", "--lease-s", "1", "--node-id", "d", name="d"
    )
    try:
        wait_until(lambda: resolve(cluster.sdk).nodes[0].port == port, "node d on top")
    finally:
        process.kill()  # SIGKILL: no clean shutdown, the lease must lapse by itself
    wait_until(lambda: port not in {n.port for n in resolve(cluster.sdk).nodes}, "d to drop out")
    nodes = {n["node_id"]: n for n in control_json(data, "nodes", "list")}
    assert nodes["d"]["live"] is False
    assert nodes["b"]["live"] and nodes["c"]["live"]


def test_a_clean_shutdown_releases_the_lease_at_once(cluster: Cluster) -> None:
    data = cluster.main.data
    process, _ = start_operations(data, "--node-id", "e", name="e")
    assert "e" in {n["node_id"] for n in control_json(data, "nodes", "list")}
    assert process.stop() == 0
    assert "e" not in {n["node_id"] for n in control_json(data, "nodes", "list")}


def test_strategy_is_chosen_per_application(cluster: Cluster) -> None:
    data = cluster.main.data
    app = control_json(data, "app", "create", "--name", "sticky", "--balancing", "hash-affinity")
    token = control_json(data, "sdk", "create", app["token"])["sdk_token"]
    out = data.parent / "sticky.json"
    port = cluster.main.listeners["bootstrap_port"]
    control(
        data,
        "sdk", "export", "--app", app["token"], "--sdk-token", token, "--out", str(out),
        "--bootstrap", f"127.0.0.1:{port}",
    )  # fmt: skip
    sdk = SdkConfig.from_json(out.read_text())
    orders = {tuple(n.port for n in resolve(sdk).nodes) for _ in range(20)}
    assert len(orders) == 1
    assert [n.priority for n in resolve(sdk).nodes] == [255, 254, 253]
