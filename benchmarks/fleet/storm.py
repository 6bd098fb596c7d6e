"""The reconnect storm: N registered devices come back at once, against one node.

Every device runs the client library's own plan (``client._policy.RegistrationPlan``): its
random initial hold-off, a verified resolution, a reconnect by key hash, and on any
failure (``OVERLOADED`` included) the client's exponential backoff with full jitter,
honouring the server's retry-after. They all start at the same instant; a device's hold-off
counts from it.

The devices hold **Ed25519** keys: 100,000 RSA-2048 keys would take this machine about an
hour to generate, and signing with them is the generator's cost, not the server's. They
are stored beforehand by the bulk fill, so each reconnect is one the node never saw (a
key-cache miss: the store read). The application runs with cached signatures, as a large
fleet's does (docs/deploy.md): with a signature per request the Bootstrap alone would set
the storm's pace.

What makes the figures the server's and not the generator's (``storm_worker.py``): each
device's first request is sealed before the storm, for the instant it will be sent; a
device connects only when it sends; the generator processes are pinned to the generator
core(s) and their event-loop lag is reported. The loopback port range is checked before
and watched during the storm (``ports.py``): the storm refuses to start, or runs with
fewer open sockets and says so, when the range cannot hold it; it stops when the free
ports run low. It is bounded in time: devices still trying at the bound count as such.

Reported: the time until 50 %, 99 % and 100 % are registered, the ``OVERLOADED`` share of
registration attempts, each device's total time (from the common start, hold-off included)
at p50/p99/max and its time after its hold-off, how many devices gave up (the plan's
``Failed``) or were still trying at the bound.
"""

from __future__ import annotations

import multiprocessing
import statistics
import subprocess
import sys
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from benchmarks.fleet.deployment import Deployment
from benchmarks.fleet.measure import server_memory_mib
from benchmarks.fleet.ports import StormRefused, plan_budget, ports_in_use
from benchmarks.fleet.storm_worker import run_worker
from benchmarks.loadgen import cpu
from benchmarks.loadgen.keys import Ed25519Keys
from benchmarks.loadgen.requests import Target
from benchmarks.loadgen.servers import ServerUnderTest

__all__ = ["BOUND_S", "MAX_OPEN", "StormRefused", "run_storm"]

#: The storm is bounded like every run (shared/PERF.md): devices still trying then count.
BOUND_S = 600.0
#: The generator's sockets open at once, all processes: the server has 1,024 connection
#: slots per service, and answers OVERLOADED beyond them.
MAX_OPEN = 4096
#: How often the port range is read during the storm.
WATCH_S = 5.0
#: A generator process that has not reported this long after the bound is ended (its
#: devices then count as still trying): the storm's time stays bounded even when a
#: starved generator loop cannot see its own bound.
GRACE_S = 60.0
KEYSPEC = "ed25519, cached-signature application"


def _cached_signatures(root: Path) -> Any:
    """The fill's ``prepare``: the application signs its resolution answers once per change."""
    from benchmarks.environment import child_environment
    from benchmarks.loadgen.servers import REPO

    def prepare(target: Target) -> None:
        subprocess.run(
            [sys.executable, "-m", "servers.control", "--data", str(root / "data"),
             "app", "update", target.app_token, "--cached-signature", "on"],
            check=True, capture_output=True, env=child_environment(REPO), timeout=120,
        )  # fmt: skip

    return prepare


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 3)


