"""``python -m benchmarks run``: the whole load benchmark, with its references, in one go.

Each run, for shared/PERF.md's "a ratio measured in one run, against a reference measured
in the same run":

1. the floors (``floors.py``), pinned to the server core while nothing else runs there;
2. for each implementation (extension, then pure Python via ``KAA_WIRE_PUREPYTHON=1``):
   a fresh ``python -m servers`` on a temporary data directory, pinned to the server core;
   the generator processes, pinned to the other core(s) while they send;
   an untimed warm-up that registers the reconnect pool;
   a closed-loop sweep of registrations over the concurrency levels (a mix of first-time
   registrations and reconnects), whose best point is the run's peak;
   an open-loop run at 80 % of that peak for the latency percentiles;
   a closed-loop sweep of resolutions.

Figures are the median of the runs with their min and max; each ratio is computed within
its run, then its median taken.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.loadgen.floor_server import FloorServer
from benchmarks.loadgen.keys import KeyCache, PooledKeys
from benchmarks.loadgen.pool import GeneratorPool
from benchmarks.loadgen.report import format_point, format_summary
from benchmarks.loadgen.requests import Target
from benchmarks.loadgen.servers import ServerUnderTest

__all__ = ["FULL", "QUICK", "SMOKE", "Plan", "run_suite", "TARGETS"]

SCHEMA = "kaa-wire-bench/1"

#: issue #5's targets: reported beside the figures, never asserted.
TARGETS = {
    "registration_ratio": (">=", 0.40, "registrations >= 40 % of the crypto floor"),
    "resolution_ratio": (">=", 0.85, "resolutions >= 85 % of sign floor x cores used"),
    "registration_p99_ms": ("<", 20.0, "registration p99 < 20 ms at 80 % of peak, open loop"),
}


@dataclasses.dataclass(frozen=True)
class Plan:
    name: str
    runs: int
    registration_concurrency: tuple[int, ...]
    resolution_concurrency: tuple[int, ...]
    #: closed-loop points aim at this many seconds (count from the last point's rate)...
    point_seconds: float
    #: ...and never exceed these many operations.
    registration_cap: int
    resolution_cap: int
    open_seconds: float
    open_cap: int
    open_fraction: float = 0.8
    first_share: float = 0.5
    reconnect_pool: int = 512
    floor_repeats: int = 5
    floor_seconds: float = 0.05
    min_count: int = 50

    def keys_needed(self) -> int:
        per_point = int(self.registration_cap * self.first_share) + 8
        opened = int(self.open_cap * self.first_share) + 8
        return self.reconnect_pool + per_point * len(self.registration_concurrency) + opened


FULL = Plan(
    "full", runs=3,
    registration_concurrency=(1, 4, 16, 32, 64, 128, 256),
    resolution_concurrency=(1, 4, 8, 16, 32, 64),
    point_seconds=2.0, registration_cap=6000, resolution_cap=8000,
    open_seconds=5.0, open_cap=20000, floor_repeats=7, floor_seconds=0.1,
)  # fmt: skip
QUICK = Plan(
    "quick", runs=1,
    registration_concurrency=(16, 64),
    resolution_concurrency=(16, 64),
    point_seconds=1.0, registration_cap=4000, resolution_cap=3000,
    open_seconds=1.5, open_cap=6000, reconnect_pool=128, floor_repeats=3,
)  # fmt: skip
SMOKE = Plan(
    "smoke", runs=1,
    registration_concurrency=(2,),
    resolution_concurrency=(2,),
    point_seconds=1.0, registration_cap=20, resolution_cap=20,
    open_seconds=0.5, open_cap=20, reconnect_pool=8, floor_repeats=1, floor_seconds=0.005,
    min_count=20,
)  # fmt: skip


# -- machine --------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return "unknown"


def machine_info() -> dict[str, Any]:
    try:
        openssl_cli = subprocess.run(
            ["openssl", "version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        openssl_cli = "unknown"
    try:
        from cryptography.hazmat.backends.openssl import backend

        crypto_openssl = backend.openssl_version_text()
    except Exception:
        crypto_openssl = "unknown"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "openssl": ssl.OPENSSL_VERSION,
        "openssl_cli": openssl_cli,
        "cryptography_openssl": crypto_openssl,
        "cryptography": _version("cryptography"),
        "uvloop": _version("uvloop"),
        "kernel": platform.release(),
    }


def layout(cores: int) -> tuple[list[int] | None, list[int] | None]:
    """(server cpus, generator cpus): one core for the server, the rest for the generator."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2 or cores < 2:
        return None, None
    return allowed[:1], allowed[1:]


# -- statistics -----------------------------------------------------------------------------


def spread(values: list[float]) -> dict[str, Any]:
    clean = [v for v in values if v is not None]
    if not clean:
        return {"median": None, "min": None, "max": None, "values": values}
    return {
        "median": statistics.median(clean),
        "min": min(clean),
        "max": max(clean),
        "values": values,
    }


