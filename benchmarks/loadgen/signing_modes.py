"""Resolutions/s by Bootstrap signing mode, in one run (issue 14).

Four servers, one after the other, each a fresh ``python -m servers`` pinned to the server
core, loaded by the same generator (closed loop, the best of the concurrency levels):

* ``rsa2048``: the default, an RSA-2048 signature per request;
* ``ed25519``: the Bootstrap key rotated to Ed25519 (``control bootstrap rotate
  --key-type ed25519``), a signature per request;
* ``cached``: RSA-2048 in cached-signature mode (``control app update --cached-signature
  on``), each answer variant signed once per change;
* ``ed25519+cached``: both.

The clients verify every answer with the key of the SDK export (the rotation
certificate chain for the Ed25519 key). Each mode's rate is reported as a ratio to the
RSA-2048 per-request rate of the same run, with the sign floor beside it.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.environment import child_environment
from benchmarks.loadgen import cpu
from benchmarks.loadgen.pool import GeneratorPool
from benchmarks.loadgen.report import format_point
from benchmarks.loadgen.requests import Target
from benchmarks.loadgen.servers import REPO, ServerUnderTest
from benchmarks.loadgen.suite import layout

__all__ = ["MODES", "run_modes"]

MODES = ("rsa2048", "ed25519", "cached", "ed25519+cached")


def _control(data: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "servers.control", "--data", str(data), *args],
        check=True, capture_output=True, env=child_environment(REPO), timeout=120,
    )  # fmt: skip


def _prepare(workdir: Path, mode: str, cpus: list[int] | None) -> None:
    """Create the data directory, then switch it to ``mode`` while no server runs."""
    workdir.mkdir(parents=True)
    server = ServerUnderTest("ext", cpus=cpus, workdir=workdir).start()
    app = Target.from_sdk_json(server.sdk_json).app_token
    server.stop()
    if "ed25519" in mode:
        _control(workdir / "data", "bootstrap", "rotate", "--key-type", "ed25519")
    if "cached" in mode:
        _control(workdir / "data", "app", "update", app, "--cached-signature", "on")


def run_modes(
    *, levels: tuple[int, ...], seconds: float, cap: int, procs: int, rounds: int, log: Any
) -> dict[str, Any]:
    server_cpus, generator_cpus = layout(os.cpu_count() or 1)
    from benchmarks.loadgen.suite import floors_in_subprocess

    out: dict[str, Any] = {"levels": levels, "rounds": rounds, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="kaa-modes-") as tmp:
        for mode in MODES:
            _prepare(Path(tmp) / mode, mode, server_cpus)
        for round_ in range(rounds):  # interleaved: each round measures every mode
            floors = floors_in_subprocess(server_cpus[0] if server_cpus else None, 3, 0.05)
            for mode in MODES:
                server = ServerUnderTest("ext", cpus=server_cpus, workdir=Path(tmp) / mode)
                server.start()
                try:
                    target = Target.from_sdk_json(server.sdk_json)
                    with GeneratorPool(
                        target, procs=procs, keycache=tempfile.gettempdir(), reconnect_keys=(),
                        cpus=generator_cpus, server_pid=server.pid, server_cores=1,
                        server_cpus=server_cpus,
                    ) as pool:  # fmt: skip
                        points = []
                        for level in levels:
                            point = pool.point(
                                "bootstrap", count=cap, max_seconds=seconds, concurrency=level
                            )
                            log(f"[{mode} round {round_ + 1}] " + format_point(point))
                            points.append(point)
                finally:
                    server.stop()
                best = max(points, key=lambda p: p["per_s"])
                server_cpu = best.get("server_cpu") or {}
                entry = out["modes"].setdefault(mode, {"per_s": [], "cpu_us": [], "steal": []})
                entry["per_s"].append(round(best["per_s"], 1))
                entry["cpu_us"].append(
                    round(1e6 * server_cpu.get("cpu_s", 0.0) / max(1, best["ok"]), 1)
                )
                entry["steal"].append(best.get("steal", 0.0))
                entry.setdefault("verdicts", []).append(best["verdict"])
                entry.setdefault("errors", []).append(best["error_count"])
            out.setdefault("sign_floor_per_s", []).append(round(floors["sign_floor_per_s"], 1))
    base = out["modes"]["rsa2048"]
    for entry in out["modes"].values():
        ratios = [m / b for m, b in zip(entry["per_s"], base["per_s"], strict=True)]
        entry["ratio_to_rsa2048"] = round(statistics.median(ratios), 2)
        entry["ratio_to_rsa2048_per_round"] = [round(r, 2) for r in ratios]
        # per server CPU second: what the rate would be on a core of its own
        cpu = [b / m for m, b in zip(entry["cpu_us"], base["cpu_us"], strict=True) if m]
        entry["cpu_ratio_to_rsa2048"] = round(statistics.median(cpu), 2) if cpu else None
        entry["cpu_ratio_to_rsa2048_per_round"] = [round(r, 2) for r in cpu]
    out["target"] = {
        mode: {"value": out["modes"][mode]["cpu_ratio_to_rsa2048"], "target": ">= 10",
               "met": (out["modes"][mode]["cpu_ratio_to_rsa2048"] or 0) >= 10,
               "wall_clock_value": out["modes"][mode]["ratio_to_rsa2048"]}
        for mode in MODES[1:]
    }  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen.signing_modes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--cap", type=int, default=30000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--levels", default="32,128")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/signing_modes.json")
    args = parser.parse_args(argv)
    before = cpu.machine_times()
    result = run_modes(
        levels=tuple(int(x) for x in args.levels.split(",")), seconds=args.seconds,
        cap=args.cap, procs=args.procs, rounds=args.rounds,
        log=lambda t: print(t, file=sys.stderr, flush=True),
    )  # fmt: skip
    result["steal"] = round(cpu.steal_share(before, cpu.machine_times()), 4)
    result["load_avg_after"] = os.getloadavg()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({m: {k: v for k, v in e.items() if k != "verdicts"}
                      for m, e in result["modes"].items()}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
