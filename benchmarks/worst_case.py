"""``python -m benchmarks.worst_case``: the server CPU one request of a hostile device costs.

    python -m benchmarks.worst_case                  # 3 runs, ext and py, in process and wire
    python -m benchmarks.worst_case --runs 5 --count 300
    python -m benchmarks.worst_case --no-wire        # in process only (starts no server)

A hostile device holds a real SDK token (docs/security.md, threat model) and may send any
request: a key of any shape the server accepts (RSA-2048/3072/4096 with e = 65537,
Ed25519, P-256), a valid or a garbage signature, a new key every time (so no cache helps the
server), exact replays of a request the server accepted, the largest frame, or a key the
server refuses. For each such case this measures the server-side CPU of one request and
its ratio to an honest RSA-2048 first registration (and to an honest reconnect), both
measured in the same run:

* **in process**: the real server path of ``OperationsServerConnection`` (open: X25519 +
  HKDF + ChaCha20-Poly1305; parse; vet and load the key; verify; seal the answer), on the
  implementation the child process selected (``KAA_WIRE_PUREPYTHON``), timed with the
  thread's CPU clock, best of interleaved rounds. The store is left out: a replay is
  refused the way the store refuses it, after the verify, with a sealed REPLAYED_REQUEST;
* **over the wire**: a fresh ``python -m servers`` with its defaults (SQLite, one process)
  per implementation and run, each request on its own TCP connection, one at a time, each
  answer opened and checked by the sending client; the figure is the server's CPU time,
  all threads, from ``/proc/PID/task/*/schedstat``, over the requests of one case, less
  the server's idle CPU rate times the case's wall time, divided by the request count.

Ratios are computed inside a run, then the median (min, max) over the runs is printed.
``--out`` (default benchmarks/results/worst_case.json) keeps every figure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from benchmarks.environment import child_environment
from benchmarks.loadgen import cpu
from benchmarks.loadgen.keys import DEFAULT_KEYCACHE, KeyCache
from benchmarks.loadgen.requests import Target, best_node, profile_for, resolve_blocking
from benchmarks.loadgen.servers import ServerUnderTest
from kaa_wire import (
    IMPLEMENTATION,
    KaaWireError,
    OperationsNode,
    OperationsServerConnection,
    RegisterClient,
    RegistrationOpener,
    RegistrationResult,
    RegistrationStatus,
    RegistrationVerifier,
    ReplayedRequest,
    Topic,
    UnknownKeyHash,
    _crypto,
)
from kaa_wire._constants import ED25519_SMALL_ORDER_KEYS, P256_ORDER, RSA_PUBLIC_EXPONENT

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "worst_case.json"
HONEST_FIRST = "honest RSA-2048, first registration"
HONEST_RECONNECT = "honest RSA-2048, reconnect"
#: The prime order of Ed25519's base point: a garbage S below it is verified in full.
ED25519_L = 2**252 + 27742317777372353535851937790883648493
#: Frame overhead around the payload: header, envelope (kex, aead, ephemeral key), tag.
FRAME_OVERHEAD = 6 + 34 + 16


# -- a hostile device's keys -----------------------------------------------------------------


class GarbageRsaKey(rsa.RSAPrivateKey):
    """What a hostile device sends as an RSA key when it does not care to be accepted: a
    random odd modulus of ``bits`` (nobody knows its factors, nor needs to), and for every
    request a random "signature" below n, so the server does the whole modular
    exponentiation before it can refuse it."""

    def __init__(self, bits: int, e: int = RSA_PUBLIC_EXPONENT) -> None:
        self._bits = bits
        self._n = secrets.randbits(bits) | 1 << (bits - 1) | 1
        self._public = rsa.RSAPublicNumbers(e, self._n).public_key()

    @property
    def key_size(self) -> int:
        return self._bits

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def sign(self, data: bytes, padding: Any, algorithm: Any) -> bytes:
        floor = 1 << (self._bits - 2)
        value = floor + secrets.randbelow(self._n - floor)
        return value.to_bytes((self._bits + 7) // 8, "big")

    def decrypt(self, ciphertext: bytes, padding: Any) -> bytes:
        raise NotImplementedError

    def private_numbers(self) -> Any:
        raise NotImplementedError

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise NotImplementedError

    def __copy__(self) -> GarbageRsaKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> GarbageRsaKey:
        return self


class GarbageEd25519Key(ed25519.Ed25519PrivateKey):
    """A real Ed25519 public key (or the one given) that "signs" with random bytes: a random
    R, and an S below L so that the verify runs to its end."""

    def __init__(
        self,
        public: ed25519.Ed25519PublicKey | None = None,
        signature: bytes | None = None,
    ) -> None:
        self._public = public or ed25519.Ed25519PrivateKey.generate().public_key()
        self._signature = signature

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public

    def sign(self, data: bytes | bytearray | memoryview) -> bytes:
        if self._signature is not None:
            return self._signature
        return secrets.token_bytes(32) + secrets.randbelow(ED25519_L).to_bytes(32, "little")

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise NotImplementedError

    def private_bytes_raw(self) -> bytes:
        raise NotImplementedError

    def __copy__(self) -> GarbageEd25519Key:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> GarbageEd25519Key:
        return self


class GarbageP256Key(ec.EllipticCurvePrivateKey):
    """A real P-256 public key that "signs" with random r, s in [1, n - 1], so that the
    verify runs to its end (r = 0 or s >= n would be refused before any curve arithmetic)."""

    def __init__(self) -> None:
        self._public = ec.generate_private_key(ec.SECP256R1()).public_key()

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return 256

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: Any, signature_algorithm: Any) -> bytes:
        def scalar() -> int:
            return secrets.randbelow(P256_ORDER - 1) + 1

        return encode_dss_signature(scalar(), scalar())

    def exchange(self, algorithm: Any, peer_public_key: Any) -> bytes:
        raise NotImplementedError

    def private_numbers(self) -> Any:
        raise NotImplementedError

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        raise NotImplementedError

    def __copy__(self) -> GarbageP256Key:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> GarbageP256Key:
        return self


def small_order_key() -> GarbageEd25519Key:
    """The identity point as the key, with R = identity, S = 0 (which OpenSSL verifies)."""
    identity = ED25519_SMALL_ORDER_KEYS[0]
    return GarbageEd25519Key(
        ed25519.Ed25519PublicKey.from_public_bytes(identity), identity + bytes(32)
    )


# -- the cases -------------------------------------------------------------------------------


@dataclasses.dataclass
class Keys:
    """Where every case takes its keys: the RSA key caches and fresh ones."""

    count: int  # requests per case
    big_count: int  # distinct valid RSA-3072 and RSA-4096 keys (slow to make)
    cache: Path

    def rsa(self, bits: int, indexes: range) -> list[Any]:
        return [k.private_key for k in KeyCache(self.cache, bits).load_many(indexes)]

    def ensure(self) -> None:
        """Make the cached keys exist (once; later runs reuse them)."""
        KeyCache(self.cache, 2048).ensure(self.count + 1)
        KeyCache(self.cache, 3072).ensure(self.big_count + 1)
        KeyCache(self.cache, 4096).ensure(self.big_count + 2)


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    #: The outcome on the wire: NEW, EXISTING, or the code of the (sealed) error.
    expect: str
    #: One private key per request (repeats allowed), given the Keys.
    keys: Callable[[Keys], list[Any]]
    reconnect: bool = False
    #: Every request is the same bytes: one accepted first registration, resent.
    replay: bool = False
    #: The profile is padded so that every frame is the largest the server takes.
    largest: bool = False
    #: The verifier already holds the key (a reconnect, or a replay of an accepted key).
    cached: bool = False
    #: A reconnect by an endpoint id the server does not know (looked up in the store).
    unknown_id: bool = False


def _cases() -> list[Case]:
    def fresh_ed25519(k: Keys) -> list[Any]:
        return [_crypto.generate_ed25519_key() for _ in range(k.count)]

    def fresh_p256(k: Keys) -> list[Any]:
        return [_crypto.generate_p256_key() for _ in range(k.count)]

    def garbage_rsa(bits: int) -> Callable[[Keys], list[Any]]:
        return lambda k: [GarbageRsaKey(bits) for _ in range(k.count)]

    cases = [
        Case(HONEST_FIRST, "NEW", lambda k: k.rsa(2048, range(k.count))),
        Case(HONEST_RECONNECT, "EXISTING", lambda k: k.rsa(2048, range(k.count)),
             reconnect=True, cached=True),
        Case("RSA-3072, first registration", "NEW", lambda k: k.rsa(3072, range(k.big_count))),
        Case("RSA-4096, first registration", "NEW", lambda k: k.rsa(4096, range(k.big_count))),
        Case("Ed25519, first registration", "NEW", fresh_ed25519),
        Case("P-256, first registration", "NEW", fresh_p256),
        Case("RSA-4096, reconnect", "EXISTING", lambda k: k.rsa(4096, range(k.big_count)),
             reconnect=True, cached=True),
    ]
    for bits in (2048, 3072, 4096):
        cases.append(Case(f"RSA-{bits}, garbage signature, new key", "BAD_SIGNATURE",
                          garbage_rsa(bits)))
    cases.append(Case("Ed25519, garbage signature, new key", "BAD_SIGNATURE",
                      lambda k: [GarbageEd25519Key() for _ in range(k.count)]))
    cases.append(Case("P-256, garbage signature, new key", "BAD_SIGNATURE",
                      lambda k: [GarbageP256Key() for _ in range(k.count)]))
    cases.append(Case("reconnect by an unknown endpoint id", "UNKNOWN_KEY_HASH", fresh_ed25519,
                      reconnect=True, unknown_id=True))
    replayed = {
        "RSA-2048": lambda k: k.rsa(2048, range(k.count, k.count + 1)),
        "RSA-3072": lambda k: k.rsa(3072, range(k.big_count, k.big_count + 1)),
        "RSA-4096": lambda k: k.rsa(4096, range(k.big_count, k.big_count + 1)),
        "Ed25519": lambda k: [_crypto.generate_ed25519_key()],
        "P-256": lambda k: [_crypto.generate_p256_key()],
    }
    for shape, key in replayed.items():
        cases.append(Case(f"{shape}, replay of an accepted request", "REPLAYED_REQUEST", key,
                          replay=True, cached=True))
    cases += [
        Case("Ed25519, first registration, largest frame", "NEW", fresh_ed25519,
             largest=True),
        Case("P-256, first registration, largest frame", "NEW", fresh_p256, largest=True),
        Case("RSA-4096, garbage signature, new key, largest frame", "BAD_SIGNATURE",
             garbage_rsa(4096), largest=True),
        Case("RSA-4096, replay, largest frame", "REPLAYED_REQUEST",
             lambda k: k.rsa(4096, range(k.big_count + 1, k.big_count + 2)),
             replay=True, largest=True, cached=True),
        Case("refused: RSA-3072 with e ~ 2^3071", "MALFORMED_FRAME",
             lambda k: [GarbageRsaKey(3072, 2**3071 - 1) for _ in range(k.count)]),
        Case("refused: Ed25519 identity point", "MALFORMED_FRAME",
             lambda k: [small_order_key() for _ in range(k.count)]),
        Case("refused: RSA of 256,000 bits", "UNSUPPORTED_ALGORITHM",
             lambda k: [GarbageRsaKey(256_000) for _ in range(k.count)]),
    ]  # fmt: skip
    return cases


CASES = _cases()


# -- requests --------------------------------------------------------------------------------


@dataclasses.dataclass
class Prepared:
    """One request to send: its bytes and the client that built it (to open the answer)."""

    frame: bytes
    client: RegisterClient
    stored_key: bytes | None  # what the server passes to verify on a reconnect


def _profile(case: Case, key: Any, sdk_token: str, max_frame: int) -> bytes:
    """The key's own profile (so a reconnect finds it unchanged), or one that fills the frame."""
    der = _crypto.public_key_der(key)
    if not case.largest:
        return profile_for(int.from_bytes(_crypto.endpoint_id(der)[:4], "big"))
    signature = (
        64
        if isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey))
        else (key.key_size + 7) // 8
    )
    # flags, algorithm, timestamp, token, key, profile and signature with their lengths
    fixed = 1 + 1 + 8 + 1 + len(sdk_token) + 2 + len(der) + 2 + 2 + signature
    size = max_frame - FRAME_OVERHEAD - fixed
    return b'{"pad":"' + b"x" * (size - 10) + b'"}'


