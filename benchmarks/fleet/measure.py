"""One fleet size, measured: a server on the filled store, loaded by the generator.

Three kinds of registration, each on a fresh server process (an empty key cache):

* **new**: first-time registrations with fresh keys (an INSERT into the big index);
* **reconnect, hit**: a hot set of 512 endpoints whose keys the warm-up put in the node's
  key cache, reconnecting by key hash;
* **reconnect, miss**: endpoints drawn at random, without repeats, from a working set of
  the whole store or ``10 x`` the node's key cache (50,000 entries), whichever is smaller:
  none of them was seen by this server process, so every one takes the coroutine path
  and a store read of its key. The fresh server first serves ``MISS_WARMUP`` untimed
  misses on other endpoints, as the hits' server was warmed up by the points before.

Each kind gets a closed-loop point (its peak) and an open-loop point at 80 % of that peak
(p50/p99/p99.9 without coordinated omission). The server's CPU per registration, its
resident memory (VmRSS, and VmHWM, the peak) and CPU steal come with every point.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

from benchmarks.loadgen.pool import GeneratorPool
from benchmarks.loadgen.report import format_point
from benchmarks.loadgen.requests import Target

__all__ = ["KEY_CACHE_ENTRIES", "MeasurePlan", "measure_size", "server_memory_mib"]

#: servers.operations.directory.Directory's default ``max_keys``.
KEY_CACHE_ENTRIES = 50_000
HOT_SET = 512
#: Untimed misses that warm a fresh server up before the measured ones.
MISS_WARMUP = 1000


@dataclasses.dataclass(frozen=True)
class MeasurePlan:
    concurrency: int
    #: a closed-loop point aims at this many seconds (never more than ``cap`` requests)
    seconds: float
    open_seconds: float
    cap: int
    open_fraction: float = 0.8
    procs: int = 2


def server_memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (the peak so far) of ``pid``, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = round(int(value.split()[0]) / 1024, 1)
    return out


def _slim(point: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in point.items() if k not in ("histogram_us",)}


def _cpu_us(point: dict[str, Any]) -> float | None:
    server = point.get("server_cpu")
    if not server or not point["ok"]:
        return None
    return round(1e6 * server["cpu_s"] / point["ok"], 1)


def _summary(closed: dict[str, Any], opened: dict[str, Any]) -> dict[str, Any]:
    return {
        "per_s": round(closed["per_s"], 1),
        "server_cpu_us": _cpu_us(closed),
        "server_share_of_one_core": (closed.get("server_cpu") or {}).get("share_of_one_core"),
        "verdict": closed["verdict"],
        "open_rate_per_s": round(opened["target_rate_per_s"] or 0.0, 1),
        "open_per_s": round(opened["per_s"], 1),
        "p50_ms": opened["latency_ms"].get("p50"),
        "p99_ms": opened["latency_ms"].get("p99"),
        "p999_ms": opened["latency_ms"].get("p99.9"),
        "errors": closed["error_count"] + opened["error_count"],
        "steal": max(closed.get("steal", 0.0), opened.get("steal", 0.0)),
    }


class _Log:
    def __init__(self, label: str, log: Any) -> None:
        self.label, self.log = label, log

    def __call__(self, kind: str, point: dict[str, Any]) -> None:
        self.log(f"[{self.label} {kind}] " + format_point(point))


def _pair(
    pool: GeneratorPool,
    plan: MeasurePlan,
    guess_per_s: float,
    *,
    first: range | None,
    log: _Log,
    kind: str,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Closed loop then open loop at 80 % of its rate; returns them and first keys used."""
    share = 1.0 if first is not None else 0.0
    keys = first if first is not None else range(0)
    count = max(min(200, plan.cap), min(plan.cap, round(guess_per_s * plan.seconds)))
    closed = pool.point(
        "operations", count=count, max_seconds=plan.seconds * 3,
        concurrency=plan.concurrency, first_keys=keys, first_share=share,
    )  # fmt: skip
    log(kind, closed)
    used = closed["first_keys_used"]
    rate = max(1.0, plan.open_fraction * closed["per_s"])
    count = max(min(100, plan.cap), min(plan.cap, round(rate * plan.open_seconds)))
    opened = pool.point(
        "operations", count=count, max_seconds=count / rate + 10.0, rate=rate,
        first_keys=keys[used:], first_share=share,
    )  # fmt: skip
    log(kind + " open", opened)
    return closed, opened, used + opened["first_keys_used"]


