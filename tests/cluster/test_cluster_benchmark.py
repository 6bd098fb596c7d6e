"""Smoke test of ``python -m benchmarks.cluster``: a tiny bounded run on the test server.

Every registration must succeed and the result must be well formed; no figure is compared
with a speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from servers_harness import REPO, START_TIMEOUT_S

from benchmarks.environment import child_environment
from benchmarks.loadgen.keys import KeyCache

pytestmark = pytest.mark.postgres


def test_cluster_benchmark_runs_both_layouts(tmp_path: Path, postgres_dsn: str) -> None:
    keycache = tmp_path / "keys"
    KeyCache(keycache).ensure(2 * 4 + 2 * (5 + 8), quiet=True)  # what the run below takes
    out = tmp_path / "cluster.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.cluster", "--runs", "1", "--count", "10"),
            *("--concurrency", "2", "--reconnect-pool", "4", "--seconds", "30"),
            *("--dsn", postgres_dsn, "--no-pin", "--keycache", str(keycache)),
            *("--out", str(out)),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=child_environment(),
        timeout=4 * START_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "kaa-wire-bench-cluster/1"
    for nodes, name in ((1, "1_node"), (2, "2_nodes")):
        (point,) = doc["points"][str(nodes)]
        assert point["nodes"] == nodes
        assert (point["ok"], point["errors"], point["unsent"]) == (20, 0, 0)
        assert [p["ok"] for p in point["per_pool"]] == [10, 10]
        # Each pool loads its own node when there are two.
        assert len({p["node"] for p in point["per_pool"]}) == nodes
        assert all(w == {"NEW": 4} for w in point["warmup_outcomes"])
        figure = doc["figures"][name]["registrations_per_s"]
        assert figure["min"] <= figure["median"] <= figure["max"] and figure["median"] > 0
    assert doc["two_over_one"]["median"] > 0
