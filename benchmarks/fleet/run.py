"""``python -m benchmarks fleet``: fill stores to fleet sizes and measure each (issue 14).

For each size: a data directory under ``--data`` (default /tmp/kaa-fleet; never in git)
with a store filled once and reused by later runs (``manifest.json`` says what it holds),
a ``python -m servers`` on it pinned to one core, the generator on the other, and the
measurements of ``measure.py``. Then the reconnect storm (``storm.py``) and
``results/fleet.json`` with its plot.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.fleet.deployment import Deployment
from benchmarks.fleet.measure import MeasurePlan, measure_size
from benchmarks.loadgen import cpu
from benchmarks.loadgen.keys import DEFAULT_KEYCACHE, KeyCache, PooledKeys
from benchmarks.loadgen.suite import layout, machine_info

__all__ = ["FULL", "QUICK", "SMOKE", "FleetPlan", "run_fleet"]


@dataclasses.dataclass(frozen=True)
class FleetPlan:
    name: str
    sizes: tuple[int, ...]
    measure: MeasurePlan
    storm_devices: int
    storm_holdoff_s: float
    #: the storm's bound: devices still trying then count as such
    storm_bound_s: float = 600.0
    postgres_sizes: tuple[int, ...] = ()


#: The quick storm has 10,000 devices: 100,000 asyncio clients outrun a shared generator
#: core (benchmarks/README.md, "The reconnect storm"); the full plan keeps 100,000.
QUICK = FleetPlan(
    "quick", sizes=(10_000, 1_000_000),
    measure=MeasurePlan(concurrency=64, seconds=2.0, open_seconds=2.0, cap=8000),
    storm_devices=10_000, storm_holdoff_s=30.0, storm_bound_s=240.0,
)  # fmt: skip
SMOKE = FleetPlan(
    "smoke", sizes=(400,),
    measure=MeasurePlan(concurrency=4, seconds=0.5, open_seconds=0.5, cap=40),
    storm_devices=40, storm_holdoff_s=1.0, storm_bound_s=60.0,
)  # fmt: skip
FULL = FleetPlan(
    "full", sizes=(10_000, 1_000_000, 10_000_000),
    measure=MeasurePlan(concurrency=64, seconds=5.0, open_seconds=5.0, cap=25000),
    storm_devices=100_000, storm_holdoff_s=120.0, postgres_sizes=(1_000_000,),
)  # fmt: skip


def _log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _row(size: int, backend: str, fill_record: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    return {
        "size": size,
        "backend": backend,
        "new_per_s": m["new"]["per_s"],
        "reconnect_hit_per_s": m["hit"]["per_s"],
        "reconnect_miss_per_s": m["miss"]["per_s"],
        "p99_ms": {k: m[k]["p99_ms"] for k in ("new", "hit", "miss")},
        "p50_ms": {k: m[k]["p50_ms"] for k in ("new", "hit", "miss")},
        "server_cpu_us": {k: m[k]["server_cpu_us"] for k in ("new", "hit", "miss")},
        # Per second of server CPU: what the wall-clock rates would be on a core of its own
        # (on a shared machine other processes take part of the server core; see README).
        "per_cpu_s": {
            k: round(1e6 / m[k]["server_cpu_us"], 1) if m[k]["server_cpu_us"] else None
            for k in ("new", "hit", "miss")
        },
        "rss_mib": m["rss_mib"],
        "bytes_per_endpoint": fill_record["bytes_per_endpoint"],
        "fill_per_s": fill_record["per_s"],
        "steal": max(m[k]["steal"] for k in ("new", "hit", "miss")),
        "verdicts": {k: m[k]["verdict"] for k in ("new", "hit", "miss")},
    }


def _targets(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 14's fleet targets, reported (never asserted)."""
    sqlite = sorted((s for s in sizes if s["backend"] == "sqlite"), key=lambda s: s["size"])
    out: dict[str, Any] = {}
    if len(sqlite) >= 2:
        small, big = sqlite[0], sqlite[-1]
        for key, kind in (("new_per_s", "new"), ("reconnect_miss_per_s", "miss")):
            wall = big[key] / small[key] if small[key] else None
            per_cpu = (big["per_cpu_s"][kind] or 0) / (small["per_cpu_s"][kind] or 1)
            out[f"{key}_at_{big['size']}_vs_{small['size']}"] = {
                "value": round(per_cpu, 3),
                "wall_clock_value": None if wall is None else round(wall, 3),
                "target": ">= 0.8", "met": per_cpu >= 0.8,
                "note": "value: per second of server CPU (immune to other processes on the core)",
            }  # fmt: skip
    for s in sizes:
        hit, miss = s["server_cpu_us"]["hit"], s["server_cpu_us"]["miss"]
        ratio = miss / hit if hit and miss else None
        out[f"miss_cost_vs_hit_{s['backend']}_{s['size']}"] = {
            "value": None if ratio is None else round(ratio, 3), "target": "<= 1.2",
            "met": ratio is not None and ratio <= 1.2,
        }  # fmt: skip
    worst = max((s["rss_mib"] for s in sizes), default=0.0)
    out["rss_mib_max"] = {"value": worst, "target": "< 512", "met": worst < 512}
    return out


