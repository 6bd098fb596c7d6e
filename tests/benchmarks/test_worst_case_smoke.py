"""Smoke test of ``python -m benchmarks.worst_case``: a tiny run of every hostile case, in
process and against real servers, on each implementation that is built. The run itself
checks that every request got the outcome its case expects (an exact replay REPLAYED_REQUEST,
a garbage signature BAD_SIGNATURE, a refused key MALFORMED_FRAME...) and fails otherwise; no
figure is compared with a speed."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import worst_case

REPO = Path(__file__).resolve().parents[2]

try:
    import kaa_wire_ext._ext  # noqa: F401

    IMPLEMENTATIONS = "ext,py"
except ImportError:
    IMPLEMENTATIONS = "py"


def test_every_case_runs_and_gets_its_outcome(tmp_path: Path) -> None:
    out = tmp_path / "worst_case.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAA_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.worst_case", "--runs", "1", "--count", "3",
         "--big-count", "1", "--rounds", "1", "--concurrency", "2",
         "--implementations", IMPLEMENTATIONS, "--keycache", str(tmp_path / "keys"),
         "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.fail(f"worst_case failed:\n{result.stdout}\n{result.stderr}")
    (run,) = json.loads(out.read_text())["runs"]
    assert sorted(run) == sorted(IMPLEMENTATIONS.split(","))
    for modes in run.values():
        assert sorted(modes) == ["in process", "wire, 2 in flight"]
        for table in modes.values():
            assert list(table) == [case.name for case in worst_case.CASES]
            assert all(math.isfinite(row["x_first"]) for row in table.values())
