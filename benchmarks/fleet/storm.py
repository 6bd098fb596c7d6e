"""The reconnect storm: N registered devices come back at once, against one node.

Every device runs the client library's own plan (``client._policy.RegistrationPlan`` over
``client._asyncio``): its random initial hold-off, a verified resolution, a reconnect by
key hash, and on any failure (``OVERLOADED`` included) the client's exponential backoff
with full jitter, honouring the server's retry-after. They all start at the same instant.

The devices hold **Ed25519** keys: 100,000 RSA-2048 keys would take this machine about an
hour to generate (and the prime pool of ``PooledKeys`` would make the generator sign
100,000+ RSA requests during the storm, which it cannot do as fast as the server
verifies). They are stored beforehand by the bulk fill, so each reconnect is one the node
never saw (a key-cache miss: the store read). The generator processes run pinned to the
generator core(s); their CPU use is reported, as is the server's.

Reported: the time until 50 %, 99 % and 100 % are registered, the ``OVERLOADED`` share of
registration attempts, each device's total time (from the common start, hold-off
included) at p50/p99/max, and how many devices gave up (the plan's ``Failed``) or were
still trying at the bound.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import resource
import statistics
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.fleet import fill
from benchmarks.fleet.measure import server_memory_mib
from benchmarks.loadgen import cpu
from benchmarks.loadgen.keys import Ed25519Keys
from benchmarks.loadgen.requests import Target, profile_for
from benchmarks.loadgen.servers import ServerUnderTest

__all__ = ["run_storm"]

#: The storm is bounded like every run (shared/PERF.md): devices still trying then count.
BOUND_S = 900.0


def _control(data: Path, *args: str) -> None:
    import subprocess
    import sys

    from benchmarks.environment import child_environment
    from benchmarks.loadgen.servers import REPO

    subprocess.run(
        [sys.executable, "-m", "servers.control", "--data", str(data), *args],
        check=True, capture_output=True, env=child_environment(REPO), timeout=120,
    )  # fmt: skip


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _worker(
    conn: Connection, sdk_json: str, indexes: list[int], holdoff_s: float,
    cpus: list[int] | None, bound_s: float,
) -> None:  # fmt: skip
    import asyncio

    import uvloop

    from client._asyncio import run
    from client._policy import Connected, RegistrationPlan, RetryPolicy
    from client._state import DeviceState
    from kaa_wire._errors import Overloaded
    from kaa_wire.sdk_config import SdkConfig

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = SdkConfig.from_json(Path(sdk_json).read_text())
    anchors = tuple(server.trusted_key() for server in config.bootstrap_servers)
    keys = Ed25519Keys()
    devices = [keys.load(i) for i in indexes]
    policy = RetryPolicy(initial_holdoff_s=holdoff_s)
    conn.send({"ready": True})
    start_at: float = conn.recv()  # the common start, once every worker has its keys
    if cpus:
        os.sched_setaffinity(0, cpus)
    done_at: list[float] = []
    overloaded = {"resolve": 0, "register": 0}
    attempts = {"resolve": 0, "register": 0}
    failed = [0]

    async def device(key: Any) -> None:
        state = DeviceState(endpoint_id=key.endpoint_id.hex(), registered=True, status="existing")
        plan = RegistrationPlan(
            config, anchors, key.private_key, state, profile_for(key.index),
            policy=policy, rng=random.Random(key.index), clock=time.monotonic,
        )  # fmt: skip
        outcome = await run(plan, timeout_s=policy.exchange_timeout_s, sleep=asyncio.sleep)
        for attempt in outcome.attempts:
            attempts[attempt.stage] += 1
            overloaded[attempt.stage] += isinstance(attempt.cause, Overloaded)
        if isinstance(outcome, Connected):
            done_at.append(time.monotonic() - start_at)
        else:
            failed[0] += 1

    async def main() -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        tasks = [asyncio.ensure_future(device(k)) for k in devices]
        await asyncio.wait(tasks, timeout=bound_s)

    before = cpu.sample(os.getpid())
    uvloop.run(main())
    usage = cpu.usage(before, cpu.sample(os.getpid()))
    conn.send({
        "done_at": done_at, "overloaded": overloaded, "attempts": attempts,
        "failed": failed[0], "cpu": usage, "devices": len(devices),
    })  # fmt: skip


def _scrape(server: ServerUnderTest) -> str:
    """The server's /metrics text (its admin port), or "" when it cannot be read."""
    import urllib.request

    port = server.listeners.get("admin_port")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


