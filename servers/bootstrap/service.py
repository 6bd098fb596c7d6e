"""The Bootstrap service: answer a resolution with the signed list of live Operations nodes.

Per request: take the rotations from the key generation the endpoint trusts to the current
one (UnsupportedAlgorithm when this Bootstrap cannot provide them: the endpoint trusts a
newer key, or is too far behind), find the application (UnknownApplication if none), take
its balancing plan over the live nodes, pick a variant and sign it bound to the request
nonce on the signing pool (RSA releases the GIL, so the pool runs signatures in parallel;
with no pool threads, as on a single core, inline) -- or, for an application in
cached-signature mode, send the variant signed in advance.

The key ring is read once per request, so an answer is signed by the key its key
generation and rotations name even when a rotation is picked up meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random

from kaa_wire import (
    BootstrapServerConnection,
    Overloaded,
    ResolveRequest,
    UnknownApplication,
)
from servers import _impl, logs
from servers.balancing import Plan
from servers.bootstrap.keys import KeyringWatcher
from servers.bootstrap.presign import Presigner
from servers.bootstrap.view import RegistryView
from servers.caching import MISS
from servers.clock import wall_ms
from servers.keyring import Keyring
from servers.limits import WorkerPool
from servers.metrics import Metrics
from servers.net import chain
from servers.store.base import Application, StoreBusy

__all__ = ["BootstrapService"]


class BootstrapService:
    name = "bootstrap"

    def __init__(
        self,
        *,
        view: RegistryView,
        keys: KeyringWatcher,
        pool: WorkerPool,
        presigner: Presigner,
        metrics: Metrics,
        log: logging.Logger,
        max_frame_size: int,
        valid_for_s: int,
        retry_after_ms: int,
        rng: random.Random | None = None,
    ) -> None:
        self._view = view
        self._keys = keys
        self._pool = pool
        self._presigner = presigner
        self._metrics = metrics
        self._log = log
        self._max_frame_size = max_frame_size
        self._valid_for_s = valid_for_s
        self._retry_after_ms = retry_after_ms
        self._rng = rng or random.Random()

    def new_connection(self) -> BootstrapServerConnection:
        # The C twin when the extension is built (servers/_impl.py), else the pure class.
        return _impl.BootstrapServerConnection(self._max_frame_size)

    def handle(
        self, conn: BootstrapServerConnection, request: ResolveRequest
    ) -> bytes | asyncio.Future[bytes]:
        """The answer frame, or its future; a KaaWireError raised here or through it refuses.

        The common case (application cached, a signature per request) runs without a task:
        signed inline when the signing pool has no threads, else answered from a callback.
        """
        keyring = self._keys.current
        keyring.chain_from(request.key_generation)  # refuses before any store lookup
        app = self._view.cached_application(request.app_token)
        if app is MISS or (app is not None and app.cached_signature):
            return asyncio.ensure_future(self._handle_loading(conn, request, keyring))
        plan = self._plan(app)
        assert app is not None  # _plan refused None
        return self._sign_per_request(conn, app, plan, keyring)

    async def _handle_loading(
        self, conn: BootstrapServerConnection, request: ResolveRequest, keyring: Keyring
    ) -> bytes:
        try:
            app = await self._view.application(request.app_token)
        except StoreBusy as exc:
            raise Overloaded("registry is busy", retry_after_ms=self._retry_after_ms) from exc
        plan = self._plan(app)
        assert app is not None  # _plan refused None
        if not app.cached_signature:
            answer = self._sign_per_request(conn, app, plan, keyring)
            return answer if isinstance(answer, bytes) else await answer
        signed_part, signature = await self._presigner.answer(
            app.token, plan, self._rng, keyring, request.key_generation
        )
        self._resolved(app, "cached")
        return conn.send_presigned(signed_part, signature)

    def _plan(self, app: Application | None) -> Plan:
        if app is None:
            raise UnknownApplication("unknown application token")
        plan = self._view.plan(app)
        if not plan:
            raise Overloaded(
                "no Operations service is available", retry_after_ms=self._retry_after_ms
            )
        return plan

    def _sign_per_request(
        self, conn: BootstrapServerConnection, app: Application, plan: Plan, keyring: Keyring
    ) -> bytes | asyncio.Future[bytes]:
        assert conn.request is not None
        data = conn.data_to_sign(
            plan.pick(self._rng),
            server_time_ms=wall_ms(),
            valid_for_s=self._valid_for_s,
            signature_algorithm=keyring.signer.algorithm,
            key_generation=keyring.generation,
            rotations=keyring.chain_from(conn.request.key_generation),
        )
        signature = self._pool.start(keyring.signer.sign, data)
        if not isinstance(signature, asyncio.Future):
            return self._send_signed(conn, app, signature)
        return chain(signature, lambda signed: self._send_signed(conn, app, signed.result()))

    def _send_signed(
        self, conn: BootstrapServerConnection, app: Application, signature: bytes
    ) -> bytes:
        self._metrics.signatures.inc("per-request")
        self._resolved(app, "per-request")
        return conn.send_response(signature)

    def _resolved(self, app: Application, mode: str) -> None:
        self._metrics.resolutions.inc(mode)
        self._metrics.count_resolution(app.name)
        logs.event(self._log, logging.DEBUG, "resolved", application=app.name, mode=mode)
