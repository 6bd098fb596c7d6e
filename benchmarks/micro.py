"""Micro benchmarks of the hot paths, pure Python against kaa_wire_ext, with their references.

    python -m benchmarks.micro              # 3 runs, then median/min/max of every figure
    python -m benchmarks.micro --runs 5 --cpu 1

Each run measures, in this one process and on one core (``--cpu`` pins it, and the
``openssl speed`` child inherits the pinning):

* the reference: ``openssl speed -seconds 1 rsa2048`` verify time, and the raw libcrypto
  loop of ``kaa_wire_ext._bench`` (SHA-256 + RSA_verify, no Python) with the key built once
  ("cached") or for every verify ("fresh", which includes OpenSSL's per-key Montgomery
  set-up); that module is built only with ``KAA_WIRE_BUILD_BENCH=1`` (setup.py), and its
  figures are left out without it;
* what building a key from its DER costs in libcrypto: OpenSSL's decoder (d2i_PUBKEY),
  the extension's way (own SPKI parse + RSA_new/RSA_set0_key), and the Montgomery set-up
  every fresh RSA key then pays on its first verify (BN_MONT_CTX_set);
* registration processing (parse the payload + load the key + verify + SHA-1 endpoint id) of
  a first registration (key not cached: a verifier with cache_size=0) and of a reconnect
  (cached key), on each path;
* frame header decode + encode: construct interpreted, construct compiled, the pure Framer
  and the extension Framer;
* a Bootstrap's three steps per resolution on ``BootstrapServerConnection`` (request in,
  bytes to sign, response out; the signing itself left out), on the implementation this
  process selected: run once more with ``KAA_WIRE_PUREPYTHON=1`` for the pure figures;
* opening a registration request (X25519 + HKDF-SHA256 + ChaCha20-Poly1305, the Operations
  side's ``RegistrationOpener.open``), encoding its answer (``encode_registration_result``,
  construct on the pure path) and sealing it (``seal_response``), on each path, beside
  ``cryptography``'s bare X25519 exchange as the reference.

Figures are microseconds of CPU time per operation: ``openssl speed`` reports CPU time, so
the cases are timed with this thread's CPU clock too, which also keeps other load on a shared
machine out of the figures. Within a run the cases are sampled in interleaved rounds (each
round times every case for ~50 ms) and each figure is its best round; ``openssl speed`` runs
before and after the rounds and its better result counts. The ratios are what to quote
(shared/PERF.md), as median/min/max over the runs. The same workloads back the
pytest-benchmark files beside this one (which time wall-clock, see conftest.py).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import x25519

from kaa_wire import IMPLEMENTATION, _codec, _crypto, _framing, _opener, _registration
from kaa_wire._connection import BootstrapServerConnection, RegisterClient
from kaa_wire._constants import (
    HEADER_SIZE,
    REGISTER_SIGNATURE_CONTEXT,
    RESPONSE_NONCE_SIZE,
    MessageType,
    RegistrationStatus,
    SignatureAlgorithm,
)
from kaa_wire._messages import OperationsNode, RegistrationResult, ResolveRequest, Topic
from kaa_wire._schema import HEADER, INTERPRETED

try:
    from kaa_wire_ext import _ext
except ImportError:  # pure path only: the extension figures are left out
    _ext = None  # type: ignore[assignment]
try:
    # The libcrypto reference loops: a module of their own, built only with
    # KAA_WIRE_BUILD_BENCH=1 (setup.py). Without it, the reference figures are left out.
    from kaa_wire_ext import _bench
except ImportError:
    _bench = None  # type: ignore[assignment]

#: An endpoint's profile: about 200 bytes of JSON, as the load benchmarks use.
PROFILE = (
    b'{"model":"kaa-sensor-7","firmware":"4.2.1","serial":"SN-00012345678",'
    b'"location":{"site":"plant-3","line":12,"cell":"B7"},"capabilities":["temp",'
    b'"humidity","vibration"],"interval_s":30,"tz":"Europe/Kyiv"}'
)
CONTEXT = REGISTER_SIGNATURE_CONTEXT + bytes(range(32)) + bytes(range(32, 64))
FRAME_BODY = bytes(64)


@dataclass
class RegistrationWorkload:
    """One endpoint's first registration and reconnect payloads, and what they verify to."""

    key_der: bytes
    first: bytes
    reconnect: bytes
    endpoint_id: bytes
    signed_data: bytes  # context + signed part of `first`
    signature: bytes


