"""Chooses the implementation of the hot paths: the extension when built, else pure Python.

``KAA_WIRE_PUREPYTHON=1`` forces pure Python. Both implementations provide the same
names with the same behaviour and raise the same exception classes; the pure resolution
functions and ``encode_registration_result`` are the construct ones of ``_codec``, the
normative path.
"""

from __future__ import annotations

import os

from kaa_wire import _codec, _framing, _opener, _registration, _signer

IMPLEMENTATION: str

if os.environ.get("KAA_WIRE_PUREPYTHON", "") not in ("", "0"):
    _ext = None
else:
    try:
        import kaa_wire_ext._ext as _ext  # type: ignore[no-redef,assignment]
    except ImportError:
        _ext = None

if _ext is not None:
    IMPLEMENTATION = "ext"
    Framer = _ext.Framer
    encode_frame = _ext.encode_frame
    parse_registration_payload = _ext.parse_registration_payload
    RegistrationVerifier = _ext.RegistrationVerifier
    RegistrationOpener = _ext.RegistrationOpener
    seal_response = _ext.seal_response
    encode_registration_result = _ext.encode_registration_result
    Signer = _ext.Signer
    verify_batch = _ext.verify_batch
    decode_resolve_request = _ext.decode_resolve_request
    resolve_response_signed_part = _ext.resolve_response_signed_part
    resolve_signed_data = _ext.resolve_signed_data
    encode_resolve_response = _ext.encode_resolve_response
else:
    IMPLEMENTATION = "py"
    Framer = _framing.Framer  # type: ignore[misc]
    encode_frame = _framing.encode_frame
    parse_registration_payload = _registration.parse_registration_payload
    RegistrationVerifier = _registration.RegistrationVerifier  # type: ignore[misc]
    RegistrationOpener = _opener.RegistrationOpener  # type: ignore[misc]
    seal_response = _opener.seal_response
    encode_registration_result = _codec.encode_registration_result
    Signer = _signer.Signer  # type: ignore[misc]
    verify_batch = _registration.verify_batch
    decode_resolve_request = _codec.decode_resolve_request
    resolve_response_signed_part = _codec.resolve_response_signed_part
    resolve_signed_data = _codec.resolve_signed_data
    encode_resolve_response = _codec.encode_resolve_response
