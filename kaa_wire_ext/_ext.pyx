# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled hot paths of kaa_wire, on OpenSSL libcrypto.

Same names and behaviour as the pure-Python modules ``kaa_wire._framing``,
``kaa_wire._registration``, ``kaa_wire._signer`` and ``kaa_wire._opener`` (and the
resolution functions and ``encode_registration_result`` of ``kaa_wire._codec``), and the
same exception classes and messages (the classes imported from ``kaa_wire._errors``, never
redefined, and every shared message built by its factories). The tests/test_parity_*.py
modules hold the two to each other, differentially.

Layout, as in asyncpg: this file only declares the module and includes the parts; the C-level
functions and structs one part uses from another are declared in ``_ext.pxd`` (which includes
``der.pxd`` and ``endpoint_key.pxd``), and so can also be cimported by another module:

* ``framing.pyx``               Framer, encode_frame
* ``registration_payload.pyx``  parse_registration_payload
* ``der.pyx``                   the DER walker and canonical re-encoder endpoint keys need
* ``endpoint_key.pyx``          endpoint key recognition, vetting, building and verifying
* ``verifier.pyx``              RegistrationVerifier and its key cache
* ``verify_batch.pyx``          verify_batch
* ``signer.pyx``                Signer
* ``resolution.pyx``            decode_resolve_request, resolve_response_signed_part,
                                resolve_signed_data, encode_resolve_response
* ``opener.pyx``                RegistrationOpener, seal_response
* ``result.pyx``                encode_registration_result

The benchmarks' reference loops are not here: they are ``kaa_wire_ext._bench`` (``_bench.pyx``,
built only with ``KAA_WIRE_BUILD_BENCH=1``), which cimports what it needs from ``_ext.pxd``.

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
    InternalError,
    LocalProtocolError,
    MalformedFrame,
    UnsupportedAlgorithm,
    algorithm_does_not_fit_key,
    bad_max_frame_size,
    bad_response_nonce_size,
    bad_response_secret_size,
    flags_not_allowed,
    frame_too_large,
    invalid_ephemeral_key,
    invalid_registration_payload,
    negative_cache_size,
    proof_does_not_verify,
    reconnect_needs_stored_key,
    register_request_too_short,
    sealed_payload_does_not_authenticate,
    stored_key_does_not_match,
    trailing_bytes,
    truncated_or_invalid,
    unknown_message_type,
    unknown_registration_flags,
    unsupported_aead,
    unsupported_key_exchange,
    unsupported_version,
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
        "SIG_ECDSA_P256_SHA256": SIG_ECDSA_P256_SHA256,
        "P256_SIGNATURE_SIZE": P256_SIGNATURE_SIZE,
        "KEX_X25519": KEX_X25519,
        "AEAD_CHACHA20_POLY1305": AEAD_CHACHA20_POLY1305,
        "ENVELOPE_SIZE": ENVELOPE_SIZE,
        "PAYLOAD_FLAG_KEY_IS_HASH": PAYLOAD_FLAG_KEY_IS_HASH,
        "SIGNATURE_LENGTH_PREFIX": SIGNATURE_LENGTH_PREFIX,
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
include "registration_payload.pyx"
include "der.pyx"
include "endpoint_key.pyx"
include "verifier.pyx"
include "verify_batch.pyx"
include "signer.pyx"
include "resolution.pyx"
include "opener.pyx"
include "result.pyx"
