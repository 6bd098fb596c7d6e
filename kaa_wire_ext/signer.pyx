# The Bootstrap signer: RSA PKCS#1 v1.5 SHA-256 or Ed25519, through EVP_DigestSign.
#
# The key is vetted by the pure Signer (kaa_wire._signer), so every key the pure path
# refuses is refused here with the same exception; OpenSSL then loads the canonical PKCS#8
# DER of the key it vetted (its private_key hook). The EVP_PKEY is only read after that, and each sign() call has its own EVP_MD_CTX, so
# one Signer can sign from several threads at once, with the GIL released.

from cryptography.hazmat.primitives import serialization as _serialization


cdef class Signer:
    """Signs with one private key (PEM or DER): RSA PKCS#1 v1.5 SHA-256, or Ed25519.

    ``sign`` is safe to call from several threads at once, so a server can run it on a pool.
    """

    cdef ssl.EVP_PKEY *_pkey
    cdef readonly int algorithm

    def __cinit__(self):
        self._pkey = NULL

    def __init__(self, private_key):
        cdef const unsigned char *p
        cdef long size
        cdef ssl.EVP_PKEY *pkey
        vetted = _pure_signer.Signer(private_key)  # the pure path's checks and errors
        der = vetted.private_key.private_bytes(
            _serialization.Encoding.DER,
            _serialization.PrivateFormat.PKCS8,
            _serialization.NoEncryption(),
        )
        p = <const unsigned char *>PyBytes_AS_STRING(der)
        size = len(der)
        with nogil:
            pkey = ssl.d2i_AutoPrivateKey(NULL, &p, size)
        if pkey == NULL:
            raise LocalProtocolError(_openssl_error("not a usable private key"))
        expected = (
            ssl.EVP_PKEY_RSA if vetted.algorithm == SIG_RSA_PKCS1V15_SHA256 else ssl.EVP_PKEY_ED25519
        )
        if ssl.EVP_PKEY_get_base_id(pkey) != expected:
            ssl.EVP_PKEY_free(pkey)
            raise LocalProtocolError("OpenSSL loaded the private key as another key type")
        if self._pkey != NULL:
            ssl.EVP_PKEY_free(self._pkey)
        self._pkey = pkey
        self.algorithm = vetted.algorithm

    def __dealloc__(self):
        if self._pkey != NULL:
            ssl.EVP_PKEY_free(self._pkey)
            self._pkey = NULL

    def sign(self, data):
        cdef Py_buffer view
        cdef size_t size
        cdef ssl.EVP_MD_CTX *ctx
        cdef const ssl.EVP_MD *md
        cdef int ok
        cdef unsigned char *out
        if self._pkey == NULL:
            raise LocalProtocolError("the signer has no key")
        size = ssl.EVP_PKEY_get_size(self._pkey)
        signature = PyBytes_FromStringAndSize(NULL, size)
        out = <unsigned char *>PyBytes_AS_STRING(signature)
        md = ssl.EVP_sha256() if self.algorithm == SIG_RSA_PKCS1V15_SHA256 else NULL
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            with nogil:
                ctx = ssl.EVP_MD_CTX_new()
                ok = (
                    ctx != NULL
                    and ssl.EVP_DigestSignInit(ctx, NULL, md, NULL, self._pkey) == 1
                    and ssl.EVP_DigestSign(
                        ctx, out, &size,
                        <const unsigned char *>view.buf, view.len,
                    ) == 1
                )
                ssl.EVP_MD_CTX_free(ctx)
        finally:
            PyBuffer_Release(&view)
        if not ok:
            raise InternalError(_openssl_error("signing failed"))
        if <Py_ssize_t>size != len(signature):
            signature = signature[:size]
        return signature