def _payload(flags: int, key_field: bytes, private_key: Any) -> tuple[bytes, bytes, bytes]:
    token = b"sdk-7f3a9c"
    signed_part = (
        bytes([flags, 1])
        + (1_767_225_600_000).to_bytes(8, "big")
        + bytes([len(token)])
        + token
        + key_field
        + len(PROFILE).to_bytes(2, "big")
        + PROFILE
    )
    signature = _crypto.sign(private_key, CONTEXT + signed_part)
    return signed_part + len(signature).to_bytes(2, "big") + signature, signed_part, signature


def registration_workload(bits: int = 2048) -> RegistrationWorkload:
    key = _crypto.generate_rsa_key(bits)
    der = _crypto.public_key_der(key)
    endpoint_id = _crypto.endpoint_id(der)
    first, signed_part, signature = _payload(0, len(der).to_bytes(2, "big") + der, key)
    reconnect, _, _ = _payload(1, endpoint_id, key)
    return RegistrationWorkload(der, first, reconnect, endpoint_id, CONTEXT + signed_part,
                                signature)


def registration_cases(w: RegistrationWorkload) -> dict[str, Callable[[], bytes]]:
    """name -> one registration processed (returns the endpoint id)."""
    impls: list[tuple[str, Any, Any]] = [
        ("py", _registration.parse_registration_payload, _registration.RegistrationVerifier)
    ]
    if _ext is not None:
        impls.append(("ext", _ext.parse_registration_payload, _ext.RegistrationVerifier))
    cases: dict[str, Callable[[], bytes]] = {}
    for name, parse, verifier_cls in impls:
        uncached = verifier_cls(cache_size=0)
        cached = verifier_cls()
        cached.verify(parse(w.first), CONTEXT)  # the key is loaded once, as after a first visit

        def first(parse: Any = parse, verifier: Any = uncached) -> bytes:
            return verifier.verify(parse(w.first), CONTEXT)

        def reconnect(parse: Any = parse, verifier: Any = cached) -> bytes:
            return verifier.verify(parse(w.reconnect), CONTEXT, w.key_der)

        cases[f"first registration ({name})"] = first
        cases[f"reconnect ({name})"] = reconnect
    return cases


def framing_cases() -> dict[str, Callable[[], Any]]:
    """name -> one frame header decoded and one encoded (a 64-byte body)."""
    frame = _framing.encode_frame(3, FRAME_BODY)
    header = frame[:6]
    interpreted = INTERPRETED["HEADER"]
    fields = {"version": 1, "msg_type": 3, "flags": 0, "length": len(FRAME_BODY)}

    def construct_interpreted() -> Any:
        interpreted.build(fields)
        return interpreted.parse(header)

    def construct_compiled() -> Any:
        HEADER.build(fields)
        return HEADER.parse(header)

    def framer(module: Any) -> Callable[[], Any]:
        framer = module.Framer()
        encode = module.encode_frame

        def run() -> Any:
            framer.receive_data(encode(3, FRAME_BODY))
            return framer.next_frame()

        return run

    cases = {
        "header: construct interpreted": construct_interpreted,
        "header: construct compiled": construct_compiled,
        "frame: pure Framer": framer(_framing),
    }
    if _ext is not None:
        cases["frame: extension Framer"] = framer(_ext)
    return cases


#: The two nodes of docs/protocol.md's RESOLVE_RESPONSE example.
RESOLVE_NODES = (
    OperationsNode(200, 10, 1, "ops-1.example.net", 9997, bytes(range(32))),
    OperationsNode(100, 5, 2, "10.0.0.2", 9997, bytes(range(32))),
)


def resolution_steps() -> dict[str, Callable[[BootstrapServerConnection], Any]]:
    """name -> one step of a Bootstrap resolution, applied to a connection in the state the
    steps before it left (a 2-node answer, a 256-byte RSA-2048-sized signature)."""
    body = _codec.encode_resolve_request(ResolveRequest("demo-app-9ZkQ2wX", bytes(range(16))))
    request = _framing.encode_frame(MessageType.RESOLVE_REQUEST, body)
    signature = bytes(256)

    def receive(conn: BootstrapServerConnection) -> Any:
        conn.receive_data(request)
        return conn.next_event()

    def to_sign(conn: BootstrapServerConnection) -> Any:
        return conn.data_to_sign(
            RESOLVE_NODES,
            server_time_ms=1_795_000_000_000,
            valid_for_s=300,
            signature_algorithm=SignatureAlgorithm.RSA_PKCS1V15_SHA256,
        )

    def send(conn: BootstrapServerConnection) -> Any:
        return conn.send_response(signature)

    return {
        f"resolve: receive_data + next_event ({IMPLEMENTATION})": receive,
        f"resolve: data_to_sign ({IMPLEMENTATION})": to_sign,
        f"resolve: send_response ({IMPLEMENTATION})": send,
    }


