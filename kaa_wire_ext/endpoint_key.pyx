# Endpoint keys: recognise, vet and build the public key a registration carries, and verify
# with it. Mirrors kaa_wire/_registration.py's load_endpoint_key; declared in
# endpoint_key.pxd (RegistrationVerifier, verify_batch and kaa_wire_ext._bench use it).
#
# The pure path accepts exactly three shapes of key (it loads the DER with
# `cryptography`, vets it, then demands that re-encoding gives the same bytes back):
#   * RSA, 2048..4096 bits, e = 65537: SEQUENCE { SEQUENCE { rsaEncryption, NULL },
#       BIT STRING { SEQUENCE { INTEGER n, INTEGER e } } }, all in DER;
#   * Ed25519: the fixed 12-byte prefix and 32 key bytes, a canonical point encoding that is
#       not one of the 8 small-order points.
#   * ECDSA P-256: the fixed 27-byte prefix (kaa_wire._constants.P256_SPKI_PREFIX, ending in
#       the 0x04 of an uncompressed point) and X || Y, a point on the curve (OpenSSL's
#       EC_POINT_oct2point checks X, Y < p and the curve equation).
# The fast path here recognises the ordinary cases of those shapes directly: the RSA
# structure is walked to find n and e, re-encoded from them, and must equal the input byte
# for byte (the pure path's canonical-DER rule, by construction); the key is then built with
# RSA_new/RSA_set0_key, which on OpenSSL 3.0 costs well under a microsecond where
# d2i_PUBKEY costs ~100 us. Every other input goes to the pure loader, which decides: a
# rejection raises the pure path's exception (class and message), and a key it accepts is
# built from the (n, e) or raw bytes it returns. So the acceptance policy lives in one place,
# kaa_wire/_registration.py, and a rejected key costs the pure loader's few microseconds.
# "Ordinary" RSA means n odd and e = RSA_PUBLIC_EXPONENT; "ordinary" Ed25519 means y < p,
# no sign bit on x = 0, and not in kaa_wire._constants.ED25519_SMALL_ORDER_KEYS (copied
# below at import); "ordinary" P-256 means the prefix and a point on the curve. Anything else is the pure loader's call, and it refuses it: a wrong
# copy here could only send a key the pure loader refuses through the fast path, which the
# differential tests (tests/test_endpoint_keys.py, tests/test_parity_endpoint_keys.py) would see.

from cryptography.hazmat.primitives.asymmetric import rsa as _rsa

from cryptography.hazmat.primitives import serialization as _key_serialization
from cryptography.hazmat.primitives.asymmetric import ec as _ec

from kaa_wire._constants import ED25519_SMALL_ORDER_KEYS as _ED25519_SMALL_ORDER_KEYS
from kaa_wire._constants import P256_SPKI_PREFIX as _P256_SPKI_PREFIX_BYTES

# The whole Ed25519 SPKI prefix.
cdef const unsigned char *_ED25519_PREFIX = b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00"
cdef Py_ssize_t _ED25519_PREFIX_SIZE = 12
cdef Py_ssize_t _ED25519_KEY_SIZE = 32
# The small-order points, copied once from their one source (kaa_wire._constants).
cdef enum:
    _ED25519_SMALL_ORDER_COUNT = 8
cdef unsigned char _ED25519_SMALL_ORDER[_ED25519_SMALL_ORDER_COUNT][32]


cdef int _copy_small_order_points() except -1:
    if len(_ED25519_SMALL_ORDER_KEYS) != _ED25519_SMALL_ORDER_COUNT:
        raise ImportError("kaa_wire._constants.ED25519_SMALL_ORDER_KEYS: expected 8 points")
    for i, point in enumerate(_ED25519_SMALL_ORDER_KEYS):
        if len(point) != _ED25519_KEY_SIZE:
            raise ImportError(
                "kaa_wire._constants.ED25519_SMALL_ORDER_KEYS: a point is not 32 bytes"
            )
        memcpy(_ED25519_SMALL_ORDER[i], PyBytes_AS_STRING(point), _ED25519_KEY_SIZE)
    return 0


_copy_small_order_points()

# The P-256 SPKI prefix (up to and including the point's 0x04), copied once from its one
# source; then the 64 bytes X || Y.
cdef enum:
    _P256_PREFIX_SIZE = 27
    _P256_POINT_SIZE = 65      # 0x04 || X || Y