class Builder:
    """Builds a case's requests for one node, timestamps strictly increasing."""

    def __init__(self, node: OperationsNode, sdk_token: str, max_frame: int,
                 clock: Callable[[], int]) -> None:
        self.node = node
        self.sdk_token = sdk_token
        self.max_frame = max_frame
        self._clock = clock
        self._last = 0

    def stamp(self) -> int:
        self._last = max(self._clock(), self._last + 1)
        return self._last

    def client(self, case: Case, key: Any, timestamp: int,
               ephemeral: x25519.X25519PrivateKey) -> RegisterClient:
        return RegisterClient(
            self.node,
            sdk_token=self.sdk_token,
            private_key=key,
            profile=_profile(case, key, self.sdk_token, self.max_frame),
            timestamp_ms=timestamp,
            reconnect=case.reconnect,
            max_frame_size=self.max_frame,
            ephemeral_key=ephemeral,
        )

    def build(
        self, case: Case, keys: list[Any], count: int
    ) -> tuple[Prepared | None, list[Prepared]]:
        """(the accepted original a replay case resends, or None; the requests)."""
        if not case.replay:
            out = []
            for key in keys[:count]:
                client = self.client(case, key, self.stamp(),
                                     x25519.X25519PrivateKey.generate())
                known = case.reconnect and not case.unknown_id
                stored = _crypto.public_key_der(key) if known else None
                out.append(Prepared(client.send_request(), client, stored))
            return None, out
        # An exact replay: every copy is built from the same inputs, so each has a client
        # that can open its own answer, and the bytes are checked to be identical.
        (key,) = keys
        timestamp, ephemeral = self.stamp(), x25519.X25519PrivateKey.generate()
        copies = []
        for _ in range(count + 1):
            client = self.client(case, key, timestamp, ephemeral)
            copies.append(Prepared(client.send_request(), client, None))
        if any(p.frame != copies[0].frame for p in copies):
            raise SystemExit("RegisterClient built different bytes from the same inputs")
        return copies[0], copies[1:]


