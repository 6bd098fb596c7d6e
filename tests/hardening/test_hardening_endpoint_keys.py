"""Endpoint keys a hostile device with a real SDK token would choose, sent to a real
``python -m servers`` over real sockets: each is refused with a sealed MALFORMED_FRAME and
never stored (docs/protocol.md 5.3).

* An RSA-3072 key with e ~ 2^3071 and a proof that really verifies: accepted, every verify
  of it (valid or garbage) would cost about 150 ordinary ones (docs/security.md, "Worst-case
  cost per request").
* Each of the 8 small-order Ed25519 points, with a proof forged as R = identity, S = 0
  (ground until it verifies: OpenSSL accepts it), and the identity key used by two parties
  for the same endpoint id, which before the fix both registered and updated.

* A P-256 key as a compressed point (a second encoding, hence a second endpoint id, of a
  key that registers uncompressed), and as the same point with X + p, each with a proof
  that verifies under the key: MALFORMED_FRAME; a P-384 key: UNSUPPORTED_ALGORITHM.

The controls beside them (the same construction with e = 65537, the canonical P-256 key)
register, so a refusal here is the key rule, not a request built wrong.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from kaa_wire import OperationsNode, _crypto
from kaa_wire._constants import ED25519_SMALL_ORDER_KEYS, RSA_PUBLIC_EXPONENT
from tests import hostile_keys
from tests.hardening.test_hardening_security import Crafted, craft, send
from tests.hardening.tools import probe
from tests.servers.servers_harness import Endpoint, MainServer, control, start_main, top_nodes

pytestmark = pytest.mark.security

ED25519_PREFIX = bytes.fromhex("302a300506032b6570032100")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MainServer]:
    main = start_main(tmp_path_factory.mktemp("hardening-keys") / "data")
    yield main
    assert main.process.stop() == 0, main.process.logs()


@pytest.fixture(scope="module")
def node(server: MainServer) -> OperationsNode:
    return top_nodes(Endpoint(server.sdk, _crypto.generate_ed25519_key()).resolve())[0]


def _never_stored(server: MainServer, key_der: bytes) -> bool:
    shown = control(server.data, "endpoint", "show", _crypto.endpoint_id(key_der).hex(),
                    check=False)
    return shown.returncode != 0


def _rsa_request(
    server: MainServer, node: OperationsNode, key: hostile_keys.RawRsaKey
) -> Crafted:
    return craft(
        node,
        sdk_token=server.sdk.sdk_token,
        signing_key=None,
        key_field=key.der,
        signature_algorithm=1,
        timestamp_ms=int(time.time() * 1000),
        sign=key.sign,
    )


def test_an_rsa_key_with_a_huge_exponent_is_refused(
    server: MainServer, node: OperationsNode
) -> None:
    big = hostile_keys.rsa_key_with_exponent(3072, near=2**3071)
    assert big.e.bit_length() == 3071
    assert send(_rsa_request(server, node, big), node) == ("MALFORMED_FRAME", True)
    assert _never_stored(server, big.der)
    # The control: the same construction, e = 65537, registers.
    honest = hostile_keys.rsa_key_with_exponent(3072, RSA_PUBLIC_EXPONENT)
    assert send(_rsa_request(server, node, honest), node) == ("NEW", True)
    assert not _never_stored(server, honest.der)


def _forged(
    server: MainServer, node: OperationsNode, point: bytes, profile: bytes
) -> Crafted:
    """A first registration under the small-order key ``point`` whose proof, R = identity
    and S = 0, verifies: new envelopes (so new signed data) until it does."""
    verified: list[bool] = []

    def forge(data: bytes) -> bytes:
        verified.append(hostile_keys.forgery_verifies(point, data))
        return hostile_keys.IDENTITY_SIGNATURE

    for _ in range(200):
        verified.clear()
        crafted = craft(
            node,
            sdk_token=server.sdk.sdk_token,
            signing_key=None,
            key_field=ED25519_PREFIX + point,
            signature_algorithm=2,
            timestamp_ms=int(time.time() * 1000),
            profile=profile,
            sign=forge,
        )
        if verified == [True]:
            return crafted
    raise AssertionError("no forgery in 200 envelopes")


@pytest.mark.parametrize("point", ED25519_SMALL_ORDER_KEYS, ids=lambda p: p.hex()[:8])
def test_small_order_ed25519_keys_are_refused(
    server: MainServer, node: OperationsNode, point: bytes
) -> None:
    crafted = _forged(server, node, point, b'{"model":"forger"}')
    assert send(crafted, node) == ("MALFORMED_FRAME", True)
    assert _never_stored(server, ED25519_PREFIX + point)


def test_the_identity_key_does_not_let_two_parties_share_an_endpoint(
    server: MainServer, node: OperationsNode
) -> None:
    """R = identity, S = 0 verifies every message under the identity key, so anyone could
    register its endpoint id and anyone else update it. Both are refused; nothing is stored;
    the service goes on registering real devices."""
    identity = hostile_keys.encode(hostile_keys.IDENTITY)
    first = _forged(server, node, identity, b'{"owner":"party-a"}')
    assert send(first, node) == ("MALFORMED_FRAME", True)
    time.sleep(0.002)  # a later timestamp, as a second registration would carry
    second = _forged(server, node, identity, b'{"owner":"party-b"}')
    assert send(second, node) == ("MALFORMED_FRAME", True)
    assert _never_stored(server, ED25519_PREFIX + identity)
    probe(server.sdk, node=node)


def _p256_request(
    server: MainServer, node: OperationsNode, key_field: bytes, key: object
) -> Crafted:
    return craft(
        node,
        sdk_token=server.sdk.sdk_token,
        signing_key=key,
        key_field=key_field,
        signature_algorithm=3,
        timestamp_ms=int(time.time() * 1000),
    )


def test_p256_keys_in_a_second_encoding_or_on_another_curve_are_refused(
    server: MainServer, node: OperationsNode
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.test_endpoint_keys_p256 import ec_spki, xy

    key = _crypto.generate_p256_key()
    compressed = ec_spki(key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint))
    assert send(_p256_request(server, node, compressed, key), node) == ("MALFORMED_FRAME", True)
    assert _never_stored(server, compressed)
    # The same point with X + p: a key whose x is small enough, signed by nobody (no private
    # key is known for it), so the refusal must come before any verify.
    x, y = hostile_keys.p256_point_with_small_x()
    shifted = ec_spki(xy(x + hostile_keys.P256_P, y))
    crafted = craft(node, sdk_token=server.sdk.sdk_token, signing_key=None, key_field=shifted,
                    signature_algorithm=3, timestamp_ms=int(time.time() * 1000),
                    sign=lambda data: bytes(64))
    assert send(crafted, node) == ("MALFORMED_FRAME", True)
    assert _never_stored(server, shifted)
    p384 = ec.generate_private_key(ec.SECP384R1())
    p384_der = p384.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    crafted = craft(node, sdk_token=server.sdk.sdk_token, signing_key=None, key_field=p384_der,
                    signature_algorithm=3, timestamp_ms=int(time.time() * 1000),
                    sign=lambda data: bytes(64))
    assert send(crafted, node) == ("UNSUPPORTED_ALGORITHM", True)
    assert _never_stored(server, p384_der)
    # The control: the canonical encoding of the same key registers.
    canonical = _crypto.public_key_der(key)
    assert send(_p256_request(server, node, canonical, key), node) == ("NEW", True)
    assert not _never_stored(server, canonical)