# -- one implementation, one run ------------------------------------------------------------


def _log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _estimate(last: dict[str, Any] | None, concurrency: int, plan: Plan, cap: int) -> int:
    if last is None or not last["per_s"]:
        rate = 150.0 * concurrency
    else:
        growth = min(concurrency / last["concurrency"], 2.0)
        rate = last["per_s"] * growth
    return max(plan.min_count, min(cap, round(rate * plan.point_seconds)))


def _slim(point: dict[str, Any], keep_histogram: bool = False) -> dict[str, Any]:
    if not keep_histogram:
        point = {k: v for k, v in point.items() if k != "histogram_us"}
    return point


def _closed_sweep(
    pool: GeneratorPool,
    plan: Plan,
    service: str,
    levels: tuple[int, ...],
    cap: int,
    *,
    cursor: int,
    label: str | None,
) -> tuple[list[dict[str, Any]], int]:
    """One closed-loop point per concurrency level, each sized from the one before.

    Registrations take first-time keys from ``cursor`` on; returns the points and where the
    next unused key is. ``label``: log each point under it (None: quiet).
    """
    points: list[dict[str, Any]] = []
    last = None
    for concurrency in levels:
        count = _estimate(last, concurrency, plan, cap)
        point = pool.point(
            service,
            count=count,
            max_seconds=plan.point_seconds * 2,
            concurrency=concurrency,
            first_keys=range(cursor, cursor + count),
            first_share=plan.first_share,
        )
        cursor += point["first_keys_used"]
        if label is not None:
            _log(f"[{label}] " + format_point(point))
        points.append(_slim(point))
        last = point
    return points, cursor


def run_implementation(
    implementation: str,
    plan: Plan,
    *,
    keycache: KeyCache | PooledKeys,
    procs: int,
    server_cpus: list[int] | None,
    generator_cpus: list[int] | None,
    verbose: bool = True,
    connection_floor: bool = False,
) -> dict[str, Any]:
    """``connection_floor``: also load the floor server (floor_server.py) at the peak."""
    server = ServerUnderTest(implementation, cpus=server_cpus).start()
    out: dict[str, Any] = {"implementation": implementation, "server_start_s": server.started_s}
    try:
        target = Target.from_sdk_json(server.sdk_json)
        with GeneratorPool(
            target,
            procs=procs,
            keycache=keycache.spec,
            reconnect_keys=range(plan.reconnect_pool),
            cpus=generator_cpus,
            server_pid=server.pid,
            server_cores=len(server_cpus) if server_cpus else (os.cpu_count() or 1),
            server_cpus=server_cpus,
        ) as pool:
            warm = pool.warmup()
            out["warmup_outcomes"] = warm
            points, cursor = _closed_sweep(
                pool, plan, "operations", plan.registration_concurrency, plan.registration_cap,
                cursor=plan.reconnect_pool, label=implementation if verbose else None,
            )  # fmt: skip
            out["registration_sweep"] = points
            peak = max(points, key=lambda p: p["per_s"])
            out["registration_peak"] = peak
            rate = max(1.0, plan.open_fraction * peak["per_s"])
            count = max(plan.min_count, min(plan.open_cap, round(rate * plan.open_seconds)))
            opened = pool.point(
                "operations",
                count=count,
                max_seconds=count / rate + 10.0,
                rate=rate,
                first_keys=range(cursor, cursor + count),
                first_share=plan.first_share,
            )
            cursor += opened["first_keys_used"]
            if verbose:
                _log(f"[{implementation}] " + format_point(opened))
            out["registration_open_loop"] = _slim(opened, keep_histogram=True)
            points, _ = _closed_sweep(
                pool, plan, "bootstrap", plan.resolution_concurrency, plan.resolution_cap,
                cursor=cursor, label=implementation if verbose else None,
            )  # fmt: skip
            out["resolution_sweep"] = points
            out["resolution_peak"] = max(points, key=lambda p: p["per_s"])
            out["first_keys_used"] = cursor - plan.reconnect_pool
            if connection_floor:
                assert server.workdir is not None
                with FloorServer(server.workdir, server_cpus) as floor:
                    point = pool.point(
                        "connection",
                        count=plan.registration_cap,
                        max_seconds=plan.point_seconds * 2,
                        concurrency=peak["concurrency"],
                        port=floor.port,
                        server_pid=floor.pid,
                    )
                if verbose:
                    _log("[connection floor] " + format_point(point))
                out["connection_floor"] = _slim(point)
    finally:
        code = server.stop()
        out["server_exit_code"] = code
    return out


