"""What a device keeps of Bootstrap key rotations: the trust rule, its file, its recovery,
and the plan following rotations over the in-memory cluster (tests/client/memlink.py).
Over real servers: tests/client/test_client_rotation.py."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from client import (
    BootstrapTrust,
    Connected,
    CorruptTrustError,
    Device,
    Failed,
    KeyRotated,
    RetryPolicy,
    StateDir,
)
from client._state import TRUST_FILE, DeviceState, read_trust
from client._trust import decode_trust, encode_trust
from kaa_wire import (
    BadSignature,
    BootstrapServerConnection,
    Signer,
    UnsupportedAlgorithm,
    _crypto,
)
from kaa_wire._rotation import TrustedKey, certify, key_fingerprint
from kaa_wire.sdk_config import BootstrapServer, SdkConfig
from tests.client.conftest import run_cli, write_sdk
from tests.client.memlink import Cluster, VirtualClock, drive, make_plan


@pytest.fixture
def generations(vector_keys: dict[str, Any]) -> list[Any]:
    """Bootstrap private keys by generation: [None, 1, 2, 3]."""
    return [None, vector_keys["bootstrap_rsa"], vector_keys["bootstrap_ed25519"],
            vector_keys["other_rsa"]]  # fmt: skip


def _fresh(vector_keys: dict[str, Any]) -> DeviceState:
    key_der = _crypto.public_key_der(vector_keys["endpoint_rsa"])
    return DeviceState(endpoint_id=_crypto.endpoint_id(key_der).hex())


def _trusted(keys: list[Any], generation: int) -> TrustedKey:
    return TrustedKey(generation, keys[generation].public_key())


def test_trust_moves_forward_only_and_per_anchor(generations: list[Any]) -> None:
    anchor = _trusted(generations, 1)
    other_anchor = TrustedKey(1, _crypto.generate_ed25519_key().public_key())
    empty = BootstrapTrust()
    assert empty.current(anchor) is anchor
    learned = empty.learn(anchor, _trusted(generations, 3))
    assert learned.current(anchor).generation == 3
    assert learned.current(other_anchor) is other_anchor  # another lineage is untouched
    assert learned.learn(anchor, _trusted(generations, 2)) is learned  # never backwards
    # An SDK configuration exported later (its anchor newer than what was learned) wins.
    newer_anchor = TrustedKey(4, generations[1].public_key())
    assert learned.current(newer_anchor) is newer_anchor


def test_trust_file_round_trip_and_checksum(generations: list[Any]) -> None:
    trust = BootstrapTrust().learn(_trusted(generations, 1), _trusted(generations, 2))
    data = encode_trust(trust)
    assert decode_trust(data).to_json() == trust.to_json()
    doc = trust.to_json()["keys"][0]
    assert doc["anchor_sha256"] == key_fingerprint(_crypto.public_key_der(generations[1]))
    assert doc["generation"] == 2
    for bad in (data.replace(b'"generation": 2', b'"generation": 1'), b"{", b"[]"):
        with pytest.raises(ValueError):
            decode_trust(bad)


def test_state_directory_keeps_trust_atomically_and_refuses_a_corrupt_file(
    tmp_path: Path, generations: list[Any], seed_dir: Any
) -> None:
    directory = seed_dir("device")
    trust = BootstrapTrust().learn(_trusted(generations, 1), _trusted(generations, 3))
    with StateDir.open(directory) as state:
        assert state.trust.learned == {}
        state.save_trust(trust)
    path = directory / TRUST_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (directory / f".{TRUST_FILE}.leftover").write_bytes(b"half")  # a writer that died
    with StateDir.open(directory) as state:
        assert state.trust.to_json() == trust.to_json()
    assert not (directory / f".{TRUST_FILE}.leftover").exists()

    damaged = path.read_bytes().replace(b'"generation": 3', b'"generation": 1')
    path.write_bytes(damaged)
    with pytest.raises(CorruptTrustError, match="left as it is"):
        StateDir.open(directory)
    assert path.read_bytes() == damaged  # never replaced by an empty trust
    assert read_trust(directory)[0] is None

    pem = _crypto.public_key_pem(generations[1]).decode()
    config = SdkConfig("app-token", "sdk-token", (BootstrapServer("127.0.0.1", 9, pem),))
    sdk = write_sdk(tmp_path / "sdk.json", config)
    refused = run_cli("register", "--sdk", str(sdk), "--state", str(directory))
    assert refused.returncode == 2 and "bootstrap-trust.json" in refused.stderr
    status = run_cli("status", "--state", str(directory))
    assert status.returncode == 1 and "corrupt" in status.stderr


# -- the plan, over the in-memory cluster --------------------------------------------------


def _rotated(cluster: Cluster, bootstrap: Any, keys: list[Any], generation: int) -> None:
    """Make ``bootstrap`` sign with generation ``generation`` and carry the chain."""
    bootstrap.signer = Signer(_crypto.private_key_pem(keys[generation]))
    bootstrap.rotations = tuple(
        certify(keys[g - 1], g, keys[g]) for g in range(2, generation + 1)
    )


def test_the_plan_follows_a_rotation_and_reports_it(
    generations: list[Any], vector_keys: Any
) -> None:
    clock = VirtualClock()
    cluster = Cluster(vector_keys, clock)
    _rotated(cluster, cluster.add_bootstrap(), generations, 3)
    cluster.add_operations()
    events: list[Any] = []
    plan = make_plan(cluster, _fresh(vector_keys), on_event=events.append)
    outcome = drive(plan, cluster)
    assert isinstance(outcome, Connected)
    rotated = [e for e in events if isinstance(e, KeyRotated)]
    assert [(e.generation, e.port) for e in rotated] == [(3, 7001)]
    anchor = TrustedKey(1, generations[1].public_key())
    assert plan.trust.current(anchor).generation == 3


def test_the_plan_passes_a_bootstrap_on_a_retired_key(
    generations: list[Any], vector_keys: Any
) -> None:
    """Two Bootstraps: the first still on generation 1, the second on 2. A device that
    trusts generation 2 counts the first as failing and goes on to the second."""
    clock = VirtualClock()
    cluster = Cluster(vector_keys, clock)
    cluster.add_bootstrap()  # generation 1 only: answers "newer generation" with an error
    _rotated(cluster, cluster.add_bootstrap(), generations, 2)
    cluster.add_operations()
    anchor = TrustedKey(1, generations[1].public_key())
    trust = BootstrapTrust().learn(anchor, _trusted(generations, 2))
    refused_by = set()
    for seed in range(20):  # whichever Bootstrap the plan asks first
        clock.now += 1  # each boot later than the last: no replayed timestamp
        plan = make_plan(cluster, _fresh(vector_keys), seed=seed, trust=trust)
        outcome = drive(plan, cluster)
        assert isinstance(outcome, Connected)
        resolutions = [(a.port, type(a.cause)) for a in outcome.attempts if a.stage == "resolve"]
        ok = (7002, type(None))
        assert resolutions in ([ok], [(7001, UnsupportedAlgorithm), ok])
        refused_by |= {port for port, cause in resolutions if cause is UnsupportedAlgorithm}
    assert refused_by == {7001}
    # A scripted Bootstrap that ignores the generation and signs with the retired key.
    cluster.bootstraps.pop(7002)
    retired = _retired_answer(cluster, generations)
    cluster.bootstraps[7001].respond = retired  # type: ignore[method-assign]
    plan = make_plan(
        cluster,
        _fresh(vector_keys),
        trust=trust,
        policy=RetryPolicy(max_failures=1),
        config=cluster.sdk_config(),
    )
    failed = drive(plan, cluster)
    assert isinstance(failed, Failed) and isinstance(failed.cause, BadSignature)


def _retired_answer(cluster: Cluster, keys: list[Any]) -> Any:
    def respond(request: bytes) -> bytes:
        conn = BootstrapServerConnection()
        conn.receive_data(request)
        event = conn.next_event()
        conn.request = dataclasses.replace(event, key_generation=1)  # type: ignore[type-var]
        data = conn.data_to_sign(
            cluster.operations_nodes(),
            server_time_ms=cluster.server_time_ms(),
            valid_for_s=300,
            signature_algorithm=1,
        )
        return conn.send_response(_crypto.sign(keys[1], data))

    return respond


def test_a_device_persists_what_the_plan_learned(
    tmp_path: Path, generations: list[Any], vector_keys: Any, seed_dir: Any
) -> None:
    """Device._finish saves the trust whatever the outcome, even a failure."""
    clock = VirtualClock()
    cluster = Cluster(vector_keys, clock)
    _rotated(cluster, cluster.add_bootstrap(), generations, 2)  # and no Operations node
    directory = seed_dir("device")
    device = Device.open(
        directory,
        cluster.sdk_config(),
        policy=RetryPolicy(max_failures=1),
        clock=clock,
        sleep=clock.sleep,
    )
    with device:
        plan = device._plan(b"")
        outcome = drive(plan, cluster)
        assert isinstance(outcome, Failed)  # an empty list: no node to register with
        device._finish(plan, outcome, b"")
    trust, problem = read_trust(directory)
    assert problem is None and trust is not None
    assert [k.generation for k in trust.learned.values()] == [2]
    assert os.path.exists(directory / TRUST_FILE)