cdef unsigned char _P256_PREFIX[_P256_PREFIX_SIZE]
# The curve, made once: EC_POINT_oct2point only reads it, from any thread.
cdef ssl.EC_GROUP *_P256_GROUP = NULL


cdef int _init_p256() except -1:
    global _P256_GROUP
    if len(_P256_SPKI_PREFIX_BYTES) != _P256_PREFIX_SIZE:
        raise ImportError("kaa_wire._constants.P256_SPKI_PREFIX: expected 27 bytes")
    memcpy(_P256_PREFIX, PyBytes_AS_STRING(_P256_SPKI_PREFIX_BYTES), _P256_PREFIX_SIZE)
    _P256_GROUP = ssl.EC_GROUP_new_by_curve_name(ssl.NID_X9_62_prime256v1)
    if _P256_GROUP == NULL:
        ssl.ERR_clear_error()
        raise ImportError("OpenSSL has no P-256 (prime256v1) curve")
    return 0


_init_p256()


cdef bint _p256_point_is_ordinary(const unsigned char *point) noexcept nogil:
    """An uncompressed point (65 bytes, 0x04 first) with X, Y < p on P-256: what the pure
    loader accepts after the prefix. Not the point at infinity, which has no such encoding."""
    cdef ssl.EC_POINT *p = ssl.EC_POINT_new(_P256_GROUP)
    cdef bint ok
    if p == NULL:
        ssl.ERR_clear_error()
        return False  # then the pure loader decides
    ok = ssl.EC_POINT_oct2point(_P256_GROUP, p, point, _P256_POINT_SIZE, NULL) == 1
    ssl.EC_POINT_free(p)
    if not ok:
        ssl.ERR_clear_error()
    return ok


cdef inline int _bit_length(unsigned char byte) noexcept nogil:
    cdef int bits = 0
    while byte:
        bits += 1
        byte >>= 1
    return bits


cdef bint _ed25519_point_is_ordinary(const unsigned char *raw) noexcept nogil:
    """Canonical (y < p = 2^255 - 19; sign bit clear when x = 0, i.e. when y = 1 or p - 1)
    and not one of the small-order points: what the pure loader accepts."""
    cdef int i
    cdef bint sign = raw[31] >> 7
    # y >= p (ed ff .. ff 7f, little-endian) needs bytes 1..31 all ones, then byte 0 >= 0xed
    cdef bint high_all_ones = (raw[31] & 0x7F) == 0x7F
    cdef bint y_is_one, y_is_p_minus_one
    for i in range(1, 31):
        if raw[i] != 0xFF:
            high_all_ones = False
            break
    if high_all_ones and raw[0] >= 0xED:  # y >= p
        return False
    if sign:
        y_is_p_minus_one = high_all_ones and raw[0] == 0xEC
        y_is_one = raw[0] == 1 and (raw[31] & 0x7F) == 0
        for i in range(1, 31):
            if raw[i]:
                y_is_one = False
                break
        if y_is_one or y_is_p_minus_one:
            return False
    for i in range(_ED25519_SMALL_ORDER_COUNT):
        if memcmp(raw, _ED25519_SMALL_ORDER[i], _ED25519_KEY_SIZE) == 0:
            return False
    return True


