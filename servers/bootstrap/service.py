"""The Bootstrap service: answer a resolution with the signed list of live Operations nodes.

Per request: find the application (UnknownApplication if none), take its balancing plan
over the live nodes, pick a variant and sign it bound to the request nonce on the signing
pool (RSA releases the GIL, so the pool runs signatures in parallel) -- or, for an
application in cached-signature mode, send the variant signed in advance.
"""

from __future__ import annotations

import logging
import random

from kaa_wire import (
    BootstrapServerConnection,
    Overloaded,
    ResolveRequest,
    UnknownApplication,
)
from servers import logs
from servers.bootstrap.presign import Presigner
from servers.bootstrap.signer import ListSigner
from servers.bootstrap.view import RegistryView
from servers.clock import wall_ms
from servers.limits import WorkerPool
from servers.metrics import Metrics
from servers.store.base import StoreBusy

__all__ = ["BootstrapService"]


class BootstrapService:
    name = "bootstrap"

    def __init__(
        self,
        *,
        view: RegistryView,
        signer: ListSigner,
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
        self._signer = signer
        self._pool = pool
        self._presigner = presigner
        self._metrics = metrics
        self._log = log
        self._max_frame_size = max_frame_size
        self._valid_for_s = valid_for_s
        self._retry_after_ms = retry_after_ms
        self._rng = rng or random.Random()

    def new_connection(self) -> BootstrapServerConnection:
        return BootstrapServerConnection(self._max_frame_size)

    async def handle(self, conn: BootstrapServerConnection, request: ResolveRequest) -> bytes:
        try:
            app = await self._view.application(request.app_token)
        except StoreBusy as exc:
            raise Overloaded("registry is busy", retry_after_ms=self._retry_after_ms) from exc
        if app is None:
            raise UnknownApplication("unknown application token")
        plan = self._view.plan(app)
        if not plan:
            raise Overloaded(
                "no Operations service is available", retry_after_ms=self._retry_after_ms
            )
        if app.cached_signature:
            signed_part, signature = await self._presigner.answer(app.token, plan, self._rng)
            answer = conn.send_presigned(signed_part, signature)
            mode = "cached"
        else:
            data = conn.data_to_sign(
                plan.pick(self._rng),
                server_time_ms=wall_ms(),
                valid_for_s=self._valid_for_s,
                signature_algorithm=self._signer.algorithm,
            )
            signature = await self._pool.run(self._signer.sign, data)
            self._metrics.signatures.inc("per-request")
            answer = conn.send_response(signature)
            mode = "per-request"
        self._metrics.resolutions.inc(mode)
        logs.event(self._log, logging.DEBUG, "resolved", application=app.name, mode=mode)
        return answer
