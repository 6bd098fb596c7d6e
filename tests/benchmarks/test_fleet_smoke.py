"""Smoke test of the fleet benchmark (benchmarks/fleet, ``python -m benchmarks fleet``).

A 400-endpoint store, 40 operations of each kind and a 40-device storm against real
servers on loopback: every operation must succeed, no device may give up, and
fleet.json must hold every field issue 14 names. No figure is compared with a speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.environment import child_environment
from benchmarks.loadgen.keys import (
    Ed25519Keys,
    KeyCache,
    PooledKeys,
    key_source,
    pair_of,
    primes_for,
)
from kaa_wire import _crypto

REPO = Path(__file__).resolve().parents[2]
FIELDS = (
    "size", "backend", "new_per_s", "reconnect_hit_per_s", "reconnect_miss_per_s",
    "p99_ms", "rss_mib", "bytes_per_endpoint",
)  # fmt: skip


def test_pairs_name_every_key_once() -> None:
    seen = set()
    for index in range(5000):
        a, b = pair_of(index)
        assert 0 <= a < b and (a, b) not in seen
        seen.add((a, b))
    assert primes_for(1) == 2 and primes_for(3) == 3 and primes_for(4) == 4


def test_pooled_keys_are_real_distinct_rsa_2048_keys(tmp_path: Path) -> None:
    keys = PooledKeys(KeyCache(tmp_path))
    keys.ensure(20, quiet=True)
    loaded = keys.load_many(range(20))
    assert len({k.endpoint_id for k in loaded}) == 20
    for key in (loaded[0], loaded[19]):
        assert key.private_key.key_size == 2048  # type: ignore[union-attr]
        assert _crypto.public_key_der(key.private_key) == key.public_der == keys.public_der(
            key.index
        )
        assert key.endpoint_id == _crypto.endpoint_id(key.public_der)
    assert isinstance(key_source(keys.spec), PooledKeys)
    assert isinstance(key_source("ed25519"), Ed25519Keys)
    ed = Ed25519Keys()
    assert ed.load(7).public_der == ed.load(7).public_der != ed.load(8).public_der


def test_fleet_smoke_writes_fleet_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "fleet", "--smoke", "--no-plot",
         "--data", str(tmp_path / "data"), "--out", str(out),
         "--keycache", str(tmp_path / "keys")],
        cwd=REPO, env=child_environment(REPO), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((out / "fleet.json").read_text())
    [row] = result["sizes"]
    assert all(field in row for field in FIELDS), row
    assert row["size"] == 400 and row["backend"] == "sqlite"
    assert row["bytes_per_endpoint"] > 0 and row["rss_mib"] > 0
    [detail] = result["details"]
    for kind in ("new", "hit", "miss"):
        assert detail["measured"][kind]["errors"] == 0, detail["measured"][kind]
    storm = result["storm"]
    assert storm["registered"] == storm["devices"] == 40
    assert storm["gave_up"] == 0 and storm["still_trying_at_bound"] == 0
    # every device's first request was sealed before the storm and taken by its plan
    assert storm["generator"]["first_requests_sealed_before"] == 40
    assert storm["ports"]["stopped"] is None and storm["ports"]["max_open"] >= 256
    assert storm["generator_processes_ended_at_bound"] == 0
    assert "steal" in result and "targets" in result
