"""What the per-connection glue costs: the pure ExchangeProtocol and connection against
their C twins (kaa_wire_ext/server.pyx), in one process, without sockets or a store.

    python -m benchmarks.connection_path            # 3 runs: median (min-max) per figure
    python -m benchmarks.connection_path --runs 5 --cpu 1

Each case serves whole registrations (or resolutions) the way a server does, minus the
kernel: a protocol object is made with the service's context, ``connection_made`` with an
in-memory transport, ``data_received`` with the whole request frame, and the service's
handler answers at once (Operations: verify, then a sealed REGISTER_RESPONSE; Bootstrap: a
signed list, with a fixed signature so that no RSA signing is timed). The answer is
written, the connection closed and lost. The metrics, the connection gate and the read
deadlines are the real ones (servers.net.ServiceContext).

* ``crypto``: the same open + verify + seal + encode calls alone, no protocol or connection
  object: what any implementation must spend;
* ``py`` / ``ext``: the whole path with the pure classes / the C twins (servers._impl's
  two choices); ``glue`` = path - crypto.

Figures are µs of this thread's CPU time per connection, each the best of 15 interleaved
rounds (other load on a shared machine stays out of a CPU-time figure), and the ratio
ext glue / py glue is what to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from kaa_wire import (
    RegisterClient,
    RegistrationOpener,
    RegistrationResult,
    RegistrationVerifier,
    ResolveClient,
    _connection,
    _crypto,
)
from kaa_wire._impl import encode_registration_result, parse_registration_payload, seal_response
from kaa_wire._messages import OperationsNode
from servers import net
from servers.limits import Gate
from servers.metrics import Metrics

NOW_MS = 1_795_000_000_000


class _Transport:
    """The transport calls ExchangeProtocol makes, in memory."""

    __slots__ = ("closed", "written")

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written = data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1)


def _classes(implementation: str) -> dict[str, Any]:
    if implementation == "py":
        return {
            "protocol": net.ExchangeProtocol,
            "operations": _connection.OperationsServerConnection,
            "bootstrap": _connection.BootstrapServerConnection,
        }
    from kaa_wire_ext import _ext

    return {
        "protocol": _ext.ExchangeProtocol,
        "operations": _ext.OperationsServerConnection,
        "bootstrap": _ext.BootstrapServerConnection,
    }


class Workload:
    """A registration (RSA-2048, reconnect by key hash with the key cached, as most are)
    and a resolution request, with the server side's keys."""

    def __init__(self) -> None:
        static = _crypto.generate_x25519_key()
        public = _crypto.x25519_public_bytes(static)
        self.node = OperationsNode(1, 1, 1, "127.0.0.1", 9997, public)
        device = _crypto.generate_rsa_key(2048)
        self.key_der = _crypto.public_key_der(device)
        self.opener = RegistrationOpener(static)
        self.verifier = RegistrationVerifier()
        self.register = RegisterClient(
            self.node, sdk_token="s" * 22, private_key=device, profile=b"p" * 200,
            timestamp_ms=NOW_MS, reconnect=True,
        ).send_request()  # fmt: skip
        bootstrap = _crypto.generate_rsa_key(2048)
        self.resolve = ResolveClient(
            "a" * 22, bootstrap.public_key(), nonce=bytes(range(16))
        ).send_request()
        self.result = RegistrationResult(
            status=2, endpoint_id=_crypto.endpoint_id(self.key_der), server_time_ms=NOW_MS,
            config_version=1, config=b"{}" * 50,
        )  # fmt: skip

    def context(self, name: str, new_connection: Callable[[], Any], handle: Any) -> Any:
        return net.ServiceContext(
            name=name, new_connection=new_connection, handle=handle, metrics=Metrics(),
            connections=Gate(name, 1 << 30), read_timeout_s=10.0, retry_after_ms=1000,
            log=logging.getLogger(f"bench.{name}"),
        )  # fmt: skip


def cases(w: Workload) -> dict[str, Callable[[], Any]]:
    """One connection each; the same work in every case of a service."""
    out: dict[str, Callable[[], Any]] = {}

    def crypto_registration() -> bytes:
        header, body = w.register[:6], w.register[6:]
        plaintext, ephemeral, secret = w.opener.open(header, body)
        payload = parse_registration_payload(plaintext)
        context = _crypto.registration_signature_context(w.opener.public_key, ephemeral)
        w.verifier.verify(payload, context, w.key_der)
        answer = encode_registration_result(w.result)
        return seal_response(secret, answer, header, os.urandom(32))

    out["operations crypto"] = crypto_registration
    for impl in ("py", "ext"):
        try:
            classes = _classes(impl)
        except ImportError:
            continue

        def handle_registration(conn: Any, payload: Any) -> bytes:
            conn.verify(w.key_der)
            answer: bytes = conn.send_result(w.result)
            return answer

        def handle_resolution(conn: Any, request: Any) -> bytes:
            conn.data_to_sign((w.node,), server_time_ms=NOW_MS, valid_for_s=300,
                              signature_algorithm=1)  # fmt: skip
            answer: bytes = conn.send_response(b"s" * 256)
            return answer

        ops = w.context(
            "operations",
            lambda c=classes: c["operations"](w.opener, w.verifier),
            handle_registration,
        )
        boot = w.context("bootstrap", lambda c=classes: c["bootstrap"](), handle_resolution)

        def serve(ctx: Any, request: bytes, protocol: Any = classes["protocol"]) -> bytes:
            transport = _Transport()
            p = protocol(ctx)
            p.connection_made(transport)
            p.data_received(request)
            p.connection_lost(None)
            assert transport.closed and transport.written[1] in (2, 4)
            return transport.written

        out[f"operations {impl}"] = lambda s=serve, c=ops: s(c, w.register)
        out[f"bootstrap {impl}"] = lambda s=serve, c=boot: s(c, w.resolve)
    return out


def _best_us(function: Callable[[], Any], seconds: float) -> float:
    start = time.thread_time()
    done = 0
    while True:
        for _ in range(20):
            function()
        done += 20
        spent = time.thread_time() - start
        if spent >= seconds:
            return 1e6 * spent / done


def one_run(w: Workload, rounds: int = 15, seconds: float = 0.05) -> dict[str, float]:
    chosen = cases(w)
    best = {name: float("inf") for name in chosen}
    for _ in range(rounds):
        for name, function in chosen.items():
            best[name] = min(best[name], _best_us(function, seconds))
    for impl in ("py", "ext"):
        if f"operations {impl}" in best:
            best[f"operations {impl} glue"] = best[f"operations {impl}"] - best["operations crypto"]
    if "operations ext glue" in best:
        best["operations glue ext/py"] = best["operations ext glue"] / best["operations py glue"]
        best["bootstrap ext/py"] = best["bootstrap ext"] / best["bootstrap py"]
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.connection_path")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu", type=int, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    async def runs() -> list[dict[str, float]]:  # a running loop, as in a server
        w = Workload()
        return [one_run(w) for _ in range(args.runs)]

    results = asyncio.run(runs())
    print(f"per connection, µs of CPU (best of 15 interleaved rounds; median (min-max) of "
          f"{args.runs} runs)")  # fmt: skip
    for name in results[0]:
        values = [r[name] for r in results]
        unit = "" if "/" in name else " µs"
        print(f"  {name:<26}{statistics.median(values):9.2f}{unit}  "
              f"({min(values):.2f}-{max(values):.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
