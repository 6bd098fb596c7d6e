"""Message bodies to bytes and back, through the construct schemas.

Encoders take validated messages, so they cannot fail on the wire format. Decoders take
untrusted bytes and raise only :class:`RemoteProtocolError` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from kaa_wire._constants import (
    AEAD_TAG_SIZE,
    ENVELOPE_SIZE,
    PAYLOAD_FLAG_KEY_IS_HASH,
    RESOLVE_SIGNATURE_CONTEXT,
    ROTATE_SIGNATURE_CONTEXT,
    SIGNATURE_LENGTH_PREFIX,
    FrameFlag,
    MessageType,
)
from kaa_wire._errors import LocalProtocolError, MalformedFrame, register_request_too_short
from kaa_wire._messages import (
    ErrorMessage,
    Frame,
    OperationsNode,
    RegisterEnvelope,
    RegistrationResult,
    ResolveRequest,
    ResolveResponse,
    RotationCertificate,
    Topic,
)
from kaa_wire._schema import (
    ERROR_BODY,
    REGISTER_ENVELOPE,
    REGISTER_PAYLOAD,
    REGISTER_RESULT,
    RESOLVE_REQUEST,
    RESOLVE_RESPONSE,
    ROTATION_CERTIFICATE,
    parse_exact,
)

__all__ = [
    "encode_resolve_request",
    "decode_resolve_request",
    "resolve_response_signed_part",
    "resolve_signed_data",
    "encode_resolve_response",
    "decode_resolve_response",
    "rotation_signed_part",
    "rotation_signed_data",
    "encode_rotation_certificate",
    "decode_rotation_certificate",
    "encode_register_envelope",
    "decode_register_envelope",
    "ENVELOPE_SIZE",
    "registration_signed_part",
    "registration_payload_bytes",
    "encode_registration_result",
    "decode_registration_result",
    "encode_error",
    "decode_error",
    "describe_frame",
]


T = TypeVar("T")


def _build(factory: Callable[..., T], what: str, **fields: Any) -> T:
    """Construct a message from decoded fields; a value it refuses is the peer's fault."""
    try:
        return factory(**fields)
    except LocalProtocolError as exc:
        raise MalformedFrame(f"invalid {what}: {exc}") from None


def _text(raw: bytes, what: str, encoding: str = "ascii") -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        raise MalformedFrame(f"{what} is not {encoding} text") from None


# -- resolution ---------------------------------------------------------------------------


def encode_resolve_request(request: ResolveRequest) -> bytes:
    return RESOLVE_REQUEST.build(
        {
            "nonce": request.nonce,
            "key_generation": request.key_generation,
            "app_token": request.app_token.encode("ascii"),
            "transports": list(request.transports),
        }
    )


def decode_resolve_request(body: bytes) -> ResolveRequest:
    """The request, or MalformedFrame: also for an all-zero nonce, no transport, or key
    generation 0 (ResolveRequest refuses them)."""
    fields = parse_exact(RESOLVE_REQUEST, body, "resolve request")
    return _build(
        ResolveRequest,
        "resolve request",
        app_token=_text(fields.app_token, "app_token"),
        nonce=fields.nonce,
        transports=tuple(fields.transports),
        key_generation=fields.key_generation,
    )


def _node_fields(node: OperationsNode) -> dict[str, Any]:
    return {
        "priority": node.priority,
        "weight": node.weight,
        "access_point_id": node.access_point_id,
        "port": node.port,
        "kex_algorithm": node.kex_algorithm,
        "kex_public_key": node.kex_public_key,
        "host": node.host.encode("ascii"),
    }


def _certificate_fields(certificate: RotationCertificate) -> dict[str, Any]:
    return {
        "generation": certificate.generation,
        "signature_algorithm": certificate.signature_algorithm,
        "public_key": certificate.public_key,
        "signature": certificate.signature,
    }


def resolve_response_signed_part(
    nonce: bytes,
    server_time_ms: int,
    valid_for_s: int,
    key_generation: int,
    signature_algorithm: int,
    nodes: tuple[OperationsNode, ...],
    rotations: tuple[RotationCertificate, ...],
) -> bytes:
    """The body bytes the Bootstrap signature covers (everything before the signature)."""
    # Validate through the message type, then build with an empty signature and drop its
    # 2-byte length: what remains is exactly the signed prefix of the body.
    ResolveResponse(
        nonce,
        server_time_ms,
        valid_for_s,
        key_generation,
        signature_algorithm,
        tuple(nodes),
        tuple(rotations),
        b"",
    )
    body = RESOLVE_RESPONSE.build(
        {
            "nonce": nonce,
            "server_time_ms": server_time_ms,
            "valid_for_s": valid_for_s,
            "key_generation": key_generation,
            "signature_algorithm": signature_algorithm,
            "nodes": [_node_fields(node) for node in nodes],
            "rotations": [_certificate_fields(c) for c in rotations],
            "signature": b"",
        }
    )
    return body[:-SIGNATURE_LENGTH_PREFIX]


