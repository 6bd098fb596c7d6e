# The servers' per-connection path, compiled: the asyncio protocol is a cdef class, as in
# asyncpg. Two classes, each the C twin of a pure one that stays the normative behaviour
# (docs/connection-path.md says why and how the two are held to each other):
#
# * OperationsServerConnection - kaa_wire._connection.OperationsServerConnection: the
#   Operations side of one exchange (framing, open, parse; verify; the sealed answer);
# * BootstrapServerConnection - kaa_wire._connection.BootstrapServerConnection: the
#   Bootstrap side (framing, decode; the data to sign; the signed answer);
# * ExchangeProtocol - servers/net.py's ExchangeProtocol: the asyncio layer both services
#   share (connection gate, read deadline, hand-off to the service, answer, close).
#
# Nothing here re-implements a check or a primitive: the framing is this module's Framer,
# the open RegistrationOpener.open, the parse parse_registration_payload, the verify the
# verifier's own entry point, the answer encode_registration_result and seal_response, and
# every error comes from kaa_wire._errors as on the pure path. What moves into C is the glue
# between them, which in Python cost more per connection than the work it glued. The
# service (servers/operations/service.py, servers/bootstrap/service.py) is shared by both
# paths and called once per request.
#
# servers._impl picks these classes (or the pure ones) the way kaa_wire._impl picks the hot
# paths; they are not in __all__, which lists what kaa_wire itself takes from here.

import asyncio
import os

from kaa_wire._constants import REGISTER_SIGNATURE_CONTEXT
from kaa_wire._errors import KaaWireError, Overloaded, RemoteProtocolError, Timeout
from kaa_wire._errors import UnexpectedMessage, UnsupportedAlgorithm
from kaa_wire._constants import Transport

cdef object _TCP = Transport.TCP

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

cdef bytes _REGISTER_CONTEXT = REGISTER_SIGNATURE_CONTEXT

# Bound on first use: kaa_wire._connection imports this module (through kaa_wire._impl)
# before it has defined them.
cdef object _NEED_DATA = None
cdef tuple _STATES = None         # kaa_wire._connection._State members, by _ConnState
cdef object _error_body = None


cdef int _bind_connection_names() except -1:
    global _NEED_DATA, _STATES, _error_body
    if _STATES is None:
        from kaa_wire import _connection
        _NEED_DATA = _connection.NEED_DATA
        _error_body = _connection.error_body
        state = _connection._State
        _STATES = (state.AWAITING, state.RECEIVED, state.DONE, state.ERROR)
    return 0


cdef enum _ConnState:
    _AWAITING = 0
    _RECEIVED = 1
    _DONE = 2
    _ERROR = 3


cdef bytes _answer_header(int msg_type, int flags, Py_ssize_t length, object max_frame_size):
    """The header of an answer frame whose body is ``length`` bytes: the checks of
    encode_frame (the pure _frame_header builds the frame and keeps its header)."""
    cdef unsigned char out[HEADER_SIZE]
    _check_max_frame_size(max_frame_size)
    if HEADER_SIZE + length > max_frame_size:
        error = _header_error(
            HEADER_TOO_LARGE, PROTOCOL_VERSION, msg_type, flags, length, max_frame_size
        )
        raise LocalProtocolError(str(error))
    out[0] = PROTOCOL_VERSION
    out[1] = <unsigned char>msg_type
    out[2] = <unsigned char>flags
    out[3] = <unsigned char>(length >> 16)
    out[4] = <unsigned char>(length >> 8)
    out[5] = <unsigned char>length
    return PyBytes_FromStringAndSize(<const char *>out, HEADER_SIZE)


cdef class _ServerConnection:
    """What both server sides share (kaa_wire._connection's ``_Endpoint`` and
    ``_request_frame``): the framer, the end of stream, the state, and the one request."""

    cdef Framer _framer
    cdef object _max_frame_size
    cdef bint _closed
    cdef _ConnState _state

    def __init__(self, max_frame_size):
        _bind_connection_names()
        self._framer = Framer(max_frame_size)
        self._max_frame_size = max_frame_size
        self._closed = False
        self._state = _AWAITING

    @property
    def state(self):
        return _STATES[self._state]

    cdef int _expect(self, _ConnState state, str action) except -1:
        if self._state != state:
            raise LocalProtocolError(f"cannot {action} in state {self.state.name}")
        return 0

    def receive_data(self, data):
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if data:
            if self._closed:
                raise LocalProtocolError("data after end of stream")
            self._framer.receive_data(data)
        else:
            self._closed = True

    cdef object _request_frame(self, int msg_type, str refusal):
        """The exchange's one request frame, or None while it is incomplete."""
        self._expect(_AWAITING, "receive a request")
        try:
            frame = self._framer.next_frame()
        except RemoteProtocolError:
            self._state = _ERROR
            raise
        if frame is None:
            if self._closed:
                self._state = _ERROR
                raise MalformedFrame("connection closed before a whole frame arrived")
            return None
        self._state = _ERROR  # until the request is accepted whole
        if frame[0] != msg_type:
            raise UnexpectedMessage(refusal)
        if self._framer._end != self._framer._start:
            raise UnexpectedMessage("bytes after the request: one exchange per connection")
        return frame


