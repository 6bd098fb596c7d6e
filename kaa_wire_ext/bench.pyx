# Reference loops for benchmarks/ (private: not part of the kaa_wire API). They time
# libcrypto alone, with no Python in the loop, so a benchmark can report its own figure as a
# ratio to the crypto floor measured in the same run (shared/PERF.md).

import time as _time


def _bench_rsa_verify(key_der, data, signature, Py_ssize_t iterations, bint fresh_key=False):
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
    PyObject_GetBuffer(key_der, &key_view, PyBUF_SIMPLE)
    PyObject_GetBuffer(data, &data_view, PyBUF_SIMPLE)
    PyObject_GetBuffer(signature, &signature_view, PyBUF_SIMPLE)
    try:
        if _parse_endpoint_key(
            <const unsigned char *>key_view.buf, key_view.len, &m
        ) != SIG_RSA_PKCS1V15_SHA256:
            raise ValueError("key_der must be a canonical RSA 2048..4096-bit SPKI")
        started = _time.perf_counter()
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
        elapsed = _time.perf_counter() - started
    finally:
        if rsa != NULL:
            ssl.RSA_free(rsa)
        PyBuffer_Release(&key_view)
        PyBuffer_Release(&data_view)
        PyBuffer_Release(&signature_view)
    if failed:
        raise MemoryError()
    return elapsed / max(iterations, 1), passed
