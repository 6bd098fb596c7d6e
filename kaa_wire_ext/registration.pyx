# Registration processing: parse the opened payload, load and vet the endpoint key, verify
# the proof of possession, hash the key into the endpoint id. Mirrors
# kaa_wire/_registration.py check for check.
#
# Endpoint keys. The pure path accepts exactly two shapes of key (it loads the DER with
# `cryptography`, vets it, then demands that re-encoding gives the same bytes back):
#   * RSA, 2048..4096 bits, e = 65537: SEQUENCE { SEQUENCE { rsaEncryption, NULL },
#       BIT STRING { SEQUENCE { INTEGER n, INTEGER e } } }, all in DER;
#   * Ed25519: the fixed 12-byte prefix and 32 key bytes, a canonical point encoding that is
#       not one of the 8 small-order points.
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
# below at import). Anything else is the pure loader's call, and it refuses it: a wrong
# copy here could only send a key the pure loader refuses through the fast path, which the
# differential tests (tests/test_endpoint_keys.py, tests/test_ext_build.py) would see.

from collections import OrderedDict

from cryptography.hazmat.primitives.asymmetric import rsa as _rsa

from kaa_wire._constants import ED25519_SMALL_ORDER_KEYS as _ED25519_SMALL_ORDER_KEYS

cdef unsigned char _SENTINEL = 0xA5   # kaa_wire._schema.parse_exact's sentinel byte

# DER of AlgorithmIdentifier { rsaEncryption, NULL }, and the whole Ed25519 SPKI prefix.
cdef const unsigned char *_RSA_ALGORITHM = (
    b"\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00"
)
cdef Py_ssize_t _RSA_ALGORITHM_SIZE = 15
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

# Canonical re-encodings up to this size are built on the stack (a 4096-bit key is 550).
cdef enum:
    _STACK_ENCODING = 1024


# ---------------------------------------------------------------------------------------
# parse_registration_payload


cdef inline int _read_uint(
    const unsigned char *data, Py_ssize_t size, Py_ssize_t *pos, int width, uint64_t *out
) noexcept nogil:
    """Read a big-endian integer from data + sentinel; -1 when it runs past the end."""
    cdef uint64_t value = 0
    cdef Py_ssize_t i, index
    if pos[0] + width > size + 1:
        return -1
    for i in range(width):
        index = pos[0] + i
        value = (value << 8) | (data[index] if index < size else _SENTINEL)
    pos[0] += width
    out[0] = value
    return 0


cdef inline Py_ssize_t _read_bytes(Py_ssize_t size, Py_ssize_t *pos, Py_ssize_t *count) noexcept nogil:
    """Take up to count bytes of data + sentinel (short reads are silent, like construct's)."""
    cdef Py_ssize_t start = pos[0]
    cdef Py_ssize_t available = size + 1 - start
    if count[0] > available:
        count[0] = available
    pos[0] = start + count[0]
    return start


