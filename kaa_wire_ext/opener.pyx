# Opening a registration request on the Operations side: X25519 with the node's static key,
# HKDF-SHA256, ChaCha20-Poly1305 (docs/protocol.md, "Sealing"). Mirrors kaa_wire/_opener.py
# check for check, with kaa_wire._errors' messages; the pure class vets the static key.
#
# One nogil block per request does the costly part: the X25519 derive (~31 us of the ~36),
# the key schedule and the AEAD, each on contexts of the call's own; the opener's shared
# contexts are touched only with the GIL held. So one opener serves several threads at once.

from kaa_wire._constants import RESPONSE_KDF_INFO, SEAL_KDF_INFO

# C-level references: no one can rebind them.
cdef bytes _SEAL_KDF_INFO = SEAL_KDF_INFO
cdef bytes _RESPONSE_KDF_INFO = RESPONSE_KDF_INFO

cdef enum:
    _SHA256_BLOCK = 64
    _SHA256_SIZE = 32
    _AEAD_KEY_SIZE = 32
    _AEAD_NONCE_SIZE = 12
    # What _open_sealed returns.
    _OPENED = 0
    _BAD_KEY = 1          # a low-order ephemeral key: the shared secret is all zero
    _BAD_TAG = 2
    _LIBCRYPTO_FAILED = 3

cdef unsigned char _ZERO_NONCE[_AEAD_NONCE_SIZE]  # a C static: all zero

# Fetched once: EVP_chacha20_poly1305() would make every init look the cipher up again.
cdef ssl.EVP_CIPHER *_CHACHA20_POLY1305 = ssl.EVP_CIPHER_fetch(NULL, b"ChaCha20-Poly1305", NULL)
if _CHACHA20_POLY1305 == NULL:
    raise ImportError(_openssl_error("libcrypto has no ChaCha20-Poly1305"))


cdef void _hmac_sha256(
    const unsigned char *key, size_t key_size,
    const unsigned char *a, size_t a_size,
    const unsigned char *b, size_t b_size,
    unsigned char c,
    unsigned char *out,
) noexcept nogil:
    """out = HMAC-SHA256(key, a || b || c), c a single byte; key_size <= the block size.
    ``a`` may be NULL (a_size 0), and ``c`` is left out when zero."""
    cdef unsigned char pad[_SHA256_BLOCK]
    cdef ssl.SHA256_CTX sha
    cdef size_t i
    memset(pad, 0x36, _SHA256_BLOCK)
    for i in range(key_size):
        pad[i] ^= key[i]
    ssl.SHA256_Init(&sha)
    ssl.SHA256_Update(&sha, pad, _SHA256_BLOCK)
    ssl.SHA256_Update(&sha, a, a_size)
    ssl.SHA256_Update(&sha, b, b_size)
    if c:
        ssl.SHA256_Update(&sha, &c, 1)
    ssl.SHA256_Final(out, &sha)
    for i in range(<size_t>_SHA256_BLOCK):
        pad[i] ^= 0x36 ^ 0x5C
    ssl.SHA256_Init(&sha)
    ssl.SHA256_Update(&sha, pad, _SHA256_BLOCK)
    ssl.SHA256_Update(&sha, out, _SHA256_SIZE)
    ssl.SHA256_Final(out, &sha)
    ssl.OPENSSL_cleanse(pad, _SHA256_BLOCK)
    ssl.OPENSSL_cleanse(&sha, sizeof(sha))


cdef void _hkdf64(
    const unsigned char *ikm,  # 32 bytes
    const unsigned char *salt, size_t salt_size,  # at most the SHA-256 block
    const unsigned char *info, size_t info_size,
    unsigned char *okm,
) noexcept nogil:
    """okm (64 bytes) = HKDF-SHA256(ikm, salt, info) with L = 64 (RFC 5869); a shorter L
    is its prefix."""
    cdef unsigned char prk[_SHA256_SIZE]
    _hmac_sha256(salt, salt_size, ikm, _SHA256_SIZE, NULL, 0, 0, prk)
    _hmac_sha256(prk, _SHA256_SIZE, NULL, 0, info, info_size, 1, okm)
    _hmac_sha256(prk, _SHA256_SIZE, okm, _SHA256_SIZE, info, info_size, 2, okm + _SHA256_SIZE)
    ssl.OPENSSL_cleanse(prk, _SHA256_SIZE)


