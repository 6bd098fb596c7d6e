"""``python -m benchmarks profile``: where a server spends one registration (or resolution).

1. Start the server (pinned to the server core) and the generator (pinned to the other),
   and register the reconnect pool (untimed).
2. An unprofiled closed-loop window: registrations/s and the server's CPU per
   registration, from /proc.
3. The same load again under ``py-spy record --native --idle --threads`` (native frames
   show uvloop's syscalls and libcrypto; ``--idle`` keeps the samples of waiting threads,
   which are then recognised by their leaf frame and left out). py-spy pauses the process
   for each native sample, so this window runs slower; only its proportions are used.
4. Every on-CPU sample is put in one phase of a registration by the most specific frame of
   its stack that a rule below recognises (``PHASES``, highest priority first). The CPU per
   registration of step 2 is measured per thread group from /proc (the main thread, which
   runs the event loop, and all other threads: store writer and readers, signing pool),
   and each group's figure is split in proportion to that group's samples (py-spy samples
   the other threads less reliably, so their share is taken from /proc, not from counts).

``--service bootstrap`` does the same for resolutions against the Bootstrap service.

The raw stacks are kept (``results/profile/<impl>.stacks.txt``) beside the breakdown, so
every figure can be traced back to samples.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.loadgen import cpu
from benchmarks.loadgen.keys import KeyCache, PooledKeys
from benchmarks.loadgen.pool import GeneratorPool
from benchmarks.loadgen.report import format_point
from benchmarks.loadgen.requests import Target
from benchmarks.loadgen.servers import ServerUnderTest
from benchmarks.loadgen.suite import layout

__all__ = ["PHASES", "classify", "breakdown", "profile_service"]

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
    (
        "background",
        re.compile(r"^(\w+\._refresh_forever|\w+\._renew_forever|NodeLease\.\w+|Presigner\.\w+) "),
    ),
    ("decode", re.compile(r"^parse_registration_payload ")),
    (
        "sign",
        re.compile(
            r"(^Signer\.sign |^Signer_sign|_Signer\w*|^RSA_sign |^EVP_DigestSign\w* |"
            r"^EVP_PKEY_sign\w* |^rsa_ossl_private_encrypt )"
        ),
    ),
    (
        "verify",
        re.compile(
            r"(^OperationsServerConnection\.verify |^verify \(kaa_wire_ext/server\.pyx|"
            r"RegistrationVerifier|_EndpointKey_verify|"
            r"^(RSA_verify|EVP_PKEY_verify|EVP_DigestVerify\w*|d2i_PUBKEY|d2i_PublicKey) |"
            r"kaa_wire/_registration\.py|_load_endpoint_key)"
        ),
    ),
    (
        "respond",
        re.compile(
            r"^(OperationsServerConnection\.(send_result|send_error|_sealed)|_frame_header|seal|"
            r"seal_response|"
            r"encode_registration_result|RegistrationResult\.__init__|"
            r"BootstrapServerConnection\.(data_to_sign|send_response|send_presigned|send_error)|"
            r"resolve_response_signed_part|resolve_signed_data|encode_resolve_response) |"
            # their C twins (kaa_wire_ext/server.pyx)
            r"^(send_result|send_error|send_response|send_presigned|data_to_sign|"
            r"OperationsServerConnection__sealed|_answer_header) \(kaa_wire_ext/server\.pyx"
        ),
    ),
    (
        # The extension's opener shows as its .pyx frames (seal_response lives there too,
        # but its stacks hold send_result: "respond" above takes them first).
        "open",
        re.compile(
            r"(^(RegistrationOpener\.open|server_session|unseal|SessionKeys\.__init__|X25519\w*) "
            r"|\(kaa_wire_ext/opener\.pyx|\(kaa_wire/_opener\.py)"
        ),
    ),
    (
        "store",
        re.compile(r"(servers/store/|^sqlite3\w* |^pysqlite\w* |^_pysqlite\w* |\(libsqlite3)"),
    ),
    (
        "decode",
        re.compile(
            r"^(OperationsServerConnection\.next_event|_Endpoint\._next_frame|"
            r"decode_register_envelope|parse_registration_payload|check_freshness|"
            r"BootstrapServerConnection\.next_event|decode_resolve_request|"
            r"Framer\.\w+|\w*Framer\w*|_codec\.\w+) |"
            r"^next_event \(kaa_wire_ext/server\.pyx"
        ),
    ),
    (
        "thread handoff",
        re.compile(
            r"(^WorkerPool\.run |concurrent/futures/|^\w*run_in_executor\w* |"
            r"^\w*call_soon_threadsafe\w* |^_chain_future |^_copy_future_state |^wrap_future )"
        ),
    ),
    (
        "service",
        re.compile(
            r"(servers/operations/|servers/bootstrap/|servers/caching\.py|servers/metrics\.py|"
            r"servers/logs\.py|servers/clock\.py|servers/balancing\.py|servers/limits\.py)"
        ),
    ),
    (
        "accept",
        re.compile(
            r"^(ExchangeProtocol\.(connection_made|__init__)|_Services\._listen\.<locals>\.<lambda>|"
            r"OperationsService\.new_connection|uv__accept|accept4?|uv__server_io|uv__stream_open|"
            r"\w*TCPServer\w*|\w*_call_connection_made\w*|uv__tcp_nodelay|uv__tcp_keepalive|"
            r"getsockname|getpeername|uv__getsockpeername) |"
            r"^(connection_made|__init__) \(kaa_wire_ext/server\.pyx"
        ),
    ),
    (
        "read",
        re.compile(
            r"^(ExchangeProtocol\.(data_received|eof_received|_poll)|_Endpoint\.receive_data|"
            r"uv__read|read|recv|\w*UVStream__on_read\w*|\w*__uv_stream_on_read\w*) |"
            r"^(data_received|eof_received|receive_data|ExchangeProtocol__poll) "
            r"\(kaa_wire_ext/server\.pyx"
        ),
    ),
    (
        "respond",
        re.compile(
            r"^(ExchangeProtocol\.(_finish|_refuse|connection_lost|_drop_read_deadline)|write|writev|"
            r"send|sendmsg|\w*UVStream__try_write\w*|\w*exec_write\w*|uv__close\w*|close|"
            r"shutdown|uv__stream_close|uv__platform_invalidate_fd|\w*UVHandle__close\w*|"
            r"\w*_call_connection_lost\w*|\w*__on_uvhandle_close\w*) |"
            r"^(ExchangeProtocol__finish|ExchangeProtocol__refuse|connection_lost) "
            r"\(kaa_wire_ext/server\.pyx"
        ),
    ),
    (
        "event loop",
        re.compile(
            r"(^task_step\w* |^\w*Handle__run\w* |^uv_run |^uv__io_poll |^uv__run_\w+ |"
            r"asyncio/|^ExchangeProtocol\.(_settle|_served) |"
            r"^(ExchangeProtocol__settle|_served) \(kaa_wire_ext/server\.pyx)"
        ),
    ),
]


def _frames(line: str) -> tuple[str, list[str], int]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    frames = stack.split(";")
    thread = frames[0]
    return thread, frames[1:], int(count)


def _name_and_file(frame: str) -> str:
    """ "func (file:line)" -> "func (file)": line numbers only split the counts."""
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


def _read_stacks(stacks: Path) -> list[str]:
    if stacks.suffix == ".gz":
        return gzip.decompress(stacks.read_bytes()).decode().splitlines()
    return stacks.read_text().splitlines()


def _main_thread(lines: list[str]) -> str | None:
    for line in lines:
        thread, _, _ = _frames(line)
        if "MainThread" in thread:
            return thread
    return None


def top_frames(stacks: Path, per_phase: int = 8) -> dict[str, list[tuple[str, int]]]:
    """The heaviest (innermost Python frame, leaf frame) pairs of each phase, by samples."""
    lines = _read_stacks(stacks)
    main_tid = _main_thread(lines)
    found: dict[str, Counter[str]] = {}
    for line in lines:
        thread, frames, n = _frames(line)
        phase = classify(frames)
        if phase in ("idle", "fsync (I/O wait)"):
            continue
        names = [_name_and_file(f) for f in frames]
        python = [f for f in names if ".py)" in f]
        where = "main" if thread == main_tid else "other"
        key = f"[{where}] {python[-1] if python else '-'} > {names[-1].split(' (')[0]}"
        found.setdefault(phase, Counter())[key] += n
    return {phase: c.most_common(per_phase) for phase, c in found.items()}


def breakdown(stacks: Path) -> dict[str, Any]:
    """Sample counts by thread group (main / other) and phase."""
    counts: dict[str, Counter[str]] = {"main": Counter(), "other": Counter()}
    lines = _read_stacks(stacks)
    main_tid = _main_thread(lines)
    for line in lines:
        thread, frames, n = _frames(line)
        group = "main" if thread == main_tid else "other"
        counts[group][classify(frames)] += n
    return {group: dict(c.most_common()) for group, c in counts.items()}


_ORDER = [
    "accept", "read", "decode", "open", "verify", "sign", "service", "thread handoff",
    "store", "respond", "event loop", "gc", "background", "other",
]  # fmt: skip


def split_us(samples: dict[str, dict[str, int]], us_per_op: dict[str, float]) -> dict[str, Any]:
    """µs per operation by phase: each thread group's CPU per operation (``us_per_op``,
    "main" and "other", measured from /proc) in proportion to its on-CPU samples."""
    busy = {
        g: {k: v for k, v in c.items() if k not in ("idle", "fsync (I/O wait)")}
        for g, c in samples.items()
    }
    totals = {g: sum(c.values()) or 1 for g, c in busy.items()}
    everything = sum(us_per_op.values()) or 1.0
    table: dict[str, Any] = {}
    for phase in _ORDER:
        main = us_per_op["main"] * busy["main"].get(phase, 0) / totals["main"]
        other = us_per_op["other"] * busy["other"].get(phase, 0) / totals["other"]
        table[phase] = {
            "main_us": main,
            "other_us": other,
            "us": main + other,
            "share": (main + other) / everything,
        }
    return table


def _format(table: dict[str, Any], us_per_op: float, floor_name: str, floor_us: float) -> str:
    lines = [f"{'phase':<16}{'µs/op':>9}{'share':>8}{'loop thread':>13}{'other threads':>15}"]
    for phase, row in table.items():
        if row["us"] < 0.05:
            continue
        lines.append(
            f"{phase:<16}{row['us']:9.1f}{100 * row['share']:7.1f}%"
            f"{row['main_us']:13.1f}{row['other_us']:15.1f}"
        )
    lines.append(f"{'total':<16}{us_per_op:9.1f}")
    lines.append(f"({floor_name}: {floor_us:.1f} µs, same machine)")
    return "\n".join(lines)


def profile_service(
    *,
    service: str,
    implementation: str,
    concurrency: int,
    seconds: float,
    rate: int,
    out_dir: Path,
    keycache: KeyCache | PooledKeys,
    procs: int = 2,
    first_share: float = 0.5,
    max_rate: int = 6000,
) -> dict[str, Any]:
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: pip install py-spy (or .[bench])")
    server_cpus, generator_cpus = layout(2)
    reconnect = 512
    # At most max_rate operations/s per window, each first-time one a fresh key: the
    # default is more than a server does here, so the time bound decides; a lower bound
    # needs fewer keys in the cache (a window then ends at its count).
    estimate = max_rate * seconds
    keycache.ensure(reconnect + int(2 * estimate * first_share) + 16)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = implementation if service == "operations" else f"{implementation}-{service}"
    stacks = out_dir / f"{name}.stacks.txt"
    server = ServerUnderTest(implementation, cpus=server_cpus).start()
    try:
        target = Target.from_sdk_json(server.sdk_json)
        with GeneratorPool(
            target, procs=procs, keycache=keycache.spec, reconnect_keys=range(reconnect),
            cpus=generator_cpus, server_pid=server.pid, server_cpus=server_cpus,
        ) as pool:  # fmt: skip
            if service == "operations":
                pool.warmup()
            cursor = reconnect
            count = int(estimate)
            share = first_share if service == "operations" else 0.0
            plain = pool.point(
                service, count=count, max_seconds=seconds, concurrency=concurrency,
                first_keys=range(cursor, cursor + count), first_share=share,
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
                spy.append(
                    subprocess.Popen(
                        cpu.pinned(command, generator_cpus),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    )
                )

            profiled = pool.point(
                service, count=count, max_seconds=seconds, concurrency=concurrency,
                first_keys=range(cursor, cursor + count), first_share=share,
                on_start=start_spy,
            )  # fmt: skip
            _, err = spy[0].communicate(timeout=seconds + 60)
            if spy[0].returncode != 0:
                raise SystemExit(f"py-spy failed: {err.decode(errors='replace')}")
            print(format_point(profiled))
    finally:
        server.stop()
    packed = stacks.with_name(stacks.name + ".gz")
    packed.write_bytes(gzip.compress(stacks.read_bytes()))
    stacks.unlink()
    stacks = packed
    samples = breakdown(stacks)
    us_per_op = 1e6 * plain["server_cpu"]["cpu_s"] / plain["ok"]
    by_thread = {
        group: 1e6 * seconds / plain["ok"]
        for group, seconds in plain["server_cpu"]["threads_cpu_s"].items()
    }
    by_thread = {"main": by_thread.get("main", 0.0), "other": by_thread.get("other", 0.0)}
    table = split_us(samples, by_thread)
    from benchmarks.loadgen.floors import measure

    floors = measure(repeats=3)
    what = "registration" if service == "operations" else "resolution"
    result = {
        "service": service,
        "implementation": implementation,
        "concurrency": concurrency,
        f"{what}s_per_s": plain["per_s"],
        "server_cpu_share": plain["server_cpu"]["share_of_one_core"],
        f"server_cpu_us_per_{what}": us_per_op,
        "server_cpu_us_by_thread": by_thread,
        f"profiled_{what}s_per_s": profiled["per_s"],
        "samples": samples,
        "top_frames": top_frames(stacks),
        f"us_per_{what}": table,
        "crypto_floor_us": floors["registration_crypto_us"],
        "sign_floor_us": floors["rsa2048_sign_us"],
        "floor_components_us": floors["components_us"],
        "stacks": stacks.name,
        "command": " ".join(["python -m benchmarks profile", *sys.argv[2:]]),
    }
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"\n{implementation} {service}: {plain['per_s']:.0f} {what}s/s, server CPU "
        f"{us_per_op:.1f} µs per {what} (unprofiled window)"
    )
    if service == "operations":
        print(
            _format(
                table,
                us_per_op,
                "crypto floor of one registration",
                floors["registration_crypto_us"],
            )
        )
    else:
        print(_format(table, us_per_op, "one RSA-2048 signature", floors["rsa2048_sign_us"]))
    return result