cdef int _parse_endpoint_key(
    const unsigned char *der, Py_ssize_t size, KeyMaterial *m
) noexcept nogil:
    """Fill `m` and return its kind when `der` is an ordinary key the pure path accepts;
    else 0 (then the pure loader decides).

    Only canonical DER of an Ed25519 key with an ordinary point, of a P-256 key on the
    curve, or of an RSA 2048..4096-bit key with n odd and e = RSA_PUBLIC_EXPONENT, returns
    non-zero.
    """
    cdef Py_ssize_t header, length, rest, bits, i
    cdef const unsigned char *p
    cdef uint64_t e = 0
    m.kind = 0
    if size == _P256_PREFIX_SIZE - 1 + _P256_POINT_SIZE and memcmp(
        der, _P256_PREFIX, _P256_PREFIX_SIZE
    ) == 0:
        if not _p256_point_is_ordinary(der + _P256_PREFIX_SIZE - 1):
            return 0  # the pure loader refuses it, with its message
        m.raw = der + _P256_PREFIX_SIZE - 1
        m.kind = SIG_ECDSA_P256_SHA256
        return m.kind
    if size == _ED25519_PREFIX_SIZE + _ED25519_KEY_SIZE and memcmp(
        der, _ED25519_PREFIX, _ED25519_PREFIX_SIZE
    ) == 0:
        if not _ed25519_point_is_ordinary(der + _ED25519_PREFIX_SIZE):
            return 0  # the pure loader refuses it, with its message
        m.raw = der + _ED25519_PREFIX_SIZE
        m.kind = SIG_ED25519
        return m.kind
    # SubjectPublicKeyInfo: the whole input.
    header = _der_header(der, size, 0x30, &length)
    if header < 0 or header + length != size:
        return 0
    p = der + header
    rest = length
    # AlgorithmIdentifier: skipped here, compared byte for byte by the re-encoding.
    header = _der_header(p, rest, 0x30, &length)
    if header < 0:
        return 0
    p += header + length
    rest -= header + length
    # BIT STRING with no unused bits, holding RSAPublicKey.
    header = _der_header(p, rest, 0x03, &length)
    if header < 0 or length < 1 or p[header] != 0:
        return 0
    p += header + 1
    rest = length - 1
    header = _der_header(p, rest, 0x30, &length)
    if header < 0:
        return 0
    p += header
    rest = length
    header = _der_header(p, rest, 0x02, &length)
    if header < 0 or length < 1 or p[header] & 0x80:  # n must be positive
        return 0
    m.n = p + header
    m.n_len = length
    p += header + length
    rest -= header + length
    header = _der_header(p, rest, 0x02, &length)
    if header < 0 or length < 1 or p[header] & 0x80:  # e must not be negative
        return 0
    m.e = p + header
    m.e_len = length
    while m.n_len and m.n[0] == 0:
        m.n += 1
        m.n_len -= 1
    while m.e_len and m.e[0] == 0:
        m.e += 1
        m.e_len -= 1
    if m.n_len == 0:
        return 0
    bits = (m.n_len - 1) * 8 + _bit_length(m.n[0])
    if not MIN_RSA_BITS <= bits <= MAX_RSA_BITS:
        return 0  # the pure loader raises UnsupportedAlgorithm for it (or MalformedFrame)
    if not (m.n[m.n_len - 1] & 1) or not (1 <= m.e_len <= 8):
        return 0  # not an ordinary key: the pure loader's call
    for i in range(m.e_len):
        e = (e << 8) | m.e[i]
    if e != RSA_PUBLIC_EXPONENT:
        return 0
    if not _rsa_spki_is_canonical(der, size, m.n, m.n_len, m.e, m.e_len):
        return 0
    m.kind = SIG_RSA_PKCS1V15_SHA256
    return m.kind


cdef int _build_rsa(const KeyMaterial *m, ssl.RSA **out) noexcept nogil:
    """An RSA public key from (n, e); -1 (error queue cleared) when OpenSSL fails."""
    cdef ssl.BIGNUM *n = ssl.BN_bin2bn(m.n, <int>m.n_len, NULL)
    cdef ssl.BIGNUM *e = ssl.BN_bin2bn(m.e, <int>m.e_len, NULL)
    cdef ssl.RSA *rsa = ssl.RSA_new()
    if n == NULL or e == NULL or rsa == NULL or ssl.RSA_set0_key(rsa, n, e, NULL) != 1:
        ssl.BN_free(n)
        ssl.BN_free(e)
        ssl.RSA_free(rsa)
        ssl.ERR_clear_error()
        return -1
    out[0] = rsa
    return 0


cdef ssl.EVP_PKEY *_build_ed25519(const KeyMaterial *m) noexcept nogil:
    """An Ed25519 public key, or NULL (error queue cleared): such a key verifies nothing,
    as in the pure path, where OpenSSL takes any 32 bytes and fails at verify time."""
    cdef ssl.EVP_PKEY *pkey = ssl.EVP_PKEY_new_raw_public_key(
        ssl.EVP_PKEY_ED25519, NULL, m.raw, _ED25519_KEY_SIZE
    )
    if pkey == NULL:
        ssl.ERR_clear_error()
    return pkey