cdef class OperationsServerConnection(_ServerConnection):
    """The Operations side of one exchange; kaa_wire._connection's class of the same name
    (its docstring is the contract), check for check and message for message."""

    cdef object _opener
    cdef object _verifier
    cdef object _ephemeral_public
    cdef object _response_secret    # bytes once the request opened, else None
    cdef public object payload

    def __init__(self, opener, verifier, *, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        _ServerConnection.__init__(self, max_frame_size)
        self._opener = opener
        self._verifier = verifier
        self._ephemeral_public = b""
        self._response_secret = None
        self.payload = None

    def next_event(self):
        frame = self._request_frame(
            MSG_REGISTER_REQUEST, "an Operations service takes REGISTER_REQUEST only"
        )
        if frame is None:
            return _NEED_DATA
        plaintext, self._ephemeral_public, self._response_secret = self._opener.open(
            frame[2], frame[3]
        )
        self.payload = parse_registration_payload(plaintext)
        self._state = _RECEIVED
        return self.payload

    def verify(self, key_der=None):
        """Check the proof of possession; the endpoint id. ``key_der``: stored key on reconnect."""
        self._expect(_RECEIVED, "verify")
        context = _REGISTER_CONTEXT + self._opener.public_key + self._ephemeral_public
        return self._verifier.verify(self.payload, context, key_der)

    def send_result(self, result):
        self._expect(_RECEIVED, "send a result")
        response_secret = self._response_secret
        self._response_secret = None
        self._state = _DONE
        return self._sealed(
            MSG_REGISTER_RESPONSE, 0, encode_registration_result(result), response_secret
        )

    def send_error(self, error):
        """The ERROR frame for ``error``: sealed once the request opened, plain before."""
        if self._state == _DONE:
            raise LocalProtocolError("this exchange was already answered")
        response_secret = self._response_secret
        self._response_secret = None
        self._state = _DONE
        if response_secret is None:
            return encode_frame(MSG_ERROR, _error_body(error), 0, self._max_frame_size)
        return self._sealed(MSG_ERROR, FLAG_SEALED, _error_body(error, True), response_secret)

    cdef bytes _sealed(self, int msg_type, int flags, bytes plaintext, object response_secret):
        # The server's own randomness, as on the pure path: a replayed request gets an
        # answer under a new key.
        header = _answer_header(
            msg_type, flags, RESPONSE_NONCE_SIZE + len(plaintext) + AEAD_TAG_SIZE,
            self._max_frame_size,
        )
        return header + seal_response(
            response_secret, plaintext, header, os.urandom(RESPONSE_NONCE_SIZE)
        )


cdef class BootstrapServerConnection(_ServerConnection):
    """The Bootstrap side of one exchange; kaa_wire._connection's class of the same name
    (its docstring is the contract), check for check and message for message."""

    cdef bytes _signed_part
    cdef public object request

    def __init__(self, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
        _ServerConnection.__init__(self, max_frame_size)
        self.request = None
        self._signed_part = b""

    def next_event(self):
        frame = self._request_frame(
            MSG_RESOLVE_REQUEST, "a Bootstrap service takes RESOLVE_REQUEST only"
        )
        if frame is None:
            return _NEED_DATA
        request = decode_resolve_request(frame[3])
        # Every node record is a TCP service: a request that cannot use TCP gets nothing.
        if _TCP not in request.transports:
            raise UnsupportedAlgorithm("no transport this Bootstrap serves (TCP, id 1)")
        self.request = request
        self._state = _RECEIVED
        return request

    def data_to_sign(
        self, nodes, *, server_time_ms, valid_for_s, signature_algorithm,
        key_generation=FIRST_KEY_GENERATION, rotations=(),
    ):
        """The bytes the Bootstrap key must sign for an answer bound to this request."""
        self._expect(_RECEIVED, "build a response")
        request = self.request
        if key_generation - len(rotations) != request.key_generation:
            raise LocalProtocolError(
                f"rotations must lead from the request's generation "
                f"{request.key_generation} to {key_generation}"
            )
        self._signed_part = resolve_response_signed_part(
            request.nonce, server_time_ms, valid_for_s, key_generation, signature_algorithm,
            nodes, rotations,
        )
        return resolve_signed_data(request.app_token, self._signed_part)

    def send_presigned(self, signed_part, signature):
        """Answer with a list signed in advance for this request's app token."""
        self._expect(_RECEIVED, "send a response")
        self._state = _DONE
        body = encode_resolve_response(signed_part, signature)
        return encode_frame(MSG_RESOLVE_RESPONSE, body, 0, self._max_frame_size)

    def send_response(self, signature):
        self._expect(_RECEIVED, "send a response")
        if not self._signed_part:
            raise LocalProtocolError("call data_to_sign first")
        self._state = _DONE
        body = encode_resolve_response(self._signed_part, signature)
        return encode_frame(MSG_RESOLVE_RESPONSE, body, 0, self._max_frame_size)

    def send_error(self, error):
        """The ERROR frame for ``error``; the connection is over after it."""
        self._state = _DONE
        return encode_frame(MSG_ERROR, _error_body(error), 0, self._max_frame_size)


cdef enum _Phase:
    _READING = 1
    _SERVING = 2
    _FINISHED = 3


cdef inline double _perf_counter() noexcept nogil:
    """time.perf_counter() on Linux (CLOCK_MONOTONIC), without a Python call."""
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return now.tv_sec + now.tv_nsec * 1e-9


cdef class ExchangeProtocol:
    """One connection of a service: servers/net.py's ExchangeProtocol (the contract), in C.

    ``ctx`` is the service's servers.net.ServiceContext; everything that is the service's
    (its checks, its store, its metrics and log lines) stays behind it, in Python.
    """

    cdef object _ctx
    cdef object _transport
    cdef object _conn
    cdef object _handle
    cdef _Phase _phase
    cdef bint _admitted
    cdef double _started
    cdef object __weakref__

    def __init__(self, ctx):
        _bind_connection_names()
        self._ctx = ctx
        self._transport = None
        self._conn = ctx.new_connection()
        self._handle = ctx.handle
        self._phase = _READING
        self._admitted = False
        self._started = 0.0

    # -- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport):
        self._transport = transport
        ctx = self._ctx
        if not ctx.admit():
            self._refuse(Overloaded("too many connections", retry_after_ms=ctx.retry_after_ms))
            return
        self._admitted = True
        ctx.deadlines.add(self)

    def data_received(self, data):
        if self._phase != _READING:
            return  # one exchange per connection: anything after the request is ignored
        self._conn.receive_data(data)
        self._poll()

    def eof_received(self):
        if self._phase == _READING:
            self._conn.receive_data(b"")
            self._poll()
        # Keep our side open: a peer that half-closed after its request still gets the answer.
        return True

    def connection_lost(self, exc):
        self._phase = _FINISHED
        self._ctx.deadlines.discard(self)
        if self._admitted:
            self._admitted = False
            self._ctx.release()

    def pause_writing(self):
        pass  # as asyncio.Protocol: one answer, then close; the close aborts a stuck peer

    def resume_writing(self):
        pass

    # -- the exchange -------------------------------------------------------------------

    cdef _poll(self):
        try:
            event = self._conn.next_event()
        except KaaWireError as exc:
            self._refuse(exc)
            return
        if event is _NEED_DATA:
            return
        self._phase = _SERVING
        self._ctx.deadlines.discard(self)
        self._started = _perf_counter()
        self._settle(self._handle, self._conn, event)

    def _served(self, answer):
        if answer.cancelled():  # the server is stopping
            if self._transport is not None:
                self._transport.abort()
            return
        self._settle(answer.result, None, None)

    cdef _settle(self, answer, conn, event):
        """Send what ``answer(conn, event)`` (or ``answer()``) gives, or wait for it: refuse
        what it raises."""
        try:
            result = answer() if conn is None else answer(conn, event)
        except KaaWireError as exc:
            self._refuse(exc)
        except Exception:
            self._ctx.failed(self._peer())
            self._refuse(InternalError("the server failed"))
        else:
            if isinstance(result, bytes):
                self._finish(result)
            else:  # read no more while the answer is pending (an immediate one closes)
                if self._transport is not None:
                    self._transport.pause_reading()
                result.add_done_callback(self._served)

    def read_timed_out(self):
        """Called by the service's ReadDeadlines when this connection's deadline passed."""
        if self._phase == _READING:
            seconds = self._ctx.read_timeout_s
            self._refuse(Timeout(f"no whole request within {seconds:g} s"))

    cdef _refuse(self, error):
        self._ctx.refused(error, self._peer)
        try:
            answer = self._conn.send_error(error)
        except KaaWireError:  # the core cannot frame it: just close
            answer = b""
        self._finish(answer)

    cdef _finish(self, answer):
        ctx = self._ctx
        if self._phase == _SERVING:
            ctx.served(_perf_counter() - self._started)
        self._phase = _FINISHED
        ctx.deadlines.discard(self)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if answer:
            transport.write(answer)
        transport.close()
        # close() flushes first; a peer that never reads would hold us forever: abort then.
        if transport.get_write_buffer_size():
            asyncio.get_running_loop().call_later(ctx.read_timeout_s, transport.abort)

    def _peer(self) -> str:
        """Looked up only to log a refusal or failure: a system call per connection else."""
        peer = None if self._transport is None else self._transport.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
