# Framing: the 6-byte header and a framer that enforces limits before any body is buffered
# as a frame. Mirrors kaa_wire/_framing.py: header checks in the order version, message
# type, flags (SEALED only on ERROR), size; errors are sticky (the same object is raised on
# every later call), so a broken stream is never half-parsed.

# Keep at least this much allocated; give memory back once a drained buffer grew past
# _SHRINK_ABOVE (one huge frame must not pin megabytes for the life of a connection).
cdef Py_ssize_t _INITIAL_CAPACITY = 4096
cdef Py_ssize_t _SHRINK_ABOVE = 256 * 1024

cdef object _tuple_new = tuple.__new__

cdef enum HeaderFault:
    HEADER_OK = 0
    HEADER_BAD_VERSION = 1
    HEADER_BAD_TYPE = 2
    HEADER_BAD_FLAGS = 3
    HEADER_TOO_LARGE = 4


cdef inline bint _known_type(long msg_type) noexcept nogil:
    return (MSG_RESOLVE_REQUEST <= msg_type <= MSG_REGISTER_RESPONSE) or msg_type == MSG_ERROR


cdef inline HeaderFault _header_fault(
    long version, long msg_type, long flags, Py_ssize_t length, Py_ssize_t limit
) noexcept nogil:
    """The first check a header fails, in the pure path's order; lengths are >= 0."""
    if version != PROTOCOL_VERSION:
        return HEADER_BAD_VERSION
    if not _known_type(msg_type):
        return HEADER_BAD_TYPE
    if flags != 0 and not (msg_type == MSG_ERROR and flags == FLAG_SEALED):
        return HEADER_BAD_FLAGS
    if HEADER_SIZE + length > limit:
        return HEADER_TOO_LARGE
    return HEADER_OK


cdef object _header_error(
    HeaderFault fault, object version, object msg_type, object flags, Py_ssize_t length,
    object max_frame_size,
):
    """The exception for a failed check (kaa_wire._errors builds it, as for the pure path)."""
    if fault == HEADER_BAD_VERSION:
        return unsupported_version(version)
    if fault == HEADER_BAD_TYPE:
        return unknown_message_type(msg_type)
    if fault == HEADER_BAD_FLAGS:
        return flags_not_allowed(flags, msg_type)
    return frame_too_large(HEADER_SIZE + length, max_frame_size)


cdef Py_ssize_t _limit_of(object max_frame_size) except -1:
    """The C limit equivalent to ``HEADER_SIZE + length > max_frame_size`` for any real."""
    # A frame is at most ABSOLUTE_MAX_FRAME_SIZE bytes, so clamping to [0, ABSOLUTE] keeps
    # every comparison's outcome; int() floors a positive non-integer, which also keeps it.
    if max_frame_size >= ABSOLUTE_MAX_FRAME_SIZE:
        return ABSOLUTE_MAX_FRAME_SIZE
    if max_frame_size < 0:
        return 0
    return int(max_frame_size)


cdef _check_max_frame_size(object max_frame_size):
    if not HEADER_SIZE < max_frame_size <= ABSOLUTE_MAX_FRAME_SIZE:
        raise bad_max_frame_size(HEADER_SIZE, ABSOLUTE_MAX_FRAME_SIZE)