def _outcome(client: RegisterClient, answer: bytes) -> str:
    client.receive_data(answer)
    client.receive_data(b"")
    try:
        event = client.next_event()
    except KaaWireError as exc:
        return exc.code.name + ("" if exc.sealed else " (plain)")
    return RegistrationStatus(event.result.status).name  # type: ignore[union-attr]


# -- in process ------------------------------------------------------------------------------

RESULT = RegistrationResult(
    RegistrationStatus.NEW, bytes(20), 1_767_225_600_000, 3, b'{"sample_period_s":60}',
    (Topic(1, "firmware"), Topic(2, "alerts")), 86400, 500,
)  # fmt: skip


def _serve(opener: Any, verifier: Any, request: Prepared, case: Case) -> str:
    """What an Operations server does with one request, less the store: the outcome."""
    conn = OperationsServerConnection(opener, verifier)
    conn.receive_data(request.frame)
    conn.next_event()
    try:
        if case.unknown_id:  # the store's answer to the lookup, before any verify
            raise UnknownKeyHash("no endpoint with this id")
        conn.verify(request.stored_key)
        if case.replay:  # the store's refusal, after the verify as in the server
            raise ReplayedRequest("request timestamp is not newer than the last accepted one")
        conn.send_result(RESULT)
        return "RESULT"
    except KaaWireError as exc:
        conn.send_error(exc)
        return exc.code.name