def parse_registration_payload(plaintext):
    """Decode an opened registration payload, or raise MalformedFrame."""
    cdef Py_buffer view
    cdef const unsigned char *data
    cdef Py_ssize_t size, pos = 0
    cdef uint64_t flags = 0, algorithm = 0, timestamp = 0, length = 0
    cdef Py_ssize_t token_at, token_len, key_at, key_len, profile_at, profile_len
    cdef Py_ssize_t signature_at, signature_len
    cdef bint failed = False
    # The pure parser appends a sentinel byte to its input, which only bytes and bytearray do.
    if not isinstance(plaintext, (bytes, bytearray)):
        raise TypeError(
            f"a registration payload is bytes or bytearray, not {type(plaintext).__name__}"
        )
    PyObject_GetBuffer(plaintext, &view, PyBUF_SIMPLE)
    try:
        data = <const unsigned char *>view.buf
        size = view.len
        # The field sequence of kaa_wire._schema._REGISTER_PAYLOAD, read the way the compiled
        # construct parser reads it from data + sentinel, so that every malformed input gets
        # the same verdict and message as parse_exact gives it.
        if (
            _read_uint(data, size, &pos, 1, &flags) < 0
            or _read_uint(data, size, &pos, 1, &algorithm) < 0
            or _read_uint(data, size, &pos, 8, &timestamp) < 0
            or _read_uint(data, size, &pos, 1, &length) < 0
        ):
            failed = True
        else:
            token_len = <Py_ssize_t>length
            token_at = _read_bytes(size, &pos, &token_len)
            if flags & PAYLOAD_FLAG_KEY_IS_HASH:
                key_len = KEY_HASH_SIZE
            elif _read_uint(data, size, &pos, 2, &length) < 0:
                failed = True
            else:
                key_len = <Py_ssize_t>length
        if not failed:
            key_at = _read_bytes(size, &pos, &key_len)
            if _read_uint(data, size, &pos, 2, &length) < 0:
                failed = True
            else:
                profile_len = <Py_ssize_t>length
                profile_at = _read_bytes(size, &pos, &profile_len)
                if _read_uint(data, size, &pos, 2, &length) < 0:
                    failed = True
                else:
                    signature_len = <Py_ssize_t>length
                    signature_at = _read_bytes(size, &pos, &signature_len)
        if failed:
            raise MalformedFrame("truncated or invalid registration payload")
        if pos < size:
            raise MalformedFrame(f"{size - pos} trailing bytes after registration payload")
        if pos > size:
            raise MalformedFrame("truncated registration payload")
        if ssl.KAA_WIRE_EXT_DEBUG:
            assert signature_at + signature_len == size
        if flags & ~(<uint64_t>PAYLOAD_FLAG_KEY_IS_HASH):
            raise MalformedFrame(f"unknown registration flags 0x{flags:02x}")
        key = PyBytes_FromStringAndSize(<const char *>data + key_at, key_len)
        profile = PyBytes_FromStringAndSize(<const char *>data + profile_at, profile_len)
        signature = PyBytes_FromStringAndSize(<const char *>data + signature_at, signature_len)
        signed_part = plaintext[:signature_at - 2]  # the same type as the input, as in pure
        try:
            return RegistrationPayload(
                bool(flags & PAYLOAD_FLAG_KEY_IS_HASH),
                algorithm,
                timestamp,
                PyUnicode_DecodeASCII(<const char *>data + token_at, token_len, NULL),
                key,
                profile,
                signature,
                signed_part,
            )
        except (LocalProtocolError, UnicodeDecodeError) as exc:
            raise MalformedFrame(f"invalid registration payload: {exc}") from None
    finally:
        PyBuffer_Release(&view)


# ---------------------------------------------------------------------------------------
# Endpoint keys


cdef struct KeyMaterial:
    int kind                        # 0: not a key the fast path takes; else SIG_*
    const unsigned char *n          # RSA modulus, big-endian, no leading zero bytes
    Py_ssize_t n_len
    const unsigned char *e          # RSA public exponent, likewise (empty for zero)
    Py_ssize_t e_len
    const unsigned char *raw        # Ed25519 public key, 32 bytes


cdef inline Py_ssize_t _der_header(
    const unsigned char *p, Py_ssize_t available, unsigned char tag, Py_ssize_t *length
) noexcept nogil:
    """Size of the tag+length header of a TLV that fits in `available`, or -1."""
    cdef Py_ssize_t header
    if available < 2 or p[0] != tag:
        return -1
    if p[1] < 0x80:
        length[0] = p[1]
        header = 2
    elif p[1] == 0x81 and available >= 3:
        length[0] = p[2]
        header = 3
    elif p[1] == 0x82 and available >= 4:
        length[0] = (<Py_ssize_t>p[2] << 8) | p[3]
        header = 4
    else:
        return -1  # longer lengths exceed 64 KiB: no key the pure path accepts
    if length[0] > available - header:
        return -1
    return header


cdef inline Py_ssize_t _der_length_size(Py_ssize_t length) noexcept nogil:
    if length < 0x80:
        return 1
    if length < 0x100:
        return 2
    if length < 0x10000:
        return 3
    return 4


cdef inline unsigned char *_put_header(
    unsigned char *out, unsigned char tag, Py_ssize_t length
) noexcept nogil:
    out[0] = tag
    if length < 0x80:
        out[1] = <unsigned char>length
        return out + 2
    if length < 0x100:
        out[1] = 0x81
        out[2] = <unsigned char>length
        return out + 3
    if length < 0x10000:
        out[1] = 0x82
        out[2] = <unsigned char>(length >> 8)
        out[3] = <unsigned char>length
        return out + 4
    out[1] = 0x83
    out[2] = <unsigned char>(length >> 16)
    out[3] = <unsigned char>(length >> 8)
    out[4] = <unsigned char>length
    return out + 5


cdef inline Py_ssize_t _integer_content_size(
    const unsigned char *magnitude, Py_ssize_t size
) noexcept nogil:
    """DER INTEGER content size of a non-negative magnitude without leading zeros."""
    if size == 0:
        return 1
    return size + (1 if magnitude[0] & 0x80 else 0)


