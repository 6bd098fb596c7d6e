"""``--workers 2`` against ``--workers 1`` on one SQLite file (issue 14).

With SQLite each worker process has its own store writer, and the file has one write
lock: do two processes contend for it? Both configurations run on the same server
core(s), loaded by the same generator on the other core, with the same mix of
registrations (half first-time, half reconnects); the figure that means something on
this 2-core machine is the server CPU per registration (every process of the group:
the supervisor and its workers), with the rate and the errors (a writer that waited
past ``busy_timeout`` would show as OVERLOADED answers) beside it. Rounds alternate the
two configurations; medians are reported.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.loadgen import cpu
from benchmarks.loadgen.keys import DEFAULT_KEYCACHE, KeyCache, PooledKeys
from benchmarks.loadgen.pool import GeneratorPool
from benchmarks.loadgen.report import format_point
from benchmarks.loadgen.requests import Target
from benchmarks.loadgen.servers import REPO, ServerUnderTest
from benchmarks.loadgen.suite import layout

__all__ = ["compare_workers", "process_tree"]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (``/proc/PID/task/*/children``)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        task_dir = Path(f"/proc/{current}/task")
        try:
            for tid in os.listdir(task_dir):
                text = (task_dir / tid / "children").read_text()
                todo.extend(int(c) for c in text.split())
        except OSError:
            continue
    return out


def _tree_cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu.sample(pid).seconds
        except OSError:
            continue
    return total


def compare_workers(
    *, rounds: int, count: int, concurrency: int, seconds: float, server_cpus: list[int] | None,
    generator_cpus: list[int] | None, keys: str, log: Any,
) -> dict[str, Any]:  # fmt: skip
    import tempfile

    out: dict[str, Any] = {"rounds": []}
    cursor = 0
    with tempfile.TemporaryDirectory(prefix="kaa-workers-") as tmp:
        for round_ in range(rounds):
            entry: dict[str, Any] = {}
            for workers in (1, 2):
                workdir = Path(tmp) / f"w{workers}-{round_}"
                workdir.mkdir()
                server = ServerUnderTest(
                    "ext", cpus=server_cpus, workdir=workdir, extra_args=["--workers", str(workers)]
                ).start()
                try:
                    pids = process_tree(server.pid)
                    target = Target.from_sdk_json(server.sdk_json)
                    with GeneratorPool(
                        target, procs=2, keycache=keys, reconnect_keys=range(256),
                        cpus=generator_cpus, server_pid=None,
                    ) as pool:  # fmt: skip
                        pool.warmup()
                        first = range(1000 + cursor, 1000 + cursor + count)
                        before = _tree_cpu_s(pids)
                        steal_before = cpu.machine_times()
                        point = pool.point(
                            "operations", count=count, max_seconds=seconds,
                            concurrency=concurrency, first_keys=first, first_share=0.5,
                        )  # fmt: skip
                        used = _tree_cpu_s(pids) - before
                        steal = cpu.steal_share(steal_before, cpu.machine_times())
                        cursor += point["first_keys_used"]
                finally:
                    server.stop()
                log(f"[workers {workers} round {round_ + 1}] " + format_point(point))
                entry[f"workers_{workers}"] = {
                    "processes": len(pids),
                    "per_s": round(point["per_s"], 1),
                    "server_cpu_us": round(1e6 * used / max(1, point["ok"]), 1),
                    "errors": point["errors"],
                    "p99_ms": point["latency_ms"].get("p99"),
                    "steal": round(steal, 4),
                }
            entry["cpu_ratio_2_vs_1"] = round(
                entry["workers_2"]["server_cpu_us"] / entry["workers_1"]["server_cpu_us"], 3
            )
            out["rounds"].append(entry)
    for key in ("workers_1", "workers_2"):
        out[key] = {
            "server_cpu_us": statistics.median(r[key]["server_cpu_us"] for r in out["rounds"]),
            "per_s": statistics.median(r[key]["per_s"] for r in out["rounds"]),
            "errors": sum(sum(r[key]["errors"].values()) for r in out["rounds"]),
        }
    out["cpu_ratio_2_vs_1"] = statistics.median(r["cpu_ratio_2_vs_1"] for r in out["rounds"])
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet.workers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=8000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--server-cpus", default=None, help="e.g. 0 (default: the layout's)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/workers.json")
    args = parser.parse_args(argv)
    server_cpus, generator_cpus = layout(os.cpu_count() or 1)
    if args.server_cpus:
        server_cpus = [int(c) for c in args.server_cpus.split(",")]
    keys = PooledKeys(KeyCache(DEFAULT_KEYCACHE))
    keys.ensure(1000 + args.rounds * 2 * args.count)
    began = time.monotonic()
    result = compare_workers(
        rounds=args.rounds, count=args.count, concurrency=args.concurrency,
        seconds=args.seconds, server_cpus=server_cpus, generator_cpus=generator_cpus,
        keys=keys.spec, log=lambda t: print(t, file=sys.stderr, flush=True),
    )  # fmt: skip
    result["seconds"] = round(time.monotonic() - began, 1)
    result["load_avg_after"] = os.getloadavg()
    result["layout"] = {"server_cpus": server_cpus, "generator_cpus": generator_cpus}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