def in_process(keys: Keys, rounds: int) -> dict[str, float]:
    """Microseconds of CPU per request of every case, best of ``rounds`` interleaved."""
    static = x25519.X25519PrivateKey.generate()
    node = OperationsNode(1, 1, 1, "127.0.0.1", 9000, _crypto.x25519_public_bytes(static))
    opener = RegistrationOpener(static)
    builder = Builder(node, "sdk-7f3a9c0b", 64 * 1024, lambda: 1_767_225_600_000)
    work = []
    for case in CASES:
        _, requests = builder.build(case, case.keys(keys), keys.count)
        expect = "RESULT" if case.expect in ("NEW", "EXISTING") else case.expect
        warm = RegistrationVerifier()
        for request in requests:  # checks every outcome, and fills the cached verifier
            got = _serve(opener, warm, request, case)
            if got != expect:
                raise SystemExit(f"{case.name}: expected {expect}, got {got}")
        work.append((case, requests, warm))
    best = {case.name: float("inf") for case in CASES}
    for _ in range(rounds):
        for case, requests, warm in work:
            verifier = warm if case.cached else RegistrationVerifier()
            start = time.thread_time()
            for request in requests:
                _serve(opener, verifier, request, case)
            elapsed = time.thread_time() - start
            best[case.name] = min(best[case.name], elapsed / len(requests) * 1e6)
    return best