cdef int _aead(
    int encrypt,
    const unsigned char *key,
    const unsigned char *nonce,  # 12 bytes
    const unsigned char *aad1, int aad1_size,
    const unsigned char *aad2, int aad2_size,
    const unsigned char *data, int data_size,
    unsigned char *tag,  # read when decrypting, written when encrypting
    unsigned char *out,
) noexcept nogil:
    """ChaCha20-Poly1305 with aad1 || aad2 as associated data: _OPENED, _BAD_TAG or
    _LIBCRYPTO_FAILED. Empty parts are skipped: the cipher takes an update without input as
    the end of the message. A stream cipher: the update writes all data_size bytes of output,
    and the final call none."""
    cdef ssl.EVP_CIPHER_CTX *ctx = ssl.EVP_CIPHER_CTX_new()
    cdef int size = 0, last = 0
    cdef bint opened
    cdef int result = _LIBCRYPTO_FAILED
    if ctx == NULL:
        return result
    if (
        ssl.EVP_CipherInit_ex(ctx, _CHACHA20_POLY1305, NULL, NULL, NULL, encrypt) == 1
        and ssl.EVP_CIPHER_CTX_ctrl(
            ctx, ssl.EVP_CTRL_AEAD_SET_IVLEN, _AEAD_NONCE_SIZE, NULL
        ) == 1
        and ssl.EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, encrypt) == 1
        and (aad1_size == 0 or ssl.EVP_CipherUpdate(ctx, NULL, &size, aad1, aad1_size) == 1)
        and (aad2_size == 0 or ssl.EVP_CipherUpdate(ctx, NULL, &size, aad2, aad2_size) == 1)
        and (data_size == 0 or ssl.EVP_CipherUpdate(ctx, out, &size, data, data_size) == 1)
    ):
        if encrypt:
            if (
                ssl.EVP_CipherFinal_ex(ctx, out + data_size, &last) == 1
                and ssl.EVP_CIPHER_CTX_ctrl(ctx, ssl.EVP_CTRL_AEAD_GET_TAG, AEAD_TAG_SIZE, tag) == 1
            ):
                result = _OPENED
        elif ssl.EVP_CIPHER_CTX_ctrl(ctx, ssl.EVP_CTRL_AEAD_SET_TAG, AEAD_TAG_SIZE, tag) == 1:
            opened = ssl.EVP_CipherFinal_ex(ctx, out + data_size, &last) == 1
            result = _OPENED if opened else _BAD_TAG
    ssl.EVP_CIPHER_CTX_free(ctx)
    return result


cdef int _open_sealed(
    ssl.EVP_PKEY_CTX *agreement,  # derive-ready, static key and the request's ephemeral key
    const unsigned char *salt,  # ephemeral public key || server public key
    const unsigned char *info, size_t info_size,
    const unsigned char *header, int header_size,
    const unsigned char *body, int body_size,
    unsigned char *plaintext,
    unsigned char *response_secret,
) noexcept nogil:
    """X25519 + HKDF + unseal of one request body: _OPENED, _BAD_KEY, _BAD_TAG or
    _LIBCRYPTO_FAILED."""
    cdef unsigned char shared[X25519_KEY_SIZE]
    cdef unsigned char okm[2 * _AEAD_KEY_SIZE]
    cdef size_t shared_size = X25519_KEY_SIZE
    cdef int result = _BAD_KEY
    # OpenSSL refuses to derive an all-zero secret (RFC 7748 section 6.1), as cryptography
    # does on the pure path.
    if ssl.EVP_PKEY_derive(agreement, shared, &shared_size) == 1 and shared_size == X25519_KEY_SIZE:
        _hkdf64(shared, salt, 2 * X25519_KEY_SIZE, info, info_size, okm)
        # The request key seals one message only (its ephemeral key is fresh): zero nonce.
        result = _aead(
            0, okm, _ZERO_NONCE, header, header_size, body, ENVELOPE_SIZE,
            body + ENVELOPE_SIZE, body_size - ENVELOPE_SIZE - AEAD_TAG_SIZE,
            <unsigned char *>body + body_size - AEAD_TAG_SIZE, plaintext,
        )
        memcpy(response_secret, okm + _AEAD_KEY_SIZE, _AEAD_KEY_SIZE)
    ssl.OPENSSL_cleanse(shared, X25519_KEY_SIZE)
    ssl.OPENSSL_cleanse(okm, sizeof(okm))
    return result


