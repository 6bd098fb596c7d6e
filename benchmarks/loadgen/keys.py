"""RSA endpoint keys (2048 bits unless asked), generated once and cached on disk
(``benchmarks/.keycache/``).

Generating an RSA-2048 key costs tens of milliseconds, far more than registering it, so
keys are made before any timed window, in parallel on every core, with a progress line on
stderr, and kept as one PKCS#8 DER file per key (``rsa2048/00042.der``). Each file is
written to a temporary name and renamed, so concurrent generators never see half a key.
Keys are numbered: a load uses a known range of them, and a fresh server sees each key
once as a first-time registration. Other sizes (``KeyCache(bits=4096)``, for
benchmarks/worst_case.py) live beside them in ``rsa4096/``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kaa_wire import _crypto

__all__ = ["DEFAULT_KEYCACHE", "EndpointKey", "KeyCache"]

DEFAULT_KEYCACHE = Path(__file__).resolve().parents[1] / ".keycache"


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointKey:
    index: int
    private_key: rsa.RSAPrivateKey
    public_der: bytes
    endpoint_id: bytes


def _generate_one(path: str, bits: int = 2048) -> None:
    if os.path.exists(path):  # another generator made it meanwhile: keep that one
        return
    key = _crypto.generate_rsa_key(bits)
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(der)
    os.replace(tmp, path)


class KeyCache:
    """Numbered RSA keys of ``bits`` under ``root/rsa<bits>/``."""

    def __init__(self, root: Path | str = DEFAULT_KEYCACHE, bits: int = 2048) -> None:
        self.root = Path(root)
        self.bits = bits
        self.dir = self.root / f"rsa{bits}"

    def path(self, index: int) -> Path:
        return self.dir / f"{index:05d}.der"

    def missing(self, count: int) -> list[int]:
        return [i for i in range(count) if not self.path(i).exists()]

    def ensure(self, count: int, *, workers: int | None = None, quiet: bool = False) -> int:
        """Make keys 0..count-1 exist; returns how many were generated."""
        todo = self.missing(count)
        if not todo:
            return 0
        self.dir.mkdir(parents=True, exist_ok=True)
        workers = workers or len(os.sched_getaffinity(0))
        started = time.monotonic()
        done = 0

        def progress(final: bool = False) -> None:
            if quiet:
                return
            elapsed = time.monotonic() - started
            rate = done / elapsed if elapsed > 0 else 0.0
            eta = (len(todo) - done) / rate if rate > 0 else 0.0
            width = 30
            filled = width * done // len(todo)
            sys.stderr.write(
                f"\rRSA-{self.bits} endpoint keys [{'#' * filled}{'.' * (width - filled)}] "
                f"{done}/{len(todo)} {rate:5.1f}/s eta {eta:4.0f}s" + ("\n" if final else "")
            )
            sys.stderr.flush()

        if not quiet:
            sys.stderr.write(
                f"generating {len(todo)} RSA-{self.bits} endpoint keys into {self.dir} "
                f"({workers} processes, once; later runs reuse them)\n"
            )
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(_generate_one, str(self.path(i)), self.bits) for i in todo]
            # A redrawn bar on a terminal; a line every 10 % in a log file.
            every = 1.0 if sys.stderr.isatty() else None
            last, shown = 0.0, 0
            for future in concurrent.futures.as_completed(futures):
                future.result()
                done += 1
                now = time.monotonic()
                if every is not None and now - last > every:
                    progress()
                    last = now
                elif every is None and done * 10 // len(todo) > shown:
                    shown = done * 10 // len(todo)
                    progress(final=True)
        if every is not None:
            progress(final=True)
        return len(todo)

    def load(self, index: int) -> EndpointKey:
        key = serialization.load_der_private_key(
            self.path(index).read_bytes(),
            password=None,
            unsafe_skip_rsa_key_validation=True,  # our own keys: skip the slow check
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        der = _crypto.public_key_der(key)
        return EndpointKey(index, key, der, _crypto.endpoint_id(der))

    def load_many(self, indexes: list[int] | range) -> list[EndpointKey]:
        return [self.load(i) for i in indexes]