def in_process_child(implementation: str, keys: Keys, rounds: int) -> dict[str, float]:
    """``in_process`` in a child process that selected ``implementation``."""
    env = child_environment(REPO, pure_python=implementation == "py")
    command = [sys.executable, "-m", "benchmarks.worst_case", "--child",
               "--count", str(keys.count), "--big-count", str(keys.big_count),
               "--rounds", str(rounds), "--keycache", str(keys.cache)]  # fmt: skip
    out = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                         check=False, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"in-process child ({implementation}) failed:\n{out.stderr}")
    result = json.loads(out.stdout)
    if result["implementation"] != implementation:
        raise SystemExit(f"asked for {implementation}, the child ran {result['implementation']}")
    figures: dict[str, float] = result["figures"]
    return figures


# -- over the wire ---------------------------------------------------------------------------


def _exchange(host: str, port: int, frame: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(frame)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _idle_rate(pid: int, seconds: float = 1.0) -> float:
    """The server's CPU seconds per second with nothing to do (its timers, its lease)."""
    before, start = cpu.run_time_s(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu.run_time_s(pid) - before) / (time.monotonic() - start)


def _send_all(node: OperationsNode, requests: list[Prepared], concurrency: int) -> list[str]:
    """Every request on its own connection, ``concurrency`` in flight; their outcomes."""

    def one(request: Prepared) -> str:
        return _outcome(request.client, _exchange(node.host, node.port, request.frame))

    if concurrency == 1:
        return [one(request) for request in requests]
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, requests))


def over_the_wire(
    implementation: str, keys: Keys, concurrency: int, server_args: list[str]
) -> dict[str, float]:
    """Microseconds of server CPU per request of every case, against a fresh server."""
    figures: dict[str, float] = {}
    with ServerUnderTest(implementation, cpus=None, extra_args=server_args) as server:
        target = Target.from_sdk_json(server.sdk_json)
        resolved = resolve_blocking(target)
        node = best_node(resolved)
        builder = Builder(node, target.sdk_token, target.max_frame_size,
                          lambda: resolved.server_time_at(time.monotonic()))
        idle = _idle_rate(server.pid)
        for case in CASES:
            original, requests = builder.build(case, case.keys(keys), keys.count)
            if original is not None:
                (got,) = _send_all(node, [original], 1)
                if got != "NEW":
                    raise SystemExit(f"{case.name}: the original was {got}, not NEW")
            before, start = cpu.run_time_s(server.pid), time.monotonic()
            outcomes = _send_all(node, requests, concurrency)
            used = cpu.run_time_s(server.pid) - before - idle * (time.monotonic() - start)
            wrong = [o for o in outcomes if o != case.expect]
            if wrong:
                raise SystemExit(f"{case.name} ({implementation}): expected {case.expect}, "
                                 f"got {sorted(set(wrong))} ({len(wrong)} of {len(outcomes)})")
            figures[case.name] = used / len(requests) * 1e6
    return figures


