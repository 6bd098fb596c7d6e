"""The client policy (server choice, failover, backoff, reconnect) over an in-memory cluster.

The servers are kaa_wire's real server cores (see memlink.py); only sockets and time are
replaced, so every sleep the plan asks for is recorded and checked exactly.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from client import (
    Attempt,
    Connected,
    Exchange,
    Failed,
    RetryPolicy,
    Revoked,
    Sleep,
    Waiting,
    backoff_delay,
    order_nodes,
)
from client._policy import updated_state
from kaa_wire import (
    BadSignature,
    OperationsNode,
    Overloaded,
    ReplayedRequest,
    RevokedEndpoint,
    StaleRequest,
    UnexpectedMessage,
    UnknownKeyHash,
    _crypto,
)
from kaa_wire._constants import RegistrationStatus
from tests.client.memlink import CONFIG, Cluster, VirtualClock, drive, make_plan

PROFILE = b'{"model":"t1000"}'


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def cluster(vector_keys: dict[str, Any], clock: VirtualClock) -> Cluster:
    return Cluster(vector_keys, clock)


@pytest.fixture
def fresh(vector_keys: dict[str, Any]) -> Any:
    from client import DeviceState

    key_der = _crypto.public_key_der(vector_keys["endpoint_rsa"])
    return DeviceState(endpoint_id=_crypto.endpoint_id(key_der).hex())


def _events(sink: list[Any], kind: type) -> list[Any]:
    return [event for event in sink if isinstance(event, kind)]


# -- backoff and ordering, as pure functions ----------------------------------------------


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    rng, twin = random.Random(5), random.Random(5)
    for failures, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (8, 256.0), (9, 300.0), (500, 300.0)]:
        delay = backoff_delay(failures, 1.0, 300.0, rng)
        assert delay == twin.uniform(0.0, ceiling)
        assert 0.0 <= delay <= ceiling


def test_backoff_honours_retry_after_but_caps_it() -> None:
    rng = random.Random(3)
    assert backoff_delay(0, 0.001, 10.0, rng, retry_after_s=2.5) == 2.5
    assert backoff_delay(0, 0.001, 10.0, rng, retry_after_s=9999.0) == 10.0


def test_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(base_delay_s=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay_s=10, max_delay_s=1)
    with pytest.raises(ValueError):
        RetryPolicy(max_failures=0)


def _node(priority: int, weight: int, port: int) -> OperationsNode:
    return OperationsNode(priority, weight, port, "127.0.0.1", port, bytes(32))


def test_nodes_go_highest_priority_first_and_ties_at_random() -> None:
    nodes = [_node(1, 1, 1), _node(9, 1, 2), _node(9, 1, 3), _node(5, 1, 4)]
    orders = {tuple(n.port for n in order_nodes(nodes, random.Random(s))) for s in range(40)}
    assert orders == {(2, 3, 4, 1), (3, 2, 4, 1)}


def test_tie_order_follows_weight_and_weight_zero_goes_last() -> None:
    nodes = [_node(5, 0, 1), _node(5, 1, 2), _node(5, 99, 3)]
    firsts = [order_nodes(nodes, random.Random(s))[0].port for s in range(200)]
    assert firsts.count(3) > firsts.count(2) > 0
    assert all(order_nodes(nodes, random.Random(s))[-1].port == 1 for s in range(50))


# -- the plan over the in-memory cluster ---------------------------------------------------


def test_fresh_device_registers_with_its_full_key(cluster: Cluster, fresh: Any) -> None:
    cluster.add_bootstrap()
    cluster.add_operations()
    sink: list[Any] = []
    outcome = drive(make_plan(cluster, fresh, on_event=sink.append), cluster)
    assert isinstance(outcome, Connected)
    assert outcome.status == "new"
    assert outcome.endpoint_id == fresh.endpoint_id
    assert outcome.application_state.config == CONFIG
    assert outcome.application_state.config_version == 7
    assert [a.stage for a in outcome.attempts] == ["resolve", "register"]
    assert cluster.full_key_requests == 1 and cluster.key_hash_requests == 0
    assert sink[-1] is outcome and not _events(sink, Waiting)
    assert all(a.ok and a.sent > 0 and a.received > 0 for a in outcome.attempts)


def test_registered_device_reconnects_with_its_key_hash_then_updates_profile(
    cluster: Cluster, fresh: Any
) -> None:
    cluster.add_bootstrap()
    cluster.add_operations()
    first = drive(make_plan(cluster, fresh), cluster)
    state = updated_state(fresh, first, PROFILE)
    assert state is not None and state.registered

    again = drive(make_plan(cluster, state), cluster)
    assert isinstance(again, Connected) and again.status == "existing"
    assert again.attempts[-1].reconnect
    assert cluster.key_hash_requests == 1 and cluster.full_key_requests == 1

    state = updated_state(state, again, PROFILE)
    assert state is not None
    changed = drive(make_plan(cluster, state, profile=b'{"model":"t2000"}'), cluster)
    assert isinstance(changed, Connected) and changed.status == "profile_updated"
    assert cluster.key_hash_requests == 2 and cluster.full_key_requests == 1


def test_unknown_key_hash_falls_back_to_full_key_on_the_same_node(
    cluster: Cluster, fresh: Any
) -> None:
    cluster.add_bootstrap()
    ops = cluster.add_operations()
    registered = dataclasses.replace(fresh, registered=True, status="existing")
    sink: list[Any] = []
    outcome = drive(make_plan(cluster, registered, on_event=sink.append), cluster)
    assert isinstance(outcome, Connected) and outcome.status == "new"
    stages = [(a.stage, a.port, a.reconnect, type(a.cause)) for a in outcome.attempts]
    assert stages == [
        ("resolve", 7001, False, type(None)),
        ("register", ops.node.port, True, UnknownKeyHash),
        ("register", ops.node.port, False, type(None)),
    ]
    assert not _events(sink, Waiting)  # not a failure: no backoff
    # The retry came at once (the clock did not move), yet with a timestamp of its own.
    first, retry = ops.timestamps
    assert retry == first + 1


def test_dead_and_lying_bootstraps_are_skipped_with_backoff(
    cluster: Cluster, fresh: Any, clock: VirtualClock
) -> None:
    cluster.add_bootstrap(tamper_signature=True)  # 7001
    cluster.add_bootstrap(replay_nonce=bytes(range(16)))  # 7002: an old answer replayed
    cluster.add_bootstrap()  # 7003
    cluster.add_operations()
    config = cluster.sdk_config(dead_ports=(7999,))  # list order: 7001 7002 7003 7999
    # Seed 0 starts at index 3 (the dead port), then wraps around in list order.
    assert random.Random(0).randrange(4) == 3
    outcome = drive(make_plan(cluster, fresh, config=config, seed=0), cluster)
    assert isinstance(outcome, Connected)
    causes = [(a.port, type(a.cause)) for a in outcome.attempts]
    assert causes == [
        (7999, ConnectionRefusedError),
        (7001, BadSignature),
        (7002, ReplayedRequest),
        (7003, type(None)),
        (8001, type(None)),
    ]
    # One backoff per failure, each full jitter under a doubling ceiling (base 1 s).
    assert len(clock.sleeps) == 3
    assert all(0 <= s <= 2**i for i, s in enumerate(clock.sleeps))


def test_failed_bootstraps_answers_are_never_used(cluster: Cluster, fresh: Any) -> None:
    liar = cluster.add_bootstrap(tamper_signature=True)
    cluster.add_operations()
    trap = cluster.add_operations()
    liar.nodes = (trap.node,)  # the forged list points at a node of the attacker's choice
    cluster.add_bootstrap(nodes=(cluster.operations[8001].node,))
    policy = RetryPolicy(max_failures=5)
    outcome = drive(make_plan(cluster, fresh, policy=policy, seed=0), cluster)
    assert isinstance(outcome, Connected)
    assert ("register", trap.node.port) not in cluster.contacted


def test_highest_priority_first_and_failover_down_the_list(
    cluster: Cluster, fresh: Any, clock: VirtualClock
) -> None:
    cluster.add_bootstrap()
    low = cluster.add_operations(priority=1)
    top = cluster.add_operations(priority=9)
    cluster.dead.add(top.node.port)
    outcome = drive(make_plan(cluster, fresh), cluster)
    assert isinstance(outcome, Connected)
    assert outcome.server.port == low.node.port and outcome.server.priority == 1
    assert [(a.port, a.ok) for a in outcome.attempts[1:]] == [
        (top.node.port, False),
        (low.node.port, True),
    ]
    assert len(clock.sleeps) == 1


def test_exhausted_list_re_resolves_through_the_next_bootstrap(
    cluster: Cluster, fresh: Any
) -> None:
    cluster.add_bootstrap()
    cluster.add_bootstrap()
    ops = cluster.add_operations()
    cluster.dead.add(ops.node.port)
    outcome = drive(make_plan(cluster, fresh, policy=RetryPolicy(max_failures=4)), cluster)
    assert isinstance(outcome, Failed) and outcome.reason == "4 failed attempts"
    assert isinstance(outcome.cause, ConnectionRefusedError)
    stages = [(a.stage, a.port) for a in outcome.attempts]
    first = stages[0][1]
    second = 7001 if first == 7002 else 7002
    assert stages == [
        ("resolve", first),
        ("register", ops.node.port),
        ("resolve", second),
        ("register", ops.node.port),
        ("resolve", first),
        ("register", ops.node.port),
        ("resolve", second),
        ("register", ops.node.port),
    ]


def test_sealed_revocation_ends_the_plan(cluster: Cluster, fresh: Any) -> None:
    cluster.add_bootstrap()
    cluster.add_operations()
    cluster.revoked.add(bytes.fromhex(fresh.endpoint_id))
    outcome = drive(make_plan(cluster, fresh), cluster)
    assert isinstance(outcome, Revoked)
    assert outcome.message == "revoked by the operator"
    last = outcome.attempts[-1].cause
    assert isinstance(last, RevokedEndpoint) and last.sealed
    new_state = updated_state(fresh, outcome, PROFILE)
    assert new_state is not None and new_state.revoked


def test_unsealed_revocation_is_a_failure_of_that_server(
    cluster: Cluster, fresh: Any, clock: VirtualClock
) -> None:
    cluster.add_bootstrap()
    forger = cluster.add_operations(priority=9, forged_revocation=True)
    honest = cluster.add_operations(priority=1)
    outcome = drive(make_plan(cluster, fresh), cluster)
    assert isinstance(outcome, Connected) and outcome.server.port == honest.node.port
    cause = outcome.attempts[1].cause
    assert outcome.attempts[1].port == forger.node.port
    assert isinstance(cause, RevokedEndpoint) and not cause.sealed
    assert len(clock.sleeps) == 1


def test_overloaded_retry_after_is_honoured(
    cluster: Cluster, fresh: Any, clock: VirtualClock
) -> None:
    cluster.add_bootstrap()
    cluster.add_operations(priority=9, overloaded_ms=7_500)
    cluster.add_operations(priority=1)
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=60)
    outcome = drive(make_plan(cluster, fresh, policy=policy), cluster)
    assert isinstance(outcome, Connected) and outcome.server.priority == 1
    assert isinstance(outcome.attempts[1].cause, Overloaded)
    assert clock.sleeps == [7.5]


def test_stale_request_re_resolves(cluster: Cluster, fresh: Any) -> None:
    # A Bootstrap whose clock is an hour off (its list is validly signed): the Operations
    # node finds the timestamp stale, and the plan must re-resolve, not retry the node.
    cluster.add_bootstrap(time_offset_ms=-3_600_000)
    cluster.add_bootstrap()
    cluster.add_operations()
    outcome = drive(make_plan(cluster, fresh, seed=2), cluster)
    assert random.Random(2).randrange(2) == 0  # seed 2 starts at the skewed Bootstrap
    assert isinstance(outcome, Connected)
    assert [(a.stage, a.port, type(a.cause)) for a in outcome.attempts] == [
        ("resolve", 7001, type(None)),
        ("register", 8001, StaleRequest),
        ("resolve", 7002, type(None)),
        ("register", 8001, type(None)),
    ]


def test_expired_resolution_is_not_used(vector_keys: dict[str, Any], fresh: Any) -> None:
    # A 5 s list, a dead top node, and a first backoff drawn from [0, 10 s]: the plan must
    # re-resolve exactly when the wait outlived the list, and otherwise use it.
    policy = RetryPolicy(base_delay_s=10, max_delay_s=10)
    branches = set()
    for seed in range(12):
        cluster = Cluster(vector_keys, VirtualClock())
        cluster.add_bootstrap(valid_for_s=5)
        top = cluster.add_operations(priority=9)
        low = cluster.add_operations(priority=1)
        cluster.dead.add(top.node.port)
        outcome = drive(make_plan(cluster, fresh, policy=policy, seed=seed), cluster)
        assert isinstance(outcome, Connected)
        expired = cluster.clock.sleeps[0] >= 5
        third = (outcome.attempts[2].stage, outcome.attempts[2].port)
        assert third == (("resolve", 7001) if expired else ("register", low.node.port))
        branches.add(expired)
    assert branches == {True, False}


def test_deadline_gives_up_with_the_last_cause(
    cluster: Cluster, fresh: Any, clock: VirtualClock
) -> None:
    config = cluster.sdk_config(dead_ports=(7999,))
    start = clock.now
    policy = RetryPolicy(deadline_s=30)
    outcome = drive(make_plan(cluster, fresh, config=config, policy=policy), cluster)
    assert isinstance(outcome, Failed)
    assert outcome.reason == "deadline of 30 s reached"
    assert isinstance(outcome.cause, ConnectionRefusedError)
    assert clock.now - start <= 30
    assert len(outcome.attempts) == len(clock.sleeps) + 1
    assert outcome.to_json()["status"] == "failed"


def test_initial_hold_off_comes_before_any_exchange(cluster: Cluster, fresh: Any) -> None:
    cluster.add_bootstrap()
    cluster.add_operations()
    plan = make_plan(cluster, fresh, policy=RetryPolicy(initial_holdoff_s=30), seed=9)
    steps = plan.steps()
    first = next(steps)
    assert isinstance(first, Sleep)
    rng = random.Random(9)
    rng.randrange(1)  # the plan first draws its Bootstrap
    assert first.seconds == rng.uniform(0, 30)
    second = steps.send(None)
    assert isinstance(second, Exchange) and second.stage == "resolve"


def test_deadline_counts_from_the_end_of_the_hold_off(
    cluster: Cluster, fresh: Any, clock: VirtualClock
) -> None:
    cluster.add_bootstrap()
    cluster.add_operations()
    policy = RetryPolicy(initial_holdoff_s=600, deadline_s=1)
    outcome = drive(make_plan(cluster, fresh, policy=policy), cluster)
    assert isinstance(outcome, Connected)
    assert clock.sleeps[0] > 1  # the hold-off alone outlasts the deadline


def test_server_retry_hint_raises_the_base_delay(cluster: Cluster, fresh: Any) -> None:
    cluster.add_bootstrap()
    top = cluster.add_operations(priority=9)
    cluster.add_operations(priority=1)
    cluster.dead.add(top.node.port)
    hinted = dataclasses.replace(fresh, retry_base_ms=50_000)
    policy = RetryPolicy(base_delay_s=0.001, max_delay_s=100)
    sink: list[Any] = []
    outcome = drive(make_plan(cluster, hinted, policy=policy, on_event=sink.append), cluster)
    assert isinstance(outcome, Connected)
    (wait,) = _events(sink, Waiting)
    assert wait.delay_s == random_uniform_after_choice(cluster, hinted, policy, 50.0)
    unhinted = RetryPolicy(base_delay_s=0.001, max_delay_s=100, use_server_hints=False)
    sink.clear()
    drive(make_plan(cluster, hinted, policy=unhinted, on_event=sink.append), cluster)
    assert _events(sink, Waiting)[0].delay_s <= 0.001


def random_uniform_after_choice(
    cluster: Cluster, state: Any, policy: RetryPolicy, ceiling: float
) -> float:
    """The first jitter the plan draws: replay its rng (same seed, same draws before)."""
    rng = random.Random(1)
    rng.randrange(1)  # the Bootstrap start
    order_nodes(list(cluster.operations_nodes()), rng)
    return rng.uniform(0.0, ceiling)


def test_result_for_another_endpoint_is_refused(cluster: Cluster, fresh: Any) -> None:
    cluster.add_bootstrap()
    cluster.add_operations(priority=9, wrong_endpoint_id=True)
    cluster.add_operations(priority=1)
    outcome = drive(make_plan(cluster, fresh), cluster)
    assert isinstance(outcome, Connected) and outcome.server.priority == 1
    assert isinstance(outcome.attempts[1].cause, UnexpectedMessage)


def test_every_exchange_and_wait_is_reported(cluster: Cluster, fresh: Any) -> None:
    cluster.add_bootstrap()
    top = cluster.add_operations(priority=9)
    cluster.add_operations(priority=1)
    cluster.dead.add(top.node.port)
    sink: list[Any] = []
    outcome = drive(make_plan(cluster, fresh, on_event=sink.append), cluster)
    kinds = [type(e).__name__ for e in sink]
    assert kinds == ["Attempt", "Attempt", "Waiting", "Attempt", "Connected"]
    assert [e for e in sink if isinstance(e, Attempt)] == list(outcome.attempts)
    assert isinstance(outcome, Connected)
    assert outcome.registration_status is RegistrationStatus.NEW


def test_timestamps_never_go_back_to_a_replay(cluster: Cluster, fresh: Any) -> None:
    # The second Bootstrap's clock runs 20 s behind (within the freshness window, as a
    # cached signature would): a timestamp from it alone would replay the first one.
    cluster.add_bootstrap()
    behind = cluster.add_bootstrap(time_offset_ms=-20_000)
    cluster.add_operations()
    first = drive(make_plan(cluster, fresh, seed=1), cluster)
    assert isinstance(first, Connected) and first.attempts[0].port == 7001
    state = updated_state(fresh, first, PROFILE)
    assert state is not None and state.last_timestamp_ms == first.timestamp_ms
    config = cluster.sdk_config()
    behind_only = dataclasses.replace(config, bootstrap_servers=config.bootstrap_servers[1:])
    assert behind.time_offset_ms < 0
    again = drive(make_plan(cluster, state, config=behind_only), cluster)
    assert isinstance(again, Connected) and again.status == "existing"
    assert again.timestamp_ms == first.timestamp_ms + 1
    # Without the remembered timestamp, the same device is refused and re-resolves.
    forgetful = dataclasses.replace(state, last_timestamp_ms=0)
    refused = drive(
        make_plan(cluster, forgetful, config=behind_only, policy=RetryPolicy(max_failures=2)),
        cluster,
    )
    assert isinstance(refused, Failed)
    assert [(a.stage, type(a.cause)) for a in refused.attempts] == [
        ("resolve", type(None)),
        ("register", ReplayedRequest),
        ("resolve", type(None)),
        ("register", ReplayedRequest),
    ]
