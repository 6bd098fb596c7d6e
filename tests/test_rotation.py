"""Bootstrap key rotation on the sans-IO core: certificates, the endpoint's chain rule, and
the Bootstrap's request checks (docs/protocol.md 4.1 and 4.5). Over real sockets:
tests/servers/test_servers_rotation.py and tests/client/test_client_rotation.py."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kaa_wire import (
    BadSignature,
    BootstrapServerConnection,
    LocalProtocolError,
    MalformedFrame,
    OperationsNode,
    ResolveClient,
    Resolved,
    UnsupportedAlgorithm,
    _codec,
    _crypto,
    encode_frame,
)
from kaa_wire._constants import (
    MAX_ROTATION_CHAIN,
    PROTOCOL_VERSION,
    ROTATE_SIGNATURE_CONTEXT,
    MessageType,
)
from kaa_wire._messages import ResolveRequest, RotationCertificate
from kaa_wire._rotation import TrustedKey, bootstrap_public_key, certify, follow_chain

NONCE = bytes(range(16))
APP = "app-token"
NODE = OperationsNode(1, 1, 1, "127.0.0.1", 9997, bytes(range(32)))


@pytest.fixture(scope="module")
def generations(vector_keys: dict[str, Any]) -> list[Any]:
    """Private keys by generation: [None, gen 1, gen 2, gen 3, gen 4] (RSA, Ed25519, RSA,
    Ed25519: rotations may change the algorithm)."""
    return [
        None,
        vector_keys["bootstrap_rsa"],
        vector_keys["bootstrap_ed25519"],
        vector_keys["other_rsa"],
        _crypto.generate_ed25519_key(),
    ]


def _chain(keys: list[Any], trusted: int, current: int) -> tuple[RotationCertificate, ...]:
    return tuple(certify(keys[g - 1], g, keys[g]) for g in range(trusted + 1, current + 1))


def _exchange(
    keys: list[Any],
    *,
    trusted: int,
    current: int,
    rotations: tuple[RotationCertificate, ...] | None = None,
    signer: Any = None,
) -> Resolved:
    """A client trusting generation ``trusted`` asks; a Bootstrap on ``current`` answers
    (with ``rotations``, by default the true chain; signed by ``signer``, by default the key
    of ``current``). The answer's body is built directly, as a misbehaving Bootstrap could."""
    client = ResolveClient(APP, keys[trusted].public_key(), nonce=NONCE, key_generation=trusted)
    server = BootstrapServerConnection()
    server.receive_data(client.send_request())
    request = server.next_event()
    assert isinstance(request, ResolveRequest) and request.key_generation == trusted
    if rotations is None:
        rotations = _chain(keys, trusted, current)
    signer = keys[current] if signer is None else signer
    part = _codec.resolve_response_signed_part(
        NONCE, 1_795_000_000_000, 60, current, _crypto.signature_algorithm_of(signer), (NODE,),
        rotations,
    )  # fmt: skip
    signature = _crypto.sign(signer, _codec.resolve_signed_data(APP, part))
    body = _codec.encode_resolve_response(part, signature)
    client.receive_data(encode_frame(MessageType.RESOLVE_RESPONSE, body))
    resolved = client.next_event(now=0.0)
    assert isinstance(resolved, Resolved)
    return resolved


@pytest.mark.parametrize(("trusted", "current"), [(1, 1), (1, 2), (1, 3), (1, 4), (2, 4), (3, 3)])
def test_the_endpoint_follows_the_chain_to_the_signer(
    generations: list[Any], trusted: int, current: int
) -> None:
    resolved = _exchange(generations, trusted=trusted, current=current)
    assert resolved.nodes == (NODE,)
    assert resolved.bootstrap_key is not None
    assert resolved.bootstrap_key.generation == current
    assert resolved.bootstrap_key.der == _crypto.public_key_der(generations[current])


def test_an_answer_of_a_retired_generation_is_refused(generations: list[Any]) -> None:
    """A device that trusts generation 2 takes nothing signed by generation 1's key."""
    with pytest.raises(BadSignature, match="older than the trusted generation 2"):
        _exchange(generations, trusted=2, current=1, rotations=())


