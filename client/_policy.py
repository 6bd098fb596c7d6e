"""Client policy, shared by both transports: which server, how long to wait, what it means.

Theory of operation. :class:`RegistrationPlan` is a generator that never touches a socket,
a clock or a sleep. It yields two kinds of actions:

* :class:`Exchange`: connect to ``host:port``, write ``request``, feed every received chunk
  to :meth:`Exchange.receive` (``b""`` at end of stream) until it returns something other
  than ``NEED_DATA``; send that back with ``generator.send``. Any ``OSError``,
  ``EOFError`` or :class:`kaa_wire.KaaWireError` (timeouts included) goes back with
  ``generator.throw`` instead.
* :class:`Sleep`: wait that many seconds, then ``send(None)``.

Its return value (``StopIteration.value``) is the :class:`Outcome`. ``_blocking.py`` runs
it over blocking sockets and ``_asyncio.py`` over asyncio streams; each is a loop of a
dozen lines. The monotonic clock, the randomness and the sleep are injected, so tests run
the same plan deterministically.

The rules (docs/client.md gives the reasons):

1. Optional random initial hold-off, uniform in [0, ``initial_holdoff_s``].
2. Resolve through a Bootstrap chosen at random, then the next ones in list order. Any
   failure there (no connection, timeout, bad signature, a retired key or a broken
   rotation chain, wrong nonce, expired, an ERROR frame, an empty list) counts against
   that Bootstrap: back off, try the next one. A verified answer signed by a newer key
   generation makes that key the trusted one, at once (:attr:`RegistrationPlan.trust`;
   the Device persists it).
3. Order the Operations nodes by priority, highest first; among equal priorities at random,
   weighted by ``weight``; nodes of weight 0 are that priority's standbys, after its other
   nodes, in uniform random order. Try them in that order (docs/protocol.md 4.2).
4. A registered device sends its key hash (``reconnect=True``), whether or not the profile
   changed; an ``UnknownKeyHash`` answer makes it retry the same node at once with the full
   key. An unregistered device sends the full key.
5. A sealed ``RevokedEndpoint`` ends the plan with :class:`Revoked`. An unsealed one could
   be forged by anyone on the path: it counts as a failure of that server.
6. A ``StaleRequest`` or ``ReplayedRequest`` (a failure, so after a backoff), or a
   resolution that expired (no failure, at once), means re-resolve (next Bootstrap).
   Request timestamps are the server time the resolution tells, and always later than
   the last accepted one (kept in the state) and than any sent in this plan, so a device
   never replays itself.
7. Any other failure: back off, move to the next node; when the list is used up, re-resolve
   through the next Bootstrap.
8. Backoff is exponential with full jitter: after the n-th consecutive failure (n from 0),
   wait uniform(0, min(max_delay_s, base_delay_s * 2**n)), and never less than the
   ``retry_after_ms`` of an ``Overloaded`` error (capped at ``max_delay_s``).
9. Give up with :class:`Failed` when the next wait would pass ``deadline_s`` (counted from
   the end of the hold-off) or the failure count reaches ``max_failures`` (both off by
   default: a device keeps trying).
10. Give up at once with a :class:`Failed` whose ``configuration_error`` is True when the
   SDK configuration is wrong and retrying cannot help (docs/client.md, "Configuration
   errors"): a *sealed* ``UNKNOWN_SDK_TOKEN`` (only the node holding the key the signed
   resolution named can seal it); or, for verdicts anyone on a path could cause (a plain
   ``UNKNOWN_APPLICATION``, a resolution that fails verification under the configured
   Bootstrap key), when the configuration names two or more distinct Bootstraps and every
   one of them gave that same verdict at its last answer.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable, Generator, Sequence
from typing import Any, Final

from client._state import ApplicationState, DeviceState, ServerInfo, profile_hash
from client._trust import BootstrapTrust
from kaa_wire._connection import NeedData, RegisterClient, Registered, ResolveClient
from kaa_wire._connection import Resolved as _Resolved
from kaa_wire._constants import MAX_PROFILE_SIZE, NONCE_SIZE, RegistrationStatus
from kaa_wire._errors import (
    BadSignature,
    KaaWireError,
    LocalProtocolError,
    Overloaded,
    RemoteProtocolError,
    ReplayedRequest,
    RevokedEndpoint,
    StaleRequest,
    UnexpectedMessage,
    UnknownApplication,
    UnknownKeyHash,
    UnknownSdkToken,
)
from kaa_wire._messages import OperationsNode, RegistrationResult
from kaa_wire._rotation import TrustedKey, key_fingerprint
from kaa_wire.crypto import PrivateKey
from kaa_wire.sdk_config import SdkConfig

__all__ = [
    "TRANSPORT_ERRORS",
    "Attempt",
    "Connected",
    "Event",
    "Exchange",
    "Failed",
    "KeyRotated",
    "NoOperationsServers",
    "Outcome",
    "RegistrationPlan",
    "RetryPolicy",
    "Revoked",
    "Sleep",
    "Waiting",
    "backoff_delay",
    "order_nodes",
]

#: What a transport hands back to the plan with ``throw``: the failure of one exchange.
TRANSPORT_ERRORS: Final = (OSError, EOFError, KaaWireError)



class NoOperationsServers(RemoteProtocolError):
    """A verified resolution answer that lists no Operations service."""


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How persistent the client is. The defaults suit a device that must keep trying.

    ``base_delay_s`` 1 s and ``max_delay_s`` 300 s: a fleet whose servers are all down
    settles, after about nine failures, at one attempt per device per 150 s on average.
    ``exchange_timeout_s`` bounds one connect + request + response. ``initial_holdoff_s``
    (off by default) spreads a mass power-up. ``use_server_hints`` lets the ``retry_base_ms``
    of the last sealed registration result raise (never lower) the base delay.
    """

    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    exchange_timeout_s: float = 10.0
    initial_holdoff_s: float = 0.0
    deadline_s: float | None = None
    max_failures: int | None = None
    use_server_hints: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.base_delay_s <= self.max_delay_s:
            raise ValueError("need 0 < base_delay_s <= max_delay_s")
        if self.exchange_timeout_s <= 0 or self.initial_holdoff_s < 0:
            raise ValueError("exchange_timeout_s must be > 0 and initial_holdoff_s >= 0")
        if self.deadline_s is not None and self.deadline_s < 0:
            raise ValueError("deadline_s must be >= 0")
        if self.max_failures is not None and self.max_failures < 1:
            raise ValueError("max_failures must be >= 1")


