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
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.fleet import fill
from benchmarks.fleet.measure import MeasurePlan, measure_size
from benchmarks.loadgen import cpu
from benchmarks.loadgen.keys import DEFAULT_KEYCACHE, KeyCache, PooledKeys
from benchmarks.loadgen.requests import Target
from benchmarks.loadgen.servers import ServerUnderTest
from benchmarks.loadgen.suite import layout, machine_info

__all__ = ["FULL", "QUICK", "SMOKE", "FleetPlan", "run_fleet"]




@dataclasses.dataclass(frozen=True)
class FleetPlan:
    name: str
    sizes: tuple[int, ...]
    measure: MeasurePlan
    storm_devices: int
    storm_holdoff_s: float
    postgres_sizes: tuple[int, ...] = ()


#: The quick storm has 10,000 devices: 100,000 asyncio clients outrun a shared generator
#: core (benchmarks/README.md, "The reconnect storm"); the full plan keeps 100,000.
QUICK = FleetPlan(
    "quick", sizes=(10_000, 1_000_000),
    measure=MeasurePlan(concurrency=64, seconds=2.0, open_seconds=2.0, cap=8000),
    storm_devices=10_000, storm_holdoff_s=30.0,
)  # fmt: skip
SMOKE = FleetPlan(
    "smoke", sizes=(400,),
    measure=MeasurePlan(concurrency=4, seconds=0.5, open_seconds=0.5, cap=40),
    storm_devices=40, storm_holdoff_s=1.0,
)  # fmt: skip
FULL = FleetPlan(
    "full", sizes=(10_000, 1_000_000, 10_000_000),
    measure=MeasurePlan(concurrency=64, seconds=5.0, open_seconds=5.0, cap=25000),
    storm_devices=100_000, storm_holdoff_s=120.0, postgres_sizes=(1_000_000,),
)  # fmt: skip


def _log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Deployment:
    """One data directory (and, for PostgreSQL, one database) holding one filled store."""

    def __init__(
        self, root: Path, backend: str, size: int, *, dsn: str | None, cpus: list[int] | None
    ) -> None:
        self.root = root
        self.backend = backend
        self.size = size
        self.dsn = dsn
        self.cpus = cpus
        self.manifest_path = root / "manifest.json"
        self.server: ServerUnderTest | None = None

    def manifest(self) -> dict[str, Any]:
        if self.manifest_path.exists():
            return dict(json.loads(self.manifest_path.read_text()))
        return {}

    def save(self, manifest: dict[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, self.manifest_path)

    @property
    def db(self) -> Path:
        return self.root / "data" / "registry.db"

    def start(self) -> tuple[Target, int]:
        extra = ["--store", self.dsn] if self.dsn else []
        self.server = ServerUnderTest("ext", cpus=self.cpus, workdir=self.root, extra_args=extra)
        self.server.start(timeout=300.0)
        return Target.from_sdk_json(self.server.sdk_json), self.server.pid

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def restart(self) -> tuple[Target, int]:
        self.stop()
        return self.start()

    def disk_bytes(self) -> int:
        if self.backend == "postgresql":
            assert self.dsn
            return fill.postgres_bytes(self.dsn)
        return fill.disk_bytes(self.db)

    def ensure_filled(self, keys: PooledKeys, keyspec: str) -> dict[str, Any]:
        """Fill the store to ``size`` unless the manifest says it is; the fill record."""
        manifest = self.manifest()
        wanted = {"size": self.size, "backend": self.backend, "keys": keyspec}
        if all(manifest.get(k) == v for k, v in wanted.items()) and manifest.get("filled"):
            return dict(manifest["fill"], reused=True)
        if self.root.exists() and self.backend == "sqlite":
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        target, _ = self.start()  # creates the data directory, keys and application
        self.stop()
        token_hash = hashlib.sha256(target.sdk_token.encode("ascii")).digest()
        shown = [0.0]

        def progress(done: int) -> None:
            if time.monotonic() - shown[0] > 10 or done == self.size:
                shown[0] = time.monotonic()
                _log(f"[fill {self.backend} {self.size:,}] {done:,} rows")

        before = self.disk_bytes() if self.backend == "postgresql" else 0
        if self.backend == "postgresql":
            assert self.dsn
            result = fill.fill_postgres(
                self.dsn, 0, self.size, keys.public_der,
                token_hash=token_hash, application=target.app_token, progress=progress,
            )  # fmt: skip
        else:
            result = fill.fill_sqlite(
                self.db, 0, self.size, keys.public_der,
                token_hash=token_hash, application=target.app_token, progress=progress,
            )  # fmt: skip
        on_disk = self.disk_bytes()
        record = {
            **result.to_dict(),
            "disk_bytes": on_disk,
            "bytes_per_endpoint": round((on_disk - before) / self.size, 1),
        }
        self.save({**wanted, "filled": True, "fill": record, "fresh_cursor": 0})
        _log(
            f"[fill {self.backend} {self.size:,}] {result.per_s:,.0f} rows/s "
            f"({result.seconds:.0f} s, index build {result.index_seconds:.0f} s), "
            f"{record['bytes_per_endpoint']} bytes/endpoint"
        )
        return dict(record, reused=False)


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
        deployment = Deployment(root, backend, size, dsn=dsn, cpus=server_cpus)
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
        from benchmarks.fleet.storm import run_storm

        result["storm"] = run_storm(
            data_root / "storm", devices=plan.storm_devices, holdoff_s=plan.storm_holdoff_s,
            server_cpus=server_cpus, generator_cpus=generator_cpus, log=_log,
        )  # fmt: skip
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
