"""Endpoint keys a hostile device would send, made from first principles so that the tests
check the refusals instead of trusting the lists they refuse by.

* edwards25519 in plain integers (RFC 8032's formulas, affine, nothing clever): the points
  of small order are derived by clearing the cofactor of curve points, never copied, and a
  proof "signed" by a small-order key is forged as an attacker would (R = identity, S = 0).
* RSA keys with any public exponent (e = 3, e = 65539, e ~ 2^3071 on RSA-3072), with
  real private exponents, so that their PKCS#1 v1.5 signatures really verify: a refusal
  of the key is then the only thing between the request and an accepted proof.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# -- edwards25519 ----------------------------------------------------------------------------

P = 2**255 - 19
D = -121665 * pow(121666, -1, P) % P
#: The prime order of the base point's subgroup; the whole group has 8 L points.
L = 2**252 + 27742317777372353535851937790883648493
IDENTITY = (0, 1)
SIGN_BIT = 1 << 255

Point = tuple[int, int]


def add(a: Point, b: Point) -> Point:
    """-x^2 + y^2 = 1 + d x^2 y^2: the complete addition law (d is not a square)."""
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x = (x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P
    y = (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P
    return x, y


def multiply(k: int, point: Point) -> Point:
    result = IDENTITY
    while k:
        if k & 1:
            result = add(result, point)
        point = add(point, point)
        k >>= 1
    return result


def order(point: Point) -> int:
    """The order of a point of small order (1, 2, 4 or 8); 0 for any other point."""
    return next((k for k in (1, 2, 4, 8) if multiply(k, point) == IDENTITY), 0)


def x_for(y: int, sign: int) -> int | None:
    """RFC 8032 5.1.3 step 2-4: the x with this y and sign, or None (no such point)."""
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x - u) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if (v * x * x - u) % P:
        return None
    if x == 0 and sign:
        return None
    return P - x if x & 1 != sign else x


def encode(point: Point) -> bytes:
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


def decode(encoding: bytes) -> Point | None:
    """A canonical encoding's point, or None."""
    value = int.from_bytes(encoding, "little")
    y, sign = value & (SIGN_BIT - 1), value >> 255
    if y >= P:
        return None
    x = x_for(y, sign)
    return None if x is None else (x, y)


def small_order_points() -> dict[bytes, int]:
    """Canonical encoding -> order, for every point whose order divides 8.

    [L]Q lies in the 8-torsion for every point Q; the 8-torsion of edwards25519 is cyclic
    of order 8, so walking y = 2, 3, ... until 8 distinct [L]Q turn up finds all of them.
    """
    found: dict[bytes, int] = {}
    y = 2
    while len(found) < 8:
        x = x_for(y, 0)
        if x is not None:
            torsion = multiply(L, (x, y))
            found[encode(torsion)] = order(torsion)
        y += 1
        assert y < 1000, "the 8-torsion should turn up within a few points"
    return found


def non_canonical_encodings() -> dict[str, bytes]:
    """Every encoding that is not the canonical one of its y: y in [p, 2^255) with either
    sign, and x = 0 (y = 1 or p - 1) with the sign bit set."""
    out = {}
    for y in range(P, SIGN_BIT):
        for sign in (0, 1):
            out[f"y=p+{y - P},sign={sign}"] = (y | sign << 255).to_bytes(32, "little")
    out["y=1,sign=1"] = (1 | SIGN_BIT).to_bytes(32, "little")
    out["y=p-1,sign=1"] = (P - 1 | SIGN_BIT).to_bytes(32, "little")
    return out


#: R = identity, S = 0: a "signature" that verifies whenever [k]A is the identity.
IDENTITY_SIGNATURE = encode(IDENTITY) + bytes(32)


def forgery_verifies(public: bytes, message: bytes) -> bool:
    """Does IDENTITY_SIGNATURE verify ``message`` under the small-order key ``public``?

    Verification checks [S]B = R + [k]A with k = SHA-512(R || A || M) mod L; with R the
    identity and S = 0 that is [k]A = identity: always for the identity key, for one
    message in ord(A) otherwise.
    """
    point = decode(public)
    assert point is not None
    k = int.from_bytes(hashlib.sha512(encode(IDENTITY) + public + message).digest(), "little")
    return multiply(k % L, point) == IDENTITY


# -- RSA with any public exponent ------------------------------------------------------------

DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")


@dataclasses.dataclass(frozen=True)
class RawRsaKey:
    """An RSA key pair built from numbers: any e that is coprime to lambda(n)."""

    n: int
    e: int
    d: int

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    def public_key(self) -> rsa.RSAPublicKey:
        return rsa.RSAPublicNumbers(self.e, self.n).public_key()

    @property
    def der(self) -> bytes:
        """The canonical DER SubjectPublicKeyInfo, as ``cryptography`` encodes it."""
        return self.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, data: bytes) -> bytes:
        """RSASSA-PKCS1-v1_5 with SHA-256, the textbook way."""
        size = (self.bits + 7) // 8
        digest = DIGEST_INFO_SHA256 + hashlib.sha256(data).digest()
        encoded = b"\x00\x01" + b"\xff" * (size - 3 - len(digest)) + b"\x00" + digest
        return pow(int.from_bytes(encoded, "big"), self.d, self.n).to_bytes(size, "big")


def rsa_key_with_exponent(bits: int, e: int | None = None, *, near: int | None = None) -> RawRsaKey:
    """A real RSA key of ``bits`` with public exponent ``e``, or with the largest odd e at or
    below ``near`` that fits the primes. The primes come from ``cryptography``; when ``e``
    does not fit them (shares a factor with p - 1 or q - 1), new ones are drawn."""
    while True:
        numbers = rsa.generate_private_key(65537, bits).private_numbers()
        p, q = numbers.p, numbers.q
        lam = math.lcm(p - 1, q - 1)
        if near is not None:
            e = near if near % 2 else near - 1
            while math.gcd(e, lam) != 1:
                e -= 2
        assert e is not None
        if math.gcd(e, lam) == 1:
            return RawRsaKey(p * q, e, pow(e, -1, lam))


# -- P-256 ---------------------------------------------------------------------------------

P256_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
P256_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def p256_on_curve(x: int, y: int) -> bool:
    """y^2 = x^3 - 3x + b (mod p), with the coordinates as given (not reduced)."""
    return (y * y - (x * x * x - 3 * x + P256_B)) % P256_P == 0


def p256_point_with_small_x() -> tuple[int, int]:
    """A point whose x is below 2^256 - p, so x + p still fits 32 bytes: the same point
    written with X >= p (p = 3 mod 4, so a square root is one power)."""
    for x in range(1, 1000):
        rhs = (x**3 - 3 * x + P256_B) % P256_P
        y = pow(rhs, (P256_P + 1) // 4, P256_P)
        if y * y % P256_P == rhs:
            return x, y
    raise AssertionError("no point with a small x in 1000 tries")