def storm_section(
    plan: FleetPlan,
    data_root: Path,
    server_cpus: list[int] | None,
    generator_cpus: list[int] | None,
    procs: int = 2,
) -> dict[str, Any]:
    """The storm's figures, or why it did not run (the port range, in one line)."""
    from benchmarks.fleet.storm import StormRefused, run_storm

    try:
        return run_storm(
            data_root / f"storm-{plan.storm_devices}",
            devices=plan.storm_devices, holdoff_s=plan.storm_holdoff_s,
            server_cpus=server_cpus, generator_cpus=generator_cpus, log=_log,
            bound_s=plan.storm_bound_s, procs=procs,
        )  # fmt: skip
    except StormRefused as refused:
        _log(f"[storm] {refused}")
        return {"devices": plan.storm_devices, "refused": str(refused)}


def run_storm_only(
    plan: FleetPlan, *, out_dir: Path, data_root: Path, procs: int = 2, command: str = ""
) -> dict[str, Any]:
    """``python -m benchmarks storm``: the storm alone, written into fleet.json's storm."""
    server_cpus, generator_cpus = layout(os.cpu_count() or 1)
    section = storm_section(plan, data_root, server_cpus, generator_cpus, procs)
    section["command"] = command
    section["machine"] = machine_info()
    section["load_avg_after"] = os.getloadavg()
    path = out_dir / "fleet.json"
    result = json.loads(path.read_text()) if path.exists() else {"schema": "kaa-wire-fleet/1"}
    result["storm"] = section
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return section


def run_fleet(
    plan: FleetPlan,
    *,
    out_dir: Path,
    data_root: Path,
    keycache: Path = DEFAULT_KEYCACHE,
    postgres_dsn: str | None = None,
    storm: bool = True,
    plot: bool = True,
    sizes: tuple[int, ...] | None = None,
    command: str = "",
) -> dict[str, Any]:
    began = time.monotonic()
    server_cpus, generator_cpus = layout(os.cpu_count() or 1)
    keys = PooledKeys(KeyCache(keycache))
    sizes = sizes or plan.sizes
    fresh_base = max(sizes + (plan.postgres_sizes if postgres_dsn else ()))
    fresh_span = 4 * plan.measure.cap  # closed + open loop of new registrations, twice over
    keys.ensure(fresh_base)
    keys.check()
    steal_before = cpu.machine_times()
    result: dict[str, Any] = {
        "schema": "kaa-wire-fleet/1",
        "plan": plan.name,
        "command": command,
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_avg_before": os.getloadavg(),
        "layout": {"server_cpus": server_cpus, "generator_cpus": generator_cpus},
        "keys": "RSA-2048 from a prime pool (benchmarks/loadgen/keys.py, PooledKeys)",
        "sizes": [],
        "details": [],
    }
    runs: list[tuple[str, int, str | None]] = [("sqlite", s, None) for s in sizes]
    if postgres_dsn:
        runs += [("postgresql", s, postgres_dsn) for s in plan.postgres_sizes]
    guess = 3000.0
    for backend, size, dsn in runs:
        root = data_root / f"{backend}-{size}"
        deployment = Deployment(root, backend, size, dsn=dsn, cpus=server_cpus, log=_log)
        fill_record = deployment.ensure_filled(keys, keys.spec)
        manifest = deployment.manifest()
        cursor = int(manifest.get("fresh_cursor", 0))
        keys.ensure(fresh_base + cursor + fresh_span)
        target, pid = deployment.start()
        try:
            measured = measure_size(
                target, pid, plan=plan.measure, keys=keys.spec,
                stored=range(0, size),
                fresh=range(fresh_base + cursor, fresh_base + cursor + fresh_span),
                server_cpus=server_cpus, generator_cpus=generator_cpus,
                restart=deployment.restart, label=f"{backend} {size:,}", log=_log,
                guess_per_s=guess,
            )  # fmt: skip
        finally:
            deployment.stop()
        manifest["fresh_cursor"] = cursor + measured["fresh_keys_used"]
        deployment.save(manifest)
        guess = max(500.0, measured["new"]["per_s"])
        row = _row(size, backend, fill_record, measured)
        result["sizes"].append(row)
        result["details"].append(
            {"size": size, "backend": backend, "fill": fill_record, "measured": measured}
        )
        _log(f"[{backend} {size:,}] " + json.dumps({k: row[k] for k in (
            "new_per_s", "reconnect_hit_per_s", "reconnect_miss_per_s", "rss_mib",
            "bytes_per_endpoint")}))  # fmt: skip
    if storm:
        result["storm"] = storm_section(plan, data_root, server_cpus, generator_cpus)
    result["targets"] = _targets(result["sizes"])
    result["steal"] = round(cpu.steal_share(steal_before, cpu.machine_times()), 4)
    result["load_avg_after"] = os.getloadavg()
    result["seconds"] = round(time.monotonic() - began, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fleet.json").write_text(json.dumps(result, indent=2) + "\n")
    if plot:
        from benchmarks.fleet.plot import plot_fleet

        result["plot"] = str(plot_fleet(result, out_dir))
    _log(json.dumps({"sizes": result["sizes"], "targets": result["targets"]}, indent=1))
    return result
