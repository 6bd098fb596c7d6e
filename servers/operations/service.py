"""The Operations service: open, check, verify and durably store one registration.

The order of checks, each refusal an error the core seals once the request opened:
replay window (StaleRequest), SDK token by SHA-256 (UnknownSdkToken), for a reconnect the
stored key by endpoint id (UnknownKeyHash), proof of possession (BadSignature), then the
write transaction, which refuses a revoked endpoint (RevokedEndpoint) and a timestamp not
newer than the last accepted one (ReplayedRequest). The answer goes out only after the
write committed.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging

from cryptography.hazmat.primitives.asymmetric import x25519

from kaa_wire import (
    OperationsServerConnection,
    Overloaded,
    RegistrationOpener,
    RegistrationPayload,
    RegistrationResult,
    RegistrationStatus,
    RegistrationVerifier,
    ReplayedRequest,
    RevokedEndpoint,
    UnknownKeyHash,
    UnknownSdkToken,
    check_freshness,
)
from servers import _impl, logs
from servers.caching import MISS
from servers.clock import wall_ms
from servers.limits import WorkerPool
from servers.metrics import Metrics
from servers.net import chain
from servers.operations.directory import Directory, Found
from servers.store.base import (
    Application,
    EndpointWrite,
    RegistryStore,
    StoreBusy,
    WriteOutcome,
)

__all__ = ["OperationsService", "LoadMeter"]

_STATUS = {
    WriteOutcome.NEW: RegistrationStatus.NEW,
    WriteOutcome.EXISTING: RegistrationStatus.EXISTING,
    WriteOutcome.PROFILE_UPDATED: RegistrationStatus.PROFILE_UPDATED,
}


class LoadMeter:
    """Counts acknowledged registrations; the lease reports them as a rate."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class OperationsService:
    name = "operations"

    def __init__(
        self,
        *,
        store: RegistryStore,
        directory: Directory,
        static_key: x25519.X25519PrivateKey,
        verify_pool: WorkerPool | None,
        metrics: Metrics,
        log: logging.Logger,
        max_frame_size: int,
        replay_window_s: float,
        reconnect_after_s: int,
        retry_base_ms: int,
        retry_after_ms: int,
    ) -> None:
        self._store = store
        self._directory = directory
        self._opener = RegistrationOpener(static_key)
        self._verifier = RegistrationVerifier()
        self._verify_pool = verify_pool
        self._metrics = metrics
        self._log = log
        self._max_frame_size = max_frame_size
        self._window_ms = round(replay_window_s * 1000)
        self._reconnect_after_s = reconnect_after_s
        self._retry_base_ms = retry_base_ms
        self._retry_after_ms = retry_after_ms
        self.load = LoadMeter()

    @property
    def public_key(self) -> bytes:
        return self._opener.public_key

    def new_connection(self) -> OperationsServerConnection:
        # The C twin when the extension is built (servers/_impl.py), else the pure class.
        return _impl.OperationsServerConnection(
            self._opener, self._verifier, max_frame_size=self._max_frame_size
        )

    def handle(
        self, conn: OperationsServerConnection, payload: RegistrationPayload
    ) -> asyncio.Future[bytes]:
        """The answer frame's future; a KaaWireError raised here or through it is a refusal.

        The common case, everything cached and the verify on the loop, runs through to the
        store without a task: the answer is built in a callback when the write commits.
        """
        check_freshness(payload.timestamp_ms, wall_ms(), self._window_ms)
        token_hash = hashlib.sha256(payload.sdk_token.encode("ascii")).digest()
        reconnect_id = payload.key if payload.key_is_hash else None
        found = self._directory.cached(token_hash, reconnect_id)
        if found is MISS or self._verify_pool is not None:
            return asyncio.ensure_future(
                self._register_loading(conn, payload, token_hash, reconnect_id)
            )
        app = self._check(found, token_hash, payload)
        return self._store_and_answer(conn, payload, token_hash, app, found.key_der)

    async def _register_loading(
        self,
        conn: OperationsServerConnection,
        payload: RegistrationPayload,
        token_hash: bytes,
        reconnect_id: bytes | None,
    ) -> bytes:
        """:meth:`handle` when a lookup must wait for the store or the verify for a thread."""
        found = await self._directory.lookup(token_hash, reconnect_id)
        app = self._check(found, token_hash, payload)
        verified = None
        if self._verify_pool is not None:
            verified = await self._verify_pool.run(conn.verify, found.key_der)
        return await self._store_and_answer(conn, payload, token_hash, app, found.key_der, verified)

    @staticmethod
    def _check(found: Found, token_hash: bytes, payload: RegistrationPayload) -> Application:
        sdk = found.sdk
        if sdk is None or not hmac.compare_digest(sdk.token_hash, token_hash):
            raise UnknownSdkToken("unknown SDK token")
        if sdk.revoked_ms is not None:  # cached for refresh_s at most, like the token
            raise UnknownSdkToken("SDK token revoked")
        if found.application is None:
            raise UnknownSdkToken("the SDK token's application is gone")
        if payload.key_is_hash and found.key_der is None:
            raise UnknownKeyHash("no endpoint with this id")
        return found.application

    def _store_and_answer(
        self,
        conn: OperationsServerConnection,
        payload: RegistrationPayload,
        token_hash: bytes,
        app: Application,
        key_der: bytes | None,
        endpoint_id: bytes | None = None,
    ) -> asyncio.Future[bytes]:
        """Verify (unless done), queue the durable write; the answer follows its commit.

        ``key_der``: the stored key of a reconnect, None when the request carried its key.
        """
        if endpoint_id is None:
            endpoint_id = conn.verify(key_der)
        public_key = payload.key if key_der is None else key_der
        write = EndpointWrite(
            endpoint_id=endpoint_id,
            public_key=public_key,
            sdk_token_hash=token_hash,
            application=app.token,
            profile=payload.profile,
            profile_hash=hashlib.sha256(payload.profile).digest(),
            request_ms=payload.timestamp_ms,
            now_ms=wall_ms(),
            carried_key=key_der is None,
        )
        try:
            stored = self._store.register_endpoint(write)
        except StoreBusy as exc:
            raise self._busy() from exc
        return chain(stored, functools.partial(self._registered, conn, app, write))

    def _registered(
        self,
        conn: OperationsServerConnection,
        app: Application,
        write: EndpointWrite,
        stored: asyncio.Future[WriteOutcome],
    ) -> bytes:
        """The answer frame once the write committed, or what refuses the registration."""
        try:
            outcome = stored.result()
        except StoreBusy as exc:
            raise self._busy() from exc
        status = _STATUS.get(outcome)
        if status is None:
            raise self._refusal(outcome)
        if write.carried_key:
            self._directory.remember_key(write.endpoint_id, write.public_key, write.application)
        self.load.count += 1
        self._metrics.registrations.inc(status.name)
        self._metrics.count_registration(app.name)
        logs.event(
            self._log,
            logging.DEBUG,
            "registered",
            endpoint=write.endpoint_id.hex(),
            status=status.name,
            application=app.name,
        )
        return conn.send_result(
            RegistrationResult(
                status=status,
                endpoint_id=write.endpoint_id,
                server_time_ms=wall_ms(),
                config_version=app.config_version,
                config=app.config,
                topics=app.topics,
                reconnect_after_s=self._reconnect_after_s,
                retry_base_ms=self._retry_base_ms,
            )
        )

    def _busy(self) -> Overloaded:
        return Overloaded("registry is busy", retry_after_ms=self._retry_after_ms)

    @staticmethod
    def _refusal(outcome: WriteOutcome) -> Exception:
        if outcome is WriteOutcome.REVOKED:
            return RevokedEndpoint("endpoint is revoked")
        if outcome is WriteOutcome.REPLAYED:
            return ReplayedRequest("request timestamp is not newer than the last accepted one")
        return UnknownSdkToken("the endpoint belongs to another application")
