"""The references of shared/PERF.md, timed in-process on one core in the same run.

* **Crypto floor, registration** = 1 / (RSA-2048 verify + X25519 exchange + AEAD of the
  payload + SHA-1 of the key). The RSA verify is kaa_wire_ext._bench's libcrypto-only loop
  (``benchmarks.micro.raw_verify_us``: SHA-256 + RSA_verify with the key loaded once, no
  Python) when it is built (``KAA_WIRE_BUILD_BENCH=1``), else ``cryptography``'s verify; the
  others are one ``cryptography`` / ``hashlib`` call each: X25519 ``exchange``,
  ChaCha20-Poly1305 open of a first registration's sealed payload (822 bytes with its AAD),
  SHA-1 of the 294-byte DER key. Each is timed in this thread's CPU time (``time.thread_time``, as
  ``benchmarks.micro`` does), the best of interleaved rounds: other load on a shared
  machine only ever adds time.
* **Sign floor, resolution** = RSA-2048 PKCS#1 v1.5 SHA-256 signatures per second with the
  fastest signer available (the extension's ``Signer`` when built, which the Bootstrap
  uses, else ``cryptography``).

Both are the cheapest way this machine knows to do the work, so the ratios against them are
conservative. ``python -m benchmarks.loadgen.floors --cpu 0`` prints them as JSON.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import time
import timeit
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from benchmarks import micro
from kaa_wire import _crypto
from kaa_wire._signer import Signer as PureSigner

__all__ = ["measure"]

#: A first registration's plaintext payload with a 200-byte profile is about 790 bytes.
_PAYLOAD_SIZE = 790
_AAD_SIZE = 40  # frame header + cleartext envelope


def _sampler(function: Callable[[], Any], seconds: float) -> Callable[[], float]:
    """One timing sample of about ``seconds`` of CPU time: µs per call."""
    clock = time.thread_time
    function()  # warm
    began = clock()
    function()
    once = max(clock() - began, 1e-7)
    number = max(1, int(seconds / once))
    timer = timeit.Timer(function, timer=clock)
    return lambda: timer.timeit(number) / number * 1e6


def measure(repeats: int = 5, seconds: float = 0.05) -> dict[str, Any]:
    """Every component in µs (best of ``repeats`` interleaved rounds), and both floors."""
    w = micro.registration_workload()
    key = _crypto.generate_rsa_key(2048)
    public = key.public_key()
    data = w.signed_data
    signature = _crypto.sign(key, data)
    components: dict[str, float] = {}
    cases: dict[str, Callable[[], Any]] = {
        "rsa2048_verify_cryptography_us": lambda: public.verify(
            signature, data, padding.PKCS1v15(), hashes.SHA256()
        ),
    }
    static = x25519.X25519PrivateKey.generate()
    peer = x25519.X25519PrivateKey.generate().public_key()
    cases["x25519_exchange_us"] = lambda: static.exchange(peer)
    aead = ChaCha20Poly1305(os.urandom(32))
    nonce, aad = bytes(12), os.urandom(_AAD_SIZE)
    sealed = aead.encrypt(nonce, os.urandom(_PAYLOAD_SIZE), aad)
    cases["chacha20poly1305_open_us"] = lambda: aead.decrypt(nonce, sealed, aad)
    der = w.key_der
    cases["sha1_key_us"] = lambda: hashlib.sha1(der).digest()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signers: dict[str, Any] = {"cryptography": PureSigner(pem)}
    if micro._ext is not None:
        signers["extension"] = micro._ext.Signer(pem)
    message = os.urandom(400)
    for name, signer in signers.items():
        cases[f"rsa2048_sign_{name}_us"] = functools.partial(signer.sign, message)
    samples: dict[str, Callable[[], float]] = {n: _sampler(f, seconds) for n, f in cases.items()}
    if micro._bench is not None:
        samples["rsa2048_verify_libcrypto_us"] = lambda: micro.raw_verify_us(w, False, 2000)
    best = dict.fromkeys(samples, float("inf"))
    for _ in range(max(1, repeats)):
        for name, take in samples.items():
            best[name] = min(best[name], take())
    components.update(best)
    verify_us = min(
        components.get("rsa2048_verify_libcrypto_us", float("inf")),
        components["rsa2048_verify_cryptography_us"],
    )
    registration_us = (
        verify_us
        + components["x25519_exchange_us"]
        + components["chacha20poly1305_open_us"]
        + components["sha1_key_us"]
    )
    sign_us = min(components[f"rsa2048_sign_{n}_us"] for n in signers)
    return {
        "components_us": {k: round(v, 3) for k, v in components.items()},
        "rsa2048_verify_us": round(verify_us, 3),
        "registration_crypto_us": round(registration_us, 3),
        "crypto_floor_per_s": 1e6 / registration_us,
        "rsa2048_sign_us": round(sign_us, 3),
        "sign_floor_per_s": 1e6 / sign_us,
        "cpu": sorted(os.sched_getaffinity(0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the crypto and sign floors, as JSON")
    parser.add_argument("--cpu", type=int, help="pin to this core first")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; the best counts")
    parser.add_argument("--seconds", type=float, default=0.05, help="CPU time per sample")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    json.dump(measure(args.repeats, args.seconds), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
