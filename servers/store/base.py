"""The registry store: a backend-neutral async interface and the records it holds.

Everything a service or the Control tool keeps lives behind :class:`RegistryStore`:
applications, SDK tokens (by SHA-256 only), endpoints, Operations node leases and the
audit log. Records are frozen dataclasses of plain values (``bytes``, ``str``, ``int``),
times are integer milliseconds passed in by the caller (the store never reads a clock),
and nothing in this module knows which database sits behind it.

Two rules every backend keeps:

* **Acknowledged means durable.** An awaited write returns only after its transaction
  committed durably; a service answers the endpoint after that, never before.
* **Replay defence is atomic.** :meth:`RegistryStore.register_endpoint` checks that the
  request timestamp is strictly greater than the endpoint's last accepted one inside the
  same write transaction that stores it (docs/protocol-decisions.md).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import enum
import zlib
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple

from kaa_wire import RegistrationStatus, Topic
from servers.caching import MISS, Miss

if TYPE_CHECKING:  # (console.py imports the row converters, which import this module)
    from servers.store.console import AdminCredential, EndpointPage, EndpointQuery

__all__ = [
    "Balancing",
    "Application",
    "ApplicationChanges",
    "SdkToken",
    "EndpointStatus",
    "Endpoint",
    "EndpointKey",
    "EndpointWrite",
    "WriteOutcome",
    "Node",
    "AuditEntry",
    "StoreError",
    "StoreBusy",
    "LeaseHeld",
    "AlreadyExists",
    "NotFound",
    "RegistryStore",
]


class Balancing(enum.StrEnum):
    """How a Bootstrap orders the Operations services of an application (docs/balancing.md)."""

    STATIC = "static"
    LEAST_LOADED = "least-loaded"
    WEIGHTED_RANDOM = "weighted-random"
    HASH_AFFINITY = "hash-affinity"


@dataclasses.dataclass(frozen=True, slots=True)
class Application:
    token: str
    name: str
    config: bytes
    config_version: int
    topics: tuple[Topic, ...]
    balancing: Balancing
    #: Answer resolutions with a list signed once per change (UNBOUND_NONCE).
    cached_signature: bool
    created_ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class ApplicationChanges:
    """What ``update_application`` changes; None leaves a field as it is.

    A new ``config`` without a ``config_version`` bumps the version by one.
    """

    name: str | None = None
    config: bytes | None = None
    config_version: int | None = None
    topics: tuple[Topic, ...] | None = None
    balancing: Balancing | None = None
    cached_signature: bool | None = None

    def applied_to(self, app: Application) -> Application:
        """``app`` with these changes: what every backend stores."""
        version = self.config_version
        if version is None:
            version = app.config_version + (1 if self.config is not None else 0)
        return Application(
            token=app.token,
            name=app.name if self.name is None else self.name,
            config=app.config if self.config is None else self.config,
            config_version=version,
            topics=app.topics if self.topics is None else self.topics,
            balancing=app.balancing if self.balancing is None else self.balancing,
            cached_signature=(
                app.cached_signature if self.cached_signature is None else self.cached_signature
            ),
            created_ms=app.created_ms,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SdkToken:
    """An SDK token as stored: only its SHA-256 is kept."""

    token_hash: bytes
    application: str
    created_ms: int
    #: When the operator revoked it (devices using it are refused); None while it is live.
    revoked_ms: int | None = None


class EndpointStatus(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class EndpointKey(NamedTuple):
    """A registered endpoint's stored DER key and the application (token) it belongs to."""

    public_key: bytes
    application: str


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    endpoint_id: bytes
    public_key: bytes
    sdk_token_hash: bytes
    application: str
    profile: bytes
    profile_hash: bytes
    first_seen_ms: int
    last_seen_ms: int
    status: EndpointStatus
    #: The outcome of the last accepted registration.
    registration_status: RegistrationStatus
    #: The timestamp of the last accepted request; the next must be strictly greater.
    last_request_ms: int
    revoked_ms: int | None = None

    @property
    def registered(self) -> bool:
        """False for an id revoked before it ever registered (it has no key yet)."""
        return bool(self.public_key)


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointWrite:
    """One verified registration, ready to be stored."""

    endpoint_id: bytes
    public_key: bytes
    sdk_token_hash: bytes
    application: str
    profile: bytes
    profile_hash: bytes
    request_ms: int
    now_ms: int
    #: The request carried the full key (a first registration, or one after
    #: UNKNOWN_KEY_HASH), so the endpoint is most likely new. Only an ordering hint for
    #: the store: the outcome never depends on it.
    carried_key: bool = False