def _figures(impl: dict[str, Any], floors: dict[str, Any], server_cores: int) -> dict[str, Any]:
    """One run's headline figures for one implementation."""
    peak = impl["registration_peak"]
    # What no Python server of this shape can undercut on one core: the crypto of a
    # registration plus what its connection costs a server that does nothing else.
    ceiling_us = 1e6 / floors["crypto_floor_per_s"] + floors["connection_floor_us"]
    opened = impl["registration_open_loop"]
    res = impl["resolution_peak"]
    sweep = impl["registration_sweep"] + impl["resolution_sweep"] + [opened]
    errors = sum(p["error_count"] for p in sweep)
    return {
        "registration_per_s": peak["per_s"],
        "registration_peak_concurrency": peak["concurrency"],
        "first_time_per_s": peak["per_s_by_kind"].get("first", 0.0),
        "reconnect_per_s": peak["per_s_by_kind"].get("reconnect", 0.0),
        "crypto_floor_per_s": floors["crypto_floor_per_s"],
        "registration_ratio": peak["per_s"] / floors["crypto_floor_per_s"],
        "connection_floor_us": floors["connection_floor_us"],
        "registration_ceiling_per_s": 1e6 / ceiling_us,
        "registration_ratio_to_ceiling": peak["per_s"] * ceiling_us / 1e6,
        "server_cpu_us_per_registration": _cpu_per_op(peak),
        # The same ratios per second of *server CPU* rather than of wall-clock time: on a
        # shared machine other processes take a varying part of the server core, which the
        # wall-clock rate suffers and the CPU-time floors do not (README, "Stability").
        "registration_ratio_cpu": _per_cpu_ratio(peak, floors["crypto_floor_per_s"]),
        "resolution_ratio_cpu": _per_cpu_ratio(res, floors["sign_floor_per_s"]),
        "steal": max(peak.get("steal", 0.0), res.get("steal", 0.0), opened.get("steal", 0.0)),
        "registration_server_core_other_processes": peak.get("server_core_other_processes"),
        "registration_server_cpu_share": _share(peak, "server_cpu"),
        "registration_generator_cpu_share": peak["generator"]["share_of_one_core"],
        "open_loop_rate_per_s": opened["target_rate_per_s"],
        "open_loop_achieved_per_s": opened["per_s"],
        "registration_p50_ms": opened["latency_ms"]["p50"],
        "registration_p99_ms": opened["latency_ms"]["p99"],
        "registration_p999_ms": opened["latency_ms"]["p99.9"],
        "first_time_p99_ms": opened["latency_ms_by_kind"].get("first", {}).get("p99"),
        "reconnect_p99_ms": opened["latency_ms_by_kind"].get("reconnect", {}).get("p99"),
        "open_loop_send_lag_p99_ms": opened["generator"]["start_lag_ms"]["p99"],
        "resolution_per_s": res["per_s"],
        "resolution_peak_concurrency": res["concurrency"],
        "sign_floor_per_s": floors["sign_floor_per_s"],
        "resolution_ratio": res["per_s"] / (floors["sign_floor_per_s"] * server_cores),
        "server_cpu_us_per_resolution": _cpu_per_op(res),
        "resolution_server_core_other_processes": res.get("server_core_other_processes"),
        "resolution_server_cpu_share": _share(res, "server_cpu"),
        "errors": errors,
    }


def _per_cpu_ratio(point: dict[str, Any], floor_per_s: float) -> float | None:
    """Operations per second of server CPU, over ``floor_per_s`` (also per CPU second)."""
    cpu_us = _cpu_per_op(point)
    return None if not cpu_us else 1e6 / cpu_us / floor_per_s


def _share(point: dict[str, Any], key: str) -> float | None:
    block = point.get(key)
    return block["share_of_one_core"] if block else None


def _cpu_per_op(point: dict[str, Any]) -> float | None:
    block = point.get("server_cpu")
    if not block or not point["ok"]:
        return None
    return 1e6 * block["cpu_s"] / point["ok"]


# -- the suite ------------------------------------------------------------------------------


def wait_quiet(threshold: float, max_wait_s: float) -> float:
    """Wait (up to ``max_wait_s``) for the 1-minute load average to drop below threshold."""
    deadline = time.monotonic() + max_wait_s
    while True:
        load = os.getloadavg()[0]
        if load <= threshold or time.monotonic() >= deadline:
            return load
        _log(f"load average {load:.2f} > {threshold}: waiting for a quiet machine")
        time.sleep(15)