def resolve_signed_data(app_token: str, signed_part: bytes) -> bytes:
    """What the Bootstrap key signs: context, the asked-for app token, then the body prefix."""
    token = app_token.encode("ascii")
    return RESOLVE_SIGNATURE_CONTEXT + bytes([len(token)]) + token + signed_part


def encode_resolve_response(signed_part: bytes, signature: bytes) -> bytes:
    if len(signature) > 0xFFFF:
        raise LocalProtocolError("signature too long")
    return signed_part + len(signature).to_bytes(2, "big") + signature


def _certificate(fields: Any, signed_part: bytes) -> RotationCertificate:
    return _build(
        RotationCertificate,
        "rotation certificate",
        generation=fields.generation,
        signature_algorithm=fields.signature_algorithm,
        public_key=fields.public_key,
        signature=fields.signature,
        signed_part=signed_part,
    )


def _certificate_signed_length(fields: Any) -> int:
    # generation, algorithm, then the key as bytes16: the bytes before the signature.
    return 4 + 1 + 2 + len(fields.public_key)


def decode_resolve_response(body: bytes) -> ResolveResponse:
    fields = parse_exact(RESOLVE_RESPONSE, body, "resolve response")
    signed_length = len(body) - SIGNATURE_LENGTH_PREFIX - len(fields.signature)
    # The certificates sit just before the signature: find each one's bytes from the end.
    sizes = [_certificate_signed_length(c) + 2 + len(c.signature) for c in fields.rotations]
    offset = signed_length - sum(sizes)
    rotations = []
    for certificate, size in zip(fields.rotations, sizes, strict=True):
        signed = body[offset : offset + _certificate_signed_length(certificate)]
        rotations.append(_certificate(certificate, signed))
        offset += size
    nodes = tuple(
        _build(
            OperationsNode,
            "operations node",
            priority=node.priority,
            weight=node.weight,
            access_point_id=node.access_point_id,
            host=_text(node.host, "host"),
            port=node.port,
            kex_public_key=node.kex_public_key,
            kex_algorithm=node.kex_algorithm,
        )
        for node in fields.nodes
    )
    return _build(
        ResolveResponse,
        "resolve response",
        nonce=fields.nonce,
        server_time_ms=fields.server_time_ms,
        valid_for_s=fields.valid_for_s,
        key_generation=fields.key_generation,
        signature_algorithm=fields.signature_algorithm,
        nodes=nodes,
        rotations=tuple(rotations),
        signature=fields.signature,
        signed_part=body[:signed_length],
    )


# -- Bootstrap key rotation ----------------------------------------------------------------


def rotation_signed_part(generation: int, signature_algorithm: int, public_key: bytes) -> bytes:
    """The certificate bytes the previous key signs (everything before the signature)."""
    RotationCertificate(generation, signature_algorithm, public_key, b"")
    return ROTATION_CERTIFICATE.build(
        {
            "generation": generation,
            "signature_algorithm": signature_algorithm,
            "public_key": public_key,
            "signature": b"",
        }
    )[:-SIGNATURE_LENGTH_PREFIX]


def rotation_signed_data(signed_part: bytes) -> bytes:
    """What the key of the previous generation signs: the context, then the signed part."""
    return ROTATE_SIGNATURE_CONTEXT + signed_part


def encode_rotation_certificate(certificate: RotationCertificate) -> bytes:
    return ROTATION_CERTIFICATE.build(_certificate_fields(certificate))


def decode_rotation_certificate(data: bytes) -> RotationCertificate:
    fields = parse_exact(ROTATION_CERTIFICATE, data, "rotation certificate")
    return _certificate(fields, data[: _certificate_signed_length(fields)])


# -- registration -------------------------------------------------------------------------


def encode_register_envelope(envelope: RegisterEnvelope) -> bytes:
    head = REGISTER_ENVELOPE.build(
        {
            "kex_algorithm": envelope.kex_algorithm,
            "aead_algorithm": envelope.aead_algorithm,
            "ephemeral_public_key": envelope.ephemeral_public_key,
        }
    )
    return head + envelope.sealed_payload


def decode_register_envelope(body: bytes) -> RegisterEnvelope:
    if len(body) < ENVELOPE_SIZE + AEAD_TAG_SIZE:
        raise register_request_too_short()
    fields = parse_exact(REGISTER_ENVELOPE, body[:ENVELOPE_SIZE], "register envelope")
    return _build(
        RegisterEnvelope,
        "register envelope",
        ephemeral_public_key=fields.ephemeral_public_key,
        sealed_payload=body[ENVELOPE_SIZE:],
        kex_algorithm=fields.kex_algorithm,
        aead_algorithm=fields.aead_algorithm,
    )


