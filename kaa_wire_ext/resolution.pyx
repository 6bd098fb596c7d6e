# Resolution on the Bootstrap side: the RESOLVE_REQUEST body in; the signed part, the signed
# data and the RESOLVE_RESPONSE body out. Byte for byte kaa_wire/_codec.py's construct
# functions of the same names (docs/protocol.md section 4).
#
# Each function takes the ordinary case only and hands every other input to the pure
# function, which decides: so the exception raised (class and message) is the pure path's
# by construction, and an input the fast path does not take is still answered right.
# Ordinary means: exact types (bytes, str, int, tuple or list, OperationsNode,
# RotationCertificate) and values that fit their fields; for a request body, one that parses
# exactly and passes the checks ResolveRequest makes: a nonce that is not all zero, key
# generation >= FIRST_KEY_GENERATION, an app token of 1..MAX_TOKEN_SIZE printable ASCII
# characters, and at least one transport.

from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.long cimport PyLong_Check, PyLong_FromLong
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_Check
from cpython.ref cimport Py_INCREF

from kaa_wire import _codec as _pure_codec
from kaa_wire._constants import RESOLVE_SIGNATURE_CONTEXT as _RESOLVE_CONTEXT
from kaa_wire._messages import OperationsNode, ResolveRequest, RotationCertificate

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)
    const char *PyUnicode_DATA(object text)
    Py_ssize_t PyUnicode_GET_LENGTH(object text)


cdef enum:
    _NODE_FIXED_SIZE = 43           # a node record less its host bytes
    # nonce, server time, validity, key generation, algorithm, node count, rotation count
    _RESPONSE_FIXED_SIZE = 35
    _CERTIFICATE_FIXED_SIZE = 9     # generation, algorithm, and the two bytes16 lengths
    _MAX_NODES = 255
    _REQUEST_TOKEN_AT = NONCE_SIZE + 4  # the token's length byte, after nonce and generation

cdef Py_ssize_t _CONTEXT_SIZE = len(_RESOLVE_CONTEXT)

# A decoded request is built without running ResolveRequest.__post_init__ again: the checks
# above (exact parse, token printable ASCII of 1..MAX_TOKEN_SIZE, 16-byte nonce, u8
# transports) are the ones it makes, and tests/test_parity_resolution.py holds the two together.
_new_request = object.__new__
_set_app_token = ResolveRequest.app_token.__set__
_set_nonce = ResolveRequest.nonce.__set__
_set_transports = ResolveRequest.transports.__set__
_set_key_generation = ResolveRequest.key_generation.__set__


