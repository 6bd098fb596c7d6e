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
import hashlib
import math
import os
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from kaa_wire import _crypto

__all__ = [
    "DEFAULT_KEYCACHE",
    "Ed25519Keys",
    "EndpointKey",
    "KeyCache",
    "KeySource",
    "PooledKeys",
    "key_source",
    "pair_of",
    "primes_for",
]

DEFAULT_KEYCACHE = Path(__file__).resolve().parents[1] / ".keycache"


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointKey:
    index: int
    private_key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
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

    @property
    def spec(self) -> str:
        """What a generator worker is told to load keys from (``key_source``)."""
        return str(self.root)

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


# -- fleet-scale key sources ----------------------------------------------------------------
#
# A fleet benchmark needs millions of distinct endpoint keys (one per stored row, real
# enough that a reconnect by key hash verifies against it). Generating that many RSA-2048
# keys would take days here, so the fleet benchmark draws them from a *prime pool*: the
# 2k primes of k generated keys give k(2k-1) distinct 2048-bit moduli, one per pair of
# primes. A verify costs exactly what it costs for any RSA-2048 key (it only uses n and
# e = 65537); the keys share primes, so they are worthless as secrets, which does not
# matter on loopback. Ed25519 keys, cheap to make, are derived from their index.

#: The DER SubjectPublicKeyInfo of an RSA-2048 key with e = 65537 around its modulus:
#: what ``public_key_der`` prints for every such key (checked by PooledKeys.check).
_RSA2048_SPKI_HEAD = bytes.fromhex(
    "30820122300d06092a864886f70d01010105000382010f003082010a0282010100"
)
_RSA2048_SPKI_TAIL = bytes.fromhex("0203010001")
_E = 65537


def pair_of(index: int) -> tuple[int, int]:
    """Key ``index`` -> its primes (a, b), a < b: pairs in order of b, then a, so an index
    names the same key whatever the size of the pool."""
    b = (1 + math.isqrt(1 + 8 * index)) // 2
    while b * (b - 1) // 2 > index:
        b -= 1
    while (b + 1) * b // 2 <= index:
        b += 1
    return index - b * (b - 1) // 2, b


def primes_for(count: int) -> int:
    """How many primes the pool needs for keys 0..count-1."""
    return pair_of(max(0, count - 1))[1] + 1


class PooledKeys:
    """RSA-2048 keys 0.. from the prime pool of ``cache``'s keys (see above). The primes
    are kept in one file beside the keys (``rsa2048-primes.bin``, 128 bytes each)."""

    spec_prefix = "pooled:"

    def __init__(self, cache: KeyCache) -> None:
        if cache.bits != 2048:
            raise ValueError("the prime pool makes RSA-2048 keys")
        self.cache = cache
        self.primes_path = cache.root / "rsa2048-primes.bin"
        self._primes: list[int] = []

    @property
    def spec(self) -> str:
        return f"{self.spec_prefix}{self.cache.root}"

    def ensure(self, count: int, *, workers: int | None = None, quiet: bool = False) -> int:
        """Make the pool large enough for keys 0..count-1; returns RSA keys generated."""
        need = primes_for(count)
        made = self.cache.ensure((need + 1) // 2, workers=workers, quiet=quiet)
        have = self.primes_path.stat().st_size // 128 if self.primes_path.exists() else 0
        if have < need:
            primes = bytearray()
            for i in range((need + 1) // 2):
                key = self.cache.load(i).private_key
                assert isinstance(key, rsa.RSAPrivateKey)
                numbers = key.private_numbers()
                primes += numbers.p.to_bytes(128, "big") + numbers.q.to_bytes(128, "big")
            tmp = self.primes_path.with_name(f"{self.primes_path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(bytes(primes))
            os.replace(tmp, self.primes_path)
            self._primes = []
        return made

    def _prime(self, i: int) -> int:
        if i >= len(self._primes):
            data = self.primes_path.read_bytes()
            self._primes = [
                int.from_bytes(data[j : j + 128], "big") for j in range(0, len(data), 128)
            ]
            if i >= len(self._primes):
                raise IndexError(f"the prime pool has {len(self._primes)} primes; ensure() more")
        return self._primes[i]

    def public_der(self, index: int) -> bytes:
        a, b = pair_of(index)
        n = self._prime(a) * self._prime(b)
        return _RSA2048_SPKI_HEAD + n.to_bytes(256, "big") + _RSA2048_SPKI_TAIL

    def load(self, index: int) -> EndpointKey:
        a, b = pair_of(index)
        p, q = self._prime(a), self._prime(b)
        d = pow(_E, -1, (p - 1) * (q - 1))
        numbers = rsa.RSAPrivateNumbers(
            p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
            rsa.RSAPublicNumbers(_E, p * q),
        )  # fmt: skip
        key = numbers.private_key(unsafe_skip_rsa_key_validation=True)
        der = self.public_der(index)
        return EndpointKey(index, key, der, _crypto.endpoint_id(der))

    def load_many(self, indexes: list[int] | range) -> list[EndpointKey]:
        return [self.load(i) for i in indexes]

    def check(self, index: int = 0) -> None:
        """The template DER is the one the library prints (a guard against drift)."""
        key = self.load(index)
        if _crypto.public_key_der(key.private_key) != key.public_der:
            raise AssertionError("pooled key DER differs from the library's encoding")


class Ed25519Keys:
    """Ed25519 endpoint keys derived from their index (no cache: each costs ~50 us)."""

    spec = "ed25519"

    def ensure(self, count: int, **_: object) -> int:
        return 0

    def load(self, index: int) -> EndpointKey:
        seed = hashlib.sha256(b"kaa-wire fleet ed25519 %d" % index).digest()
        key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        der = _crypto.public_key_der(key)
        return EndpointKey(index, key, der, _crypto.endpoint_id(der))  # type: ignore[arg-type]

    def public_der(self, index: int) -> bytes:
        return self.load(index).public_der

    def load_many(self, indexes: list[int] | range) -> list[EndpointKey]:
        return [self.load(i) for i in indexes]


KeySource = KeyCache | PooledKeys | Ed25519Keys


def key_source(spec: str | Path) -> KeySource:
    """A key source by its spec: a directory (a KeyCache), ``pooled:DIR`` or ``ed25519``."""
    text = str(spec)
    if text == Ed25519Keys.spec:
        return Ed25519Keys()
    if text.startswith(PooledKeys.spec_prefix):
        return PooledKeys(KeyCache(text[len(PooledKeys.spec_prefix) :]))
    return KeyCache(text)
