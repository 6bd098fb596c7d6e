# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled hot paths of kaa_wire, on OpenSSL libcrypto.

Same names and behaviour as the pure-Python modules ``kaa_wire._framing``,
``kaa_wire._registration``, ``kaa_wire._signer`` and ``kaa_wire._opener`` (and the
resolution functions and ``encode_registration_result`` of ``kaa_wire._codec``), and the
same exception classes (imported
from ``kaa_wire._errors``, never redefined). tests/test_ext_build.py holds the two to each
other, differentially.

Layout, as in asyncpg: this file only declares the module and includes the parts:

* ``framing.pyx``       Framer, encode_frame
* ``registration.pyx``  parse_registration_payload, endpoint key parsing, RegistrationVerifier,
                        verify_batch
* ``signer.pyx``        Signer
* ``resolution.pyx``    decode_resolve_request, resolve_response_signed_part,
                        resolve_signed_data, encode_resolve_response
* ``opener.pyx``        RegistrationOpener, seal_response
* ``result.pyx``        encode_registration_result
* ``bench.pyx``         private reference loops for benchmarks/ (raw libcrypto verify, key builds)

OpenSSL rules, everywhere: the GIL is released around every libcrypto call that costs real
time (key decode, sign, verify, key agreement, AEAD), and every failure clears the thread's
error queue before the matching kaa_wire exception is raised, so no OpenSSL error outlives the
call that caused it.
"""

from cpython.buffer cimport (
    PyBUF_SIMPLE,
    PyBuffer_Release,
    PyObject_CheckBuffer,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.limits cimport INT_MAX, UINT_MAX
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, memmove, memset

from kaa_wire_ext cimport libcrypto as ssl
from kaa_wire_ext.protocol cimport *

import operator

from kaa_wire import _opener as _pure_opener
from kaa_wire import _registration as _pure_registration
from kaa_wire import _signer as _pure_signer
from kaa_wire._errors import (
    BadSeal,
    BadSignature,
    FrameTooLarge,
    InternalError,
    LocalProtocolError,
    MalformedFrame,
    UnknownKeyHash,
    UnknownMessageType,
    UnsupportedAlgorithm,
    UnsupportedVersion,
)
from kaa_wire._messages import Frame, RegistrationPayload

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


cdef str _openssl_error(str what):
    """Describe the newest queued OpenSSL error, then clear the whole queue."""
    cdef char buf[256]
    cdef unsigned long code = ssl.ERR_peek_last_error()
    cdef str detail = ""
    if code:
        ssl.ERR_error_string_n(code, buf, sizeof(buf))
        detail = ": " + buf.decode("ascii", "replace")
    ssl.ERR_clear_error()
    return what + detail


def _constants():
    """The protocol numbers compiled into this module (tests compare them to kaa_wire's)."""
    return {
        "PROTOCOL_VERSION": PROTOCOL_VERSION,
        "HEADER_SIZE": HEADER_SIZE,
        "DEFAULT_MAX_FRAME_SIZE": DEFAULT_MAX_FRAME_SIZE,
        "ABSOLUTE_MAX_FRAME_SIZE": ABSOLUTE_MAX_FRAME_SIZE,
        "MAX_BODY_LENGTH": MAX_BODY_LENGTH,
        "NONCE_SIZE": NONCE_SIZE,
        "RESPONSE_NONCE_SIZE": RESPONSE_NONCE_SIZE,
        "KEY_HASH_SIZE": KEY_HASH_SIZE,
        "X25519_KEY_SIZE": X25519_KEY_SIZE,
        "AEAD_TAG_SIZE": AEAD_TAG_SIZE,
        "MAX_TOKEN_SIZE": MAX_TOKEN_SIZE,
        "MAX_HOST_SIZE": MAX_HOST_SIZE,
        "FIRST_KEY_GENERATION": FIRST_KEY_GENERATION,
        "MAX_ROTATION_CHAIN": MAX_ROTATION_CHAIN,
        "MSG_RESOLVE_REQUEST": MSG_RESOLVE_REQUEST,
        "MSG_RESOLVE_RESPONSE": MSG_RESOLVE_RESPONSE,
        "MSG_REGISTER_REQUEST": MSG_REGISTER_REQUEST,
        "MSG_REGISTER_RESPONSE": MSG_REGISTER_RESPONSE,
        "MSG_ERROR": MSG_ERROR,
        "FLAG_SEALED": FLAG_SEALED,
        "SIG_RSA_PKCS1V15_SHA256": SIG_RSA_PKCS1V15_SHA256,
        "SIG_ED25519": SIG_ED25519,
        "KEX_X25519": KEX_X25519,
        "AEAD_CHACHA20_POLY1305": AEAD_CHACHA20_POLY1305,
        "ENVELOPE_SIZE": ENVELOPE_SIZE,
        "PAYLOAD_FLAG_KEY_IS_HASH": PAYLOAD_FLAG_KEY_IS_HASH,
        "MIN_RSA_BITS": MIN_RSA_BITS,
        "MAX_RSA_BITS": MAX_RSA_BITS,
        "RSA_PUBLIC_EXPONENT": RSA_PUBLIC_EXPONENT,
    }


def _build_info():
    """How this module was built: OpenSSL headers and library, and the debug-checks flag."""
    return {
        "openssl_headers": ssl.OPENSSL_VERSION_NUMBER,
        "openssl_library": ssl.OpenSSL_version(ssl.OPENSSL_VERSION).decode(),
        "debug_checks": bool(ssl.KAA_WIRE_EXT_DEBUG),
    }


include "framing.pyx"
include "registration.pyx"
include "signer.pyx"
include "resolution.pyx"
include "opener.pyx"
include "result.pyx"
include "bench.pyx"
