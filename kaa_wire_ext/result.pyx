# The sealed REGISTER_RESPONSE plaintext, encoded without construct: byte for byte what
# kaa_wire._codec.encode_registration_result builds from kaa_wire._schema._REGISTER_RESULT
# for the same (validated) RegistrationResult. Layout: status u8, endpoint id (20 bytes),
# server time u64, config version u32, config (u32 length + bytes), topics (u16 count, each
# id u32 + u8-length UTF-8 name), reconnect_after_s u32, retry_base_ms u32; big-endian.


cdef inline unsigned char *_put_uint(unsigned char *out, uint64_t value, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = <unsigned char>(value & 0xFF)
        value >>= 8
    return out + width


def encode_registration_result(result):
    """The plaintext of a REGISTER_RESPONSE, from a validated RegistrationResult."""
    cdef bytes endpoint_id = bytes(result.endpoint_id)
    cdef bytes config = bytes(result.config)
    cdef list names = [topic.name.encode() for topic in result.topics]
    cdef Py_ssize_t size = 1 + KEY_HASH_SIZE + 8 + 4 + 4 + len(config) + 2 + 4 + 4
    cdef unsigned char *out
    cdef bytes name
    # Out of range only if someone bypassed the message's own checks: refuse, as construct
    # would, rather than write a wrong length field.
    if (
        len(endpoint_id) != KEY_HASH_SIZE
        or len(config) > 0xFFFFFFFF
        or len(names) > 0xFFFF
        or any(len(name) > 0xFF for name in names)
    ):
        raise LocalProtocolError("registration result fields out of range")
    for name in names:
        size += 4 + 1 + len(name)
    encoded = PyBytes_FromStringAndSize(NULL, size)
    out = <unsigned char *>PyBytes_AS_STRING(encoded)
    out = _put_uint(out, result.status, 1)
    memcpy(out, PyBytes_AS_STRING(endpoint_id), KEY_HASH_SIZE)
    out = _put_uint(out + KEY_HASH_SIZE, result.server_time_ms, 8)
    out = _put_uint(out, result.config_version, 4)
    out = _put_uint(out, len(config), 4)
    memcpy(out, PyBytes_AS_STRING(config), len(config))
    out = _put_uint(out + len(config), len(names), 2)
    for topic, name in zip(result.topics, names):
        out = _put_uint(out, topic.topic_id, 4)
        out = _put_uint(out, len(name), 1)
        memcpy(out, PyBytes_AS_STRING(name), len(name))
        out += len(name)
    out = _put_uint(out, result.reconnect_after_s, 4)
    _put_uint(out, result.retry_base_ms, 4)
    return encoded
