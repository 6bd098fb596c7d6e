"""``python -m benchmarks profile``: where an Operations server spends a registration.

1. Start the server (pinned to the server core) and the generator (pinned to the other),
   and register the reconnect pool (untimed).
2. An unprofiled closed-loop window: registrations/s and the server's CPU per
   registration, from /proc.
3. The same load again under ``py-spy record --native --idle --threads`` (native frames
   show uvloop's syscalls and libcrypto; ``--idle`` keeps the samples of waiting threads,
   which are then recognised by their leaf frame and left out). py-spy pauses the process
   for each native sample, so this window runs slower; only its proportions are used.
4. Every on-CPU sample is put in one phase of a registration by the most specific frame of
   its stack that a rule below recognises (``PHASES``, highest priority first), and the
   CPU per registration of step 2 is split in those proportions: µs per registration by
   phase, the main thread (the event loop) and the other threads (store writer and
   readers) apart.

The raw stacks are kept (``results/profile/<impl>.stacks.txt``) beside the breakdown, so
every figure can be traced back to samples.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.loadgen.keys import KeyCache
from benchmarks.loadgen.pool import GeneratorPool
from benchmarks.loadgen.report import format_point
from benchmarks.loadgen.requests import Target
from benchmarks.loadgen.servers import ServerUnderTest
from benchmarks.loadgen.suite import layout

__all__ = ["PHASES", "classify", "breakdown", "profile_operations"]

#: Samples of a thread that waits (not on the CPU), by a frame near the leaf.
_WAIT = re.compile(
    r"^(epoll_pwait|epoll_wait|pthread_cond_(timed)?wait|PyThread_acquire_lock_timed|"
    r"take_gil|drop_gil|sem_wait|sem_timedwait|sem_clockwait|__futex\w*|futex_\w*|"
    r"do_futex_wait\w*|nanosleep|clock_nanosleep|select|poll)\b"
)
_FSYNC = re.compile(r"^(fdatasync|fsync|__libc_fsync|unixSync|full_fsync)\b")

#: (phase, pattern over "function (file)" frames), most specific first: the first phase
#: with a matching frame anywhere in a stack takes the sample.
PHASES: list[tuple[str, re.Pattern[str]]] = [
    ("gc", re.compile(r"^(gc_collect_main|gc_collect_with_callback|collect) ")),
    ("verify", re.compile(
        r"(^OperationsServerConnection\.verify |RegistrationVerifier|_EndpointKey_verify|"
        r"^(RSA_verify|EVP_PKEY_verify|EVP_DigestVerify\w*|d2i_PUBKEY|d2i_PublicKey) |"
        r"kaa_wire/_registration\.py|_load_endpoint_key)"
    )),
    ("open", re.compile(r"^(server_session|unseal|SessionKeys\.__init__|X25519\w*) ")),
    ("respond", re.compile(
        r"^(OperationsServerConnection\.(send_result|send_error|_sealed)|_frame_header|seal|"
        r"encode_registration_result|RegistrationResult\.__init__) "
    )),
    ("store", re.compile(
        r"(servers/store/|^sqlite3\w* |^pysqlite\w* |^_pysqlite\w* |\(libsqlite3)"
    )),
    ("decode", re.compile(
        r"^(OperationsServerConnection\.next_event|_Endpoint\._next_frame|"
        r"decode_register_envelope|parse_registration_payload|check_freshness|"
        r"Framer\.\w+|\w*Framer\w*|_codec\.\w+) "
    )),
    ("service", re.compile(
        r"(servers/operations/|servers/caching\.py|servers/metrics\.py|servers/logs\.py|"
        r"servers/clock\.py|servers/limits\.py)"
    )),
    ("accept", re.compile(
        r"^(ExchangeProtocol\.(connection_made|__init__)|_Services\._listen\.<locals>\.<lambda>|"
        r"OperationsService\.new_connection|uv__accept|accept4?|uv__server_io|uv__stream_open|"
        r"\w*TCPServer\w*|\w*_call_connection_made\w*|uv__tcp_nodelay|uv__tcp_keepalive|"
        r"getsockname|getpeername|uv__getsockpeername) "
    )),
    ("read", re.compile(
        r"^(ExchangeProtocol\.(data_received|eof_received|_poll)|_Endpoint\.receive_data|"
        r"uv__read|read|recv|\w*UVStream__on_read\w*|\w*__uv_stream_on_read\w*) "
    )),
    ("respond", re.compile(
        r"^(ExchangeProtocol\.(_finish|_refuse|connection_lost|_cancel_timer)|write|writev|"
        r"send|sendmsg|\w*UVStream__try_write\w*|\w*exec_write\w*|uv__close\w*|close|"
        r"shutdown|uv__stream_close|uv__platform_invalidate_fd|\w*UVHandle__close\w*|"
        r"\w*_call_connection_lost\w*|\w*__on_uvhandle_close\w*) "
    )),
    ("background", re.compile(r"(servers/bootstrap/|servers/operations/lease\.py)")),
    ("event loop", re.compile(
        r"(^task_step\w* |^\w*Handle__run\w* |^uv_run |^uv__io_poll |^uv__run_\w+ |"
        r"asyncio/|^ExchangeProtocol\._serve )"
    )),
]


def _frames(line: str) -> tuple[str, list[str], int]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    frames = stack.split(";")
    thread = frames[0]
    return thread, frames[1:], int(count)


def _name_and_file(frame: str) -> str:
    """"func (file:line)" -> "func (file)": line numbers only split the counts."""
    return re.sub(r":\d+\)$", ")", frame)


def classify(frames: list[str]) -> str:
    """The phase of one sample (root-first frames), "idle", "fsync" or "other"."""
    leafward = [_name_and_file(f) for f in reversed(frames)]
    for frame in leafward[:6]:  # a wait shows at the leaf, below a few helpers
        name = frame.split(" (")[0]
        if _FSYNC.match(name):
            return "fsync (I/O wait)"
        if _WAIT.match(name):
            return "idle"
    for phase, pattern in PHASES:
        if any(pattern.search(f) for f in leafward):
            return phase
    return "other"


def breakdown(stacks: Path) -> dict[str, Any]:
    """Sample counts by thread group (main / other) and phase."""
    counts: dict[str, Counter[str]] = {"main": Counter(), "other": Counter()}
    main_tid = None
    lines = stacks.read_text().splitlines()
    for line in lines:
        thread, _, _ = _frames(line)
        if "MainThread" in thread:
            main_tid = thread
    for line in lines:
        thread, frames, n = _frames(line)
        group = "main" if thread == main_tid else "other"
        counts[group][classify(frames)] += n
    return {group: dict(c.most_common()) for group, c in counts.items()}


_ORDER = [
    "accept", "read", "decode", "open", "verify", "service", "store", "respond",
    "event loop", "gc", "background", "other",
]  # fmt: skip


def split_us(samples: dict[str, dict[str, int]], us_per_op: float) -> dict[str, Any]:
    """µs per registration by phase: ``us_per_op`` in proportion to on-CPU samples."""
    busy = {
        g: {k: v for k, v in c.items() if k not in ("idle", "fsync (I/O wait)")}
        for g, c in samples.items()
    }
    total = sum(sum(c.values()) for c in busy.values()) or 1
    table: dict[str, Any] = {}
    for phase in _ORDER:
        main = busy["main"].get(phase, 0)
        other = busy["other"].get(phase, 0)
        table[phase] = {
            "main_us": us_per_op * main / total,
            "other_us": us_per_op * other / total,
            "us": us_per_op * (main + other) / total,
            "share": (main + other) / total,
        }
    return table


def _format(table: dict[str, Any], us_per_op: float, floor_us: float | None) -> str:
    lines = [f"{'phase':<14}{'µs/reg':>9}{'share':>8}{'loop thread':>13}{'other threads':>15}"]
    for phase, row in table.items():
        if row["us"] < 0.05:
            continue
        lines.append(
            f"{phase:<14}{row['us']:9.1f}{100 * row['share']:7.1f}%"
            f"{row['main_us']:13.1f}{row['other_us']:15.1f}"
        )
    lines.append(f"{'total':<14}{us_per_op:9.1f}")
    if floor_us:
        lines.append(f"(crypto floor of one registration: {floor_us:.1f} µs)")
    return "\n".join(lines)


def profile_operations(
    *,
    implementation: str,
    concurrency: int,
    seconds: float,
    rate: int,
    out_dir: Path,
    keycache: KeyCache,
    procs: int = 2,
    first_share: float = 0.5,
) -> dict[str, Any]:
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: pip install py-spy (or .[bench])")
    server_cpus, generator_cpus = layout(2)
    reconnect = 512
    estimate = 6000 * seconds  # more than a server does here: the time bound decides
    keycache.ensure(reconnect + int(2 * estimate * first_share) + 16)
    out_dir.mkdir(parents=True, exist_ok=True)
    stacks = out_dir / f"{implementation}.stacks.txt"
    server = ServerUnderTest(implementation, cpus=server_cpus).start()
    try:
        target = Target.from_sdk_json(server.sdk_json)
        with GeneratorPool(
            target, procs=procs, keycache=keycache.root, reconnect_keys=range(reconnect),
            cpus=generator_cpus, server_pid=server.pid,
        ) as pool:  # fmt: skip
            pool.warmup()
            cursor = reconnect
            count = int(estimate)
            plain = pool.point(
                "operations", count=count, max_seconds=seconds, concurrency=concurrency,
                first_keys=range(cursor, cursor + count), first_share=first_share,
            )  # fmt: skip
            cursor += plain["first_keys_used"]
            print(format_point(plain))
            spy: list[subprocess.Popen[bytes]] = []

            def start_spy(_: float) -> None:
                command = [
                    "py-spy", "record", "--pid", str(server.pid), "--duration",
                    str(max(1, int(seconds))), "--rate", str(rate), "--format", "raw",
                    "--output", str(stacks), "--native", "--idle", "--threads",
                ]  # fmt: skip
                if generator_cpus:
                    command = ["taskset", "-c", ",".join(map(str, generator_cpus)), *command]
                spy.append(
                    subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                )

            profiled = pool.point(
                "operations", count=count, max_seconds=seconds, concurrency=concurrency,
                first_keys=range(cursor, cursor + count), first_share=first_share,
                on_start=start_spy,
            )  # fmt: skip
            _, err = spy[0].communicate(timeout=seconds + 60)
            if spy[0].returncode != 0:
                raise SystemExit(f"py-spy failed: {err.decode(errors='replace')}")
            print(format_point(profiled))
    finally:
        server.stop()
    samples = breakdown(stacks)
    us_per_op = 1e6 * plain["server_cpu"]["cpu_s"] / plain["ok"]
    table = split_us(samples, us_per_op)
    from benchmarks.loadgen.floors import measure

    floors = measure(repeats=3)
    result = {
        "implementation": implementation,
        "concurrency": concurrency,
        "registrations_per_s": plain["per_s"],
        "server_cpu_share": plain["server_cpu"]["share_of_one_core"],
        "server_cpu_us_per_registration": us_per_op,
        "profiled_registrations_per_s": profiled["per_s"],
        "samples": samples,
        "us_per_registration": table,
        "crypto_floor_us": floors["registration_crypto_us"],
        "floor_components_us": floors["components_us"],
        "stacks": stacks.name,
        "command": " ".join(["python -m benchmarks profile", *sys.argv[2:]]),
    }
    (out_dir / f"{implementation}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{implementation}: {plain['per_s']:.0f} registrations/s, server CPU "
          f"{us_per_op:.1f} µs per registration (unprofiled window)")
    print(_format(table, us_per_op, floors["registration_crypto_us"]))
    return result
