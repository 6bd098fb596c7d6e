# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Reference loops for benchmarks/ (not part of the kaa_wire API, never imported by it).

They time libcrypto alone, with no Python in the loop, so a benchmark can report its own
figure as a ratio to the crypto floor measured in the same run (benchmarks/README.md). By
default they count this thread's CPU time, as `openssl speed` counts CPU time; pass
clock=time.perf_counter for wall-clock time.

A module of its own, so the production extension carries no benchmark code: setup.py builds
it only with KAA_WIRE_BUILD_BENCH=1 (CI sets it). It times the extension's own key parse and
build, cimported from kaa_wire_ext._ext (declared in _ext.pxd), not a copy of them.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer

from kaa_wire_ext cimport libcrypto as ssl
from kaa_wire_ext._ext cimport KeyMaterial, _build_rsa, _parse_endpoint_key, _verify_signature
from kaa_wire_ext.protocol cimport SIG_RSA_PKCS1V15_SHA256

import time as _time

from kaa_wire._errors import InternalError



cdef int _rsa_material(const Py_buffer *key_view, KeyMaterial *m) except -1:
    """Fill `m` from an RSA SPKI the extension's fast path takes, or raise ValueError."""
    if _parse_endpoint_key(
        <const unsigned char *>key_view.buf, key_view.len, m
    ) != SIG_RSA_PKCS1V15_SHA256:
        raise ValueError("key_der must be a canonical RSA 2048..4096-bit SPKI")
    return 0


def rsa_verify(
    key_der, data, signature, Py_ssize_t iterations, bint fresh_key=False, clock=None
):
    """(seconds per verify, verifies that passed) of SHA-256 + RSA_verify over `data`.

    ``fresh_key``: build the RSA key from the SPKI for every verify (what a first
    registration pays, including OpenSSL's Montgomery set-up), instead of once.
    """
    cdef Py_buffer key_view, data_view, signature_view
    cdef KeyMaterial m
    cdef ssl.RSA *rsa = NULL
    cdef Py_ssize_t i, passed = 0
    cdef int result
    cdef bint failed = False
    clock = clock or _time.thread_time
    PyObject_GetBuffer(key_der, &key_view, PyBUF_SIMPLE)
    PyObject_GetBuffer(data, &data_view, PyBUF_SIMPLE)
    PyObject_GetBuffer(signature, &signature_view, PyBUF_SIMPLE)
    try:
        _rsa_material(&key_view, &m)
        started = clock()
        with nogil:
            for i in range(iterations):
                if rsa == NULL and _build_rsa(&m, &rsa) < 0:
                    failed = True
                    break
                result = _verify_signature(
                    SIG_RSA_PKCS1V15_SHA256, rsa, NULL,
                    <const unsigned char *>data_view.buf, data_view.len,
                    <const unsigned char *>signature_view.buf, signature_view.len,
                )
                passed += result == 1
                if fresh_key:
                    ssl.RSA_free(rsa)
                    rsa = NULL
        elapsed = clock() - started
    finally:
        if rsa != NULL:
            ssl.RSA_free(rsa)
        PyBuffer_Release(&key_view)
        PyBuffer_Release(&data_view)
        PyBuffer_Release(&signature_view)
    if failed:
        raise MemoryError()
    return elapsed / max(iterations, 1), passed


def key_build(key_der, str method, Py_ssize_t iterations, clock=None):
    """Seconds per key build from an RSA SPKI, by `method` (the alternatives measured when
    choosing the registration fast path):

    * ``"d2i_PUBKEY"``: OpenSSL's generic DER decoder (the OSSL_DECODER path on 3.x);
    * ``"RSA_set0_key"``: what kaa_wire_ext does: parse the SPKI here, then RSA_new +
      BN_bin2bn + RSA_set0_key;
    * ``"BN_MONT_CTX_set"``: the Montgomery set-up for n that OpenSSL's first public-key
      operation with a fresh key pays (inside RSA_verify), on its own.
    """
    cdef Py_buffer view
    cdef KeyMaterial m
    cdef Py_ssize_t i
    cdef const unsigned char *p
    cdef ssl.EVP_PKEY *pkey
    cdef ssl.RSA *rsa
    cdef ssl.BIGNUM *n
    cdef ssl.BN_CTX *bn_ctx
    cdef ssl.BN_MONT_CTX *mont
    cdef int kind = 0
    cdef bint failed = False
    methods = ("d2i_PUBKEY", "RSA_set0_key", "BN_MONT_CTX_set")
    if method not in methods:
        raise ValueError(f"method must be one of {methods}")
    kind = methods.index(method)
    clock = clock or _time.thread_time
    PyObject_GetBuffer(key_der, &view, PyBUF_SIMPLE)
    try:
        _rsa_material(&view, &m)
        started = clock()
        with nogil:
            if kind == 0:
                for i in range(iterations):
                    p = <const unsigned char *>view.buf
                    pkey = ssl.d2i_PUBKEY(NULL, &p, view.len)
                    failed = failed or pkey == NULL
                    ssl.EVP_PKEY_free(pkey)
            elif kind == 1:
                for i in range(iterations):
                    rsa = NULL
                    failed = failed or _build_rsa(&m, &rsa) < 0
                    ssl.RSA_free(rsa)
            else:
                n = ssl.BN_bin2bn(m.n, <int>m.n_len, NULL)
                bn_ctx = ssl.BN_CTX_new()
                for i in range(iterations):
                    mont = ssl.BN_MONT_CTX_new()
                    failed = failed or mont == NULL or ssl.BN_MONT_CTX_set(mont, n, bn_ctx) != 1
                    ssl.BN_MONT_CTX_free(mont)
                ssl.BN_CTX_free(bn_ctx)
                ssl.BN_free(n)
            if failed:
                ssl.ERR_clear_error()
        elapsed = clock() - started
    finally:
        PyBuffer_Release(&view)
    if failed:
        raise InternalError(f"{method} failed")
    return elapsed / max(iterations, 1)