cdef class Framer:
    """Splits a byte stream into frames: ``receive_data`` then ``next_frame`` until None."""

    cdef:
        unsigned char *_buf
        Py_ssize_t _capacity
        Py_ssize_t _start       # first byte not yet handed out
        Py_ssize_t _end         # one past the last byte received
        Py_ssize_t _limit       # max_frame_size as a C number (see _limit_of)
        object _max_frame_size
        object _error

    def __cinit__(self):
        self._buf = NULL
        self._capacity = 0
        self._start = 0
        self._end = 0
        self._limit = DEFAULT_MAX_FRAME_SIZE
        self._error = None

    def __init__(self, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        _check_max_frame_size(max_frame_size)
        self.max_frame_size = max_frame_size
        self._start = self._end = 0  # as the pure framer: a new buffer...
        self._error = None           # ...and no error

    def __dealloc__(self):
        PyMem_Free(self._buf)
        self._buf = NULL

    @property
    def max_frame_size(self):
        return self._max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, value):
        # Like the pure attribute, a later assignment is not re-validated.
        self._limit = _limit_of(value)
        self._max_frame_size = value

    @property
    def buffered(self):
        """Bytes received and not yet handed out as frames."""
        return self._end - self._start

    def receive_data(self, data):
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._append(<const unsigned char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    cdef int _append(self, const unsigned char *data, Py_ssize_t size) except -1:
        cdef Py_ssize_t used = self._end - self._start
        cdef Py_ssize_t capacity
        cdef unsigned char *grown
        if size == 0:
            return 0
        if self._capacity - self._end < size:
            if self._capacity - used >= size:
                # Room enough once the consumed prefix is dropped.
                memmove(self._buf, self._buf + self._start, used)
            else:
                capacity = max(self._capacity * 2, used + size, _INITIAL_CAPACITY)
                grown = <unsigned char *>PyMem_Malloc(capacity)
                if grown == NULL:
                    raise MemoryError()
                if used:
                    memcpy(grown, self._buf + self._start, used)
                PyMem_Free(self._buf)
                self._buf = grown
                self._capacity = capacity
            self._start = 0
            self._end = used
        memcpy(self._buf + self._end, data, size)
        self._end += size
        if ssl.KAA_WIRE_EXT_DEBUG:
            assert 0 <= self._start <= self._end <= self._capacity
        return 0

    def next_frame(self):
        """The next whole frame, or None when more bytes are needed."""
        cdef const unsigned char *p
        cdef Py_ssize_t available, length, total
        cdef HeaderFault fault
        if self._error is not None:
            raise self._error
        available = self._end - self._start
        if available < HEADER_SIZE:
            return None
        p = self._buf + self._start
        length = (<Py_ssize_t>p[3] << 16) | (<Py_ssize_t>p[4] << 8) | p[5]
        fault = _header_fault(p[0], p[1], p[2], length, self._limit)
        if fault != HEADER_OK:
            self._error = _header_error(fault, p[0], p[1], p[2], length, self._max_frame_size)
            raise self._error
        total = HEADER_SIZE + length
        if available < total:
            return None
        frame = _tuple_new(Frame, (
            p[1],
            p[2],
            PyBytes_FromStringAndSize(<const char *>p, HEADER_SIZE),
            PyBytes_FromStringAndSize(<const char *>p + HEADER_SIZE, length),
        ))
        self._start += total
        if self._start == self._end:
            self._start = self._end = 0
            if self._capacity > _SHRINK_ABOVE:
                PyMem_Free(self._buf)
                self._buf = NULL
                self._capacity = 0
        if ssl.KAA_WIRE_EXT_DEBUG:
            assert 0 <= self._start <= self._end <= self._capacity
        return frame


cdef inline long _byte_or_minus_one(object value) except -2:
    """An int argument as 0..255, or -1 when it is an int outside that range."""
    value = operator.index(value)
    if 0 <= value <= 255:
        return <long>value
    return -1


def encode_frame(msg_type, body, flags=0, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
    """Header + body. Raises LocalProtocolError for a frame the peer would refuse."""
    cdef Py_buffer view
    cdef long type_value, flags_value = 0
    cdef HeaderFault fault = HEADER_OK
    cdef Py_ssize_t length
    cdef unsigned char *out
    # The same checks as the framer's, in the same order, each argument looked at only
    # when the checks before it passed (as in the pure path): the limit itself first.
    _check_max_frame_size(max_frame_size)
    PyObject_GetBuffer(body, &view, PyBUF_SIMPLE)
    try:
        length = view.len
        type_value = _byte_or_minus_one(msg_type)
        if not _known_type(type_value):
            fault = HEADER_BAD_TYPE
        else:
            flags_value = _byte_or_minus_one(flags)
            fault = _header_fault(PROTOCOL_VERSION, type_value, flags_value, 0, HEADER_SIZE)
        if fault == HEADER_OK and HEADER_SIZE + length > max_frame_size:
            fault = HEADER_TOO_LARGE
        if fault != HEADER_OK:
            error = _header_error(fault, PROTOCOL_VERSION, msg_type, flags, length, max_frame_size)
            raise LocalProtocolError(str(error))
        frame = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + length)
        out = <unsigned char *>PyBytes_AS_STRING(frame)
        out[0] = PROTOCOL_VERSION
        out[1] = <unsigned char>type_value
        out[2] = <unsigned char>flags_value
        out[3] = <unsigned char>(length >> 16)
        out[4] = <unsigned char>(length >> 8)
        out[5] = <unsigned char>length
        memcpy(out + HEADER_SIZE, view.buf, length)
        return frame
    finally:
        PyBuffer_Release(&view)
