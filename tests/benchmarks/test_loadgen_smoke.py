"""Smoke tests of the load benchmark (benchmarks/loadgen, ``python -m benchmarks run``).

Tiny bounded loads against real servers on loopback: every operation must succeed and
every output must be well formed. No figure is ever compared with a speed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.loadgen.hdr import Histogram
from benchmarks.loadgen.keys import KeyCache
from benchmarks.loadgen.servers import ServerUnderTest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120  # a generous bound on each child; nothing is timed against it

try:
    import kaa_wire_ext._ext  # noqa: F401

    IMPLEMENTATIONS = ["ext", "py"]
except ImportError:
    IMPLEMENTATIONS = ["py"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAA_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True, text=True, env=_env(), cwd=REPO, timeout=TIMEOUT_S,
    )  # fmt: skip


@pytest.fixture(scope="module")
def keycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private key cache with a few RSA-2048 keys (the repository's cache is left alone)."""
    root = tmp_path_factory.mktemp("keycache")
    KeyCache(root).ensure(24, quiet=True)
    return root


# -- the histogram --------------------------------------------------------------------------


def test_histogram_percentiles_within_precision_and_merge_exactly() -> None:
    rng = random.Random(5)
    values = [int(rng.lognormvariate(7, 1)) for _ in range(20_000)]
    whole, left, right = Histogram(), Histogram(), Histogram()
    for i, v in enumerate(values):
        whole.record(v)
        (left if i % 2 else right).record(v)
    ordered = sorted(values)
    for p in (50, 90, 99, 99.9, 100):
        exact = ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)]
        got = whole.value_at(p)
        assert exact <= got <= exact * (1 + 1 / 128) + 1
    merged = Histogram.from_dict(json.loads(json.dumps(left.to_dict())))
    merged.merge(Histogram.from_dict(right.to_dict()))
    assert merged.to_dict() == whole.to_dict()
    assert (whole.min, whole.max, whole.count) == (min(values), max(values), len(values))


# -- the load generator against a real server -----------------------------------------------


