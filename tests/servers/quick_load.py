"""A quick closed-loop load against a running ``python -m servers`` (not a test; the full
benchmark suite lives in benchmarks/). Each operation is a new TCP connection; requests
are built and signed before the timed window; every answer is checked by the core.

    python tests/servers/quick_load.py resolve  --sdk DIR/sdk.json --count 4000
    python tests/servers/quick_load.py register --sdk DIR/sdk.json --count 2000 [--reconnect]

``--server-pid`` adds the server's CPU use over the window. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import uvloop
from cryptography.hazmat.primitives import serialization

import kaa_files
from kaa_wire import RegisterClient, ResolveClient, _crypto
from kaa_wire.sdk_config import SdkConfig

PROFILE = json.dumps({"model": "thermo-3", "firmware": "1.4.2", "serial": "x" * 120}).encode()


def _key(path: str) -> bytes:
    """The key at ``path`` (``NNNNN.pem``, or an existing ``NNNNN.der``), made if missing."""
    der = path.removesuffix(".pem") + ".der"
    if os.path.exists(der):
        return Path(der).read_bytes()
    if not os.path.exists(path):
        kaa_files.atomic_write(path, _crypto.private_key_pem(_crypto.generate_rsa_key(2048)))
    return Path(path).read_bytes()


def load_keys(cache: Path, count: int, first: int = 0) -> list[Any]:
    """``count`` RSA-2048 keys, generated once in parallel and kept under ``cache``
    (a folder of ``NNNNN.der`` keys, such as benchmarks/.keycache/rsa2048, works too)."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = [str(cache / f"{i:05d}.pem") for i in range(first, first + count)]
    with ProcessPoolExecutor() as pool:
        pems = list(pool.map(_key, paths, chunksize=16))
    # Our own cached keys: skip the slow RSA consistency check on load.
    return [
        serialization.load_pem_private_key(k, None, unsafe_skip_rsa_key_validation=True)
        if k.startswith(b"-----")
        else serialization.load_der_private_key(k, None, unsafe_skip_rsa_key_validation=True)
        for k in pems
    ]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one(host: str, port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    answer = await reader.read()
    writer.close()
    return answer


def resolver(sdk: SdkConfig) -> ResolveClient:
    server = sdk.bootstrap_servers[0]
    return ResolveClient(
        sdk.application_token,
        server.public_key(),
        nonce=os.urandom(16),
        accept_unbound=sdk.accept_unbound_resolution,
    )


async def run(args: argparse.Namespace) -> None:
    sdk = SdkConfig.from_json(Path(args.sdk).read_text())
    server = sdk.bootstrap_servers[0]
    clients: list[ResolveClient | RegisterClient] = []
    if args.mode == "resolve":
        targets = [(server.host, server.port)] * args.count
        clients = [resolver(sdk) for _ in range(args.count)]
        requests = [c.send_request() for c in clients]
    else:
        keys = load_keys(Path(args.key_cache), args.count, args.first_key)
        probe = resolver(sdk)
        probe.receive_data(await one(server.host, server.port, probe.send_request()))
        probe.receive_data(b"")
        resolved = probe.next_event(time.monotonic())
        node = resolved.nodes[0]  # type: ignore[union-attr]
        base = resolved.server_time_at(time.monotonic())  # type: ignore[union-attr]
        clients = [
            RegisterClient(
                node,
                sdk_token=sdk.sdk_token,
                private_key=key,
                profile=PROFILE,
                timestamp_ms=base + i,
                reconnect=args.reconnect,
            )
            for i, key in enumerate(keys)
        ]
        requests = [c.send_request() for c in clients]
        targets = [(node.host, node.port)] * args.count

    outcomes: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    queue = collections.deque(range(args.count))

    async def worker() -> None:
        while queue:
            i = queue.popleft()
            started = time.perf_counter()
            try:
                answer = await one(*targets[i], requests[i])
                client = clients[i]
                client.receive_data(answer)
                client.receive_data(b"")
                if isinstance(client, ResolveClient):
                    client.next_event(time.monotonic())
                    outcomes["ok"] += 1
                else:
                    event = client.next_event()
                    outcomes[str(event.result.status)] += 1  # type: ignore[union-attr]
            except Exception as exc:
                outcomes[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - started)

    server_cpu = cpu_seconds(args.server_pid) if args.server_pid else 0.0
    own = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.perf_counter() - started
    mine = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "mode": args.mode + (" (reconnect)" if args.reconnect else ""),
        "count": args.count,
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 3),
        "per_second": round(args.count / elapsed),
        "outcomes": dict(outcomes),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(statistics.quantiles(latencies, n=100)[98] * 1000, 2),
        "client_cpu": round(
            (mine.ru_utime + mine.ru_stime - own.ru_utime - own.ru_stime) / elapsed, 2
        ),
    }
    if args.server_pid:
        report["server_cpu"] = round((cpu_seconds(args.server_pid) - server_cpu) / elapsed, 2)
    print(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["resolve", "register"])
    parser.add_argument("--sdk", required=True, help="an exported sdk.json")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--reconnect", action="store_true", help="register by key hash")
    parser.add_argument("--key-cache", default="/tmp/kaa-wire-quick-keys")
    parser.add_argument("--first-key", type=int, default=0, help="use keys from this index on")
    parser.add_argument("--server-pid", type=int, default=0)
    args = parser.parse_args()
    if not 0 < args.count <= 100_000:
        sys.exit("--count must be 1..100000")
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
