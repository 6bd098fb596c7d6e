"""Sans-IO connections for both roles of both services.

Theory of operation. The protocol carries exactly one exchange per TCP connection: the
endpoint sends one request frame, the server answers with one response or one ERROR frame
and closes. Each class below is the state of one side of one connection:

    ResolveClient              <-> BootstrapServerConnection
    RegisterClient             <-> OperationsServerConnection

All four share the verbs of h11: ``receive_data(bytes)`` (``b""`` means the peer closed),
``next_event()`` (an event, or :data:`NEED_DATA`), and ``send_*`` methods that return the
bytes to write. Nothing here reads a clock: times are passed in. Any peer misbehaviour
raises a :class:`RemoteProtocolError` subclass whose ``code`` the server puts in its ERROR
frame; calling a verb in the wrong state raises :class:`LocalProtocolError`.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from typing import Final

from cryptography.hazmat.primitives.asymmetric import x25519

from kaa_wire import _codec, _crypto
from kaa_wire._constants import (
    AEAD_TAG_SIZE,
    DEFAULT_MAX_FRAME_SIZE,
    FIRST_KEY_GENERATION,
    HEADER_SIZE,
    NONCE_SIZE,
    RESPONSE_NONCE_SIZE,
    SEALED_ERROR_MESSAGE_SIZE,
    FrameFlag,
    KeyExchangeAlgorithm,
    MessageType,
    Transport,
)
from kaa_wire._errors import (
    KaaWireError,
    LocalProtocolError,
    MalformedFrame,
    RemoteProtocolError,
    ReplayedRequest,
    StaleRequest,
    UnexpectedMessage,
    UnsupportedAlgorithm,
    error_for_code,
)
from kaa_wire._impl import (
    Framer,
    decode_resolve_request,
    encode_frame,
    encode_registration_result,
    encode_resolve_response,
    parse_registration_payload,
    resolve_response_signed_part,
    resolve_signed_data,
    seal_response,
)
from kaa_wire._messages import (
    ErrorMessage,
    Frame,
    OperationsNode,
    RegisterEnvelope,
    RegistrationPayload,
    RegistrationResult,
    ResolveRequest,
    RotationCertificate,
)
from kaa_wire._opener import RegistrationOpener  # the types; either implementation
from kaa_wire._registration import RegistrationVerifier
from kaa_wire._rotation import TrustedKey, follow_chain

__all__ = [
    "NEED_DATA",
    "NeedData",
    "Resolved",
    "Registered",
    "ResolveClient",
    "BootstrapServerConnection",
    "RegisterClient",
    "OperationsServerConnection",
    "check_freshness",
    "error_body",
    "sealed_frame",
    "UNBOUND_NONCE",
]


class NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


@dataclasses.dataclass(frozen=True, slots=True)
class Resolved:
    """A verified resolution answer.

    ``received_at`` is the caller's monotonic clock (seconds) when the answer arrived; with
    ``server_time_ms`` it lets a device without a real-time clock tell the server's time.
    ``bootstrap_key`` is the key that signed it: when its generation is above the one the
    endpoint trusted, the endpoint has followed a rotation and trusts this key from now on.
    """

    nodes: tuple[OperationsNode, ...]
    server_time_ms: int
    valid_for_s: int
    received_at: float
    bootstrap_key: TrustedKey | None = None

    def server_time_at(self, now: float) -> int:
        """The server's clock, in ms, at monotonic time ``now``."""
        return self.server_time_ms + max(0, round((now - self.received_at) * 1000))

    def expired(self, now: float) -> bool:
        return now - self.received_at >= self.valid_for_s


@dataclasses.dataclass(frozen=True, slots=True)
class Registered:
    result: RegistrationResult


class _State(enum.Enum):
    IDLE = "IDLE"  # nothing sent or received yet
    AWAITING = "AWAITING"  # request sent (client) or being received (server)
    RECEIVED = "RECEIVED"  # server: request decoded, response not yet sent
    DONE = "DONE"  # the one exchange is over
    ERROR = "ERROR"