def _recv_all(pipes: list[Connection], timeout_s: float, what: str) -> list[Any]:
    """One message from every worker, or RuntimeError when one is late or died."""
    out = []
    for pipe in pipes:
        if not pipe.poll(timeout_s):
            raise RuntimeError(f"a storm generator process did not report {what}")
        out.append(pipe.recv())
    return out


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
    bound_s: float = BOUND_S,
    max_open: int = MAX_OPEN,
) -> dict[str, Any]:
    """Fill (once) and run the storm; raises StormRefused when the port range is too full."""
    budget = plan_budget(max_open)
    if budget.warning:
        log(f"[storm] WARNING: {budget.warning}")
    deployment = Deployment(root, "sqlite", devices, dsn=None, cpus=server_cpus, log=log)
    fill_record = deployment.ensure_filled(Ed25519Keys(), KEYSPEC, _cached_signatures(root))
    per_proc = max(1, budget.max_open // procs)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    _, pid = deployment.start()
    assert deployment.server is not None
    server: ServerUnderTest = deployment.server
    peak_in_use, stopped = budget.in_use_before, None
    pipes: list[Connection] = []
    workers: list[Any] = []
    try:
        for p in range(procs):
            parent, child = ctx.Pipe()
            worker = ctx.Process(
                target=run_worker, daemon=True,
                args=(child, str(server.sdk_json), list(range(p, devices, procs)), holdoff_s,
                      generator_cpus, bound_s, per_proc, stop),
            )  # fmt: skip
            worker.start()
            pipes.append(parent)
            workers.append(worker)
        prepare_began = time.monotonic()
        built = _recv_all(pipes, 1800, "its devices")
        # The start the requests are sealed for: after the slowest process's sealing.
        planned = time.monotonic() + 1.5 * max(b["seal_estimate_s"] for b in built) + 2.0
        for parent in pipes:
            parent.send(planned)
        sealed = _recv_all(pipes, 1800, "its sealed requests")
        start_at = max(planned, time.monotonic() + 0.5)
        for parent in pipes:
            parent.send(start_at)
        time.sleep(max(0.0, start_at - time.monotonic()))
        server_before = cpu.sample(pid, threads=True)
        machine_before = cpu.machine_times()
        cores_before = cpu.core_times()
        log(
            f"[storm] {devices:,} devices in {procs} processes, hold-off uniform(0, "
            f"{holdoff_s:g}) s, at most {budget.max_open:,} sockets open: go"
        )
        replies: dict[int, Any] = {}
        while len(replies) < len(pipes):
            if time.monotonic() > start_at + bound_s + GRACE_S:
                late = [i for i in range(len(pipes)) if i not in replies]
                log(f"[storm] generator process(es) {late} did not report by the bound: ended")
                for i in late:
                    workers[i].terminate()
                break
            waiting = [p for i, p in enumerate(pipes) if i not in replies]
            for ready in wait(waiting, WATCH_S):
                index = pipes.index(ready)  # type: ignore[arg-type]
                replies[index] = pipes[index].recv()
            in_use = ports_in_use(budget.low, budget.high)
            peak_in_use = max(peak_in_use, in_use)
            if stopped is None and budget.size - in_use < budget.reserve:
                stopped = (
                    f"stopped: {in_use:,} of {budget.size:,} ports of the range in use, "
                    f"fewer than {budget.reserve:,} free"
                )
                log(f"[storm] {stopped}")
                stop.set()
        server_after = cpu.sample(pid, threads=True)
        cores_after = cpu.core_times()
        steal = cpu.steal_share(machine_before, cpu.machine_times())
        memory = server_memory_mib(pid)
        server_admin = _scrape(server)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()  # our own child, by its handle
                worker.join(timeout=10)
        deployment.stop()
    results = [replies[i] for i in sorted(replies)]
    out = _summary(results, devices, holdoff_s)
    out["generator_processes_ended_at_bound"] = len(pipes) - len(results)
    out.update({
        "fill": fill_record,
        "server_metrics": _metrics(server_admin),
        "server_cpu": (server_cpu := cpu.usage(server_before, server_after)),
        "server_cpu_us_per_device": round(
            1e6 * float(server_cpu["cpu_s"]) / max(1, out["registered"]), 1  # type: ignore[arg-type]
        ),
        "server_memory_mib": memory,
        "steal": round(steal, 4),
        "generator": {
            "processes": procs,
            "prepare_s": round(start_at - prepare_began, 1),
            "seal_s": [round(s["seal_s"], 1) for s in sealed],
            "timestamps_sealed_for_start_lag_s": round(start_at - planned, 2),
            "cpu": [r["cpu"] for r in results],
            "loop_lag_ms": [r["loop_lag_ms"] for r in results],
            "first_requests_sealed_before": sum(r["sealed_before_used"] for r in results),
            "requests_sealed_on_demand": sum(r["sealed_on_demand"] for r in results),
            "waits_for_a_socket": sum(r["gate_waits"] for r in results),
            "socket_wait_s": round(sum(r["gate_wait_s"] for r in results), 1),
            "exchange_timeouts": sum(r["timeouts"] for r in results),
        },
        "ports": {**budget.to_dict(), "peak_in_use": peak_in_use, "stopped": stopped},
    })  # fmt: skip
    out["cores"] = _cores(
        cores_before, cores_after, server_cpus, generator_cpus, out
    )  # fmt: skip
    out["verdict"] = _verdict(out)
    log(f"[storm] {out}")
    return out


def _cores(
    before: dict[int, tuple[float, float]],
    after: dict[int, tuple[float, float]],
    server_cpus: list[int] | None,
    generator_cpus: list[int] | None,
    out: dict[str, Any],
) -> dict[str, Any]:
    """How busy the server's and the generator's cores were, and how much of that was
    other processes (on a shared machine, the neighbours)."""
    mine = {
        "server": float(out["server_cpu"]["share_of_one_core"]),
        "generator": sum(float(c["share_of_one_core"]) for c in out["generator"]["cpu"]),
    }
    cores: dict[str, Any] = {}
    for name, ids in (("server", server_cpus), ("generator", generator_cpus)):
        if ids:
            busy = cpu.core_busy(before, after, ids)
            cores[name] = {
                "busy": round(busy, 4),
                "other_processes": round(max(0.0, busy - mine[name] / len(ids)), 4),
            }
    return cores


#: A generator loop this late (p99) delays the devices' exchanges by itself.
LAG_LIMIT_MS = 1000.0
#: Devices registered this soon (p99) after their hold-off, none refused: the server kept up.
KEPT_UP_S = 2.0


def _verdict(out: dict[str, Any]) -> str:
    """Who set the storm's pace: the generator, the server, or the devices' hold-off."""
    if out["generator_processes_ended_at_bound"]:
        return "GENERATOR-BOUND: a generator process could not finish by the bound"
    lags = [lag["p99"] or 0.0 for lag in out["generator"]["loop_lag_ms"]]
    server, generator = out["cores"].get("server"), out["cores"].get("generator")
    if max(lags, default=0.0) > LAG_LIMIT_MS:
        why = ""
        if generator and generator["other_processes"] >= 0.3:
            why = f", other processes took {100 * generator['other_processes']:.0f} % of its core"
        return (
            f"GENERATOR-BOUND: a generator loop ran {max(lags) / 1000:.1f} s late (p99){why}; "
            "the times measure the generator, not the server"
        )
    if float(out["server_cpu"]["share_of_one_core"]) >= cpu.SATURATED:
        return "server-bound: the server's core was saturated"
    kept_up = not out["overloaded"]["register"] and (
        (out["device_after_holdoff_s"]["p99"] or 0.0) < KEPT_UP_S
    )
    if kept_up:
        contended = ""
        if server and server["busy"] >= cpu.SATURATED:
            contended = (
                f" (on a shared core: other processes {100 * server['other_processes']:.0f} %)"
            )
        return "arrival-bound: the server kept up with the hold-off's arrivals" + contended
    if server and server["busy"] >= cpu.SATURATED:
        return (
            f"contended: the server's core was busy {100 * server['busy']:.0f} %, other "
            f"processes {100 * server['other_processes']:.0f} %: rerun on a quiet machine"
        )
    return "arrival-bound: the server kept up with the hold-off's arrivals"


def _summary(results: list[dict[str, Any]], devices: int, holdoff_s: float) -> dict[str, Any]:
    done = sorted(t for r in results for t in r["done_at"])
    active = sorted(t for r in results for t in r["after_holdoff"])
    attempts = {s: sum(r["attempts"][s] for r in results) for s in ("resolve", "register")}
    overloaded = {s: sum(r["overloaded"][s] for r in results) for s in ("resolve", "register")}
    failed = sum(r["failed"] for r in results)
    revoked = sum(r["revoked"] for r in results)
    return {
        "devices": devices,
        "keys": "Ed25519 (RSA-2048 keygen for 100,000 devices would take about an hour here)",
        "initial_holdoff_s": holdoff_s,
        "policy": "client RetryPolicy defaults (base 1 s, cap 300 s, full jitter, retry-after)",
        "bootstrap": "cached-signature mode",
        "registered": len(done),
        "gave_up": failed,
        "revoked": revoked,
        "still_trying_at_bound": devices - len(done) - failed - revoked,
        "time_to_50_s": _percentile(done, 0.5) if len(done) * 2 >= devices else None,
        "time_to_99_s": (
            round(done[int(0.99 * devices) - 1], 3) if len(done) >= 0.99 * devices else None
        ),
        "time_to_100_s": round(done[-1], 3) if len(done) == devices else None,
        "device_total_s": {
            "p50": _percentile(done, 0.5),
            "p99": _percentile(done, 0.99),
            "max": round(done[-1], 3) if done else None,
            "mean": round(statistics.fmean(done), 3) if done else None,
        },
        "device_after_holdoff_s": {
            "p50": _percentile(active, 0.5),
            "p99": _percentile(active, 0.99),
            "max": round(active[-1], 3) if active else None,
        },
        "attempts": attempts,
        "overloaded": overloaded,
        # of the registration attempts (the Operations node's answers)
        "overloaded_share": round(overloaded["register"] / max(1, attempts["register"]), 4),
        "resolve_overloaded_share": round(overloaded["resolve"] / max(1, attempts["resolve"]), 4),
    }