def backoff_delay(
    failures: int, base_s: float, cap_s: float, rng: random.Random, retry_after_s: float = 0.0
) -> float:
    """Full jitter after ``failures`` earlier consecutive failures, at least ``retry_after_s``."""
    ceiling = min(cap_s, base_s * 2.0 ** min(failures, 64))
    return max(rng.uniform(0.0, ceiling), min(retry_after_s, cap_s))


def order_nodes(nodes: Sequence[OperationsNode], rng: random.Random) -> list[OperationsNode]:
    """Highest priority first; ties in weighted random order, weight-0 standbys last."""
    ordered: list[OperationsNode] = []
    for priority in sorted({node.priority for node in nodes}, reverse=True):
        group = [node for node in nodes if node.priority == priority]
        while group and any(node.weight for node in group):
            index = rng.choices(range(len(group)), weights=[n.weight for n in group])[0]
            ordered.append(group.pop(index))
        rng.shuffle(group)  # what is left all weigh 0
        ordered.extend(group)
    return ordered


# -- what the plan reports -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """One exchange with one server: ``stage`` is ``"resolve"`` or ``"register"``.

    ``cause`` is None when it succeeded. ``sent``/``received`` are bytes on the wire (TCP
    payload), for the record and for docs/client.md's figures.
    """

    stage: str
    host: str
    port: int
    cause: BaseException | None
    sent: int
    received: int
    reconnect: bool = False

    @property
    def ok(self) -> bool:
        return self.cause is None

    def describe(self) -> str:
        what = "ok" if self.cause is None else _describe_error(self.cause)
        return f"{self.stage} {self.host}:{self.port}: {what}"


@dataclasses.dataclass(frozen=True, slots=True)
class KeyRotated:
    """A verified answer led, through its rotation certificates, to a newer Bootstrap key:
    the device trusts it (and no longer the one before) from now on."""

    host: str
    port: int
    generation: int
    key_sha256: str

    def describe(self) -> str:
        return (
            f"bootstrap key rotated to generation {self.generation} "
            f"({self.key_sha256[:16]}...) via {self.host}:{self.port}"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Waiting:
    """The plan waits ``delay_s`` before its next exchange, because of ``reason``."""

    delay_s: float
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Connected:
    """Registered: the server accepted the endpoint and sent the application state."""

    endpoint_id: str
    registration_status: RegistrationStatus
    application_state: ApplicationState
    server: ServerInfo
    result: RegistrationResult
    attempts: tuple[Attempt, ...]
    #: The request timestamp (server time, ms) the server accepted.
    timestamp_ms: int

    @property
    def status(self) -> str:
        """``"new"``, ``"existing"`` or ``"profile_updated"``."""
        return self.registration_status.name.lower()

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "registered": True,
            "endpoint_id": self.endpoint_id,
            "application_state": self.application_state.to_json(),
            "operations_server": self.server.to_json(),
            "reconnect_after_s": self.result.reconnect_after_s,
            "attempts": [a.describe() for a in self.attempts],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Revoked:
    """The Operations service said, in a sealed (authentic) error, that this endpoint is
    revoked. Retrying will not help; the device needs its operator."""

    endpoint_id: str
    message: str
    server: ServerInfo
    attempts: tuple[Attempt, ...]
    status: str = "revoked"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "registered": False,
            "endpoint_id": self.endpoint_id,
            "message": self.message,
            "operations_server": self.server.to_json(),
            "attempts": [a.describe() for a in self.attempts],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Failed:
    """Gave up (deadline or failure budget): ``cause`` is the last failure's exception."""

    endpoint_id: str
    reason: str
    cause: BaseException | None
    attempts: tuple[Attempt, ...]
    status: str = "failed"
    #: The SDK configuration is wrong (its SDK token, application token or Bootstrap key):
    #: retrying will not help (rule 10 of the module doc).
    configuration_error: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "registered": False,
            "endpoint_id": self.endpoint_id,
            "reason": self.reason,
            "configuration_error": self.configuration_error,
            "cause": None if self.cause is None else _describe_error(self.cause),
            "attempts": [a.describe() for a in self.attempts],
        }


