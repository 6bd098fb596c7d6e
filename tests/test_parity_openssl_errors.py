"""OpenSSL hygiene of kaa_wire_ext._ext: no libcrypto error outlives the call that caused it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import pytest

from kaa_wire import _crypto
from kaa_wire._errors import KaaWireError
from tests.parity import CONTEXT, payload_bytes, sealed_request


def test_no_openssl_error_survives_a_call(ext: Any, keys: dict[str, Any]) -> None:
    """Failures inside libcrypto leave nothing in this thread's OpenSSL error queue."""
    name = ctypes.util.find_library("crypto")
    if name is None:
        pytest.skip("libcrypto not found by ctypes")
    libcrypto = ctypes.CDLL(name)
    libcrypto.ERR_peek_error.restype = ctypes.c_ulong
    libcrypto.ERR_clear_error()
    der = _crypto.public_key_der(keys["rsa"])
    ed = _crypto.public_key_der(keys["ed25519"])
    ext.verify_batch([(der, 1, b"m", bytes(256)), (der, 1, b"m", b"short"),
                      (ed, 2, b"m", bytes(64)), (ed[:12] + b"\xff" * 32, 2, b"m", bytes(64))])
    for key_der, algorithm in ((der, 1), (ed, 2)):
        data = payload_bytes(key=key_der, algorithm=algorithm, signature=bytes(256))
        with pytest.raises(KaaWireError):
            ext.RegistrationVerifier().verify(ext.parse_registration_payload(data), CONTEXT)
    with pytest.raises(KaaWireError):
        ext.Signer(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    header, body = sealed_request(keys)
    opener = ext.RegistrationOpener(keys["x25519"])
    for refused in (body[:2] + bytes(32) + body[34:], body[:-1] + bytes([body[-1] ^ 1])):
        with pytest.raises(KaaWireError):
            opener.open(header, refused)
    assert libcrypto.ERR_peek_error() == 0