def _step_sampler(
    steps: list[Callable[[BootstrapServerConnection], Any]], seconds: float
) -> Callable[[], float]:
    """A function that times the last of `steps` over a batch of fresh connections, which
    the others (untimed) bring to its state: microseconds per connection."""
    *before, step = steps

    def batch(number: int) -> float:
        conns = [BootstrapServerConnection() for _ in range(number)]
        for earlier in before:
            for conn in conns:
                earlier(conn)
        start = time.thread_time()
        for conn in conns:
            step(conn)
        return (time.thread_time() - start) / number * 1e6

    number = max(100, int(seconds * 1e6 / batch(2000)))
    return lambda: batch(number)


def operations_cases() -> dict[str, Callable[[], Any]]:
    """name -> one registration request opened, one answer encoded, or one answer sealed."""
    static = _crypto.generate_x25519_key()
    node = OperationsNode(1, 1, 1, "127.0.0.1", 9000, _crypto.x25519_public_bytes(static))
    key = _crypto.generate_ed25519_key()
    frame = RegisterClient(
        node, sdk_token="sdk-7f3a9c", private_key=key, profile=PROFILE, timestamp_ms=1
    ).send_request()
    header, body = frame[:HEADER_SIZE], frame[HEADER_SIZE:]
    peer = x25519.X25519PublicKey.from_public_bytes(body[2:34])
    result = RegistrationResult(
        RegistrationStatus.NEW, bytes(20), 1_767_225_600_000, 3, PROFILE,
        (Topic(1, "firmware"), Topic(2, "alerts")), 3600, 500,
    )
    answer = _codec.encode_registration_result(result)
    impls: list[tuple[str, Any, Any]] = [("py", _opener, _codec.encode_registration_result)]
    if _ext is not None:
        impls.append(("ext", _ext, _ext.encode_registration_result))
    cases: dict[str, Callable[[], Any]] = {
        "X25519 exchange (cryptography)": lambda: static.exchange(peer)
    }
    for name, module, encode in impls:
        opener = module.RegistrationOpener(static)
        response_key = opener.open(header, body)[2]
        cases[f"open registration ({name})"] = lambda o=opener: o.open(header, body)
        cases[f"encode result ({name})"] = lambda e=encode: e(result)
        # The server's whole sealing step: its fresh response nonce, then the seal.
        cases[f"seal response ({name})"] = (
            lambda m=module, k=response_key: m.seal_response(
                k, answer, header, os.urandom(RESPONSE_NONCE_SIZE)
            )
        )
    return cases