Outcome = Connected | Revoked | Failed
Event = Attempt | Waiting | KeyRotated | Connected | Revoked | Failed


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, KaaWireError):
        sealed = " (sealed)" if exc.sealed else ""
        return f"{type(exc).__name__}{sealed}: {exc.message}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# -- actions --------------------------------------------------------------------------------


class Exchange:
    """One request/response exchange the transport must carry out (see module doc)."""

    __slots__ = (
        "_clock",
        "_conn",
        "host",
        "port",
        "received",
        "reconnect",
        "request",
        "sent",
        "stage",
    )

    def __init__(
        self,
        stage: str,
        node: tuple[str, int],
        conn: ResolveClient | RegisterClient,
        clock: Callable[[], float],
        *,
        reconnect: bool = False,
    ) -> None:
        self.stage = stage
        self.host, self.port = node
        #: A registration that sends the key hash.
        self.reconnect = reconnect
        self._conn = conn
        self._clock = clock
        self.request = conn.send_request()
        #: Bytes the transport has written and received so far.
        self.sent = 0
        self.received = 0

    def receive(self, data: bytes) -> _Resolved | Registered | NeedData:
        """Feed received bytes (``b""`` = end of stream); the event, or NEED_DATA."""
        self.received += len(data)
        self._conn.receive_data(data)
        if isinstance(self._conn, ResolveClient):
            return self._conn.next_event(self._clock())
        return self._conn.next_event()


@dataclasses.dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Action = Exchange | Sleep


