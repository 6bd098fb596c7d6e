"""pytest-benchmark set-up for benchmarks/: collect bench_*.py, and report ratios at the end.

    pytest benchmarks/ --benchmark-enable --benchmark-only   # measure (prints the ratios)
    pytest benchmarks/                                       # run each once, as a test

(``--benchmark-disable`` is in pyproject.toml's addopts, so the test suite runs them once;
``--benchmark-enable`` overrides it.)

The timer defaults to this thread's CPU time (``time.thread_time``) rather than
pytest-benchmark's wall clock: ``openssl speed``, the reference, counts CPU time, and CPU time
keeps other load on a shared machine out of the figures (``--benchmark-timer`` overrides it;
the calibration precision defaults to 100 for the same reason).

When benchmarks ran for real, the terminal summary measures the references in the same run
(``openssl speed -seconds 1 rsa2048`` and the extension's raw libcrypto loops, on the same
kind of clock as the benchmarks: ``-elapsed`` and wall-clock loops under a wall-clock timer)
and prints every figure's median with the ratios of benchmarks/micro.py.
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


_CPU_TIMERS = ("time.thread_time", "time.process_time")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads its options
def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FIGURES] = {}
    given = [str(arg) for arg in config.invocation_params.args]
    if not hasattr(config.option, "benchmark_timer"):
        return  # pytest-benchmark is not installed
    if not any(arg.startswith("--benchmark-timer") for arg in given):
        config.option.benchmark_timer = "time.thread_time"
    # A CPU clock is read through a system call (~0.3 us): calibrate to 100x its resolution
    # so that sub-microsecond cases run enough iterations per round.
    if not any(arg.startswith("--benchmark-calibration-precision") for arg in given):
        config.option.benchmark_calibration_precision = 100


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
    cpu = str(config.getoption("benchmark_timer")) in _CPU_TIMERS
    clock = time.thread_time if cpu else time.perf_counter
    write(f"  clock: {'CPU time of this thread' if cpu else 'wall clock'}")
    speed = micro.openssl_speed_verify_us(elapsed=not cpu)
    if speed is not None:
        figures["openssl speed rsa2048 verify"] = speed
    workload = config.stash.get(_WORKLOAD, None)
    if workload is not None and micro._bench is not None:
        for label, fresh in (("cached", False), ("fresh", True)):
            figures[f"libcrypto verify, {label} key"] = statistics.median(
                micro.raw_verify_us(workload, fresh, clock=clock) for _ in range(3)
            )
        for method, label in micro.KEY_BUILDS.items():
            figures[label] = statistics.median(
                micro._bench.key_build(workload.key_der, method, 1000, clock)
                * 1e6
                for _ in range(3)
            )
    for name, value in figures.items():
        write(f"  {name:<52} {value:9.2f} us (median)")
    for name, value in micro.ratios(figures).items():
        write(f"  {name:<52} {value:9.2f} x")