def openssl_speed_verify_us(elapsed: bool = False) -> float | None:
    """Microseconds per RSA-2048 verify as ``openssl speed -seconds 1 rsa2048`` measures it:
    CPU time, or wall-clock time with ``elapsed`` (None: no openssl binary)."""
    if shutil.which("openssl") is None:
        return None
    out = subprocess.run(
        ["openssl", "speed", *(["-elapsed"] if elapsed else []), "-seconds", "1", "rsa2048"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    match = re.search(r"^rsa\s+2048 bits\s+\S+\s+\S+\s+\S+\s+([\d.]+)\s*$", out, re.M)
    return 1e6 / float(match.group(1)) if match else None


def raw_verify_us(
    w: RegistrationWorkload,
    fresh_key: bool,
    iterations: int = 3000,
    clock: Callable[[], float] = time.thread_time,
) -> float:
    """The libcrypto-only loop (kaa_wire_ext._bench): microseconds per SHA-256 + RSA_verify."""
    assert _bench is not None
    per_op, passed = _bench.rsa_verify(
        w.key_der, w.signed_data, w.signature, iterations, fresh_key, clock
    )
    assert passed == iterations
    return per_op * 1e6


#: The key-build alternatives timed by kaa_wire_ext._bench's reference loop (libcrypto only).
KEY_BUILDS = {
    "d2i_PUBKEY": "key build: d2i_PUBKEY (OpenSSL decoder)",
    "RSA_set0_key": "key build: own SPKI parse + RSA_set0_key",
    "BN_MONT_CTX_set": "fresh-key Montgomery set-up (BN_MONT_CTX_set)",
}


def _sampler(function: Callable[[], Any], seconds: float) -> Callable[[], float]:
    """A function that times `function` for about `seconds` of this thread's CPU time:
    microseconds per call."""
    timer = timeit.Timer(function, timer=time.thread_time)
    number, elapsed = timer.autorange()  # at least 0.2 s
    number = max(1, int(number * seconds / elapsed))
    return lambda: timer.timeit(number) / number * 1e6


def samplers(w: RegistrationWorkload, seconds: float = 0.05) -> dict[str, Callable[[], float]]:
    """name -> one timing sample (microseconds per operation) of every measured figure."""
    out: dict[str, Callable[[], float]] = {}
    if _bench is not None:
        bench = _bench

        def verify(fresh: bool) -> Callable[[], float]:
            return lambda: raw_verify_us(w, fresh, 2000)

        def build(method: str) -> Callable[[], float]:
            return lambda: float(bench.key_build(w.key_der, method, 500)) * 1e6

        out["libcrypto verify, cached key"] = verify(False)
        out["libcrypto verify, fresh key"] = verify(True)
        for method, label in KEY_BUILDS.items():
            out[label] = build(method)
    for name, case in {**registration_cases(w), **framing_cases(), **operations_cases()}.items():
        out[name] = _sampler(case, seconds)
    steps = resolution_steps()
    for index, name in enumerate(steps):
        out[name] = _step_sampler(list(steps.values())[: index + 1], seconds)
    return out


def one_run(w: RegistrationWorkload, rounds: int = 7) -> dict[str, float]:
    """Every figure of one run, in CPU microseconds: interleaved rounds, best round each
    (other load only ever adds time); openssl speed before and after, the better counts."""
    figures: dict[str, float] = {}
    speeds = [openssl_speed_verify_us()]
    sample = samplers(w)
    best = dict.fromkeys(sample, float("inf"))
    for _ in range(rounds):
        for name, take in sample.items():
            best[name] = min(best[name], take())
    speeds.append(openssl_speed_verify_us())
    if speeds[0] is not None and speeds[1] is not None:
        figures["openssl speed rsa2048 verify"] = min(speeds[0], speeds[1])
    figures.update(best)
    return figures


RATIOS = [
    ("ext first registration / openssl verify",
     "first registration (ext)", "openssl speed rsa2048 verify"),
    ("ext reconnect / openssl verify", "reconnect (ext)", "openssl speed rsa2048 verify"),
    ("libcrypto fresh-key verify / openssl verify",
     "libcrypto verify, fresh key", "openssl speed rsa2048 verify"),
    ("ext first registration / libcrypto fresh-key verify",
     "first registration (ext)", "libcrypto verify, fresh key"),
    ("ext reconnect / libcrypto cached-key verify",
     "reconnect (ext)", "libcrypto verify, cached key"),
    ("pure / ext, first registration", "first registration (py)", "first registration (ext)"),
    ("pure / ext, reconnect", "reconnect (py)", "reconnect (ext)"),
    ("pure Framer / ext Framer", "frame: pure Framer", "frame: extension Framer"),
    ("compiled construct header / ext Framer",
     "header: construct compiled", "frame: extension Framer"),
    ("pure / ext, open registration", "open registration (py)", "open registration (ext)"),
    ("pure / ext, encode result", "encode result (py)", "encode result (ext)"),
    ("ext open registration / X25519 exchange",
     "open registration (ext)", "X25519 exchange (cryptography)"),
]


def ratios(figures: dict[str, float]) -> dict[str, float]:
    return {
        label: figures[top] / figures[bottom]
        for label, top, bottom in RATIOS
        if top in figures and bottom in figures
    }


def _summary(name: str, values: list[float], unit: str) -> str:
    return (
        f"  {name:<52} median {statistics.median(values):8.2f}{unit}  "
        f"min {min(values):8.2f}  max {max(values):8.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per run")
    parser.add_argument("--cpu", type=int, help="pin this process (and openssl) to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    implementation = "ext" if _ext is not None else "py (kaa_wire_ext not built)"
    print(f"kaa_wire_ext: {implementation}; python {sys.version.split()[0]}")
    if _ext is not None:
        print(f"extension build: {_ext._build_info()}")
    w = registration_workload()
    runs = []
    for run in range(1, args.runs + 1):
        figures = one_run(w, args.rounds)
        runs.append((figures, ratios(figures)))
        print(f"run {run}:")
        for name, value in figures.items():
            print(f"  {name:<52} {value:8.2f} us")
        for name, value in runs[-1][1].items():
            print(f"  {name:<52} {value:8.2f} x")
    print(f"over {args.runs} runs:")
    for name in runs[0][0]:
        print(_summary(name, [figures[name] for figures, _ in runs], " us"))
    for name in runs[0][1]:
        print(_summary(name, [r[name] for _, r in runs], " x "))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
