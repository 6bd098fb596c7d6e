"""The store's write path: CPU per registration of ``SqliteStore.register_endpoint``.

    python -m benchmarks.bench_store                  # 3 runs, then median/min/max
    python -m benchmarks.bench_store --runs 5 --count 20000 --concurrency 256 --cpu 1

Each run opens a fresh SQLite file in a temporary directory (WAL, ``synchronous=FULL``,
group commit: the store's own settings) on a uvloop event loop, as the Operations server
does, and registers ``--count`` new endpoints (an INSERT each: NEW), then the same endpoints
again with the same profile and a newer request (an UPDATE each: EXISTING).
``--concurrency`` registrations are in flight at once, so the writer thread forms batches.

Per phase it reports microseconds per registration of CPU time of the whole process
(``time.process_time``: event loop, writer thread and the kernel's share of the fsyncs) and
of the writer thread alone (its POSIX thread CPU clock), and the mean batch size. The
writer thread shares the server core and the GIL with the event loop, so its CPU is what
the store takes from registrations. ``pytest benchmarks/`` runs a short pass once, as a
test of the outcomes; no figure is compared with a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import uvloop

from benchmarks.micro import PROFILE
from servers.store import EndpointWrite, WriteOutcome
from servers.store.sqlite import SqliteStore

T0 = 1_767_225_600_000
#: phase -> (its outcome, its request time): a reconnect is one request newer, same profile.
PHASES = {"new": (WriteOutcome.NEW, T0), "reconnect": (WriteOutcome.EXISTING, T0 + 1)}


def _writes(count: int, request_ms: int, carried_key: bool) -> list[EndpointWrite]:
    """``count`` endpoints' registrations, built before any timing (hashing included)."""
    profile_hash = hashlib.sha256(PROFILE).digest()
    token_hash = hashlib.sha256(b"sdk-7f3a9c").digest()
    writes = []
    for n in range(count):
        key = n.to_bytes(8, "big") * 37  # about the size of an RSA-2048 SPKI
        writes.append(
            EndpointWrite(
                endpoint_id=hashlib.sha1(key).digest(),
                public_key=key,
                sdk_token_hash=token_hash,
                application="app-1",
                profile=PROFILE,
                profile_hash=profile_hash,
                request_ms=request_ms,
                now_ms=request_ms + 5,
                carried_key=carried_key,  # as the server sets it for a first registration
            )
        )
    return writes


def _writer_cpu_clock() -> int:
    """The CPU clock id of the store's writer thread (found by its name)."""
    (writer,) = [t for t in threading.enumerate() if t.name == "kaa-store-writer"]
    assert writer.ident is not None
    return time.pthread_getcpuclockid(writer.ident)


async def _register_all(
    store: SqliteStore, writes: Iterable[EndpointWrite], concurrency: int
) -> list[WriteOutcome]:
    pending = iter(writes)
    outcomes: list[WriteOutcome] = []

    async def client() -> None:
        for write in pending:  # the clients share one iterator: each write is sent once
            outcomes.append(await store.register_endpoint(write))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return outcomes


async def _one_run(directory: Path, count: int, concurrency: int) -> dict[str, float]:
    store = SqliteStore(directory / "registry.db")
    await store.open()
    figures: dict[str, float] = {}
    try:
        writer_clock = _writer_cpu_clock()
        for phase, (expected, request_ms) in PHASES.items():
            writes = _writes(count, request_ms, carried_key=phase == "new")
            batches = store.writer_stats().batches
            process, writer = time.process_time(), time.clock_gettime(writer_clock)
            outcomes = await _register_all(store, writes, concurrency)
            process = time.process_time() - process
            writer = time.clock_gettime(writer_clock) - writer
            batches = store.writer_stats().batches - batches
            if set(outcomes) != {expected} or len(outcomes) != count:
                raise AssertionError(f"{phase}: expected {count} x {expected}")
            figures[f"{phase}: process CPU"] = process / count * 1e6
            figures[f"{phase}: writer thread CPU"] = writer / count * 1e6
            figures[f"{phase}: registrations per batch"] = count / batches
    finally:
        await store.close()
    return figures


def one_run(count: int, concurrency: int) -> dict[str, float]:
    """Every figure of one run (a fresh database file), per registration."""
    with tempfile.TemporaryDirectory(prefix="kaa-bench-store-") as directory:
        return uvloop.run(_one_run(Path(directory), count, concurrency))


def test_store_registrations(tmp_path: Path) -> None:
    """A short pass: every registration gets its outcome, and every figure is measured."""
    figures = uvloop.run(_one_run(tmp_path, 300, 64))
    assert len(figures) == 3 * len(PHASES) and all(v > 0 for v in figures.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=20_000, help="endpoints per phase")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--cpu", type=int, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    runs = []
    for run in range(1, args.runs + 1):
        runs.append(one_run(args.count, args.concurrency))
        print(f"run {run}:")
        for name, value in runs[-1].items():
            print(f"  {name:<40} {value:8.2f}")
    print(f"over {args.runs} runs (us per registration, or registrations):")
    for name in runs[0]:
        values = [figures[name] for figures in runs]
        print(
            f"  {name:<40} median {statistics.median(values):8.2f}  "
            f"min {min(values):8.2f}  max {max(values):8.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