class WriteOutcome(enum.Enum):
    NEW = "NEW"
    EXISTING = "EXISTING"
    PROFILE_UPDATED = "PROFILE_UPDATED"
    #: The request timestamp is not newer than the last accepted one: nothing was written.
    REPLAYED = "REPLAYED"
    #: The endpoint is revoked: nothing was written.
    REVOKED = "REVOKED"
    #: The endpoint belongs to another application: nothing was written.
    OTHER_APPLICATION = "OTHER_APPLICATION"


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    """An Operations service under a lease; it drops out of answers when the lease lapses."""

    node_id: str
    host: str
    port: int
    kex_public_key: bytes
    priority: int
    weight: int
    #: Registrations per second over the last renewal interval, as the node reports it.
    load: int
    lease_expires_ms: int
    started_ms: int
    renewed_ms: int
    #: Which process holds the lease: a random token per process (its workers share it).
    #: Another holder cannot take a live lease (LeaseHeld), nor release it.
    holder: str = ""

    @property
    def access_point_id(self) -> int:
        """A stable u32 naming the node in resolution answers."""
        return zlib.crc32(self.node_id.encode())


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEntry:
    """A control action or revocation. ``detail`` never holds a token, key or profile."""

    at_ms: int
    actor: str
    action: str
    subject: str
    detail: str = ""
    seq: int = 0


class StoreError(Exception):
    """A store operation failed."""


class StoreBusy(StoreError):
    """The store is at capacity (bounded queue full, or the database stayed locked)."""


class LeaseHeld(StoreError):
    """Another process holds the live lease of this node id."""

    def __init__(self, node: Node, now_ms: int) -> None:
        self.node = node
        left_s = max(0, node.lease_expires_ms - now_ms) / 1000
        super().__init__(
            f"node id {node.node_id!r} is held by another live Operations service "
            f"({node.host}:{node.port}, lease for {left_s:.1f} s more): give each service its "
            "own --node-id, or stop the other one"
        )


class AlreadyExists(StoreError):
    """A record with that key exists."""


class NotFound(StoreError):
    """No record with that key."""


class Refused(StoreError):
    """A write's check refused the state it would make (nothing was written)."""


def run_check(check: Callable[[Application], None] | None, app: Application) -> None:
    """``check`` on the state a write would make, inside its transaction: its ValueError
    becomes :class:`Refused` (a StoreError, so a backend passes it on as it is)."""
    if check is None:
        return
    try:
        check(app)
    except ValueError as exc:
        raise Refused(str(exc)) from None


