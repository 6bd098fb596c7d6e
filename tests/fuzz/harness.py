"""What every fuzz input is put through: both framers, the codec, both payload parsers,
both RESOLVE_REQUEST body decoders, both registration openers, both proof-of-possession
verifiers (endpoint key checks: RSA, Ed25519, P-256 DER; r || s signatures), and the
endpoint's check of a RESOLVE_RESPONSE's rotation chain (pure only: there is no other
implementation).

``check`` raises AssertionError when the implementations disagree, and lets any exception
other than a RemoteProtocolError escape: to a fuzzer, both are crashes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kaa_wire import _codec, _crypto
from kaa_wire._constants import PROTOCOL_VERSION, REGISTER_SIGNATURE_CONTEXT
from kaa_wire._errors import RemoteProtocolError
from kaa_wire._framing import Framer as PureFramer
from kaa_wire._opener import RegistrationOpener as PureOpener
from kaa_wire._registration import RegistrationVerifier as PureVerifier
from kaa_wire._registration import parse_registration_payload as pure_parse
from kaa_wire._rotation import TrustedKey, follow_chain

try:
    from kaa_wire_ext import _ext  # type: ignore[attr-defined]
except ImportError:  # the fuzz run then checks the pure path alone
    _ext = None

#: First byte that routes an input to the registration payload parsers instead.
PAYLOAD_SELECTOR = 0xFF
#: First byte that routes an input to the RESOLVE_REQUEST body decoders instead.
RESOLVE_SELECTOR = 0xFD
#: First byte that routes an input to the openers, as a REGISTER_REQUEST body.
OPEN_SELECTOR = 0xFE
#: First byte that routes an input to the RESOLVE_RESPONSE decoder and the chain check.
CHAIN_SELECTOR = 0xFC
#: First byte that routes an input to the payload parsers and then the verifiers, with the
#: context of tests/vectors/registration.json (so its vectors are seeds that verify).
VERIFY_SELECTOR = 0xFB
VERIFY_CONTEXT = REGISTER_SIGNATURE_CONTEXT + bytes(range(64))
#: The openers hold the vectors' Operations key, so the vectors' requests open (good seeds).
_KEYS = json.loads((Path(__file__).parents[1] / "vectors" / "keys.json").read_text())
_STATIC_KEY = _crypto.load_private_key(_KEYS["operations_x25519"].encode())
PURE_OPENER = PureOpener(_STATIC_KEY)  # type: ignore[arg-type]
EXT_OPENER = None if _ext is None else _ext.RegistrationOpener(_STATIC_KEY)
#: The chain check starts from the vectors' generation-1 Bootstrap key, so the rotated
#: answer of the vectors is a seed that verifies.
_TRUSTED = TrustedKey(1, _crypto.load_private_key(_KEYS["bootstrap_rsa"].encode()).public_key())
#: A small limit as well as the default, so both sides of the size check get exercised.
FRAME_LIMITS = (65536, 64)


def frame_outcome(framer_cls: Any, data: bytes, limit: int = 65536) -> list[Any]:
    """Frames, their decoded fields, and the error class that ended the stream, if any."""
    framer = framer_cls(limit)
    framer.receive_data(data)
    out: list[Any] = []
    try:
        while (frame := framer.next_frame()) is not None:
            out.append(frame)
            try:
                out.append(_codec.describe_frame(frame))
            except RemoteProtocolError as exc:
                out.append(type(exc))
    except RemoteProtocolError as exc:
        out.append(type(exc))
    return out


def payload_outcome(parse: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        parsed = parse(data)
    except RemoteProtocolError as exc:
        return type(exc)
    return parsed, parsed.signed_part


def request_outcome(decode: Callable[[bytes], Any], data: bytes) -> Any:
    try:
        return decode(data)
    except RemoteProtocolError as exc:
        return type(exc)


def open_outcome(opener: Any, body: bytes) -> Any:
    """The opened request (REGISTER_REQUEST header for this body length), or the error class."""
    header = bytes([PROTOCOL_VERSION, 3, 0]) + len(body).to_bytes(3, "big")
    try:
        return opener.open(header, body)
    except RemoteProtocolError as exc:
        return type(exc)


def verify_outcome(parse: Callable[[bytes], Any], verifier: Any, data: bytes) -> Any:
    """The endpoint id, or the error (class and message: kaa_wire errors compare both).
    A reconnect payload is checked against its own bytes as the stored key."""
    try:
        payload = parse(data)
        return verifier.verify(payload, VERIFY_CONTEXT, data if payload.key_is_hash else None)
    except RemoteProtocolError as exc:
        return exc


def chain_outcome(body: bytes) -> None:
    """Decode a RESOLVE_RESPONSE body and follow its rotations: protocol errors only."""
    try:
        response = _codec.decode_resolve_response(body)
        follow_chain(_TRUSTED, response.key_generation, response.rotations)
    except RemoteProtocolError:
        pass


def check(data: bytes) -> None:
    if data[:1] == bytes([CHAIN_SELECTOR]):
        chain_outcome(data[1:])
        return
    if data[:1] == bytes([OPEN_SELECTOR]):
        ours = open_outcome(PURE_OPENER, data[1:])
        if EXT_OPENER is not None:
            assert open_outcome(EXT_OPENER, data[1:]) == ours
        return
    if data[:1] == bytes([PAYLOAD_SELECTOR]):
        ours = payload_outcome(pure_parse, data[1:])
        if _ext is not None:
            assert payload_outcome(_ext.parse_registration_payload, data[1:]) == ours
        return
    if data[:1] == bytes([VERIFY_SELECTOR]):
        ours = verify_outcome(pure_parse, PureVerifier(0), data[1:])
        if _ext is not None:
            theirs = verify_outcome(_ext.parse_registration_payload, _ext.RegistrationVerifier(0),
                                    data[1:])
            assert theirs == ours
        return
    if data[:1] == bytes([RESOLVE_SELECTOR]):
        ours = request_outcome(_codec.decode_resolve_request, data[1:])
        if _ext is not None:
            assert request_outcome(_ext.decode_resolve_request, data[1:]) == ours
        return
    for limit in FRAME_LIMITS:
        ours = frame_outcome(PureFramer, data, limit)
        if _ext is not None:
            assert frame_outcome(_ext.Framer, data, limit) == ours
