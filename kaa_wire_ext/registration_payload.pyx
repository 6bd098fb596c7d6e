# parse_registration_payload: the opened registration payload, read field by field in the
# order of kaa_wire._schema._REGISTER_PAYLOAD with every read bounds-checked. The verdicts are
# parse_exact's: any read past the end is "truncated or invalid registration payload", and
# bytes left after the signature are counted as trailing (kaa_wire._errors builds both texts).


cdef inline bint _read_uint(
    const unsigned char *data, Py_ssize_t size, Py_ssize_t *pos, int width, uint64_t *out
) noexcept nogil:
    """Read a big-endian integer of `width` bytes at pos; False when it runs past the end."""
    cdef uint64_t value = 0
    cdef Py_ssize_t i
    if width > size - pos[0]:
        return False
    for i in range(pos[0], pos[0] + width):
        value = (value << 8) | data[i]
    pos[0] += width
    out[0] = value
    return True


cdef inline bint _skip(Py_ssize_t size, Py_ssize_t *pos, Py_ssize_t count) noexcept nogil:
    """Step over `count` bytes at pos; False when fewer are left."""
    if count > size - pos[0]:
        return False
    pos[0] += count
    return True


def parse_registration_payload(plaintext):
    """Decode an opened registration payload, or raise MalformedFrame."""
    cdef Py_buffer view
    cdef const unsigned char *data
    cdef Py_ssize_t size, pos = 0
    cdef uint64_t flags = 0, algorithm = 0, timestamp = 0, length = 0
    cdef Py_ssize_t token_at = 0, key_at = 0, profile_at = 0, signature_at = 0
    cdef Py_ssize_t token_len = 0, key_len = KEY_HASH_SIZE, profile_len = 0, signature_len = 0
    cdef bint whole
    # The pure parser appends a byte to its input (kaa_wire._schema.parse_exact), which only
    # bytes and bytearray take: the same types here.
    if not isinstance(plaintext, (bytes, bytearray)):
        raise TypeError(
            f"a registration payload is bytes or bytearray, not {type(plaintext).__name__}"
        )
    PyObject_GetBuffer(plaintext, &view, PyBUF_SIMPLE)
    try:
        data = <const unsigned char *>view.buf
        size = view.len
        whole = (
            _read_uint(data, size, &pos, 1, &flags)
            and _read_uint(data, size, &pos, 1, &algorithm)
            and _read_uint(data, size, &pos, 8, &timestamp)
            and _read_uint(data, size, &pos, 1, &length)
        )
        if whole:
            token_at = pos
            token_len = <Py_ssize_t>length
            whole = _skip(size, &pos, token_len)
        if whole and not flags & PAYLOAD_FLAG_KEY_IS_HASH:
            whole = _read_uint(data, size, &pos, 2, &length)
            key_len = <Py_ssize_t>length
        if whole:
            key_at = pos
            whole = _skip(size, &pos, key_len) and _read_uint(data, size, &pos, 2, &length)
        if whole:
            profile_at = pos
            profile_len = <Py_ssize_t>length
            whole = _skip(size, &pos, profile_len) and _read_uint(data, size, &pos, 2, &length)
        if whole:
            signature_at = pos
            signature_len = <Py_ssize_t>length
            whole = _skip(size, &pos, signature_len)
        if not whole:
            raise truncated_or_invalid("registration payload")
        if pos < size:
            raise trailing_bytes(size - pos, "registration payload")
        if flags & ~(<uint64_t>PAYLOAD_FLAG_KEY_IS_HASH):
            raise unknown_registration_flags(flags)
        key = PyBytes_FromStringAndSize(<const char *>data + key_at, key_len)
        profile = PyBytes_FromStringAndSize(<const char *>data + profile_at, profile_len)
        signature = PyBytes_FromStringAndSize(<const char *>data + signature_at, signature_len)
        # The same type as the input, as in pure.
        signed_part = plaintext[:signature_at - SIGNATURE_LENGTH_PREFIX]
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
            raise invalid_registration_payload(exc) from None
    finally:
        PyBuffer_Release(&view)