class _GiveUp(Exception):
    def __init__(self, reason: str, *, configuration_error: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.configuration_error = configuration_error


#: Resolution verdicts that say the SDK configuration is wrong, though anyone on the path
#: could have caused them (unsigned, or a signature that does not verify): trusted only
#: when every configured Bootstrap, two or more, agrees (rule 10).
_UNTRUSTED_CONFIGURATION_VERDICTS: Final = {
    UnknownApplication: "the application token is unknown to every Bootstrap",
    BadSignature: "no Bootstrap's answer verifies under the configured Bootstrap key",
}


class _Reresolve(Exception):
    """The current resolution cannot be used any more: get a fresh one."""


# -- the plan -------------------------------------------------------------------------------


class RegistrationPlan:
    """One registration attempt sequence for one device, until an :data:`Outcome`.

    ``resolved`` is a still-valid earlier resolution to start from (the Device keeps the
    last one); after the plan, :attr:`resolved` holds the one it used last, or None.
    ``anchors`` are the SDK configuration's Bootstrap keys (one per server), ``trust`` what
    the device learned since; after the plan, :attr:`trust` holds any rotation followed.
    """

    def __init__(
        self,
        config: SdkConfig,
        anchors: Sequence[TrustedKey],
        private_key: PrivateKey,
        state: DeviceState,
        profile: bytes,
        *,
        policy: RetryPolicy,
        rng: random.Random,
        clock: Callable[[], float],
        on_event: Callable[[Event], None] | None = None,
        resolved: _Resolved | None = None,
        trust: BootstrapTrust | None = None,
    ) -> None:
        if len(profile) > MAX_PROFILE_SIZE:
            raise LocalProtocolError(f"a profile is at most {MAX_PROFILE_SIZE} bytes")
        if len(anchors) != len(config.bootstrap_servers):
            raise LocalProtocolError("one anchor key per Bootstrap server")
        self._config = config
        self._anchors = anchors
        #: The Bootstrap keys learned from rotations, including any this plan followed.
        self.trust = trust or BootstrapTrust()
        self._key = private_key
        self._state = state
        self._profile = profile
        self._policy = policy
        self._rng = rng
        self._clock = clock
        self._on_event = on_event
        self.resolved = resolved
        base = policy.base_delay_s
        if policy.use_server_hints and state.retry_base_ms:
            base = min(max(base, state.retry_base_ms / 1000), policy.max_delay_s)
        self._base_delay_s = base
        self._failures = 0
        self._attempts: list[Attempt] = []
        self._last_cause: BaseException | None = None
        self._deadline: float | None = None
        #: Send the key hash (the server should hold the key) rather than the key.
        self._reconnect = state.registered
        self._last_sent_ms = 0
        self._next_bootstrap = rng.randrange(len(config.bootstrap_servers))
        #: Each distinct Bootstrap's configuration verdict at its last answer (rule 10).
        self._verdicts: dict[tuple[str, int], type[KaaWireError]] = {}
        self._bootstraps = {(b.host, b.port) for b in config.bootstrap_servers}

    def steps(self) -> Generator[Action, Any, Outcome]:
        """The generator the transports run (see the module doc)."""
        policy = self._policy
        try:
            if policy.initial_holdoff_s > 0:
                yield from self._wait(
                    self._rng.uniform(0.0, policy.initial_holdoff_s), "initial hold-off"
                )
            if policy.deadline_s is not None:  # counted from the first attempt
                self._deadline = self._clock() + policy.deadline_s
            while True:
                if self.resolved is None or self.resolved.expired(self._clock()):
                    self.resolved = yield from self._resolve()
                    if self.resolved is None:
                        continue
                try:
                    for node in order_nodes(self.resolved.nodes, self._rng):
                        outcome = yield from self._register(node)
                        if outcome is not None:
                            return self._emit(outcome)
                except _Reresolve:
                    pass
                self.resolved = None
        except _GiveUp as stop:
            failed = Failed(
                self._state.endpoint_id,
                stop.reason,
                self._last_cause,
                tuple(self._attempts),
                configuration_error=stop.configuration_error,
            )
            return self._emit(failed)

    # Each helper below is a sub-generator: ``yield from`` it inside steps().

    def _resolve(self) -> Generator[Action, Any, _Resolved | None]:
        index = self._next_bootstrap
        self._next_bootstrap = (index + 1) % len(self._config.bootstrap_servers)
        server = self._config.bootstrap_servers[index]
        anchor = self._anchors[index]
        trusted = self.trust.current(anchor)
        conn = ResolveClient(
            self._config.application_token,
            trusted.public_key,
            nonce=os.urandom(NONCE_SIZE),  # never from the injected rng: it must not repeat
            key_generation=trusted.generation,
            accept_unbound=self._config.accept_unbound_resolution,
            max_frame_size=self._config.max_frame_size,
        )
        exchange = Exchange("resolve", (server.host, server.port), conn, self._clock)
        try:
            resolved: _Resolved = yield exchange
        except TRANSPORT_ERRORS as exc:
            verdict = self._judge((server.host, server.port), exc)
            if verdict is not None:
                self._record(exchange, exc)
                raise _GiveUp(verdict, configuration_error=True) from None
            yield from self._failed(exchange, exc)
            return None
        self._verdicts.pop((server.host, server.port), None)
        signer = resolved.bootstrap_key
        if signer is not None and signer.generation > trusted.generation:
            # Verified link by link: from now on only this key signs for the anchor.
            self.trust = self.trust.learn(anchor, signer)
            rotated = KeyRotated(
                server.host, server.port, signer.generation, key_fingerprint(signer.der)
            )
            self._emit(rotated)
        if not resolved.nodes:
            empty = NoOperationsServers("the Bootstrap listed no Operations service")
            yield from self._failed(exchange, empty)
            return None
        self._record(exchange, None)
        return resolved

    def _register(self, node: OperationsNode) -> Generator[Action, Any, Outcome | None]:
        while True:
            assert self.resolved is not None
            now = self._clock()
            if self.resolved.expired(now):
                raise _Reresolve
            # Never a timestamp sent before, even one the server never accepted
            # (docs/protocol.md section 6).
            timestamp_ms = max(
                self.resolved.server_time_at(now),
                self._state.last_timestamp_ms + 1,
                self._last_sent_ms + 1,
            )
            self._last_sent_ms = timestamp_ms
            reconnect = self._reconnect
            try:
                conn = RegisterClient(
                    node,
                    sdk_token=self._config.sdk_token,
                    private_key=self._key,
                    profile=self._profile,
                    timestamp_ms=timestamp_ms,
                    reconnect=reconnect,
                    max_frame_size=self._config.max_frame_size,
                )
                exchange = Exchange(
                    "register", (node.host, node.port), conn, self._clock, reconnect=reconnect
                )
            except RemoteProtocolError as exc:  # a node we cannot seal to (bad or unknown key)
                yield from self._failed(_NoExchange(node, reconnect), exc)
                return None
            try:
                registered: Registered = yield exchange
            except UnknownKeyHash as exc:
                if not reconnect:  # a full key cannot be unknown: the server misbehaves
                    yield from self._failed(exchange, exc)
                    return None
                # The server lost us (or never had us): send the key, now and from now on.
                # Sealed or not, obeying costs only bytes: the key is public.
                self._record(exchange, exc)
                self._reconnect = False
                continue
            except UnknownSdkToken as exc:
                if not exc.sealed:  # anyone on the path can send a plain error
                    yield from self._failed(exchange, exc)
                    return None
                # Sealed: the node the signed resolution named says so; no node will differ.
                self._record(exchange, exc)
                raise _GiveUp(
                    f"the SDK token is refused: {exc.message}", configuration_error=True
                ) from None
            except RevokedEndpoint as exc:
                if not exc.sealed:  # anyone on the path can send a plain error
                    yield from self._failed(exchange, exc)
                    return None
                self._record(exchange, exc)
                revoked = Revoked(
                    self._state.endpoint_id,
                    exc.message,
                    ServerInfo.of(node),
                    tuple(self._attempts),
                )
                return revoked
            except (StaleRequest, ReplayedRequest) as exc:
                yield from self._failed(exchange, exc)
                raise _Reresolve from None
            except TRANSPORT_ERRORS as exc:
                yield from self._failed(exchange, exc)
                return None
            result = registered.result
            if result.endpoint_id.hex() != self._state.endpoint_id:
                wrong = UnexpectedMessage(f"result names endpoint {result.endpoint_id.hex()}")
                yield from self._failed(exchange, wrong)
                return None
            self._record(exchange, None)
            connected = Connected(
                endpoint_id=result.endpoint_id.hex(),
                registration_status=RegistrationStatus(result.status),
                application_state=ApplicationState.of(result),
                server=ServerInfo.of(node),
                result=result,
                attempts=tuple(self._attempts),
                timestamp_ms=timestamp_ms,
            )
            return connected

    def _judge(self, bootstrap: tuple[str, int], cause: BaseException) -> str | None:
        """Keep ``bootstrap``'s configuration verdict (another failure is none: forget
        it); the reason to give up when every configured Bootstrap, two or more, agrees
        (rule 10), else None."""
        kind = type(cause)
        if kind not in _UNTRUSTED_CONFIGURATION_VERDICTS:
            self._verdicts.pop(bootstrap, None)
            return None
        self._verdicts[bootstrap] = kind
        if len(self._bootstraps) < 2 or {self._verdicts.get(b) for b in self._bootstraps} != {
            kind
        }:
            return None
        return f"{_UNTRUSTED_CONFIGURATION_VERDICTS[kind]} ({len(self._bootstraps)} agree)"

    def _record(self, exchange: Exchange | _NoExchange, cause: BaseException | None) -> None:
        attempt = Attempt(
            exchange.stage,
            exchange.host,
            exchange.port,
            cause,
            exchange.sent,
            exchange.received,
            exchange.reconnect,
        )
        self._attempts.append(attempt)
        if cause is not None:
            self._last_cause = cause
        self._emit(attempt)

    def _failed(
        self, exchange: Exchange | _NoExchange, cause: BaseException
    ) -> Generator[Action, Any, None]:
        self._record(exchange, cause)
        yield from self._backoff(cause)

    def _backoff(self, cause: BaseException) -> Generator[Action, Any, None]:
        policy = self._policy
        self._failures += 1
        if policy.max_failures is not None and self._failures >= policy.max_failures:
            raise _GiveUp(f"{self._failures} failed attempts")
        retry_after_s = cause.retry_after_ms / 1000 if isinstance(cause, Overloaded) else 0.0
        delay = backoff_delay(
            self._failures - 1, self._base_delay_s, policy.max_delay_s, self._rng, retry_after_s
        )
        yield from self._wait(delay, "backoff")

    def _wait(self, delay: float, reason: str) -> Generator[Action, Any, None]:
        if self._deadline is not None and self._clock() + delay > self._deadline:
            raise _GiveUp(f"deadline of {self._policy.deadline_s:g} s reached")
        self._emit(Waiting(delay, reason))
        yield Sleep(delay)

    def _emit(self, event: Any) -> Any:
        if self._on_event is not None:
            self._on_event(event)
        return event


class _NoExchange:
    """Stands for an exchange that could not even be built (nothing was sent)."""

    stage = "register"
    sent = 0
    received = 0

    def __init__(self, node: OperationsNode, reconnect: bool) -> None:
        self.host, self.port = node.host, node.port
        self.reconnect = reconnect


def updated_state(state: DeviceState, outcome: Outcome, profile: bytes) -> DeviceState | None:
    """The state to save after ``outcome``, or None when nothing changed worth a write."""
    if isinstance(outcome, Connected):
        result = outcome.result
        return dataclasses.replace(
            state,
            registered=True,
            status=outcome.status,
            operations_server=outcome.server,
            profile_sha256=profile_hash(profile),
            application_state=outcome.application_state,
            reconnect_after_s=result.reconnect_after_s,
            retry_base_ms=result.retry_base_ms,
            last_timestamp_ms=outcome.timestamp_ms,
        )
    if isinstance(outcome, Revoked):
        # Not registered any more: should the operator restore it, the next boot registers
        # in full (EXISTING) rather than reconnecting.
        return dataclasses.replace(
            state, registered=False, status="revoked", operations_server=outcome.server
        )
    return None
