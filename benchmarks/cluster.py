"""``python -m benchmarks.cluster``: registrations/s with 1 and 2 Operations nodes on one
PostgreSQL database (issue #6), driving the load generator of ``benchmarks/loadgen``.

    python -m benchmarks.cluster                 # 3 runs, each layout once per run (~2 min)
    python -m benchmarks.cluster --runs 1 --count 300 --seconds 3    # a quick look

Each run measures both layouts, in alternating order (1 then 2 nodes, then 2 then 1...):

1. a fresh database on the PostgreSQL server and a fresh data directory (keys; the schema
   by the store's migrations); PostgreSQL is this module's own throwaway cluster
   (``scripts/postgres-throwaway``) unless ``--dsn`` names one;
2. one Bootstrap (127.0.0.2) and N Operations nodes (127.0.0.3, 127.0.0.4), each its own
   ``python -m servers.bootstrap|operations --store DSN`` process, default settings;
3. two applications with hash-affinity balancing, made until (with 2 nodes) each node is
   the first choice of one of them (checked by resolving), and an SDK token each;
4. two generator pools (``GeneratorPool``, one process each), one per application: an
   untimed warm-up registers each pool's reconnect keys, then both run one closed-loop
   point at once: ``--count`` registrations each (``--first-share`` first-time, the rest
   reconnects by key hash), ``--concurrency`` connections each, at most ``--seconds``.

The figure of a layout is every acknowledged registration of both pools over the union of
their windows (first start to last answer). CPU is read from /proc over that window: the
Operations nodes, the Bootstrap, the PostgreSQL processes, the generators, and how busy
each core was. On a 2-core machine the servers *and* PostgreSQL are pinned to one core and
the generators to the other (``--no-pin`` to let them float): two nodes share the core one
node had, so the 2-node figure measures the cost of spreading the same CPU over two nodes
and one database, not the gain of a second machine; the CPU per registration is what
sizes a real deployment (docs/deploy.md). The result goes to
``benchmarks/results/cluster.json``; figures are the median of the runs, with min and max.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.environment import child_environment
from benchmarks.loadgen import cpu
from benchmarks.loadgen.keys import DEFAULT_KEYCACHE, KeyCache
from benchmarks.loadgen.pool import GeneratorPool
from benchmarks.loadgen.requests import Target, best_node, resolve_blocking
from benchmarks.loadgen.servers import loaded_implementation
from benchmarks.loadgen.suite import layout, machine_info, wait_quiet
from benchmarks.throwaway_db import fresh_database
from kaa_wire import KaaWireError

__all__ = ["main", "run_layout"]

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BOOTSTRAP_HOST = "127.0.0.2"
NODE_HOSTS = ("127.0.0.3", "127.0.0.4")
START_TIMEOUT_S = 60.0
SCHEMA = "kaa-wire-bench-cluster/1"


def _log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- PostgreSQL -------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server(dsn: str | None) -> Iterator[tuple[str, int | None]]:
    """(server DSN, postmaster pid or None): ``dsn`` as given, else a throwaway cluster
    started for this run and stopped after it."""
    if dsn:
        yield dsn, None
        return
    script = REPO / "scripts" / "postgres-throwaway"
    with tempfile.TemporaryDirectory(prefix="kaa-bench-pg-") as tmp:
        os.chmod(tmp, 0o755)  # the cluster runs as the postgres user when we are root
        where = Path(tmp) / "pg"
        started = subprocess.run(
            [str(script), "start", str(where)], capture_output=True, text=True, timeout=300
        )
        if started.returncode != 0:
            raise SystemExit(f"cannot start PostgreSQL:\n{started.stderr}")
        try:
            pid = int((where / "data" / "postmaster.pid").read_text().split()[0])
            yield started.stdout.strip(), pid
        finally:
            subprocess.run([str(script), "stop", str(where)], capture_output=True, timeout=120)


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        out.append(parent)
        with contextlib.suppress(OSError):
            todo.extend(
                int(p) for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
            )
    return out


def _pin_tree(pid: int, cpus: list[int]) -> None:
    """Pin a process and its descendants (new ones inherit from the postmaster)."""
    for each in _descendants(pid):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(each, cpus)


# -- servers ----------------------------------------------------------------------------------


class _Server:
    """One ``python -m servers.<service>`` process; output in ``workdir``."""

    def __init__(self, service: str, args: list[str], workdir: Path, name: str,
                 cpus: list[int] | None) -> None:  # fmt: skip
        env = child_environment(REPO)
        command = cpu.pinned([sys.executable, "-m", f"servers.{service}", *args], cpus)
        self.name = name
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=workdir)

    def wait_port(self, prefix: str) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.err.read_text()[-3000:]}")
            for line in self.out.read_text().splitlines():
                if line.startswith(prefix):
                    return int(line.rsplit(":", 1)[1])
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start:\n{self.err.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _make_apps(
    dsn: str, data: Path, bootstrap: tuple[str, int], nodes: int, out: Path
) -> list[tuple[Path, str]]:
    """Two applications with hash-affinity balancing whose first nodes differ (with two
    nodes): their SDK configuration files, and the node each one loads."""
    from servers.control import actions
    from servers.control.export import build_sdk_config, write_export
    from servers.datadir import DataDir
    from servers.store.base import Balancing
    from servers.store.postgres import PostgresStore

    keyring = DataDir(data).keyring()
    chosen: dict[str, tuple[Path, str]] = {}

    async def make(name: str) -> Any:
        async with PostgresStore(dsn) as store:
            app = await actions.create_application(
                store, name=name, config=b"{}", balancing=Balancing.HASH_AFFINITY
            )
            token = await actions.create_sdk_token(store, app.token)
            return build_sdk_config(
                app, token, [bootstrap], keyring.public_key_pem, keyring.generation, 64 * 1024
            )

    for attempt in range(40):
        path = out / f"sdk-{attempt}.json"
        write_export(asyncio.run(make(f"bench-{attempt}")), path, None)
        target = Target.from_sdk_json(path)
        # The Bootstrap learns of the nodes by notification: wait until it lists them all.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(KaaWireError):  # OVERLOADED: no node listed yet
                resolved = resolve_blocking(target)
                if len(resolved.nodes) == nodes:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the Bootstrap never listed every node")
            time.sleep(0.05)
        first = best_node(resolved)
        key = f"{first.host}:{first.port}"
        chosen.setdefault(str(attempt) if nodes == 1 else key, (path, key))
        if len(chosen) == 2:
            return list(chosen.values())
    raise RuntimeError("no pair of applications spread over the nodes")


# -- one layout -------------------------------------------------------------------------------


@dataclasses.dataclass
class Options:
    count: int
    seconds: float
    concurrency: int
    first_share: float
    reconnect_pool: int
    keycache: KeyCache
    pin: bool


def _cpu_of(pids: list[int]) -> dict[int, cpu.CpuSample]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            out[pid] = cpu.sample(pid)
    return out


def _cpu_s(before: dict[int, cpu.CpuSample], after: dict[int, cpu.CpuSample]) -> float:
    """CPU seconds between the samples; a process started meanwhile counts from its start
    (one that ended meanwhile is missed)."""
    return sum(after[p].seconds - (before[p].seconds if p in before else 0.0) for p in after)


def run_layout(
    nodes: int, server_dsn: str, postmaster: int | None, opts: Options, workdir: Path
) -> dict[str, Any]:
    server_cpus, generator_cpus = layout(os.cpu_count() or 1) if opts.pin else (None, None)
    if postmaster is not None and server_cpus:
        _pin_tree(postmaster, server_cpus)
    data = workdir / "data"
    servers: list[_Server] = []
    with fresh_database(server_dsn, "kaa_bench_") as dsn:
        try:
            from servers.datadir import DataDir
            from servers.store.postgres import PostgresStore

            DataDir(data).create_keys()

            async def migrate() -> None:
                async with PostgresStore(dsn):
                    pass

            asyncio.run(migrate())
            common = ["--data", str(data), "--store", dsn, "--port", "0"]
            bootstrap = _Server(
                "bootstrap", [*common, "--host", BOOTSTRAP_HOST], workdir, "bootstrap", server_cpus
            )
            servers.append(bootstrap)
            for i in range(nodes):
                servers.append(_Server(
                    "operations", [*common, "--host", NODE_HOSTS[i], "--node-id", f"ops-{i + 1}"],
                    workdir, f"ops-{i + 1}", server_cpus,
                ))  # fmt: skip
            bootstrap_port = bootstrap.wait_port("bootstrap ")
            for server in servers[1:]:
                server.wait_port("operations ")
            sdks = _make_apps(dsn, data, (BOOTSTRAP_HOST, bootstrap_port), nodes, workdir)
            point = _load(nodes, sdks, servers, postmaster, opts, server_cpus, generator_cpus)
            point["implementation"] = loaded_implementation(servers[1].process.pid)
            return point
        finally:
            codes = {server.name: server.stop() for server in servers}
            if any(codes.values()):
                _log(f"server exit codes: {codes}")


def _load(
    nodes: int,
    sdks: list[tuple[Path, str]],
    servers: list[_Server],
    postmaster: int | None,
    opts: Options,
    server_cpus: list[int] | None,
    generator_cpus: list[int] | None,
) -> dict[str, Any]:
    first_count = int(opts.count * opts.first_share) + 8
    pool_keys = opts.reconnect_pool
    opts.keycache.ensure(2 * pool_keys + 2 * first_count)
    pools = [
        GeneratorPool(
            Target.from_sdk_json(sdk),
            procs=1,
            keycache=opts.keycache.root,
            reconnect_keys=range(i * pool_keys, (i + 1) * pool_keys),
            cpus=generator_cpus,
        )
        for i, (sdk, _) in enumerate(sdks)
    ]
    starts: list[float] = []
    samples: dict[str, Any] = {}
    lock = threading.Lock()
    server_pids = [s.process.pid for s in servers]

    def sample(key: str) -> None:
        # PostgreSQL's processes as they are now: backends of new connections and
        # autovacuum workers start during the load.
        pg_pids = _descendants(postmaster) if postmaster is not None else []
        samples[key] = (time.monotonic(), cpu.core_times(), _cpu_of(server_pids), _cpu_of(pg_pids))

    def on_start(start_at: float) -> None:
        with lock:
            starts.append(start_at)
            if len(starts) == 1:  # sample when the first pool starts sending
                threading.Timer(max(0.0, start_at - time.monotonic()), sample, ("start",)).start()

    results: list[dict[str, Any]] = [{} for _ in pools]
    try:
        for pool in pools:
            pool.start()
        warm = [pool.warmup() for pool in pools]
        first_base = 2 * pool_keys

        def point(i: int) -> None:
            results[i] = pools[i].point(
                "operations",
                count=opts.count,
                max_seconds=opts.seconds,
                concurrency=opts.concurrency,
                first_keys=range(first_base + i * first_count, first_base + (i + 1) * first_count),
                first_share=opts.first_share,
                on_start=on_start,
            )

        threads = [threading.Thread(target=point, args=(i,)) for i in range(len(pools))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sample("end")
    finally:
        for pool in pools:
            pool.close()
    if any(not r for r in results) or "start" not in samples:
        raise RuntimeError("a generator pool did not finish")
    # A point's window runs from its start to its last answer. The pools' start times are
    # known in on_start order, not pool order, but the union of the windows needs only
    # the first start and the last end, and every end is at most max(start) + max(window).
    window = max(starts) + max(r["window_s"] for r in results) - min(starts)
    ok = sum(r["ok"] for r in results)
    t0, cores0, srv0, pg0 = samples["start"]
    t1, cores1, srv1, pg1 = samples["end"]
    wall = t1 - t0
    ops_pids = server_pids[1:]
    ops_cpu = _cpu_s(srv0, {p: srv1[p] for p in ops_pids if p in srv1})
    boot_cpu = _cpu_s(srv0, {p: srv1[p] for p in server_pids[:1] if p in srv1})
    pg_cpu = _cpu_s(pg0, pg1)
    gen_cpu = sum(r["generator"]["cpu_s"] for r in results)
    cores: dict[str, float] = {"all": cpu.core_busy(cores0, cores1, sorted(cores1))}
    if server_cpus:
        cores["server"] = cpu.core_busy(cores0, cores1, server_cpus)
    if generator_cpus:
        cores["generator"] = cpu.core_busy(cores0, cores1, generator_cpus)
    return {
        "nodes": nodes,
        "registrations_per_s": ok / window if window > 0 else 0.0,
        "ok": ok,
        "errors": sum(r["error_count"] for r in results),
        "unsent": sum(r["unsent"] for r in results),
        "window_s": round(window, 4),
        "per_pool": [
            {k: r[k] for k in ("ok", "per_s", "window_s", "error_count", "errors", "verdict")}
            | {
                "node": node,
                "latency_ms": r["latency_ms"],
                "generator_share": r["generator"]["share_of_one_core"],
            }
            for r, (_, node) in zip(results, sdks, strict=True)
        ],
        "warmup_outcomes": warm,
        "cpu_s": {
            "operations": ops_cpu,
            "bootstrap": boot_cpu,
            "postgres": pg_cpu,
            "generators": gen_cpu,
        },
        "cpu_us_per_registration": {
            "operations": 1e6 * ops_cpu / ok if ok else None,
            "postgres": 1e6 * pg_cpu / ok if ok else None,
        },
        "share_of_one_core": {
            "operations": ops_cpu / wall,
            "bootstrap": boot_cpu / wall,
            "postgres": pg_cpu / wall,
        },
        "cores_busy": cores,
        "server_cpus": server_cpus,
        "generator_cpus": generator_cpus,
    }


# -- the benchmark ----------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def _describe(point: dict[str, Any]) -> str:
    us = point["cpu_us_per_registration"]
    busy = ", ".join(f"{k} {100 * v:.0f}%" for k, v in point["cores_busy"].items())
    return (
        f"{point['nodes']} node(s): {point['registrations_per_s']:.0f} registrations/s "
        f"({point['ok']} in {point['window_s']:.2f} s, errors {point['errors']}); "
        f"CPU per registration: operations {us['operations']:.0f} µs, "
        f"PostgreSQL {us['postgres']:.0f} µs; cores busy: {busy}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--count",
        type=int,
        default=4000,
        help="registrations per generator pool (two pools) per layout",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="time bound of a point")
    parser.add_argument("--concurrency", type=int, default=64, help="per generator pool")
    parser.add_argument("--first-share", type=float, default=0.5)
    parser.add_argument("--reconnect-pool", type=int, default=256, help="keys per pool")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("KAA_BENCH_POSTGRES_DSN"),
        help="a PostgreSQL server to use (default: start a throwaway one)",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin servers and generators to separate cores"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for the load average to fall below 0.5",
    )
    parser.add_argument("--keycache", type=Path, default=DEFAULT_KEYCACHE)
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster.json")
    args = parser.parse_args(argv)
    opts = Options(
        count=args.count, seconds=args.seconds, concurrency=args.concurrency,
        first_share=args.first_share, reconnect_pool=args.reconnect_pool,
        keycache=KeyCache(args.keycache), pin=not args.no_pin,
    )  # fmt: skip
    if args.wait_quiet:
        wait_quiet(0.5, args.wait_quiet)
    began = time.monotonic()
    load_before = os.getloadavg()
    points: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    with postgres_server(args.dsn) as (server_dsn, postmaster):
        for run in range(args.runs):
            order = (1, 2) if run % 2 == 0 else (2, 1)
            for nodes in order:
                with tempfile.TemporaryDirectory(prefix="kaa-bench-cluster-") as tmp:
                    point = run_layout(nodes, server_dsn, postmaster, opts, Path(tmp))
                point["run"] = run + 1
                points[nodes].append(point)
                _log(f"run {run + 1}/{args.runs}: " + _describe(point))
    figures = {
        f"{nodes}_node{'s' if nodes > 1 else ''}": {
            "registrations_per_s": _spread([p["registrations_per_s"] for p in runs]),
            "operations_cpu_us_per_registration": _spread(
                [p["cpu_us_per_registration"]["operations"] for p in runs]
            ),
            "postgres_cpu_us_per_registration": _spread(
                [p["cpu_us_per_registration"]["postgres"] for p in runs]
            ),
            "errors": sum(p["errors"] for p in runs),
        }
        for nodes, runs in points.items()
    }
    ratio = _spread([
        two["registrations_per_s"] / one["registrations_per_s"]
        for one, two in zip(points[1], points[2], strict=True)
    ])  # fmt: skip
    result = {
        "schema": SCHEMA,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.cluster "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": {k: v for k, v in vars(args).items() if k not in ("dsn", "keycache", "out")},
        "postgres": "own throwaway cluster" if postmaster else "given by --dsn",
        "figures": figures,
        "two_over_one": ratio,
        "machine": machine_info(),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "wall_s": round(time.monotonic() - began, 1),
        "points": points,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, fig in figures.items():
        r = fig["registrations_per_s"]
        _log(f"{name}: {r['median']:.0f} registrations/s (min {r['min']:.0f}, max {r['max']:.0f})")
    _log(
        f"2 nodes / 1 node: {ratio['median']:.2f} (min {ratio['min']:.2f}, max {ratio['max']:.2f})"
    )
    _log(f"written {args.out}")
    return 0 if all(f["errors"] == 0 for f in figures.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