cdef class RegistrationOpener:
    """An Operations node's static X25519 key, ready to open REGISTER_REQUEST bodies.

    Built once per node; ``open`` keeps no state, so one opener serves every connection
    (and several threads at once: the GIL is released while it works).
    """

    # Two contexts made once, used only with the GIL held, so never by two threads at once:
    # a derive context on the static key that each request duplicates (0.1 us, where a new
    # context and its init cost ~1.5 us), and a key-import context for the ephemeral keys
    # (EVP_PKEY_new_raw_public_key sets one up per call: ~3 us against ~1.2 us).
    cdef ssl.EVP_PKEY_CTX *_agreement
    cdef ssl.EVP_PKEY_CTX *_importer
    cdef readonly bytes public_key

    def __cinit__(self):
        self._agreement = NULL
        self._importer = NULL

    def __init__(self, static_key):
        cdef ssl.EVP_PKEY *pkey
        cdef ssl.EVP_PKEY_CTX *agreement = NULL
        cdef ssl.EVP_PKEY_CTX *importer = NULL
        vetted = _pure_opener.RegistrationOpener(static_key)  # the pure path's checks
        raw = static_key.private_bytes_raw()
        pkey = ssl.EVP_PKEY_new_raw_private_key(
            ssl.EVP_PKEY_X25519, NULL, <const unsigned char *>PyBytes_AS_STRING(raw), len(raw)
        )
        if pkey != NULL:
            agreement = ssl.EVP_PKEY_CTX_new(pkey, NULL)  # holds its own reference
            ssl.EVP_PKEY_free(pkey)
            importer = ssl.EVP_PKEY_CTX_new_from_name(NULL, b"X25519", NULL)
        if (
            agreement == NULL
            or ssl.EVP_PKEY_derive_init(agreement) != 1
            or importer == NULL
            or ssl.EVP_PKEY_fromdata_init(importer) != 1
        ):
            ssl.EVP_PKEY_CTX_free(agreement)
            ssl.EVP_PKEY_CTX_free(importer)
            raise LocalProtocolError(_openssl_error("not a usable X25519 private key"))
        self._free()
        self._agreement = agreement
        self._importer = importer
        self.public_key = vetted.public_key

    def __dealloc__(self):
        self._free()

    cdef void _free(self) noexcept:
        ssl.EVP_PKEY_CTX_free(self._agreement)
        ssl.EVP_PKEY_CTX_free(self._importer)
        self._agreement = NULL
        self._importer = NULL

    cdef ssl.EVP_PKEY_CTX *_agreement_with(self, const unsigned char *ephemeral) noexcept:
        """A derive context of its own for one request (NULL: libcrypto failed). GIL held."""
        cdef ssl.OSSL_PARAM params[2]
        cdef ssl.EVP_PKEY *peer = NULL
        cdef ssl.EVP_PKEY_CTX *ctx = NULL
        params[0] = ssl.OSSL_PARAM_construct_octet_string(
            ssl.OSSL_PKEY_PARAM_PUB_KEY, <void *>ephemeral, X25519_KEY_SIZE
        )
        params[1] = ssl.OSSL_PARAM_construct_end()
        if ssl.EVP_PKEY_fromdata(self._importer, &peer, ssl.EVP_PKEY_PUBLIC_KEY, params) == 1:
            ctx = ssl.EVP_PKEY_CTX_dup(self._agreement)
            if ctx != NULL and ssl.EVP_PKEY_derive_set_peer(ctx, peer) != 1:
                ssl.EVP_PKEY_CTX_free(ctx)
                ctx = NULL
        ssl.EVP_PKEY_free(peer)  # the context holds its own reference
        return ctx

    def open(self, header, body):
        """``(payload plaintext, ephemeral public key, response secret)`` of one request.

        ``header`` and ``body`` are the request frame's; the header is part of the AAD.
        Raises MalformedFrame, UnsupportedAlgorithm or BadSeal, checked in that order.
        """
        cdef Py_buffer header_view, body_view
        cdef const unsigned char *data
        cdef unsigned char *plaintext_out
        cdef unsigned char *response_secret_out
        cdef unsigned char salt[2 * X25519_KEY_SIZE]
        cdef const unsigned char *info = _SEAL_KDF_INFO
        cdef size_t info_size = len(_SEAL_KDF_INFO)
        cdef ssl.EVP_PKEY_CTX *agreement
        cdef int result = _LIBCRYPTO_FAILED
        if self._agreement == NULL:
            raise LocalProtocolError("the opener has no key")
        PyObject_GetBuffer(header, &header_view, PyBUF_SIMPLE)
        try:
            PyObject_GetBuffer(body, &body_view, PyBUF_SIMPLE)
            try:
                data = <const unsigned char *>body_view.buf
                if body_view.len < ENVELOPE_SIZE + AEAD_TAG_SIZE:
                    raise register_request_too_short()
                if data[0] != KEX_X25519:
                    raise unsupported_key_exchange(data[0])
                if data[1] != AEAD_CHACHA20_POLY1305:
                    raise unsupported_aead(data[1])
                if body_view.len > INT_MAX or header_view.len > INT_MAX:
                    raise OverflowError("data or associated data too long")
                ephemeral = PyBytes_FromStringAndSize(<const char *>data + 2, X25519_KEY_SIZE)
                memcpy(salt, data + 2, X25519_KEY_SIZE)
                memcpy(salt + X25519_KEY_SIZE, PyBytes_AS_STRING(self.public_key), X25519_KEY_SIZE)
                plaintext = PyBytes_FromStringAndSize(
                    NULL, body_view.len - ENVELOPE_SIZE - AEAD_TAG_SIZE
                )
                response_secret = PyBytes_FromStringAndSize(NULL, _AEAD_KEY_SIZE)
                plaintext_out = <unsigned char *>PyBytes_AS_STRING(plaintext)
                response_secret_out = <unsigned char *>PyBytes_AS_STRING(response_secret)
                agreement = self._agreement_with(salt)
                if agreement != NULL:
                    with nogil:
                        result = _open_sealed(
                            agreement, salt, info, info_size,
                            <const unsigned char *>header_view.buf, header_view.len,
                            data, body_view.len, plaintext_out, response_secret_out,
                        )
                        ssl.EVP_PKEY_CTX_free(agreement)
            finally:
                PyBuffer_Release(&body_view)
        finally:
            PyBuffer_Release(&header_view)
        if result == _OPENED:
            return plaintext, ephemeral, response_secret
        ssl.ERR_clear_error()
        if result == _BAD_KEY:
            raise invalid_ephemeral_key()
        if result == _BAD_TAG:
            raise sealed_payload_does_not_authenticate()
        raise InternalError(_openssl_error("opening a registration failed"))