def registration_signed_part(
    *,
    key_is_hash: bool,
    signature_algorithm: int,
    timestamp_ms: int,
    sdk_token: str,
    key: bytes,
    profile: bytes,
) -> bytes:
    """The payload bytes the endpoint signs (everything before the signature)."""
    body = REGISTER_PAYLOAD.build(
        {
            "flags": PAYLOAD_FLAG_KEY_IS_HASH if key_is_hash else 0,
            "signature_algorithm": signature_algorithm,
            "timestamp_ms": timestamp_ms,
            "sdk_token": sdk_token.encode("ascii"),
            "key": key,
            "profile": profile,
            "signature": b"",
        }
    )
    return body[:-SIGNATURE_LENGTH_PREFIX]


def registration_payload_bytes(signed_part: bytes, signature: bytes) -> bytes:
    if len(signature) > 0xFFFF:
        raise LocalProtocolError("signature too long")
    return signed_part + len(signature).to_bytes(2, "big") + signature


def encode_registration_result(result: RegistrationResult) -> bytes:
    return REGISTER_RESULT.build(
        {
            "status": result.status,
            "endpoint_id": result.endpoint_id,
            "server_time_ms": result.server_time_ms,
            "config_version": result.config_version,
            "config": result.config,
            "topics": [{"topic_id": t.topic_id, "name": t.name.encode()} for t in result.topics],
            "reconnect_after_s": result.reconnect_after_s,
            "retry_base_ms": result.retry_base_ms,
        }
    )


def decode_registration_result(plaintext: bytes) -> RegistrationResult:
    fields = parse_exact(REGISTER_RESULT, plaintext, "registration result")
    topics = tuple(
        _build(Topic, "topic", topic_id=t.topic_id, name=_text(t.name, "topic name", "utf-8"))
        for t in fields.topics
    )
    return _build(
        RegistrationResult,
        "registration result",
        status=fields.status,
        endpoint_id=fields.endpoint_id,
        server_time_ms=fields.server_time_ms,
        config_version=fields.config_version,
        config=fields.config,
        topics=topics,
        reconnect_after_s=fields.reconnect_after_s,
        retry_base_ms=fields.retry_base_ms,
    )


# -- errors -------------------------------------------------------------------------------


def encode_error(error: ErrorMessage) -> bytes:
    """The plain ERROR body (sealing, if any, is the connection's job)."""
    return ERROR_BODY.build(
        {
            "code": error.code,
            "retry_after_ms": error.retry_after_ms,
            "message": error.message.encode(),
        }
    )


def decode_error(body: bytes, sealed: bool = False) -> ErrorMessage:
    fields = parse_exact(ERROR_BODY, body, "error body")
    return _build(
        ErrorMessage,
        "error body",
        code=fields.code,
        message=_text(fields.message, "error message", "utf-8"),
        retry_after_ms=fields.retry_after_ms,
        sealed=sealed,
    )


# -- whole frames, for tools --------------------------------------------------------------


def describe_frame(frame: Frame) -> dict[str, Any]:
    """Every field of a frame as JSON-ready values (sealed parts stay opaque hex)."""
    out: dict[str, Any] = {"type": MessageType(frame.msg_type).name, "flags": frame.flags}
    if frame.msg_type == MessageType.RESOLVE_REQUEST:
        req = decode_resolve_request(frame.body)
        out.update(
            app_token=req.app_token,
            nonce=req.nonce.hex(),
            key_generation=req.key_generation,
            transports=list(req.transports),
        )
    elif frame.msg_type == MessageType.RESOLVE_RESPONSE:
        res = decode_resolve_response(frame.body)
        out.update(
            nonce=res.nonce.hex(),
            server_time_ms=res.server_time_ms,
            valid_for_s=res.valid_for_s,
            key_generation=res.key_generation,
            signature_algorithm=res.signature_algorithm,
            nodes=[
                {**_node_fields(n), "host": n.host, "kex_public_key": n.kex_public_key.hex()}
                for n in res.nodes
            ],
            rotations=[
                {
                    "generation": c.generation,
                    "signature_algorithm": c.signature_algorithm,
                    "public_key": c.public_key.hex(),
                    "signature": c.signature.hex(),
                }
                for c in res.rotations
            ],
            signature=res.signature.hex(),
        )
    elif frame.msg_type == MessageType.REGISTER_REQUEST:
        env = decode_register_envelope(frame.body)
        out.update(
            kex_algorithm=env.kex_algorithm,
            aead_algorithm=env.aead_algorithm,
            ephemeral_public_key=env.ephemeral_public_key.hex(),
            sealed_payload=env.sealed_payload.hex(),
        )
    elif frame.msg_type == MessageType.REGISTER_RESPONSE or frame.flags & FrameFlag.SEALED:
        out.update(sealed_payload=frame.body.hex())
    else:
        err = decode_error(frame.body)
        out.update(
            code=err.code,
            code_name=getattr(err.error_code, "name", None),
            retry_after_ms=err.retry_after_ms,
            message=err.message,
        )
    return out