cdef ssl.EVP_PKEY *_build_p256(const KeyMaterial *m) noexcept nogil:
    """A P-256 public key from its vetted 65-byte point, or NULL (error queue cleared) when
    OpenSSL fails: the legacy EC_KEY inside an EVP_PKEY, so the verify below can take it
    back with EVP_PKEY_get0_EC_KEY and call ECDSA_do_verify, as RSA keys use RSA_verify.
    The curve is copied from the shared group (about 1 us) rather than made by name (about
    11 us with OpenSSL 3.0: most of a fresh key's cost)."""
    cdef ssl.EC_KEY *ec = ssl.EC_KEY_new()
    cdef ssl.EVP_PKEY *pkey = NULL
    if (
        ec != NULL
        and ssl.EC_KEY_set_group(ec, _P256_GROUP) == 1
        and ssl.EC_KEY_oct2key(ec, m.raw, _P256_POINT_SIZE, NULL) == 1
    ):
        pkey = ssl.EVP_PKEY_new()
        if pkey != NULL and ssl.EVP_PKEY_set1_EC_KEY(pkey, ec) != 1:
            ssl.EVP_PKEY_free(pkey)
            pkey = NULL
    ssl.EC_KEY_free(ec)  # the EVP_PKEY holds its own reference
    if pkey == NULL:
        ssl.ERR_clear_error()
    return pkey