def floors_in_subprocess(cpu_index: int | None, repeats: int, seconds: float) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "benchmarks.loadgen.floors",
        "--repeats", str(repeats), "--seconds", str(seconds),
    ]  # fmt: skip
    if cpu_index is not None:
        command += ["--cpu", str(cpu_index)]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_suite(
    plan: Plan,
    *,
    out_dir: Path,
    keycache: KeyCache | PooledKeys,
    implementations: tuple[str, ...] = ("ext", "py"),
    procs: int = 2,
    plot: bool = True,
    command: str = "python -m benchmarks run",
) -> dict[str, Any]:
    began = time.monotonic()
    cores = os.cpu_count() or 1
    server_cpus, generator_cpus = layout(cores)
    server_cores = len(server_cpus) if server_cpus else cores
    if server_cpus is None:
        _log("fewer than 2 cores: server and generator share the CPU (no pinning)")
    keycache.ensure(plan.keys_needed())
    load_before = os.getloadavg()
    runs: list[dict[str, Any]] = []
    for index in range(plan.runs):
        _log(f"run {index + 1}/{plan.runs}: floors on cpu {server_cpus or 'any'}")
        floors = floors_in_subprocess(
            server_cpus[0] if server_cpus else None, plan.floor_repeats, plan.floor_seconds
        )
        run: dict[str, Any] = {"run": index + 1, "floors": floors, "load_avg": os.getloadavg()}
        for implementation in implementations:
            _log(f"run {index + 1}/{plan.runs}: {implementation} server")
            run[implementation] = run_implementation(
                implementation, plan, keycache=keycache, procs=procs,
                server_cpus=server_cpus, generator_cpus=generator_cpus,
                connection_floor=implementation == implementations[0],
            )  # fmt: skip
        connection = run[implementations[0]].pop("connection_floor")
        floors["connection_floor_us"] = _cpu_per_op(connection)
        run["connection_floor"] = connection
        for implementation in implementations:
            run[implementation]["figures"] = _figures(run[implementation], floors, server_cores)
        runs.append(run)
    result = summarize(
        runs, plan=plan, implementations=implementations, cores=cores,
        server_cpus=server_cpus, generator_cpus=generator_cpus, procs=procs,
        command=command,
    )  # fmt: skip
    result["load_avg_before"] = load_before
    result["load_avg_after"] = os.getloadavg()
    result["wall_s"] = round(time.monotonic() - began, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(result, indent=1) + "\n")
    if plot:
        from benchmarks.loadgen.plot import plot_results

        plot_results(result, out_dir / "latest.png")
    result["wall_s"] = round(time.monotonic() - began, 1)
    print(format_summary(result))
    return result


def summarize(
    runs: list[dict[str, Any]],
    *,
    plan: Plan,
    implementations: tuple[str, ...],
    cores: int,
    server_cpus: list[int] | None,
    generator_cpus: list[int] | None,
    procs: int,
    command: str,
) -> dict[str, Any]:
    per_impl: dict[str, Any] = {}
    for implementation in implementations:
        figures = [r[implementation]["figures"] for r in runs]
        stats = {name: spread([f[name] for f in figures]) for name in figures[0]}
        per_impl[implementation] = {
            "stats": stats,
            **{name: s["median"] for name, s in stats.items()},
            "verdict_at_peak": [r[implementation]["registration_peak"]["verdict"] for r in runs],
            "resolution_verdict_at_peak": [
                r[implementation]["resolution_peak"]["verdict"] for r in runs
            ],
            "bottleneck_at_peak": {
                "registration": [
                    r[implementation]["registration_peak"]["bottleneck"] for r in runs
                ],
                "resolution": [r[implementation]["resolution_peak"]["bottleneck"] for r in runs],
            },
        }
    headline_impl = implementations[0]
    head = per_impl[headline_impl]
    keys = (
        "registration_per_s", "crypto_floor_per_s", "registration_ratio",
        "resolution_per_s", "sign_floor_per_s", "resolution_ratio", "registration_p99_ms",
        "registration_ratio_cpu", "resolution_ratio_cpu", "steal",
    )  # fmt: skip
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "plan": dataclasses.asdict(plan),
        **{k: head[k] for k in keys},
        "implementation": headline_impl,
        "cores": cores,
        "server_cores": len(server_cpus) if server_cpus else cores,
        "server_cpus": server_cpus,
        "generator_cpus": generator_cpus,
        "generator_processes": procs,
        "runs": len(runs),
        "targets": {
            name: {
                "description": text,
                "target": f"{op} {bound}",
                **{impl: _met(per_impl[impl][name], op, bound) for impl in implementations},
            }
            for name, (op, bound, text) in TARGETS.items()
        },
        "implementations": per_impl,
        "machine": machine_info(),
        "run_details": runs,
    }
    return result


def _met(value: float | None, op: str, bound: float) -> dict[str, Any]:
    if value is None:
        return {"value": None, "met": None}
    met = value >= bound if op == ">=" else value < bound
    return {"value": value, "met": met}


def generator_saturated(result: dict[str, Any]) -> bool:
    return any(
        "GENERATOR" in v
        for impl in result["implementations"].values()
        for v in impl["verdict_at_peak"] + impl["resolution_verdict_at_peak"]
    )