class _Endpoint:
    """What all four sides share: a framer, an EOF flag and the state."""

    def __init__(self, max_frame_size: int) -> None:
        self._framer = Framer(max_frame_size)
        self._max_frame_size = max_frame_size
        self._closed = False
        self.state = _State.IDLE

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if data:
            if self._closed:
                raise LocalProtocolError("data after end of stream")
            self._framer.receive_data(data)
        else:
            self._closed = True

    def _next_frame(self) -> Frame | None:
        try:
            frame = self._framer.next_frame()
        except RemoteProtocolError:
            self.state = _State.ERROR
            raise
        if frame is None and self._closed:
            self.state = _State.ERROR
            raise MalformedFrame("connection closed before a whole frame arrived")
        return frame

    def _request_frame(self, msg_type: MessageType, refusal: str) -> Frame | None:
        """A server side's one request frame, or None while it is incomplete."""
        self._expect(_State.AWAITING, "receive a request")
        frame = self._next_frame()
        if frame is None:
            return None
        self.state = _State.ERROR  # until the request is accepted whole
        if frame.msg_type != msg_type:
            raise UnexpectedMessage(refusal)
        if self._framer.buffered:
            raise UnexpectedMessage("bytes after the request: one exchange per connection")
        return frame

    def _frame(self, msg_type: int, body: bytes, flags: int = 0) -> bytes:
        return encode_frame(msg_type, body, flags, self._max_frame_size)

    def _expect(self, state: _State, action: str) -> None:
        if self.state is not state:
            raise LocalProtocolError(f"cannot {action} in state {self.state.name}")


def _raise_plain_error(frame: Frame) -> None:
    error = _codec.decode_error(frame.body)
    raise error_for_code(error.code, error.message, error.retry_after_ms)


# -- resolution ---------------------------------------------------------------------------


#: The nonce of a cached (pre-signed) resolution answer, which answers no request in
#: particular. Clients take one only when their SDK configuration allows it.
UNBOUND_NONCE = bytes(NONCE_SIZE)