cdef inline unsigned char *_put_integer(
    unsigned char *out, const unsigned char *magnitude, Py_ssize_t size
) noexcept nogil:
    out = _put_header(out, 0x02, _integer_content_size(magnitude, size))
    if size == 0 or magnitude[0] & 0x80:
        out[0] = 0
        out += 1
    memcpy(out, magnitude, size)
    return out + size


cdef inline Py_ssize_t _tlv_size(Py_ssize_t content) noexcept nogil:
    return 1 + _der_length_size(content) + content


cdef bint _rsa_spki_is_canonical(
    const unsigned char *der, Py_ssize_t size, const KeyMaterial *m
) noexcept nogil:
    """Does `der` equal the DER SubjectPublicKeyInfo re-encoded from (n, e)?"""
    cdef Py_ssize_t n_int = _integer_content_size(m.n, m.n_len)
    cdef Py_ssize_t e_int = _integer_content_size(m.e, m.e_len)
    cdef Py_ssize_t rsa_key = _tlv_size(n_int) + _tlv_size(e_int)
    cdef Py_ssize_t bit_string = 1 + _tlv_size(rsa_key)
    cdef Py_ssize_t spki = _RSA_ALGORITHM_SIZE + _tlv_size(bit_string)
    cdef unsigned char stack[_STACK_ENCODING]
    cdef unsigned char *encoding
    cdef unsigned char *out
    cdef bint same
    if _tlv_size(spki) != size:
        return False
    if size <= _STACK_ENCODING:
        encoding = &stack[0]
    else:
        encoding = <unsigned char *>malloc(size)
    if encoding == NULL:
        return False  # then the pure loader decides, and it accepts the same keys
    out = _put_header(encoding, 0x30, spki)
    memcpy(out, _RSA_ALGORITHM, _RSA_ALGORITHM_SIZE)
    out = _put_header(out + _RSA_ALGORITHM_SIZE, 0x03, bit_string)
    out[0] = 0  # no unused bits
    out = _put_header(out + 1, 0x30, rsa_key)
    out = _put_integer(out, m.n, m.n_len)
    out = _put_integer(out, m.e, m.e_len)
    if ssl.KAA_WIRE_EXT_DEBUG:
        if out - encoding != size:
            with gil:
                raise AssertionError("RSA SPKI re-encoding has the wrong size")
    same = memcmp(encoding, der, size) == 0
    if encoding != &stack[0]:
        free(encoding)
    return same


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

    Only canonical DER of an Ed25519 key with an ordinary point, or of an RSA
    2048..4096-bit key with n odd and e = RSA_PUBLIC_EXPONENT, returns non-zero.
    """
    cdef Py_ssize_t header, length, rest, bits, i
    cdef const unsigned char *p
    cdef uint64_t e = 0
    m.kind = 0
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
    if not _rsa_spki_is_canonical(der, size, m):
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
    key = _pure_registration._load_endpoint_key(key_der)
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
    else:
        raw = key.public_bytes_raw()  # the pure loader returns RSA or Ed25519 keys only
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
    else:
        key.pkey = _build_ed25519(m)
    return key


cdef _EndpointKey _load_endpoint_key(object key_der):
    """Load and vet an endpoint key: canonical DER, RSA 2048-4096 bits, or Ed25519."""
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


cdef bytes _sha1(object data):
    cdef Py_buffer view
    cdef bytes digest = PyBytes_FromStringAndSize(NULL, 20)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        ssl.SHA1(<const unsigned char *>view.buf, view.len,
                 <unsigned char *>PyBytes_AS_STRING(digest))
    finally:
        PyBuffer_Release(&view)
    return digest


cdef inline bint _algorithm_fits(int kind, object algorithm) except -1:
    if kind == SIG_RSA_PKCS1V15_SHA256:
        return algorithm == SIG_RSA_PKCS1V15_SHA256
    return algorithm == SIG_ED25519


cdef class RegistrationVerifier:
    """Checks proofs of possession, keeping recently used endpoint keys loaded.

    The cache is keyed by endpoint id and bounded (least recently used goes first), so a
    flood of new keys costs loads, never memory.
    """

    cdef public object cache_size
    cdef object _keys

    def __init__(self, cache_size=4096):
        if cache_size < 0:
            raise LocalProtocolError("cache_size must be >= 0")
        self.cache_size = cache_size
        self._keys = OrderedDict()

    def verify(self, payload, context, key_der=None):
        """Return the endpoint id once ``payload``'s signature verifies.

        ``context`` is the signature context of the exchange. On reconnect
        (``payload.key_is_hash``) the caller passes the stored ``key_der``; it must hash
        to the id the endpoint sent.
        """
        cdef _EndpointKey key
        if payload.key_is_hash:
            if key_der is None:
                raise LocalProtocolError("a reconnect needs the stored key_der")
            endpoint_id = _sha1(key_der)
            if endpoint_id != payload.key:
                raise UnknownKeyHash("stored key does not match the endpoint id sent")
        else:
            key_der = payload.key
            endpoint_id = _sha1(key_der)
        key = self._key(endpoint_id, key_der)
        if not _algorithm_fits(key.kind, payload.signature_algorithm):
            raise UnsupportedAlgorithm(
                f"signature algorithm {payload.signature_algorithm} does not fit the endpoint key"
            )
        if not key.verify(context + payload.signed_part, payload.signature):
            raise BadSignature("proof of possession does not verify")
        return endpoint_id

    cdef _EndpointKey _key(self, bytes endpoint_id, object key_der):
        cdef _EndpointKey key = self._keys.get(endpoint_id)
        if key is not None:
            self._keys.move_to_end(endpoint_id)
            return key
        key = _load_endpoint_key(key_der)
        if self.cache_size:
            self._keys[endpoint_id] = key
            if len(self._keys) > self.cache_size:
                self._keys.popitem(last=False)
        return key


# ---------------------------------------------------------------------------------------
# verify_batch


cdef struct _BatchEntry:
    KeyMaterial key
    Py_buffer key_view
    Py_buffer data_view
    Py_buffer signature_view
    bint has_key_view
    bint has_data_view
    bint has_signature_view
    bint check           # key loaded and fits the algorithm: verify in the nogil pass
    int result


cdef int _batch_verify_one(_BatchEntry *entry) noexcept nogil:
    cdef ssl.RSA *rsa = NULL
    cdef ssl.EVP_PKEY *pkey = NULL
    cdef int result
    if entry.key.kind == SIG_RSA_PKCS1V15_SHA256:
        if _build_rsa(&entry.key, &rsa) < 0:
            return -1
    else:
        pkey = _build_ed25519(&entry.key)
    result = _verify_signature(
        entry.key.kind, rsa, pkey,
        <const unsigned char *>entry.data_view.buf, entry.data_view.len,
        <const unsigned char *>entry.signature_view.buf, entry.signature_view.len,
    )
    if rsa != NULL:
        ssl.RSA_free(rsa)
    if pkey != NULL:
        ssl.EVP_PKEY_free(pkey)
    return result


def verify_batch(items):
    """Verify many (key_der, algorithm, data, signature) at once; True where valid.

    A key that does not load, or an algorithm that does not fit it, gives False. The keys are
    vetted first with the GIL held (cheap); then every key build and verify of the batch runs
    in one stretch with the GIL released, so a worker thread can carry the whole batch.
    """
    cdef list batch = list(items)
    cdef list keep = []
    cdef Py_ssize_t count = len(batch), i
    cdef _BatchEntry *entries
    cdef _BatchEntry *entry
    cdef bint out_of_memory = False
    if count == 0:
        return []
    entries = <_BatchEntry *>PyMem_Calloc(count, sizeof(_BatchEntry))
    if entries == NULL:
        raise MemoryError()
    try:
        for i in range(count):
            entry = &entries[i]
            key_der, algorithm, data, signature = batch[i]
            if PyObject_CheckBuffer(key_der):
                PyObject_GetBuffer(key_der, &entry.key_view, PyBUF_SIMPLE)
                entry.has_key_view = True
                _parse_endpoint_key(
                    <const unsigned char *>entry.key_view.buf, entry.key_view.len, &entry.key
                )
            if not entry.key.kind:
                try:
                    _material_from_pure(key_der, &entry.key, keep)
                except (MalformedFrame, UnsupportedAlgorithm):
                    continue
            if not _algorithm_fits(entry.key.kind, algorithm):
                continue
            PyObject_GetBuffer(signature, &entry.signature_view, PyBUF_SIMPLE)
            entry.has_signature_view = True
            PyObject_GetBuffer(data, &entry.data_view, PyBUF_SIMPLE)
            entry.has_data_view = True
            entry.check = True
        with nogil:
            for i in range(count):
                if entries[i].check:
                    entries[i].result = _batch_verify_one(&entries[i])
                    if entries[i].result < 0:
                        out_of_memory = True
        if out_of_memory:
            raise MemoryError()
        return [entries[i].result == 1 for i in range(count)]
    finally:
        for i in range(count):
            if entries[i].has_key_view:
                PyBuffer_Release(&entries[i].key_view)
            if entries[i].has_data_view:
                PyBuffer_Release(&entries[i].data_view)
            if entries[i].has_signature_view:
                PyBuffer_Release(&entries[i].signature_view)
        PyMem_Free(entries)