def _check_point(result: dict[str, Any], service: str, count: int) -> None:
    assert result["service"] == service
    assert result["ok"] == count
    assert result["error_count"] == 0 and result["errors"] == {}
    assert result["unsent"] == 0
    assert result["window_s"] > 0 and result["per_s"] > 0
    lat = result["latency_ms"]
    assert lat["count"] == count
    assert 0 <= lat["min"] <= lat["p50"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert result["server_cpu"]["cpu_s"] >= 0
    assert len(result["generator"]["per_process_share"]) == result["generator"]["processes"]
    assert result["verdict"]
    assert result["bottleneck"] in {"generator", "server", "contended", "open loop", "latency"}
    assert 0 <= result["cores_busy"]["all"] <= 1


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_loadgen_registers_and_resolves(
    implementation: str, keycache: Path, tmp_path: Path
) -> None:
    with ServerUnderTest(implementation, cpus=None, workdir=tmp_path) as server:
        common = ["--sdk", str(server.sdk_json), "--keycache", str(keycache),
                  "--server-pid", str(server.pid), "--procs", "2"]  # fmt: skip
        register = _run(
            "benchmarks.loadgen", "register", "--concurrency", "4", "--count", "20",
            "--reconnect-pool", "4", "--json", str(tmp_path / "register.json"), *common,
        )  # fmt: skip
        assert register.returncode == 0, register.stdout + register.stderr
        assert "registrations: closed loop, concurrency 4" in register.stdout
        assert "verdict:" in register.stdout
        reg = json.loads((tmp_path / "register.json").read_text())
        _check_point(reg, "operations", 20)
        assert reg["ok_by_kind"] == {"first": 10, "reconnect": 10}
        assert reg["outcomes"]["first"] == {"NEW": 10}
        assert reg["outcomes"]["reconnect"] == {"EXISTING": 10}
        assert reg["warmup_outcomes"] == {"NEW": 4}

        resolve = _run(
            "benchmarks.loadgen", "resolve", "--rate", "200", "--count", "20",
            "--json", str(tmp_path / "resolve.json"), *common,
        )  # fmt: skip
        assert resolve.returncode == 0, resolve.stdout + resolve.stderr
        res = json.loads((tmp_path / "resolve.json").read_text())
        _check_point(res, "bootstrap", 20)
        assert res["mode"] == "open" and res["outcomes"] == {"resolve": {"RESOLVED": 20}}
        assert "start_lag_ms" in res["generator"]


def test_loadgen_refuses_a_non_loopback_target(tmp_path: Path) -> None:
    sdk = {
        "format": "kaa-wire-sdk/1",
        "application_token": "app",
        "sdk_token": "sdk",
        "bootstrap_servers": [{"host": "192.0.2.1", "port": 9888, "public_key_pem": "x"}],
    }
    (tmp_path / "sdk.json").write_text(json.dumps(sdk))
    done = _run("benchmarks.loadgen", "resolve", "--sdk", str(tmp_path / "sdk.json"),
                "--concurrency", "1", "--count", "1")  # fmt: skip
    assert done.returncode != 0
    assert "loopback only" in done.stderr


# -- the suite: latest.json shape -----------------------------------------------------------

HEADLINE = (
    "registration_per_s", "crypto_floor_per_s", "registration_ratio", "resolution_per_s",
    "sign_floor_per_s", "resolution_ratio", "registration_p99_ms",
)  # fmt: skip


def test_suite_smoke_writes_a_well_formed_result(keycache: Path, tmp_path: Path) -> None:
    plot = importlib.util.find_spec("matplotlib") is not None
    done = _run(
        "benchmarks", "run", "--smoke", "--out", str(tmp_path), "--keycache", str(keycache),
        "--implementations", ",".join(IMPLEMENTATIONS), *([] if plot else ["--no-plot"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "kaa-wire load benchmark (smoke)" in done.stdout
    assert "registration ratio" in done.stdout and "bottleneck at peak" in done.stdout
    result = json.loads((tmp_path / "latest.json").read_text())
    for key in HEADLINE:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["implementation"] == IMPLEMENTATIONS[0]
    assert result["cores"] == os.cpu_count()
    assert result["runs"] == 1 and len(result["run_details"]) == 1
    assert set(result["implementations"]) == set(IMPLEMENTATIONS)
    for impl, figures in result["implementations"].items():
        for key in HEADLINE:
            stat = figures["stats"][key]
            assert stat["min"] <= stat["median"] <= stat["max"], (impl, key)
        assert figures["errors"] == 0
    run = result["run_details"][0]
    assert run["floors"]["crypto_floor_per_s"] == result["crypto_floor_per_s"]
    floor = run["connection_floor"]  # the floor server answered every connection
    assert floor["service"] == "connection" and floor["ok"] == 20 and floor["error_count"] == 0
    assert floor["outcomes"] == {"connection": {"ANSWERED": 20}}
    head = result["implementations"][IMPLEMENTATIONS[0]]
    assert head["registration_ceiling_per_s"] <= result["crypto_floor_per_s"]
    for impl in IMPLEMENTATIONS:
        detail = run[impl]
        assert detail["server_exit_code"] == 0
        for point in detail["registration_sweep"] + [detail["registration_open_loop"]]:
            assert point["error_count"] == 0 and point["ok"] == 20
            assert set(point["ok_by_kind"]) == {"first", "reconnect"}
        for point in detail["resolution_sweep"]:
            assert point["error_count"] == 0 and point["ok"] == 20
    machine = result["machine"]
    assert machine["nproc"] and machine["cpu_model"] and machine["python"]
    assert "OpenSSL" in machine["openssl"]
    for target in result["targets"].values():
        assert {"description", "target", *IMPLEMENTATIONS} <= set(target)
    if plot:
        assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