# -- the report ------------------------------------------------------------------------------


def ratios(figures: dict[str, float]) -> dict[str, dict[str, float]]:
    first, reconnect = figures[HONEST_FIRST], figures[HONEST_RECONNECT]
    return {
        name: {"us": us, "x_first": us / first, "x_reconnect": us / reconnect}
        for name, us in figures.items()
    }


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} ({min(values):.2f}-{max(values):.2f})"


def summary(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for implementation in runs[0]:
        for mode in runs[0][implementation]:
            lines.append(f"{implementation}, {mode}: median (min-max) over {len(runs)} runs")
            lines.append(f"  {'case':<52} {'us per request':>24} {'x honest first':>22} "
                         f"{'x honest reconnect':>22}")
            for case in CASES:
                rows = [run[implementation][mode][case.name] for run in runs]
                lines.append(
                    f"  {case.name:<52} {_spread([r['us'] for r in rows]):>24} "
                    f"{_spread([r['x_first'] for r in rows]):>22} "
                    f"{_spread([r['x_reconnect'] for r in rows]):>22}"
                )
            worst = max(
                (c for c in CASES if not c.name.startswith("honest")),
                key=lambda c: statistics.median(
                    run[implementation][mode][c.name]["x_first"] for run in runs
                ),
            )
            lines.append(f"  worst: {worst.name}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.worst_case", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=200, help="requests per case")
    parser.add_argument("--big-count", type=int, default=40,
                        help="distinct valid RSA-3072 and RSA-4096 keys (first registrations)")
    parser.add_argument("--rounds", type=int, default=5, help="in-process rounds per run")
    parser.add_argument("--implementations", default="ext,py")
    parser.add_argument("--concurrency", default="1,32",
                        help="requests in flight over the wire, one wire mode each")
    parser.add_argument("--no-wire", action="store_true", help="in process only")
    parser.add_argument("--server-args", default="",
                        help="extra arguments for python -m servers (one string)")
    parser.add_argument("--keycache", type=Path, default=DEFAULT_KEYCACHE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    keys = Keys(args.count, args.big_count, args.keycache)
    if args.child:
        figures = in_process(keys, args.rounds)
        print(json.dumps({"implementation": IMPLEMENTATION, "figures": figures}))
        return 0
    keys.ensure()
    implementations = args.implementations.split(",")
    runs: list[dict[str, Any]] = []
    for run in range(1, args.runs + 1):
        result: dict[str, Any] = {}
        for implementation in implementations:
            modes = {"in process": in_process_child(implementation, keys, args.rounds)}
            for concurrency in [] if args.no_wire else map(int, args.concurrency.split(",")):
                modes[f"wire, {concurrency} in flight"] = over_the_wire(
                    implementation, keys, concurrency, args.server_args.split()
                )
            result[implementation] = {mode: ratios(f) for mode, f in modes.items()}
            for mode, table in result[implementation].items():
                print(f"run {run}, {implementation}, {mode}:")
                for name, row in table.items():
                    print(f"  {name:<52} {row['us']:9.2f} us  {row['x_first']:6.2f}x first  "
                          f"{row['x_reconnect']:6.2f}x reconnect")
            sys.stdout.flush()
        runs.append(result)
    lines = summary(runs)
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.worst_case " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    args.out.write_text(json.dumps({
        "command": command.strip(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "runs": runs,
        "summary": lines,
    }, indent=1) + "\n")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