cdef inline bint _printable_ascii(const unsigned char *text, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        if text[i] < 0x20 or text[i] > 0x7E:
            return False
    return True


cdef inline bint _all_zero(const unsigned char *data, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        if data[i]:
            return False
    return True


cdef inline uint64_t _get_be(const unsigned char *data, int width) noexcept nogil:
    cdef uint64_t value = 0
    cdef int i
    for i in range(width):
        value = (value << 8) | data[i]
    return value


def decode_resolve_request(body):
    """Decode a RESOLVE_REQUEST body, or raise MalformedFrame."""
    cdef const unsigned char *data
    cdef Py_ssize_t size, token_len, count_at, count, i
    cdef uint64_t generation
    if type(body) is not bytes:
        return _pure_codec.decode_resolve_request(body)
    data = <const unsigned char *>PyBytes_AS_STRING(body)
    size = PyBytes_GET_SIZE(body)
    if size < _REQUEST_TOKEN_AT + 2:
        return _pure_codec.decode_resolve_request(body)
    generation = _get_be(data + NONCE_SIZE, 4)
    token_len = data[_REQUEST_TOKEN_AT]
    count_at = _REQUEST_TOKEN_AT + 1 + token_len
    if (
        _all_zero(data, NONCE_SIZE)
        or generation < FIRST_KEY_GENERATION
        or token_len < 1
        or token_len > MAX_TOKEN_SIZE
        or count_at >= size
        or data[count_at] == 0
        or count_at + 1 + data[count_at] != size
        or not _printable_ascii(data + _REQUEST_TOKEN_AT + 1, token_len)
    ):
        return _pure_codec.decode_resolve_request(body)
    count = data[count_at]
    transports = PyTuple_New(count)
    for i in range(count):
        value = PyLong_FromLong(data[count_at + 1 + i])
        Py_INCREF(value)  # PyTuple_SET_ITEM steals the reference
        PyTuple_SET_ITEM(transports, i, value)
    request = _new_request(ResolveRequest)
    _set_app_token(
        request,
        PyUnicode_DecodeASCII(<const char *>data + _REQUEST_TOKEN_AT + 1, token_len, NULL),
    )
    _set_nonce(request, PyBytes_FromStringAndSize(<const char *>data, NONCE_SIZE))
    _set_transports(request, transports)
    _set_key_generation(request, generation)
    return request


cdef inline bint _fits_uint(object value, int bits, uint64_t *out):
    """Store an int that fits in `bits` unsigned bits; False for anything else."""
    if not PyLong_Check(value):
        return False
    try:
        out[0] = value
    except OverflowError:
        return False
    return bits == 64 or out[0] >> bits == 0


cdef struct ResolveNode:
    uint64_t priority, weight, access_point_id, port, kex_algorithm
    const char *key             # 32 bytes, borrowed from the node's kex_public_key
    const char *host            # ASCII, borrowed from the node's host
    Py_ssize_t host_len


cdef bint _take_node(object node, ResolveNode *out):
    """Read one OperationsNode into `out`; False when it is anything the fast path leaves."""
    if type(node) is not OperationsNode:
        return False
    key = node.kex_public_key
    host = node.host
    if (
        not _fits_uint(node.priority, 8, &out.priority)
        or not _fits_uint(node.weight, 16, &out.weight)
        or not _fits_uint(node.access_point_id, 32, &out.access_point_id)
        or not _fits_uint(node.port, 16, &out.port)
        or not _fits_uint(node.kex_algorithm, 8, &out.kex_algorithm)
        or type(key) is not bytes
        or PyBytes_GET_SIZE(key) != X25519_KEY_SIZE
        or not PyUnicode_Check(host)
        or not PyUnicode_IS_ASCII(host)
        or PyUnicode_GET_LENGTH(host) > MAX_HOST_SIZE
    ):
        return False
    out.key = PyBytes_AS_STRING(key)
    out.host = PyUnicode_DATA(host)
    out.host_len = PyUnicode_GET_LENGTH(host)
    return True


cdef struct Certificate:
    uint64_t generation, algorithm
    const char *key             # DER, borrowed from the certificate's public_key
    Py_ssize_t key_len
    const char *signature       # borrowed from the certificate's signature
    Py_ssize_t signature_len


cdef bint _take_certificate(object certificate, uint64_t generation, Certificate *out):
    """Read one RotationCertificate of generation `generation` into `out`; False when it is
    anything the fast path leaves."""
    if type(certificate) is not RotationCertificate:
        return False
    key = certificate.public_key
    signature = certificate.signature
    if (
        not _fits_uint(certificate.generation, 32, &out.generation)
        or out.generation != generation
        or not _fits_uint(certificate.signature_algorithm, 8, &out.algorithm)
        or type(key) is not bytes
        or PyBytes_GET_SIZE(key) < 1
        or PyBytes_GET_SIZE(key) > 0xFFFF
        or type(signature) is not bytes
        or PyBytes_GET_SIZE(signature) > 0xFFFF
    ):
        return False
    out.key = PyBytes_AS_STRING(key)
    out.key_len = PyBytes_GET_SIZE(key)
    out.signature = PyBytes_AS_STRING(signature)
    out.signature_len = PyBytes_GET_SIZE(signature)
    return True


cdef inline unsigned char *_put_be(
    unsigned char *out, uint64_t value, int width
) noexcept nogil:
    cdef int i
    for i in range(width):
        out[i] = <unsigned char>(value >> (8 * (width - 1 - i)))
    return out + width


def resolve_response_signed_part(
    nonce, server_time_ms, valid_for_s, key_generation, signature_algorithm, nodes, rotations
):
    """The body bytes the Bootstrap signature covers (everything before the signature)."""
    cdef ResolveNode records[_MAX_NODES]
    cdef Certificate certificates[MAX_ROTATION_CHAIN]
    cdef uint64_t time_ms, valid_s, generation, algorithm
    cdef Py_ssize_t count, rotation_count, i, size = _RESPONSE_FIXED_SIZE
    cdef unsigned char *out
    if (
        type(nonce) is not bytes
        or PyBytes_GET_SIZE(nonce) != NONCE_SIZE
        or not _fits_uint(server_time_ms, 64, &time_ms)
        or not _fits_uint(valid_for_s, 32, &valid_s)
        or not _fits_uint(key_generation, 32, &generation)
        or not _fits_uint(signature_algorithm, 8, &algorithm)
        or (type(nodes) is not tuple and type(nodes) is not list)
        or len(nodes) > _MAX_NODES
        or (type(rotations) is not tuple and type(rotations) is not list)
        or len(rotations) > MAX_ROTATION_CHAIN
        # the first certificate introduces generation 2 at the earliest
        or generation < FIRST_KEY_GENERATION + <uint64_t>len(rotations)
    ):
        return _pure_codec.resolve_response_signed_part(
            nonce, server_time_ms, valid_for_s, key_generation, signature_algorithm, nodes,
            rotations,
        )
    # Two passes: read and check every node and certificate, then write. The records borrow
    # from the nodes and certificates, which `nodes` and `rotations` keep alive; nothing
    # between the passes can run Python code (a bytes object is not tracked by the cyclic
    # GC, so allocating one never starts a collection).
    count = len(nodes)
    for i in range(count):
        if not _take_node(nodes[i], &records[i]):
            return _pure_codec.resolve_response_signed_part(
                nonce, server_time_ms, valid_for_s, key_generation, signature_algorithm,
                nodes, rotations,
            )
        size += _NODE_FIXED_SIZE + records[i].host_len
    rotation_count = len(rotations)
    for i in range(rotation_count):
        if not _take_certificate(
            rotations[i], generation - rotation_count + 1 + i, &certificates[i]
        ):
            return _pure_codec.resolve_response_signed_part(
                nonce, server_time_ms, valid_for_s, key_generation, signature_algorithm,
                nodes, rotations,
            )
        size += (
            _CERTIFICATE_FIXED_SIZE + certificates[i].key_len + certificates[i].signature_len
        )
    part = PyBytes_FromStringAndSize(NULL, size)
    out = <unsigned char *>PyBytes_AS_STRING(part)
    memcpy(out, PyBytes_AS_STRING(nonce), NONCE_SIZE)
    out = _put_be(out + NONCE_SIZE, time_ms, 8)
    out = _put_be(out, valid_s, 4)
    out = _put_be(out, generation, 4)
    out = _put_be(out, algorithm, 1)
    out = _put_be(out, count, 1)
    for i in range(count):
        out = _put_be(out, records[i].priority, 1)
        out = _put_be(out, records[i].weight, 2)
        out = _put_be(out, records[i].access_point_id, 4)
        out = _put_be(out, records[i].port, 2)
        out = _put_be(out, records[i].kex_algorithm, 1)
        memcpy(out, records[i].key, X25519_KEY_SIZE)
        out = _put_be(out + X25519_KEY_SIZE, records[i].host_len, 1)
        memcpy(out, records[i].host, records[i].host_len)
        out += records[i].host_len
    out = _put_be(out, rotation_count, 1)
    for i in range(rotation_count):
        out = _put_be(out, certificates[i].generation, 4)
        out = _put_be(out, certificates[i].algorithm, 1)
        out = _put_be(out, certificates[i].key_len, 2)
        memcpy(out, certificates[i].key, certificates[i].key_len)
        out = _put_be(out + certificates[i].key_len, certificates[i].signature_len, 2)
        memcpy(out, certificates[i].signature, certificates[i].signature_len)
        out += certificates[i].signature_len
    if ssl.KAA_WIRE_EXT_DEBUG:
        assert out == <unsigned char *>PyBytes_AS_STRING(part) + size
    return part


def resolve_signed_data(app_token, signed_part):
    """What the Bootstrap key signs: context, the asked-for app token, then the body prefix."""
    cdef Py_ssize_t token_len, part_len
    cdef unsigned char *out
    if (
        not PyUnicode_Check(app_token)
        or not PyUnicode_IS_ASCII(app_token)
        or PyUnicode_GET_LENGTH(app_token) > 0xFF
        or type(signed_part) is not bytes
    ):
        return _pure_codec.resolve_signed_data(app_token, signed_part)
    token_len = PyUnicode_GET_LENGTH(app_token)
    part_len = PyBytes_GET_SIZE(signed_part)
    data = PyBytes_FromStringAndSize(NULL, _CONTEXT_SIZE + 1 + token_len + part_len)
    out = <unsigned char *>PyBytes_AS_STRING(data)
    memcpy(out, PyBytes_AS_STRING(_RESOLVE_CONTEXT), _CONTEXT_SIZE)
    out[_CONTEXT_SIZE] = <unsigned char>token_len
    memcpy(out + _CONTEXT_SIZE + 1, PyUnicode_DATA(app_token), token_len)
    memcpy(out + _CONTEXT_SIZE + 1 + token_len, PyBytes_AS_STRING(signed_part), part_len)
    return data


def encode_resolve_response(signed_part, signature):
    """The RESOLVE_RESPONSE body: the signed part, then the signature as bytes16."""
    cdef Py_ssize_t part_len, signature_len
    cdef unsigned char *out
    if (
        type(signed_part) is not bytes
        or type(signature) is not bytes
        or PyBytes_GET_SIZE(signature) > 0xFFFF
    ):
        return _pure_codec.encode_resolve_response(signed_part, signature)
    part_len = PyBytes_GET_SIZE(signed_part)
    signature_len = PyBytes_GET_SIZE(signature)
    body = PyBytes_FromStringAndSize(NULL, part_len + 2 + signature_len)
    out = <unsigned char *>PyBytes_AS_STRING(body)
    memcpy(out, PyBytes_AS_STRING(signed_part), part_len)
    out = _put_be(out + part_len, signature_len, 2)
    memcpy(out, PyBytes_AS_STRING(signature), signature_len)
    return body