cdef int _verify_p256(
    ssl.EVP_PKEY *pkey, const unsigned char *digest,
    const unsigned char *signature, size_t signature_len,
) noexcept nogil:
    """1 when r || s verifies over the SHA-256 digest, 0 when not (any length but 64, r or s
    outside [1, n - 1], which ECDSA_do_verify refuses itself), -1 when out of memory."""
    cdef ssl.ECDSA_SIG *sig
    cdef ssl.BIGNUM *r
    cdef ssl.BIGNUM *s
    cdef int ok
    if signature_len != P256_SIGNATURE_SIZE:
        return 0
    sig = ssl.ECDSA_SIG_new()
    r = ssl.BN_bin2bn(signature, P256_SIGNATURE_SIZE // 2, NULL)
    s = ssl.BN_bin2bn(signature + P256_SIGNATURE_SIZE // 2, P256_SIGNATURE_SIZE // 2, NULL)
    if sig == NULL or r == NULL or s == NULL or ssl.ECDSA_SIG_set0(sig, r, s) != 1:
        ssl.BN_free(r)
        ssl.BN_free(s)
        ssl.ECDSA_SIG_free(sig)
        ssl.ERR_clear_error()
        return -1
    # ECDSA_do_verify only reads the key; its prototype lacks the const.
    ok = ssl.ECDSA_do_verify(
        digest, 32, sig, <ssl.EC_KEY *>ssl.EVP_PKEY_get0_EC_KEY(pkey)
    ) == 1
    ssl.ECDSA_SIG_free(sig)  # frees r and s
    return ok


cdef int _verify_signature(
    int kind, ssl.RSA *rsa, ssl.EVP_PKEY *pkey,
    const unsigned char *data, size_t data_len,
    const unsigned char *signature, size_t signature_len,
) noexcept nogil:
    """1 when valid, 0 when not (any OpenSSL failure), -1 when out of memory."""
    cdef unsigned char digest[32]
    cdef ssl.EVP_MD_CTX *ctx
    cdef int ok
    if kind == SIG_RSA_PKCS1V15_SHA256:
        if signature_len > UINT_MAX:
            return 0
        ssl.SHA256(data, data_len, digest)
        ok = ssl.RSA_verify(
            ssl.NID_sha256, digest, 32, signature, <unsigned int>signature_len, rsa
        ) == 1
    elif kind == SIG_ECDSA_P256_SHA256:
        if pkey == NULL:
            return 0
        ssl.SHA256(data, data_len, digest)
        ok = _verify_p256(pkey, digest, signature, signature_len)
        if ok < 0:
            return -1
    else:
        if pkey == NULL:
            return 0
        ctx = ssl.EVP_MD_CTX_new()
        if ctx == NULL:
            ssl.ERR_clear_error()
            return -1
        ok = (
            ssl.EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pkey) == 1
            and ssl.EVP_DigestVerify(ctx, signature, signature_len, data, data_len) == 1
        )
        ssl.EVP_MD_CTX_free(ctx)
    if not ok:
        ssl.ERR_clear_error()
    return ok


cdef class _EndpointKey:
    """A vetted endpoint public key, ready to verify (what RegistrationVerifier caches)."""

    cdef int kind
    cdef ssl.RSA *rsa
    cdef ssl.EVP_PKEY *pkey

    def __dealloc__(self):
        if self.rsa != NULL:
            ssl.RSA_free(self.rsa)
        if self.pkey != NULL:
            ssl.EVP_PKEY_free(self.pkey)

    cdef int verify(self, object data, object signature) except -1:
        """1 or 0; the GIL is released for the digest and the public-key operation."""
        cdef Py_buffer data_view, signature_view
        cdef int result
        PyObject_GetBuffer(signature, &signature_view, PyBUF_SIMPLE)
        try:
            PyObject_GetBuffer(data, &data_view, PyBUF_SIMPLE)
            try:
                with nogil:
                    result = _verify_signature(
                        self.kind, self.rsa, self.pkey,
                        <const unsigned char *>data_view.buf, data_view.len,
                        <const unsigned char *>signature_view.buf, signature_view.len,
                    )
            finally:
                PyBuffer_Release(&data_view)
        finally:
            PyBuffer_Release(&signature_view)
        if result < 0:
            raise MemoryError()
        return result


cdef int _material_from_pure(object key_der, KeyMaterial *m, list keep) except -1:
    """Let the pure loader judge a key the fast path does not take.

    Raises what the pure path raises for it; when it accepts the key, fills `m` from the
    loaded key (the byte strings `m` points into are appended to `keep`).
    """
    key = _pure_registration.load_endpoint_key(key_der)
    if isinstance(key, _rsa.RSAPublicKey):
        numbers = key.public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        keep.append(n)
        keep.append(e)
        m.n = <const unsigned char *>PyBytes_AS_STRING(n)
        m.n_len = len(n)
        m.e = <const unsigned char *>PyBytes_AS_STRING(e)
        m.e_len = len(e)
        m.kind = SIG_RSA_PKCS1V15_SHA256
    elif isinstance(key, _ec.EllipticCurvePublicKey):
        raw = key.public_bytes(
            _key_serialization.Encoding.X962, _key_serialization.PublicFormat.UncompressedPoint
        )
        if len(raw) != _P256_POINT_SIZE:
            raise InternalError("unexpected endpoint key from the pure loader")
        keep.append(raw)
        m.raw = <const unsigned char *>PyBytes_AS_STRING(raw)
        m.kind = SIG_ECDSA_P256_SHA256
    else:
        raw = key.public_bytes_raw()  # else the pure loader returns an Ed25519 key
        if len(raw) != _ED25519_KEY_SIZE:
            raise InternalError("unexpected endpoint key from the pure loader")
        keep.append(raw)
        m.raw = <const unsigned char *>PyBytes_AS_STRING(raw)
        m.kind = SIG_ED25519
    return 0


cdef _EndpointKey _key_from_material(const KeyMaterial *m):
    # Both builds cost well under a microsecond: not worth a GIL round trip.
    cdef _EndpointKey key = _EndpointKey.__new__(_EndpointKey)
    key.kind = m.kind
    if m.kind == SIG_RSA_PKCS1V15_SHA256:
        if _build_rsa(m, &key.rsa) < 0:
            raise MemoryError()
    elif m.kind == SIG_ECDSA_P256_SHA256:
        key.pkey = _build_p256(m)  # the point is vetted: only memory can fail
        if key.pkey == NULL:
            raise MemoryError()
    else:
        key.pkey = _build_ed25519(m)
    return key


cdef _EndpointKey _load_endpoint_key(object key_der):
    """Load and vet an endpoint key: canonical DER, RSA 2048-4096 bits, Ed25519, P-256."""
    cdef Py_buffer view
    cdef KeyMaterial m
    cdef list keep = []
    if PyObject_CheckBuffer(key_der):
        PyObject_GetBuffer(key_der, &view, PyBUF_SIMPLE)
        try:
            if _parse_endpoint_key(<const unsigned char *>view.buf, view.len, &m):
                return _key_from_material(&m)
        finally:
            PyBuffer_Release(&view)
    _material_from_pure(key_der, &m, keep)
    return _key_from_material(&m)


cdef inline bint _algorithm_fits(int kind, object algorithm) except -1:
    # Each kind is the id of the one signature algorithm its keys sign with.
    return algorithm == kind
