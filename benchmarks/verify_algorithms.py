"""What one proof of possession costs the server, per endpoint key type, pure and extension.

    python -m benchmarks.verify_algorithms              # 5 runs, medians of the ratios
    python -m benchmarks.verify_algorithms --runs 3 --cpu 1

For RSA-2048 (the default key), Ed25519 and ECDSA P-256, on each implementation: parse the
payload, load and vet the key, verify, SHA-1 the endpoint id, for a first registration (a
verifier with no cache: the key is built every time) and a reconnect (the key cached). And
what a hostile device can choose with P-256: a garbage signature under a new real key on
every request (random r, s in [1, n - 1], so the whole verify runs), r = 0 (refused before
any curve arithmetic), and a key off the curve (refused at load). Timed as benchmarks/micro.py
times (this thread's CPU clock, interleaved rounds, best round); each figure is also given as
a ratio to the RSA-2048 first registration on the same path in the same run, and the summary
is the median (min-max) of those ratios over the runs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.micro import CONTEXT, PROFILE, _sampler
from kaa_wire import _crypto, _registration
from kaa_wire._constants import P256_ORDER, P256_SPKI_PREFIX
from kaa_wire._errors import BadSignature, MalformedFrame

try:
    from kaa_wire_ext import _ext
except ImportError:  # pure path only
    _ext = None  # type: ignore[assignment]

KEY_TYPES: dict[str, Callable[[], Any]] = {
    "RSA-2048": lambda: _crypto.generate_rsa_key(2048),
    "Ed25519": _crypto.generate_ed25519_key,
    "P-256": _crypto.generate_p256_key,
}
BASELINE = "RSA-2048, first registration"


def payload(key_field: bytes, algorithm: int, sign: Callable[[bytes], bytes],
            flags: int = 0) -> bytes:
    token = b"sdk-7f3a9c"
    signed_part = (
        bytes([flags, algorithm]) + (1_767_225_600_000).to_bytes(8, "big")
        + bytes([len(token)]) + token + key_field
        + len(PROFILE).to_bytes(2, "big") + PROFILE
    )
    signature = sign(CONTEXT + signed_part)
    return signed_part + len(signature).to_bytes(2, "big") + signature


def _full(der: bytes) -> bytes:
    return len(der).to_bytes(2, "big") + der


def _random_scalar() -> bytes:
    return (secrets.randbelow(P256_ORDER - 1) + 1).to_bytes(32, "big")


def workloads(count: int = 64) -> dict[str, tuple[list[bytes], bytes | None, bool]]:
    """case -> (payloads cycled through, stored key for a reconnect, cached verifier)."""
    out: dict[str, tuple[list[bytes], bytes | None, bool]] = {}
    for name, make in KEY_TYPES.items():
        key = make()
        der = _crypto.public_key_der(key)
        algorithm = int(_crypto.signature_algorithm_of(key))

        def sign(data: bytes, key: Any = key) -> bytes:
            return _crypto.sign(key, data)

        out[f"{name}, first registration"] = ([payload(_full(der), algorithm, sign)], None, False)
        out[f"{name}, reconnect"] = (
            [payload(_crypto.endpoint_id(der), algorithm, sign, flags=1)], der, True)
    # Hostile P-256 requests, a new real key each (no cache helps).
    keys = [_crypto.public_key_der(_crypto.generate_p256_key()) for _ in range(count)]
    out["P-256, garbage signature, new key"] = (
        [payload(_full(der), 3, lambda d: _random_scalar() + _random_scalar()) for der in keys],
        None, False)
    out["P-256, r = 0, new key"] = (
        [payload(_full(der), 3, lambda d: bytes(32) + _random_scalar()) for der in keys],
        None, False)
    off_curve = [der[:-1] + bytes([der[-1] ^ 1]) for der in keys]
    assert all(d.startswith(P256_SPKI_PREFIX) for d in off_curve)
    out["P-256, key off the curve (refused)"] = (
        [payload(_full(der), 3, lambda d: bytes(64)) for der in off_curve], None, False)
    return out


def cases(impl: str) -> dict[str, Callable[[], Any]]:
    module: Any = _registration if impl == "py" else _ext
    out: dict[str, Callable[[], Any]] = {}
    for name, (payloads, stored, cached) in workloads().items():
        verifier = module.RegistrationVerifier(4096 if cached else 0)
        parse = module.parse_registration_payload
        state = {"i": 0}

        def run(payloads: list[bytes] = payloads, stored: bytes | None = stored,
                verifier: Any = verifier, parse: Any = parse, state: dict[str, int] = state) -> Any:
            state["i"] = (state["i"] + 1) % len(payloads)
            try:
                return verifier.verify(parse(payloads[state["i"]]), CONTEXT, stored)
            except (BadSignature, MalformedFrame):
                return None

        run()  # fills the cache of a reconnect's verifier
        out[name] = run
    return out


def one_run(rounds: int) -> dict[str, dict[str, float]]:
    impls = ["py"] + (["ext"] if _ext is not None else [])
    sample = {(impl, name): _sampler(case, 0.05)
              for impl in impls for name, case in cases(impl).items()}
    best = dict.fromkeys(sample, float("inf"))
    for _ in range(rounds):
        for key, take in sample.items():
            best[key] = min(best[key], take())
    return {impl: {name: us for (i, name), us in best.items() if i == impl} for impl in impls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per run")
    parser.add_argument("--cpu", type=int, help="pin this process to one core")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print(f"python {sys.version.split()[0]}; load average {os.getloadavg()}")
    if _ext is not None:
        print(f"extension build: {_ext._build_info()}")
    runs = []
    for run in range(1, args.runs + 1):
        figures = one_run(args.rounds)
        runs.append(figures)
        print(f"run {run}:")
        for impl, table in figures.items():
            for name, us in table.items():
                print(f"  {impl:<3} {name:<40} {us:9.1f} us  {us / table[BASELINE]:5.2f}x")
    print(f"median (min-max) over {len(runs)} runs; x = / {BASELINE} on the same path")
    for impl in runs[0]:
        for name in runs[0][impl]:
            times = [r[impl][name] for r in runs]
            x = [r[impl][name] / r[impl][BASELINE] for r in runs]
            print(f"  {impl:<3} {name:<40} {statistics.median(times):9.1f} us  "
                  f"{statistics.median(x):5.2f}x ({min(x):.2f}-{max(x):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
