"""The coordinator of the load-generator processes: one load point at a time.

Each point is built first (every worker signs and seals its share of the requests, on
every core), then run from one common start time, the workers pinned to the generator
cores. The coordinator samples the server's CPU over the window and merges what the
workers saw: outcome counts, latency histograms, and their own CPU use, which says
whether the generator rather than the server was the limit.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks.loadgen import cpu
from benchmarks.loadgen.hdr import Histogram
from benchmarks.loadgen.requests import Target, is_first
from benchmarks.loadgen.worker import is_success, worker_main

__all__ = ["GeneratorPool", "LoadError", "split"]

#: Seconds between sending the run command and the common start.
START_DELAY_S = 0.25


class LoadError(RuntimeError):
    """A worker failed, or the load could not be set up."""


def split(total: int, parts: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``parts`` (largest remainders), summing exactly."""
    weight = sum(parts)
    if weight == 0:
        return [0 for _ in parts]
    exact = [total * p / weight for p in parts]
    shares = [int(x) for x in exact]
    order = sorted(range(len(parts)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


class GeneratorPool:
    """``procs`` worker processes against one ``target``."""

    def __init__(
        self,
        target: Target,
        *,
        procs: int,
        keycache: Path | str,
        reconnect_keys: Sequence[int],
        cpus: Sequence[int] | None = None,
        server_pid: int | None = None,
        server_cores: int = 1,
        server_cpus: Sequence[int] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if procs < 1:
            raise ValueError("at least one generator process")
        self.target = target
        self.procs = procs
        self.cpus = list(cpus) if cpus else None
        self.server_pid = server_pid
        self.server_cores = server_cores
        self.server_cpus = list(server_cpus) if server_cpus else None
        self.timeout_s = timeout_s
        self._keycache = keycache
        self._reconnect = list(reconnect_keys)
        self._conns: list[Connection] = []
        self._processes: list[Any] = []

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> GeneratorPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> dict[str, Any]:
        ctx = multiprocessing.get_context("spawn")
        for index in range(self.procs):
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=worker_main,
                args=(child, index, self.procs),
                daemon=True,
                name=f"kaa-loadgen-{index}",
            )
            process.start()
            child.close()
            self._conns.append(parent)
            self._processes.append(process)
        replies = self._all(
            [
                {
                    "cmd": "setup",
                    "target": self.target.to_dict(),
                    "keycache": str(self._keycache),
                    "reconnect": self._reconnect[i :: self.procs],
                }
                for i in range(self.procs)
            ]
        )
        return replies[0]

    def close(self) -> None:
        for conn in self._conns:
            try:
                conn.send({"cmd": "quit"})
                conn.recv()
            except (OSError, EOFError):
                pass
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        self._conns.clear()
        self._processes.clear()

    def _all(self, messages: list[dict[str, Any]] | dict[str, Any]) -> list[dict[str, Any]]:
        if isinstance(messages, dict):
            messages = [dict(messages) for _ in self._conns]
        for conn, message in zip(self._conns, messages, strict=True):
            conn.send(message)
        replies = [conn.recv() for conn in self._conns]
        for reply in replies:
            if not reply.pop("ok"):
                raise LoadError(f"generator failed: {reply['error']}\n{reply['traceback']}")
        return replies

    # -- loads ----------------------------------------------------------------------------

    def warmup(self, concurrency: int = 8) -> dict[str, int]:
        """Register every reconnect key once (untimed); outcome counts."""
        per = max(1, concurrency // self.procs)
        replies = self._all({"cmd": "warmup", "concurrency": per, "timeout": self.timeout_s})
        outcomes: dict[str, int] = {}
        for reply in replies:
            for kinds in reply["outcomes"].values():
                for name, n in kinds.items():
                    outcomes[name] = outcomes.get(name, 0) + n
        return outcomes

    def point(
        self,
        service: str,
        *,
        count: int,
        max_seconds: float,
        concurrency: int = 0,
        rate: float = 0.0,
        first_keys: Sequence[int] = (),
        first_share: float = 0.0,
        on_start: Callable[[float], None] | None = None,
        port: int = 0,
        server_pid: int | None = None,
    ) -> dict[str, Any]:
        """One bounded load: closed loop if ``concurrency``, else open loop at ``rate``/s.

        ``service`` is "bootstrap" (resolutions), "operations" (registrations, a mix of
        ``first_share`` first-time ones, taking ``first_keys`` in order) or "connection"
        (reconnect frames to the floor server on 127.0.0.1 ``port``, whose process is
        ``server_pid``). ``on_start`` is called with the common start time once every
        request is built (a profiler hook).
        """
        server_pid = server_pid or self.server_pid
        mode = "closed" if concurrency else "open"
        if mode == "closed":
            per_conc = split(concurrency, [1] * self.procs)
            per_count = split(count, per_conc)
        else:
            per_conc = [0] * self.procs
            per_count = [len(range(i, count, self.procs)) for i in range(self.procs)]
        # Build: every worker in parallel.
        builds: list[dict[str, Any]] = []
        cursor = 0
        for i in range(self.procs):
            message: dict[str, Any] = {"cmd": "build", "count": per_count[i]}
            if service == "bootstrap":
                message["kind"] = "resolve"
            elif service == "connection":
                message["kind"] = "connection"
            else:
                firsts = sum(1 for j in range(per_count[i]) if is_first(j, first_share))
                message.update(
                    kind="register",
                    first=list(first_keys[cursor : cursor + firsts]),
                    first_share=first_share,
                )
                if len(message["first"]) < firsts:
                    raise LoadError(f"need {firsts} more first-time keys than were given")
                cursor += firsts
            builds.append(message)
        built = self._all(builds)
        active = [i for i in range(self.procs) if per_count[i] > 0]
        start_at = time.monotonic() + START_DELAY_S
        runs: list[dict[str, Any] | None] = [None] * self.procs
        for i in active:
            self._conns[i].send(
                {
                    "cmd": "run",
                    "mode": mode,
                    "service": service,
                    "start_at": start_at,
                    "max_seconds": max_seconds,
                    "cpus": self.cpus,
                    "timeout": self.timeout_s,
                    "concurrency": per_conc[i],
                    "rate": rate,
                    "port": port,
                }
            )
        if on_start is not None:
            on_start(start_at)
        time.sleep(max(0.0, start_at - time.monotonic()))
        server_before = cpu.sample(server_pid, threads=True) if server_pid else None
        cores_before = cpu.core_times()
        machine_before = cpu.machine_times()
        for i in active:
            reply = self._conns[i].recv()
            if not reply.pop("ok"):
                raise LoadError(f"generator failed: {reply['error']}\n{reply['traceback']}")
            runs[i] = reply
        server_after = cpu.sample(server_pid, threads=True) if server_pid else None
        cores_after = cpu.core_times()
        machine_after = cpu.machine_times()
        result = self._merge(
            [r for r in runs if r is not None], start_at, service, mode, concurrency, rate
        )
        result["first_keys_used"] = cursor
        result["build_s"] = max(b["build_s"] for b in built)
        if server_before and server_after:
            result["server_cpu"] = cpu.usage(server_before, server_after)
        cores = {"all": sorted(cores_after)}
        if self.server_cpus:
            cores["server"] = self.server_cpus
        if self.cpus:
            cores["generator"] = self.cpus
        result["cores_busy"] = {
            name: round(cpu.core_busy(cores_before, cores_after, ids), 4)
            for name, ids in cores.items()
        }
        busy = result["cores_busy"].get("server")
        server = result.get("server_cpu")
        if busy is not None and server:
            result["server_core_other_processes"] = round(
                max(0.0, busy - server["share_of_one_core"] / self.server_cores), 4
            )
        # What the hypervisor took from this VM in the window (shared/PERF.md: report it).
        result["steal"] = round(cpu.steal_share(machine_before, machine_after), 4)
        result["bottleneck"], result["verdict"] = self._verdict(result)
        return result

    # -- merging --------------------------------------------------------------------------

    def _merge(
        self,
        runs: list[dict[str, Any]],
        start_at: float,
        service: str,
        mode: str,
        concurrency: int,
        rate: float,
    ) -> dict[str, Any]:
        outcomes: dict[str, dict[str, int]] = {}
        latency: dict[str, Histogram] = {}
        lag = Histogram()
        for run in runs:
            for kind, counts in run["outcomes"].items():
                target = outcomes.setdefault(kind, {})
                for name, n in counts.items():
                    target[name] = target.get(name, 0) + n
            for kind, data in run["latency_us"].items():
                latency.setdefault(kind, Histogram()).merge(Histogram.from_dict(data))
            lag.merge(Histogram.from_dict(run["start_lag_us"]))
        ends = [r["last_done"] for r in runs if r["last_done"]]
        window = (max(ends) - start_at) if ends else 0.0
        ok = {k: sum(n for o, n in c.items() if is_success(o)) for k, c in outcomes.items()}
        errors = {
            f"{k}:{o}": n for k, c in outcomes.items() for o, n in c.items() if not is_success(o)
        }
        everything = Histogram.merged(latency.values())
        gen_cpu = [r["cpu"] for r in runs]
        gen_cpu_s = sum(c["cpu_s"] for c in gen_cpu)
        gen_wall = max((c["wall_s"] for c in gen_cpu), default=0.0) or 1e-9
        total_ok = sum(ok.values())
        result: dict[str, Any] = {
            "service": service,
            "mode": mode,
            "concurrency": concurrency or None,
            "target_rate_per_s": rate or None,
            "window_s": round(window, 4),
            "ok": total_ok,
            "ok_by_kind": ok,
            "errors": errors,
            "error_count": sum(errors.values()),
            "unsent": sum(r["unsent"] for r in runs),
            "outcomes": outcomes,
            "per_s": total_ok / window if window > 0 else 0.0,
            "per_s_by_kind": {k: n / window if window > 0 else 0.0 for k, n in ok.items()},
            "latency_ms": everything.summary(),
            "latency_ms_by_kind": {k: h.summary() for k, h in latency.items()},
            "histogram_us": everything.to_dict(),
            "generator": {
                "processes": len(runs),
                "cpus": self.cpus,
                "cpu_s": round(gen_cpu_s, 4),
                "share_of_one_core": round(gen_cpu_s / gen_wall, 4),
                "per_process_share": [c["share_of_one_core"] for c in gen_cpu],
                "max_in_flight": sum(r["max_in_flight"] for r in runs),
            },
        }
        if mode == "open":
            result["generator"]["start_lag_ms"] = lag.summary()
        return result

    def _verdict(self, result: dict[str, Any]) -> tuple[str, str]:
        """(category, explanation): generator, server, contended, open loop or latency."""
        gen = result["generator"]
        gen_cores = len(self.cpus) if self.cpus else (os.cpu_count() or 1)
        gen_limit = cpu.SATURATED * min(gen["processes"], gen_cores)
        if gen["share_of_one_core"] >= gen_limit or any(
            s >= cpu.SATURATED for s in gen["per_process_share"]
        ):
            return "generator", (
                "GENERATOR-BOUND: the generator was saturated; this figure measured it"
            )
        server = result.get("server_cpu")
        if server and server["share_of_one_core"] >= cpu.SATURATED * self.server_cores:
            return "server", "server-bound"
        busy = result.get("cores_busy", {}).get("server")
        if server and busy is not None and busy >= cpu.SATURATED:
            others = result.get("server_core_other_processes", 0.0)
            return "contended", (
                f"server core busy {100 * busy:.0f}%, of which other processes "
                f"{100 * others:.0f}%: contended, rerun on a quiet machine"
            )
        if result["mode"] == "open":
            return "open loop", "below capacity (open loop)"
        return "latency", "neither saturated: latency-bound, more concurrency would help"