class RegistryStore(abc.ABC):
    """The async interface every backend implements; use as ``async with store:``."""

    async def __aenter__(self) -> RegistryStore:
        try:
            await self.open()
        except BaseException:
            await self.close()  # what a failed open started (a writer thread) must not linger
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, and create the schema if it is missing."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued writes, then release every resource."""

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the registry lives, for people: a file, or a DSN without its password."""

    def stats(self) -> dict[str, float]:
        """Backend counters for /metrics, by name (``kaa_store_<name>``)."""
        return {}

    def commit_durations(self) -> tuple[tuple[float, ...], list[int], float] | None:
        """The registration writer's commits: (bucket upper bounds in seconds, commits per
        bucket, not cumulative, the last past them all, total seconds); None if it keeps
        none."""
        return None

    def subscribe_nodes(self, callback: Callable[[], None]) -> bool:
        """Call ``callback`` (on this event loop) soon after any process changes the node
        set: a node joins, leaves, moves, or renews a lease that had lapsed. Renewals of
        live leases are not reported. Returns False when the backend cannot (the default):
        readers then only poll. Call on the store's loop, once it is open.
        """
        return False

    # -- applications -------------------------------------------------------------------

    @abc.abstractmethod
    async def create_application(self, app: Application, audit: AuditEntry) -> None:
        """Raises AlreadyExists for a taken token."""

    @abc.abstractmethod
    async def update_application(
        self,
        token: str,
        changes: ApplicationChanges,
        audit: AuditEntry,
        check: Callable[[Application], None] | None = None,
    ) -> Application:
        """Raises NotFound; returns the application as stored after the change.

        ``check`` is called with the changed application inside the write's transaction;
        a ValueError from it undoes the change and is raised here as :class:`Refused`. A
        check made before, on the application as read then, let two changes racing each
        pass it on the old state, and together make one it refuses (the console attack of
        2026-12-03)."""

    @abc.abstractmethod
    async def get_application(self, token: str) -> Application | None: ...

    @abc.abstractmethod
    async def list_applications(self) -> list[Application]: ...

    # -- SDK tokens ---------------------------------------------------------------------

    @abc.abstractmethod
    async def add_sdk_token(self, token: SdkToken, audit: AuditEntry) -> None:
        """Raises NotFound for an unknown application, AlreadyExists for a taken hash."""

    @abc.abstractmethod
    async def find_sdk_token(self, token_hash: bytes) -> SdkToken | None: ...

    @abc.abstractmethod
    async def list_sdk_tokens(self, application: str) -> list[SdkToken]: ...

    @abc.abstractmethod
    async def revoke_sdk_token(self, token_hash: bytes, audit: AuditEntry) -> SdkToken:
        """Mark revoked (idempotent; the first time is kept); raises NotFound."""

    # -- endpoints ----------------------------------------------------------------------

    @abc.abstractmethod
    def register_endpoint(self, write: EndpointWrite) -> asyncio.Future[WriteOutcome]:
        """Insert or update one endpoint in one durable transaction.

        Queues the write and returns its future at once (no coroutine: the Operations
        hot path chains a callback on it instead of running a task per registration).

        Inside the transaction, in this order: a revoked endpoint gives REVOKED; one of
        another application gives OTHER_APPLICATION; a ``request_ms`` not strictly greater
        than the stored ``last_request_ms`` gives REPLAYED. Those three write nothing.
        Otherwise NEW (insert), EXISTING (same profile hash) or PROFILE_UPDATED.
        Raises StoreBusy (at once, not through the future) when the store cannot take more
        work now.
        """

    @abc.abstractmethod
    async def get_endpoint(self, endpoint_id: bytes) -> Endpoint | None: ...

    async def get_endpoint_key(self, endpoint_id: bytes) -> EndpointKey | None:
        """A registered endpoint's stored key and application (None: no such endpoint, or
        an id revoked before it registered): what an Operations node's key-cache miss
        reads. A backend may answer it cheaper than :meth:`get_endpoint` (two columns;
        lookups gathered into one read)."""
        endpoint = await self.get_endpoint(endpoint_id)
        if endpoint is None or not endpoint.registered:
            return None
        return EndpointKey(endpoint.public_key, endpoint.application)

    def endpoint_key_now(self, endpoint_id: bytes) -> EndpointKey | Miss | None:
        """:meth:`get_endpoint_key` answered on the caller's thread without waiting, where
        the backend can (SQLite: a file the OS caches, a lookup of microseconds); MISS
        where it cannot (a database across the network, or a file busy this instant):
        the caller then awaits :meth:`get_endpoint_key`."""
        return MISS

    @abc.abstractmethod
    async def list_endpoints(
        self, application: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Endpoint]:
        """Oldest first."""

    @abc.abstractmethod
    async def revoke_endpoint(self, endpoint_id: bytes, audit: AuditEntry) -> Endpoint:
        """Mark revoked (idempotent) at ``audit.at_ms``. An id never registered is recorded
        revoked (``Endpoint.registered`` False): its first registration is refused as
        REVOKED."""

    @abc.abstractmethod
    async def reinstate_endpoint(self, endpoint_id: bytes, audit: AuditEntry) -> Endpoint:
        """Undo a revocation (idempotent): active again at its next registration; a
        pre-revoked id is forgotten (it registers as new). Raises NotFound."""

    # -- Operations nodes ---------------------------------------------------------------

    @abc.abstractmethod
    async def put_node(self, node: Node, *, reclaim: bool = False) -> None:
        """Insert or renew a node lease (keyed by ``node_id``; ``started_ms`` is kept).

        Only its holder renews a live lease: a row of another ``holder`` whose lease has
        not lapsed at ``node.renewed_ms`` is left as it is, and LeaseHeld raised (naming
        it). A lapsed lease is anyone's to take. ``reclaim``: the caller listens on the
        node's host and port itself, bound exclusively, so the row's holder if it names
        that same address cannot be alive (it crashed): take the row over.
        """

    @abc.abstractmethod
    async def remove_node(self, node_id: str, holder: str) -> None:
        """Delete the node's lease if ``holder`` holds it (a lease taken over since by
        another process is left to it)."""

    @abc.abstractmethod
    async def live_nodes(self, now_ms: int) -> list[Node]:
        """Nodes whose lease has not lapsed at ``now_ms``, by node id."""

    @abc.abstractmethod
    async def list_nodes(self) -> list[Node]:
        """Every node row, lapsed or not, by node id."""

    # -- audit log ----------------------------------------------------------------------

    @abc.abstractmethod
    async def add_audit(self, entry: AuditEntry) -> None: ...

    @abc.abstractmethod
    async def list_audit(self, limit: int = 100) -> list[AuditEntry]:
        """Newest first."""

    @abc.abstractmethod
    async def search_audit(
        self, subject: str | None = None, before: int | None = None, limit: int = 50
    ) -> list[AuditEntry]:
        """Newest first: entries with ``seq`` below ``before`` (a cursor), of ``subject``
        when given (by an index: servers/store/console.py)."""

    # -- admin console: credentials and searches (servers/store/console.py) ---------------

    @abc.abstractmethod
    async def add_credential(self, credential: AdminCredential, audit: AuditEntry) -> None:
        """Raises AlreadyExists for a taken name."""

    @abc.abstractmethod
    async def get_credential(self, name: str) -> AdminCredential | None: ...

    @abc.abstractmethod
    async def find_api_key(self, secret_hash: str) -> AdminCredential | None:
        """The API key credential whose SHA-256 (hex) is ``secret_hash``."""

    @abc.abstractmethod
    async def list_credentials(self) -> list[AdminCredential]:
        """Oldest first; hashes included (callers never show them)."""

    @abc.abstractmethod
    async def revoke_credential(self, name: str, audit: AuditEntry) -> AdminCredential:
        """Mark revoked (idempotent; the first time is kept); raises NotFound."""

    @abc.abstractmethod
    async def search_endpoints(self, query: EndpointQuery) -> EndpointPage:
        """One page, newest first: (row position, endpoint) rows and where the next page
        continues (servers/store/console.py, search_endpoints)."""
