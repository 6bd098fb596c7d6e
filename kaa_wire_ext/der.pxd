# The DER walker and the canonical re-encoder (der.pyx), for endpoint_key.pyx.

# The tag+length header size of a TLV with `tag` that fits in `available` bytes (its content
# length in `length`), or -1.
cdef Py_ssize_t _der_header(
    const unsigned char *p, Py_ssize_t available, unsigned char tag, Py_ssize_t *length
) noexcept nogil

# Does `der` equal the DER SubjectPublicKeyInfo of rsaEncryption re-encoded from (n, e),
# each a big-endian magnitude without leading zero bytes?
cdef bint _rsa_spki_is_canonical(
    const unsigned char *der, Py_ssize_t size,
    const unsigned char *n, Py_ssize_t n_len,
    const unsigned char *e, Py_ssize_t e_len,
) noexcept nogil