def measure_size(
    target: Target,
    server_pid: int,
    *,
    plan: MeasurePlan,
    keys: str,
    stored: range,
    fresh: range,
    server_cpus: list[int] | None,
    generator_cpus: list[int] | None,
    restart: Any,
    label: str,
    log: Any,
    guess_per_s: float = 3000.0,
) -> dict[str, Any]:
    """Measure new / hit / miss against the server ``server_pid`` serving ``target``.

    ``stored``: key indexes already in the store; ``fresh``: indexes never registered.
    ``restart()`` restarts the server on the same store (an empty key cache) and returns
    (target, pid). Returns the figures and how many fresh keys were used.
    """
    rng = random.Random(f"{label}")
    out: dict[str, Any] = {}
    points: dict[str, Any] = {}
    say = _Log(label, log)
    memory: list[dict[str, float]] = []

    def pool_for(reconnect: list[int] | range, pid: int, tgt: Target) -> GeneratorPool:
        return GeneratorPool(
            tgt, procs=plan.procs, keycache=keys, reconnect_keys=reconnect,
            cpus=generator_cpus, server_pid=pid, server_cores=1, server_cpus=server_cpus,
            timeout_s=30.0,
        )  # fmt: skip

    # new registrations and reconnects that hit, on one server
    hot = range(stored.start, stored.start + min(HOT_SET, len(stored)))
    with pool_for(hot, server_pid, target) as pool:
        out["warmup_outcomes"] = pool.warmup()
        closed, opened, used = _pair(
            pool, plan, guess_per_s, first=fresh, log=say, kind="new"
        )  # fmt: skip
        memory.append(server_memory_mib(server_pid))
        points["new"] = {"closed": _slim(closed), "open": _slim(opened)}
        out["new"] = _summary(closed, opened)
        closed, opened, _ = _pair(pool, plan, guess_per_s, first=None, log=say, kind="hit")
        memory.append(server_memory_mib(server_pid))
        points["hit"] = {"closed": _slim(closed), "open": _slim(opened)}
        out["hit"] = _summary(closed, opened)

    # reconnects that miss: a fresh server (empty key cache), endpoints it never saw
    target, server_pid = restart()
    working = min(len(stored), 10 * KEY_CACHE_ENTRIES)
    n_closed = max(min(200, plan.cap), min(plan.cap, round(guess_per_s * plan.seconds)))
    n_open = max(min(100, plan.cap), min(plan.cap, round(0.8 * guess_per_s * plan.open_seconds)))
    # The working set is spread over the whole store (every stride-th row), not its start.
    stride = max(1, len(stored) // working)
    sample = rng.sample(range(working), min(working, MISS_WARMUP + n_closed + n_open))
    drawn = [stored.start + i * stride for i in sample]
    # Warm the fresh server up first, as the hits' server was (its reader threads open their
    # connections and page caches on first use): misses on endpoints the measured points
    # never draw, untimed.
    warm, drawn = drawn[:MISS_WARMUP], drawn[MISS_WARMUP:] or drawn
    with pool_for(warm, server_pid, target) as pool:
        pool.point(
            "operations", count=len(warm), max_seconds=plan.seconds * 3,
            concurrency=plan.concurrency,
        )  # fmt: skip
    with pool_for(drawn[:n_closed], server_pid, target) as pool:
        closed = pool.point(
            "operations", count=min(n_closed, len(drawn)), max_seconds=plan.seconds * 3,
            concurrency=plan.concurrency,
        )  # fmt: skip
        say("miss", closed)
    memory.append(server_memory_mib(server_pid))
    rest = drawn[n_closed:] or drawn
    rate = max(1.0, plan.open_fraction * closed["per_s"])
    count = min(len(rest), max(min(100, plan.cap), round(rate * plan.open_seconds)))
    with pool_for(rest[:count], server_pid, target) as pool:
        opened = pool.point(
            "operations", count=count, max_seconds=count / rate + 10.0, rate=rate
        )  # fmt: skip
        say("miss open", opened)
    memory.append(server_memory_mib(server_pid))
    points["miss"] = {"closed": _slim(closed), "open": _slim(opened)}
    out["miss"] = _summary(closed, opened)
    out["miss"]["working_set"] = working
    out["miss"]["distinct_endpoints"] = len(drawn)
    out["memory_mib"] = memory
    out["rss_mib"] = max(m.get("VmHWM", m.get("VmRSS", 0.0)) for m in memory)
    out["points"] = points
    out["fresh_keys_used"] = used
    return out
