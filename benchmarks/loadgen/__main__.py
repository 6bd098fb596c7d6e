"""``python -m benchmarks.loadgen``: load a running kaa-wire server from loopback.

    python -m benchmarks.loadgen register --sdk kaa-data/sdk.json --concurrency 16 --count 2000
    python -m benchmarks.loadgen register --sdk kaa-data/sdk.json --rate 1500 --seconds 5
    python -m benchmarks.loadgen resolve  --sdk kaa-data/sdk.json --concurrency 8 --count 1000
    python -m benchmarks.loadgen keys --count 4000          # fill the key cache in advance

Registrations mix first-time ones (fresh keys from the cache, from --first-offset on) and
reconnects by key hash (--reconnect-pool keys, registered in an untimed warm-up), in the
--first-share proportion, each reported apart. Every run is bounded by --count and
--seconds. Give --server-pid to have the server's CPU use reported beside the generator's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.loadgen.keys import DEFAULT_KEYCACHE, KeyCache
from benchmarks.loadgen.pool import GeneratorPool
from benchmarks.loadgen.report import format_point
from benchmarks.loadgen.requests import Target


def _cpus(text: str | None) -> list[int] | None:
    if not text:
        return None
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.loadgen", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    keys = sub.add_parser("keys", help="generate endpoint keys into the cache")
    keys.add_argument("--count", type=int, required=True)
    keys.add_argument("--keycache", type=Path, default=DEFAULT_KEYCACHE)
    for name in ("register", "resolve"):
        p = sub.add_parser(name, help=f"{name} load")
        p.add_argument("--sdk", type=Path, required=True, help="the exported DIR/sdk.json")
        mode = p.add_mutually_exclusive_group(required=True)
        mode.add_argument("--concurrency", type=int, help="closed loop: clients in flight")
        mode.add_argument("--rate", type=float, help="open loop: operations per second")
        p.add_argument(
            "--count", type=int, default=0, help="operations (default: rate x seconds, or 1000)"
        )
        p.add_argument("--seconds", type=float, default=10.0, help="time bound of the run")
        p.add_argument("--procs", type=int, default=1, help="generator processes")
        p.add_argument("--cpus", help="pin the generators here during the run, e.g. 1 or 2-3")
        p.add_argument("--server-pid", type=int, help="report this process's CPU use")
        p.add_argument("--server-cores", type=int, default=1)
        p.add_argument("--server-cpus", help="the cores the server is pinned to, e.g. 0")
        p.add_argument("--keycache", type=Path, default=DEFAULT_KEYCACHE)
        p.add_argument("--json", type=Path, help="write the result here")
        p.add_argument("--timeout", type=float, default=10.0, help="per operation, seconds")
        if name == "register":
            p.add_argument(
                "--first-share",
                type=float,
                default=0.5,
                help="share of first-time registrations (0..1)",
            )
            p.add_argument(
                "--reconnect-pool",
                type=int,
                default=256,
                help="endpoints registered in the warm-up, then reconnecting",
            )
            p.add_argument(
                "--first-offset",
                type=int,
                default=None,
                help="index of the first first-time key (default: after the pool)",
            )
    args = parser.parse_args(argv)
    if args.command == "keys":
        KeyCache(args.keycache).ensure(args.count)
        return 0

    count = args.count or (round(args.rate * args.seconds) if args.rate else 1000)
    target = Target.from_sdk_json(args.sdk)
    cache = KeyCache(args.keycache)
    register = args.command == "register"
    pool_keys = range(args.reconnect_pool) if register and args.first_share < 1 else range(0)
    first_keys: range = range(0)
    if register:
        first_offset = len(pool_keys) if args.first_offset is None else args.first_offset
        first_keys = range(first_offset, first_offset + int(count * args.first_share) + args.procs)
        cache.ensure(max(pool_keys.stop, first_keys.stop))
    with GeneratorPool(
        target,
        procs=args.procs,
        keycache=args.keycache,
        reconnect_keys=pool_keys,
        cpus=_cpus(args.cpus),
        server_pid=args.server_pid,
        server_cores=args.server_cores,
        server_cpus=_cpus(args.server_cpus),
        timeout_s=args.timeout,
    ) as pool:
        warmup = pool.warmup() if pool_keys else {}
        result = pool.point(
            "operations" if register else "bootstrap",
            count=count,
            max_seconds=args.seconds,
            concurrency=args.concurrency or 0,
            rate=args.rate or 0.0,
            first_keys=first_keys,
            first_share=args.first_share if register else 0.0,
        )
    result["warmup_outcomes"] = warmup
    print(format_point(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["error_count"] == 0 and result["unsent"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