def _metrics(text: str) -> dict[str, float]:
    """The counters a storm is judged by: connections, refusals by code, store writes."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("kaa_connections_total", "kaa_errors_total", "kaa_store_commit")):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def run_storm(
    root: Path,
    *,
    devices: int,
    holdoff_s: float,
    server_cpus: list[int] | None,
    generator_cpus: list[int] | None,
    log: Any,
    procs: int = 2,
) -> dict[str, Any]:
    keys = Ed25519Keys()
    manifest = root / "manifest.txt"
    server = ServerUnderTest("ext", cpus=server_cpus, workdir=root)
    fill_record: dict[str, Any] | None = None
    if not (manifest.exists() and manifest.read_text() == f"ed25519 cached {devices}"):
        if root.exists():
            import shutil

            shutil.rmtree(root)
        root.mkdir(parents=True)
        server.start(timeout=120.0)
        target = Target.from_sdk_json(server.sdk_json)
        server.stop()
        # What a large fleet's application runs in (docs/deploy.md): answers signed once
        # per change. With a signature per request the Bootstrap alone (about 2,500/s per
        # core) would set the pace of the storm.
        _control(root / "data", "app", "update", target.app_token, "--cached-signature", "on")
        token_hash = hashlib.sha256(target.sdk_token.encode("ascii")).digest()
        result = fill.fill_sqlite(
            root / "data" / "registry.db", 0, devices, keys.public_der,
            token_hash=token_hash, application=target.app_token,
        )  # fmt: skip
        fill_record = result.to_dict()
        manifest.write_text(f"ed25519 cached {devices}")
        log(f"[storm] filled {devices:,} Ed25519 endpoints at {result.per_s:,.0f} rows/s")
    server.start(timeout=120.0)
    try:
        ctx = multiprocessing.get_context("spawn")
        pipes, workers = [], []
        for p in range(procs):
            parent, child = ctx.Pipe()
            worker = ctx.Process(
                target=_worker, daemon=True,
                args=(child, str(server.sdk_json), list(range(p, devices, procs)), holdoff_s,
                      generator_cpus, BOUND_S),
            )  # fmt: skip
            worker.start()
            pipes.append(parent)
            workers.append(worker)
        for parent in pipes:
            parent.recv()  # keys built
        start_at = time.monotonic() + 0.5
        for parent in pipes:
            parent.send(start_at)
        time.sleep(max(0.0, start_at - time.monotonic()))
        server_before = cpu.sample(server.pid, threads=True)
        machine_before = cpu.machine_times()
        log(f"[storm] {devices:,} devices, hold-off uniform(0, {holdoff_s:g}) s: go")
        replies = [parent.recv() for parent in pipes]
        server_after = cpu.sample(server.pid, threads=True)
        steal = cpu.steal_share(machine_before, cpu.machine_times())
        memory = server_memory_mib(server.pid)
        server_admin = _scrape(server)
        for worker in workers:
            worker.join(timeout=30)
    finally:
        server.stop()
    done = sorted(t for r in replies for t in r["done_at"])
    attempts = {s: sum(r["attempts"][s] for r in replies) for s in ("resolve", "register")}
    overloaded = {s: sum(r["overloaded"][s] for r in replies) for s in ("resolve", "register")}
    failed = sum(r["failed"] for r in replies)
    server_cpu = cpu.usage(server_before, server_after)
    out = {
        "devices": devices,
        "keys": "Ed25519 (RSA-2048 keygen for 100,000 devices would take about an hour here)",
        "initial_holdoff_s": holdoff_s,
        "policy": "client RetryPolicy defaults (base 1 s, cap 300 s, full jitter, retry-after)",
        "bootstrap": "cached-signature mode",
        "server_metrics": _metrics(server_admin),
        "registered": len(done),
        "gave_up": failed,
        "still_trying_at_bound": devices - len(done) - failed,
        "time_to_50_s": _percentile(done, 0.5) if len(done) * 2 >= devices else None,
        "time_to_99_s": done[int(0.99 * devices) - 1] if len(done) >= 0.99 * devices else None,
        "time_to_100_s": done[-1] if len(done) == devices else None,
        "device_total_s": {
            "p50": _percentile(done, 0.5),
            "p99": _percentile(done, 0.99),
            "max": done[-1] if done else None,
            "mean": statistics.fmean(done) if done else None,
        },
        "attempts": attempts,
        "overloaded": overloaded,
        # of the registration attempts (the Operations node's answers)
        "overloaded_share": round(overloaded["register"] / max(1, attempts["register"]), 4),
        "resolve_overloaded_share": round(
            overloaded["resolve"] / max(1, attempts["resolve"]), 4
        ),
        "server_cpu": server_cpu,
        "server_cpu_us_per_device": round(
            1e6 * float(server_cpu["cpu_s"]) / max(1, len(done)), 1  # type: ignore[arg-type]
        ),
        "server_memory_mib": memory,
        "generator_cpu": [r["cpu"] for r in replies],
        "steal": round(steal, 4),
    }
    if fill_record is not None:
        out["fill"] = fill_record
    log(f"[storm] {out}")
    return out