@pytest.mark.parametrize("trusted", [1, 3])
def test_the_retired_key_cannot_sign_for_the_new_generation(
    generations: list[Any], trusted: int
) -> None:
    """Generation 1's key (RSA, like generation 3's) signs an answer that claims 3."""
    with pytest.raises(BadSignature, match="signature does not verify"):
        _exchange(generations, trusted=trusted, current=3, signer=generations[1])


def test_a_tampered_certificate_is_refused(generations: list[Any]) -> None:
    """The answer itself is signed by the true current key: only the chain check can refuse."""
    true = _chain(generations, 1, 3)
    bad_signature = bytearray(true[0].signature)
    bad_signature[10] ^= 0x01
    tampered = (RotationCertificate(2, true[0].signature_algorithm, true[0].public_key,
                                    bytes(bad_signature)), true[1])  # fmt: skip
    with pytest.raises(BadSignature, match="not signed by generation 1"):
        _exchange(generations, trusted=1, current=3, rotations=tampered)


def test_a_certificate_by_another_key_is_refused(generations: list[Any]) -> None:
    """Someone certifies their own key as generation 2, and signs the answer with it."""
    intruder = _crypto.generate_ed25519_key()
    forged = (certify(_crypto.generate_rsa_key(), 2, intruder),)
    with pytest.raises(BadSignature, match="not signed by generation 1"):
        _exchange(generations, trusted=1, current=2, rotations=forged, signer=intruder)


def test_a_swapped_key_in_a_certificate_is_refused(generations: list[Any]) -> None:
    """The signature of the true certificate, around another key."""
    true = certify(generations[1], 2, generations[2])
    intruder = _crypto.generate_ed25519_key()
    swapped = RotationCertificate(
        2, true.signature_algorithm, _crypto.public_key_der(intruder), true.signature
    )
    with pytest.raises(BadSignature, match="not signed by generation 1"):
        _exchange(generations, trusted=1, current=2, rotations=(swapped,), signer=intruder)


def test_a_chain_with_a_gap_is_refused(generations: list[Any]) -> None:
    with pytest.raises(BadSignature, match="do not lead from generation 1 to 3"):
        _exchange(generations, trusted=1, current=3, rotations=_chain(generations, 2, 3))


def _certified(signing_key: Any, generation: int, der: bytes, algorithm: int) -> Any:
    part = _codec.rotation_signed_part(generation, algorithm, der)
    signature = _crypto.sign(signing_key, _codec.rotation_signed_data(part))
    return RotationCertificate(generation, algorithm, der, signature, part)


def _rsa_der(bits: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _crypto.public_key_der(key.public_key())


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: (_rsa_der(1024), 1), UnsupportedAlgorithm),
        (lambda: (_crypto.public_key_der(_crypto.generate_ed25519_key()), 1), UnsupportedAlgorithm),
        (
            lambda: (
                _crypto.generate_x25519_key().public_key().public_bytes(
                    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
                ),
                2,
            ),
            UnsupportedAlgorithm,
        ),
        (lambda: (b"\x30\x03\x02\x01\x01", 1), MalformedFrame),
    ],
    ids=["RSA-1024", "algorithm does not fit", "X25519", "not a key"],
)
def test_a_certified_key_must_be_a_usable_bootstrap_key(
    generations: list[Any], make: Any, error: type[Exception]
) -> None:
    """Even a certificate the trusted key really signed cannot hand over to a bad key."""
    der, algorithm = make()
    certificate = _certified(generations[1], 2, der, algorithm)
    trusted = TrustedKey(1, generations[1].public_key())
    with pytest.raises(error):
        follow_chain(trusted, 2, (certificate,))


def test_a_non_canonical_key_encoding_is_refused(generations: list[Any]) -> None:
    der = _crypto.public_key_der(generations[2])
    # The same Ed25519 key with a long-form length on the outer SEQUENCE, or a byte more.
    for other in (b"\x30\x81" + der[1:], der + b"\x00"):
        with pytest.raises(MalformedFrame):
            bootstrap_public_key(other)
    assert bootstrap_public_key(der, 2) is not None