class ResolveClient(_Endpoint):
    """The endpoint's side of a resolution: ask, then verify the signed answer.

    ``bootstrap_key`` of generation ``key_generation`` is the Bootstrap key the endpoint
    trusts; an answer signed by a later generation must carry the rotation certificates
    that lead to it (docs/protocol.md 4.5). ``accept_unbound`` also accepts answers signed
    in advance (nonce :data:`UNBOUND_NONCE`) by a Bootstrap in cached-signature mode;
    docs/protocol.md gives the trade-off.
    """

    def __init__(
        self,
        app_token: str,
        bootstrap_key: _crypto.PublicKey,
        *,
        nonce: bytes,
        key_generation: int = FIRST_KEY_GENERATION,
        accept_unbound: bool = False,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        super().__init__(max_frame_size)
        self._trusted = TrustedKey(key_generation, bootstrap_key)
        self.request = ResolveRequest(app_token, nonce, key_generation=key_generation)
        self._accept_unbound = accept_unbound

    def send_request(self) -> bytes:
        self._expect(_State.IDLE, "send a request")
        self.state = _State.AWAITING
        return self._frame(MessageType.RESOLVE_REQUEST, _codec.encode_resolve_request(self.request))

    def next_event(self, now: float) -> Resolved | NeedData:
        """The verified answer, received at monotonic time ``now``, or NEED_DATA."""
        self._expect(_State.AWAITING, "receive a response")
        frame = self._next_frame()
        if frame is None:
            return NEED_DATA
        self.state = _State.ERROR
        if frame.msg_type == MessageType.ERROR and not frame.flags:
            _raise_plain_error(frame)
        if frame.msg_type != MessageType.RESOLVE_RESPONSE:
            raise UnexpectedMessage(f"expected RESOLVE_RESPONSE, got type 0x{frame.msg_type:02x}")
        response = _codec.decode_resolve_response(frame.body)
        # The chain from the trusted key to the signer first, then the answer with the
        # signer: a retired key, or a chain with a gap, fails here.
        signer = follow_chain(self._trusted, response.key_generation, response.rotations)
        signed = resolve_signed_data(self.request.app_token, response.signed_part)
        _crypto.verify_signature(
            signer.public_key, response.signature_algorithm, signed, response.signature
        )
        # Only now is the content trusted; the nonce proves it answers this request.
        unbound = response.nonce == UNBOUND_NONCE and self._accept_unbound
        if response.nonce != self.request.nonce and not unbound:
            raise ReplayedRequest("resolution answer echoes another nonce")
        if response.valid_for_s == 0:
            raise StaleRequest("resolution answer is already expired")
        self.state = _State.DONE
        return Resolved(
            response.nodes, response.server_time_ms, response.valid_for_s, now, signer
        )


class BootstrapServerConnection(_Endpoint):
    """The Bootstrap side: read one request, then answer with a signed list or an error.

    Signing is split from sending so the caller can sign on another thread:
    ``data = conn.data_to_sign(...)``, then ``conn.send_response(signer.sign(data))``.
    """

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        super().__init__(max_frame_size)
        self.state = _State.AWAITING
        self.request: ResolveRequest | None = None
        self._signed_part = b""

    def next_event(self) -> ResolveRequest | NeedData:
        frame = self._request_frame(
            MessageType.RESOLVE_REQUEST, "a Bootstrap service takes RESOLVE_REQUEST only"
        )
        if frame is None:
            return NEED_DATA
        request = decode_resolve_request(frame.body)
        # Every node record is a TCP service: a request that cannot use TCP gets nothing.
        if Transport.TCP not in request.transports:
            raise UnsupportedAlgorithm("no transport this Bootstrap serves (TCP, id 1)")
        self.request = request
        self.state = _State.RECEIVED
        return request

    def data_to_sign(
        self,
        nodes: tuple[OperationsNode, ...],
        *,
        server_time_ms: int,
        valid_for_s: int,
        signature_algorithm: int,
        key_generation: int = FIRST_KEY_GENERATION,
        rotations: tuple[RotationCertificate, ...] = (),
    ) -> bytes:
        """The bytes the Bootstrap key must sign for an answer bound to this request.

        ``key_generation`` is the signing key's; ``rotations`` the certificates from the
        generation the request trusts to it.
        """
        self._expect(_State.RECEIVED, "build a response")
        assert self.request is not None
        if key_generation - len(rotations) != self.request.key_generation:
            raise LocalProtocolError(
                f"rotations must lead from the request's generation "
                f"{self.request.key_generation} to {key_generation}"
            )
        self._signed_part = resolve_response_signed_part(
            self.request.nonce,
            server_time_ms,
            valid_for_s,
            key_generation,
            signature_algorithm,
            nodes,
            rotations,
        )
        return resolve_signed_data(self.request.app_token, self._signed_part)

    def send_presigned(self, signed_part: bytes, signature: bytes) -> bytes:
        """Answer with a list signed in advance for this request's app token.

        ``signed_part`` comes from :func:`kaa_wire._codec.resolve_response_signed_part`
        with nonce :data:`UNBOUND_NONCE` (cached-signature mode), and the rotations from
        this request's key generation.
        """
        self._expect(_State.RECEIVED, "send a response")
        self.state = _State.DONE
        body = encode_resolve_response(signed_part, signature)
        return self._frame(MessageType.RESOLVE_RESPONSE, body)

    def send_response(self, signature: bytes) -> bytes:
        self._expect(_State.RECEIVED, "send a response")
        if not self._signed_part:
            raise LocalProtocolError("call data_to_sign first")
        self.state = _State.DONE
        body = encode_resolve_response(self._signed_part, signature)
        return self._frame(MessageType.RESOLVE_RESPONSE, body)

    def send_error(self, error: KaaWireError) -> bytes:
        """The ERROR frame for ``error``; the connection is over after it."""
        self.state = _State.DONE
        return self._frame(MessageType.ERROR, error_body(error))


def error_body(error: KaaWireError, sealed: bool = False) -> bytes:
    """The ERROR body of ``error`` (the plaintext, when ``sealed``).

    A sealed one carries a message of exactly SEALED_ERROR_MESSAGE_SIZE bytes, cut or padded
    with spaces: its length must not tell the path which refusal it holds.
    """
    size = SEALED_ERROR_MESSAGE_SIZE if sealed else 255
    text = error.message.encode()[:size].decode(errors="ignore")
    if sealed:
        text += " " * (size - len(text.encode()))
    return _codec.encode_error(ErrorMessage(int(error.code), text, error.retry_after_ms))


# -- registration -------------------------------------------------------------------------


def check_freshness(timestamp_ms: int, now_ms: int, window_ms: int) -> None:
    """Raise StaleRequest unless ``timestamp_ms`` is within ``window_ms`` of ``now_ms``."""
    if abs(now_ms - timestamp_ms) > window_ms:
        skew_s = (now_ms - timestamp_ms) / 1000
        raise StaleRequest(f"timestamp is {skew_s:.1f} s off the server clock")


class RegisterClient(_Endpoint):
    """The endpoint's side of a registration: seal, sign, send; then open the answer.

    ``reconnect=True`` sends the 20-byte endpoint id instead of the DER key; the server must
    already hold the key. ``timestamp_ms`` is the server's time as the endpoint knows it
    (:meth:`Resolved.server_time_at`), never the device clock.
    """

    def __init__(
        self,
        node: OperationsNode,
        *,
        sdk_token: str,
        private_key: _crypto.PrivateKey,
        profile: bytes,
        timestamp_ms: int,
        reconnect: bool = False,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        ephemeral_key: x25519.X25519PrivateKey | None = None,
    ) -> None:
        super().__init__(max_frame_size)
        if node.kex_algorithm != KeyExchangeAlgorithm.X25519:
            raise UnsupportedAlgorithm(f"key exchange {node.kex_algorithm} is not supported")
        self.node = node
        self._private_key = private_key
        self._sdk_token = sdk_token
        self._profile = profile
        self._timestamp_ms = timestamp_ms
        self._reconnect = reconnect
        self._ephemeral_key = ephemeral_key
        self._session: _crypto.SessionKeys | None = None

    def send_request(self) -> bytes:
        self._expect(_State.IDLE, "send a request")
        session = _crypto.client_session(self.node.kex_public_key, self._ephemeral_key)
        key_der = _crypto.public_key_der(self._private_key)
        signed_part = _codec.registration_signed_part(
            key_is_hash=self._reconnect,
            signature_algorithm=_crypto.signature_algorithm_of(self._private_key),
            timestamp_ms=self._timestamp_ms,
            sdk_token=self._sdk_token,
            key=_crypto.endpoint_id(key_der) if self._reconnect else key_der,
            profile=self._profile,
        )
        context = _crypto.registration_signature_context(
            session.server_public_key, session.ephemeral_public_key
        )
        signature = _crypto.sign(self._private_key, context + signed_part)
        plaintext = _codec.registration_payload_bytes(signed_part, signature)
        envelope_head = _codec.encode_register_envelope(
            RegisterEnvelope(session.ephemeral_public_key, b"")
        )
        body_length = len(envelope_head) + len(plaintext) + AEAD_TAG_SIZE
        header = _frame_header(MessageType.REGISTER_REQUEST, 0, body_length, self._max_frame_size)
        sealed = _crypto.seal(session.request, plaintext, header + envelope_head)
        self._session = session
        self.state = _State.AWAITING
        return self._frame(MessageType.REGISTER_REQUEST, envelope_head + sealed)

    def next_event(self) -> Registered | NeedData:
        """The opened answer, or NEED_DATA. Errors raise; ``exc.sealed`` tells if authentic."""
        self._expect(_State.AWAITING, "receive a response")
        assert self._session is not None
        frame = self._next_frame()
        if frame is None:
            return NEED_DATA
        self.state = _State.ERROR
        if frame.msg_type == MessageType.ERROR:
            if not frame.flags & FrameFlag.SEALED:
                _raise_plain_error(frame)
            plaintext = _crypto.open_answer(
                self._session.response_secret, frame.body, frame.header
            )
            error = _codec.decode_error(plaintext, sealed=True)
            # (The padding of a sealed message is not part of what it says.)
            message = error.message.rstrip(" ")
            raise error_for_code(error.code, message, error.retry_after_ms, sealed=True)
        if frame.msg_type != MessageType.REGISTER_RESPONSE:
            raise UnexpectedMessage(f"expected REGISTER_RESPONSE, got type 0x{frame.msg_type:02x}")
        plaintext = _crypto.open_answer(self._session.response_secret, frame.body, frame.header)
        self.state = _State.DONE
        return Registered(_codec.decode_registration_result(plaintext))


def _frame_header(msg_type: int, flags: int, body_length: int, max_frame_size: int) -> bytes:
    # The AAD of a sealed frame is its own header, which holds the length of the sealed
    # body: build the frame around a placeholder body of the right size and keep the header.
    return encode_frame(msg_type, bytes(body_length), flags, max_frame_size)[:HEADER_SIZE]


class OperationsServerConnection(_Endpoint):
    """The Operations side: open and check one registration, then answer it sealed.

    ``next_event`` opens the payload; the caller then checks the SDK token and, for a
    reconnect, fetches the stored key, calls :meth:`verify`, stores the endpoint, and sends
    :meth:`send_result` or :meth:`send_error`. Errors after the payload opened are sealed, so
    the endpoint can trust them. ``opener`` holds the node's static X25519 key; build it once
    and share it between connections.
    """

    def __init__(
        self,
        opener: RegistrationOpener,
        verifier: RegistrationVerifier,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        super().__init__(max_frame_size)
        self.state = _State.AWAITING
        self._opener = opener
        self._verifier = verifier
        self._ephemeral_public = b""
        self._response_secret: bytes | None = None  # set once the request opened
        self.payload: RegistrationPayload | None = None

    def next_event(self) -> RegistrationPayload | NeedData:
        frame = self._request_frame(
            MessageType.REGISTER_REQUEST, "an Operations service takes REGISTER_REQUEST only"
        )
        if frame is None:
            return NEED_DATA
        plaintext, self._ephemeral_public, self._response_secret = self._opener.open(
            frame.header, frame.body
        )
        self.payload = parse_registration_payload(plaintext)
        self.state = _State.RECEIVED
        return self.payload

    def verify(self, key_der: bytes | None = None) -> bytes:
        """Check the proof of possession; the endpoint id. ``key_der``: stored key on reconnect."""
        self._expect(_State.RECEIVED, "verify")
        assert self.payload is not None
        context = _crypto.registration_signature_context(
            self._opener.public_key, self._ephemeral_public
        )
        return self._verifier.verify(self.payload, context, key_der)

    def send_result(self, result: RegistrationResult) -> bytes:
        self._expect(_State.RECEIVED, "send a result")
        response_secret, self._response_secret = self._response_secret, None
        assert response_secret is not None
        self.state = _State.DONE
        return self._sealed(
            MessageType.REGISTER_RESPONSE, 0, encode_registration_result(result), response_secret
        )

    def send_error(self, error: KaaWireError) -> bytes:
        """The ERROR frame for ``error``: sealed once the request opened, plain before."""
        if self.state is _State.DONE:
            # One exchange, one answer (docs/protocol.md section 2).
            raise LocalProtocolError("this exchange was already answered")
        response_secret, self._response_secret = self._response_secret, None
        self.state = _State.DONE
        if response_secret is None:
            return self._frame(MessageType.ERROR, error_body(error))
        body = error_body(error, sealed=True)
        return self._sealed(MessageType.ERROR, FrameFlag.SEALED, body, response_secret)

    def _sealed(
        self, msg_type: int, flags: int, plaintext: bytes, response_secret: bytes
    ) -> bytes:
        # The server's own randomness: a replayed request gets an answer under a new key.
        return sealed_frame(
            msg_type,
            flags,
            plaintext,
            response_secret,
            os.urandom(RESPONSE_NONCE_SIZE),
            self._max_frame_size,
        )


def sealed_frame(
    msg_type: int,
    flags: int,
    plaintext: bytes,
    response_secret: bytes,
    response_nonce: bytes,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> bytes:
    """A whole sealed answer frame (docs/protocol.md 5.1, 5.5 and 7).

    ``response_nonce`` must be fresh random bytes; only the test vectors fix it.
    """
    header = _frame_header(
        msg_type, flags, RESPONSE_NONCE_SIZE + len(plaintext) + AEAD_TAG_SIZE, max_frame_size
    )
    return header + seal_response(response_secret, plaintext, header, response_nonce)
