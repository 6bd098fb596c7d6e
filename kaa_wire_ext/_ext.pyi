"""Type stubs for the compiled module kaa_wire_ext._ext (same API as the pure modules)."""

from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric import x25519

from kaa_wire._messages import (
    Frame,
    OperationsNode,
    RegistrationPayload,
    RegistrationResult,
    ResolveRequest,
    RotationCertificate,
)

__all__ = [
    "Framer",
    "encode_frame",
    "parse_registration_payload",
    "RegistrationVerifier",
    "Signer",
    "verify_batch",
    "decode_resolve_request",
    "resolve_response_signed_part",
    "resolve_signed_data",
    "encode_resolve_response",
    "RegistrationOpener",
    "seal_response",
    "encode_registration_result",
]

class Framer:
    max_frame_size: int
    def __init__(self, max_frame_size: int = 65536) -> None: ...
    @property
    def buffered(self) -> int: ...
    def receive_data(self, data: bytes | bytearray | memoryview) -> None: ...
    def next_frame(self) -> Frame | None: ...

def encode_frame(
    msg_type: int, body: bytes, flags: int = 0, max_frame_size: int = 65536
) -> bytes: ...
def parse_registration_payload(plaintext: bytes | bytearray) -> RegistrationPayload: ...

class RegistrationVerifier:
    cache_size: int
    def __init__(self, cache_size: int = 4096) -> None: ...
    def verify(
        self, payload: RegistrationPayload, context: bytes, key_der: bytes | None = None
    ) -> bytes: ...

def verify_batch(items: Iterable[tuple[bytes, int, bytes, bytes]]) -> list[bool]: ...

class Signer:
    @property
    def algorithm(self) -> int: ...
    def __init__(self, private_key: bytes) -> None: ...
    def sign(self, data: bytes) -> bytes: ...

def decode_resolve_request(body: bytes) -> ResolveRequest: ...
def resolve_response_signed_part(
    nonce: bytes,
    server_time_ms: int,
    valid_for_s: int,
    key_generation: int,
    signature_algorithm: int,
    nodes: tuple[OperationsNode, ...],
    rotations: tuple[RotationCertificate, ...],
) -> bytes: ...
def resolve_signed_data(app_token: str, signed_part: bytes) -> bytes: ...
def encode_resolve_response(signed_part: bytes, signature: bytes) -> bytes: ...

class RegistrationOpener:
    @property
    def public_key(self) -> bytes: ...
    def __init__(self, static_key: x25519.X25519PrivateKey) -> None: ...
    def open(
        self, header: bytes | bytearray | memoryview, body: bytes | bytearray | memoryview
    ) -> tuple[bytes, bytes, bytes]: ...

def seal_response(
    response_secret: bytes | bytearray | memoryview,
    plaintext: bytes | bytearray | memoryview,
    header: bytes | bytearray | memoryview,
    response_nonce: bytes | bytearray | memoryview,
) -> bytes: ...

def encode_registration_result(result: RegistrationResult) -> bytes: ...

# Private helpers for tests and benchmarks/.
def _constants() -> dict[str, int]: ...
def _build_info() -> dict[str, object]: ...
