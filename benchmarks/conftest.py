"""pytest-benchmark set-up for benchmarks/: collect bench_*.py, and report ratios at the end.

    pytest benchmarks/ --benchmark-only        # measure (the summary prints the ratios)
    pytest benchmarks/ --benchmark-disable     # run each benchmark once, as a test

When benchmarks ran for real, the terminal summary measures the references in the same run
(``openssl speed -elapsed -seconds 1 rsa2048`` and the extension's raw libcrypto loops, all
wall-clock like pytest-benchmark's default timer) and prints every figure's median with the
ratios of benchmarks/micro.py. On a busy machine prefer ``python -m benchmarks.micro``,
which counts CPU time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks import micro

_FIGURES = pytest.StashKey[dict[str, Any]]()
_WORKLOAD = pytest.StashKey[micro.RegistrationWorkload]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = {}


@pytest.fixture(scope="session")
def workload(pytestconfig: pytest.Config) -> micro.RegistrationWorkload:
    """An RSA-2048 endpoint's first-registration and reconnect payloads (one key per run)."""
    pytestconfig.stash[_WORKLOAD] = micro.registration_workload()
    return pytestconfig.stash[_WORKLOAD]


@pytest.fixture
def measure(benchmark: Any, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """measure(name, function, group): benchmark `function`, and keep it for the summary."""

    def run(name: str, function: Callable[[], Any], group: str) -> Any:
        benchmark.group = group
        benchmark.name = name
        result = benchmark(function)
        request.config.stash[_FIGURES][name] = benchmark
        return result

    return run


def _median_us(benchmark: Any) -> float | None:
    stats = getattr(benchmark, "stats", None)
    if stats is None or getattr(stats, "stats", None) is None:
        return None
    return float(stats.stats.median) * 1e6


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    figures = {
        name: value
        for name, value in (
            (name, _median_us(bm)) for name, bm in config.stash[_FIGURES].items()
        )
        if value is not None
    }
    if not figures:
        return  # benchmarks disabled or not run
    write = terminalreporter.write_line
    terminalreporter.section("kaa-wire micro benchmarks: references and ratios")
    speed = micro.openssl_speed_verify_us(elapsed=True)
    if speed is not None:
        figures["openssl speed rsa2048 verify"] = speed
    workload = config.stash.get(_WORKLOAD, None)
    if workload is not None and micro._ext is not None:
        for label, fresh in (("cached", False), ("fresh", True)):
            figures[f"libcrypto verify, {label} key"] = statistics.median(
                micro.raw_verify_us(workload, fresh, clock=time.perf_counter) for _ in range(3)
            )
        for method, label in micro.KEY_BUILDS.items():
            figures[label] = statistics.median(
                micro._ext._bench_key_build(workload.key_der, method, 1000, time.perf_counter)
                * 1e6
                for _ in range(3)
            )
    for name, value in figures.items():
        write(f"  {name:<52} {value:9.2f} us (median)")
    for name, value in micro.ratios(figures).items():
        write(f"  {name:<52} {value:9.2f} x")