def test_follow_chain_bounds_its_work(generations: list[Any]) -> None:
    trusted = TrustedKey(1, generations[1].public_key())
    too_many = tuple(
        RotationCertificate(2 + i, 1, b"k", b"s") for i in range(MAX_ROTATION_CHAIN + 1)
    )
    with pytest.raises(BadSignature, match=f"more than {MAX_ROTATION_CHAIN}"):
        follow_chain(trusted, 2 + MAX_ROTATION_CHAIN, too_many)


def test_certificate_signs_the_documented_bytes(generations: list[Any]) -> None:
    """docs/protocol.md 4.5: context || u32 generation || u8 algorithm || bytes16 key."""
    certificate = certify(generations[1], 2, generations[2])
    der = _crypto.public_key_der(generations[2])
    signed = (
        ROTATE_SIGNATURE_CONTEXT + (2).to_bytes(4, "big") + b"\x02" + len(der).to_bytes(2, "big")
        + der
    )  # fmt: skip
    assert ROTATE_SIGNATURE_CONTEXT == b"KAA-WIRE/%d ROTATE\x00" % PROTOCOL_VERSION
    assert _crypto.signature_valid(generations[1].public_key(), signed, certificate.signature)
    encoded = _codec.encode_rotation_certificate(certificate)
    assert encoded == signed[len(ROTATE_SIGNATURE_CONTEXT) :] + (256).to_bytes(2, "big") + (
        certificate.signature
    )
    decoded = _codec.decode_rotation_certificate(encoded)
    assert decoded == certificate and decoded.signed_part == certificate.signed_part
    for cut in range(len(encoded)):
        with pytest.raises(MalformedFrame):
            _codec.decode_rotation_certificate(encoded[:cut])


def test_the_bootstrap_connection_refuses_a_chain_that_does_not_fit_the_request(
    generations: list[Any],
) -> None:
    request = ResolveClient(APP, generations[1].public_key(), nonce=NONCE).send_request()
    server = BootstrapServerConnection()
    server.receive_data(request)
    server.next_event()
    for key_generation, rotations in ((2, ()), (3, _chain(generations, 2, 3))):
        with pytest.raises(LocalProtocolError, match="from the request's generation 1"):
            server.data_to_sign(
                (NODE,),
                server_time_ms=1,
                valid_for_s=1,
                signature_algorithm=1,
                key_generation=key_generation,
                rotations=rotations,
            )


def _request(transports: bytes, nonce: bytes = NONCE) -> bytes:
    body = nonce + (1).to_bytes(4, "big") + bytes([len(APP)]) + APP.encode()
    return encode_frame(MessageType.RESOLVE_REQUEST, body + bytes([len(transports)]) + transports)


@pytest.mark.parametrize(
    ("transports", "served"),
    [(b"\x01", True), (b"\x07\x01", True), (b"\x01\x01", True), (b"\x07", False),
     (b"\x00\x02\xff", False)],
)  # fmt: skip
def test_the_bootstrap_serves_only_requests_that_can_use_tcp(
    transports: bytes, served: bool
) -> None:
    server = BootstrapServerConnection()
    server.receive_data(_request(transports))
    if served:
        assert isinstance(server.next_event(), ResolveRequest)
    else:
        with pytest.raises(UnsupportedAlgorithm, match="no transport this Bootstrap serves"):
            server.next_event()


@pytest.mark.parametrize("transports", [b"", b"\x01"], ids=["no transport", "zero nonce"])
def test_the_bootstrap_decoder_refuses_no_transport_and_a_zero_nonce(transports: bytes) -> None:
    nonce = bytes(16) if transports else NONCE
    server = BootstrapServerConnection()
    server.receive_data(_request(transports, nonce))
    with pytest.raises(MalformedFrame):
        server.next_event()


def test_the_endpoint_never_asks_with_a_zero_nonce(generations: list[Any]) -> None:
    with pytest.raises(LocalProtocolError, match="all zero"):
        ResolveClient(APP, generations[1].public_key(), nonce=bytes(16))