def seal_response(response_secret, plaintext, header, response_nonce):
    """The body of one sealed answer: ``response_nonce || ciphertext || tag``.

    ``response_nonce`` must be fresh random bytes for every answer: the answer's key and
    nonce derive from it (docs/protocol.md 5.1).
    """
    cdef Py_buffer secret_view, plaintext_view, header_view, nonce_view
    cdef unsigned char okm[2 * _SHA256_SIZE]
    cdef const unsigned char *info = _RESPONSE_KDF_INFO
    cdef size_t info_size = len(_RESPONSE_KDF_INFO)
    cdef unsigned char *out
    cdef int result
    PyObject_GetBuffer(response_secret, &secret_view, PyBUF_SIMPLE)
    try:
        if secret_view.len != _AEAD_KEY_SIZE:
            raise bad_response_secret_size(_AEAD_KEY_SIZE)
        PyObject_GetBuffer(response_nonce, &nonce_view, PyBUF_SIMPLE)
        try:
            if nonce_view.len != RESPONSE_NONCE_SIZE:
                raise bad_response_nonce_size(RESPONSE_NONCE_SIZE)
            PyObject_GetBuffer(plaintext, &plaintext_view, PyBUF_SIMPLE)
            try:
                PyObject_GetBuffer(header, &header_view, PyBUF_SIMPLE)
                try:
                    if (
                        plaintext_view.len > INT_MAX - AEAD_TAG_SIZE - RESPONSE_NONCE_SIZE
                        or header_view.len > INT_MAX
                    ):
                        raise OverflowError("data or associated data too long")
                    sealed = PyBytes_FromStringAndSize(
                        NULL, RESPONSE_NONCE_SIZE + plaintext_view.len + AEAD_TAG_SIZE
                    )
                    out = <unsigned char *>PyBytes_AS_STRING(sealed)
                    with nogil:
                        memcpy(out, nonce_view.buf, RESPONSE_NONCE_SIZE)
                        _hkdf64(
                            <const unsigned char *>secret_view.buf,
                            <const unsigned char *>nonce_view.buf, RESPONSE_NONCE_SIZE,
                            info, info_size, okm,
                        )
                        out += RESPONSE_NONCE_SIZE
                        result = _aead(
                            1, okm, okm + _AEAD_KEY_SIZE,
                            <const unsigned char *>header_view.buf, header_view.len, NULL, 0,
                            <const unsigned char *>plaintext_view.buf, plaintext_view.len,
                            out + plaintext_view.len, out,
                        )
                        ssl.OPENSSL_cleanse(okm, sizeof(okm))
                finally:
                    PyBuffer_Release(&header_view)
            finally:
                PyBuffer_Release(&plaintext_view)
        finally:
            PyBuffer_Release(&nonce_view)
    finally:
        PyBuffer_Release(&secret_view)
    if result != _OPENED:
        raise InternalError(_openssl_error("sealing a response failed"))
    return sealed
