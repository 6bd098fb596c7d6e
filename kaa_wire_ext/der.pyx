# DER, only as far as endpoint keys need it: a walker that reads one TLV header (the short
# form and the one- and two-byte long forms: every key the pure path accepts is under 64 KiB),
# and the re-encoder that rebuilds an RSA SubjectPublicKeyInfo from (n, e) in canonical DER,
# so that comparing the two byte for byte is the pure path's "re-encoding gives the same bytes
# back" rule. Declared in der.pxd.

# DER of AlgorithmIdentifier { rsaEncryption, NULL }.
cdef const unsigned char *_RSA_ALGORITHM = (
    b"\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01\x05\x00"
)
cdef Py_ssize_t _RSA_ALGORITHM_SIZE = 15

# Canonical re-encodings up to this size are built on the stack (a 4096-bit key is 550).
cdef enum:
    _STACK_ENCODING = 1024


cdef Py_ssize_t _der_header(
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
    const unsigned char *der, Py_ssize_t size,
    const unsigned char *n, Py_ssize_t n_len,
    const unsigned char *e, Py_ssize_t e_len,
) noexcept nogil:
    """Does `der` equal the DER SubjectPublicKeyInfo re-encoded from (n, e)?"""
    cdef Py_ssize_t n_int = _integer_content_size(n, n_len)
    cdef Py_ssize_t e_int = _integer_content_size(e, e_len)
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
    out = _put_integer(out, n, n_len)
    out = _put_integer(out, e, e_len)
    if ssl.KAA_WIRE_EXT_DEBUG:
        if out - encoding != size:
            with gil:
                raise AssertionError("RSA SPKI re-encoding has the wrong size")
    same = memcmp(encoding, der, size) == 0
    if encoding != &stack[0]:
        free(encoding)
    return same
