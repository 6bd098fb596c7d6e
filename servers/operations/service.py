"""The Operations service: open, check, verify and durably store one registration.

The order of checks, each refusal an error the core seals once the request opened:
replay window (StaleRequest), SDK token by SHA-256 (UnknownSdkToken), for a reconnect the
stored key by endpoint id (UnknownKeyHash), proof of possession (BadSignature), then the
write transaction, which refuses a revoked endpoint (RevokedEndpoint) and a timestamp not
newer than the last accepted one (ReplayedRequest). The answer goes out only after the
write committed.
"""

from __future__ import annotations

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
from kaa_wire._crypto import x25519_public_bytes
from servers import logs
from servers.clock import wall_ms
from servers.limits import WorkerPool
from servers.metrics import Metrics
from servers.operations.directory import Directory
from servers.store.base import EndpointWrite, RegistryStore, StoreBusy, WriteOutcome

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
        self._static_public = x25519_public_bytes(static_key)
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
        return self._static_public

    def new_connection(self) -> OperationsServerConnection:
        return OperationsServerConnection(
            self._opener, self._verifier, max_frame_size=self._max_frame_size
        )

    async def handle(self, conn: OperationsServerConnection, payload: RegistrationPayload) -> bytes:
        try:
            return await self._register(conn, payload)
        except StoreBusy as exc:
            raise Overloaded("registry is busy", retry_after_ms=self._retry_after_ms) from exc

    async def _register(
        self, conn: OperationsServerConnection, payload: RegistrationPayload
    ) -> bytes:
        check_freshness(payload.timestamp_ms, wall_ms(), self._window_ms)
        token_hash = hashlib.sha256(payload.sdk_token.encode("ascii")).digest()
        sdk = await self._directory.sdk_token(token_hash)
        if sdk is None or not hmac.compare_digest(sdk.token_hash, token_hash):
            raise UnknownSdkToken("unknown SDK token")
        app = await self._directory.application(sdk.application)
        if app is None:
            raise UnknownSdkToken("the SDK token's application is gone")
        key_der: bytes | None = None
        if payload.key_is_hash:
            key_der = await self._directory.endpoint_key(payload.key)
            if key_der is None:
                raise UnknownKeyHash("no endpoint with this id")
        if self._verify_pool is None:
            endpoint_id = conn.verify(key_der)
        else:
            endpoint_id = await self._verify_pool.run(conn.verify, key_der)
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
        )
        outcome = await self._store.register_endpoint(write)
        status = _STATUS.get(outcome)
        if status is None:
            raise self._refusal(outcome)
        if key_der is None:
            self._directory.remember_key(endpoint_id, public_key)
        self.load.count += 1
        self._metrics.registrations.inc(status.name)
        logs.event(
            self._log,
            logging.DEBUG,
            "registered",
            endpoint=endpoint_id.hex(),
            status=status.name,
            application=app.name,
        )
        return conn.send_result(
            RegistrationResult(
                status=status,
                endpoint_id=endpoint_id,
                server_time_ms=wall_ms(),
                config_version=app.config_version,
                config=app.config,
                topics=app.topics,
                reconnect_after_s=self._reconnect_after_s,
                retry_base_ms=self._retry_base_ms,
            )
        )

    @staticmethod
    def _refusal(outcome: WriteOutcome) -> Exception:
        if outcome is WriteOutcome.REVOKED:
            return RevokedEndpoint("endpoint is revoked")
        if outcome is WriteOutcome.REPLAYED:
            return ReplayedRequest("request timestamp is not newer than the last accepted one")
        return UnknownSdkToken("the endpoint belongs to another application")
