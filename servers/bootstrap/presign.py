"""Cached-signature mode: each variant of an application's plan is signed once per change.

The answer carries nonce kaa_wire.UNBOUND_NONCE, so it answers no request in particular
and one signature serves every endpoint that trusts the same key generation until the plan
or the key ring changes or a third of ``valid_for_s`` has passed (then it is signed again
in the background while the old one, still valid, keeps being served). Endpoints that
trust an older generation get the variant signed with their rotations. Endpoints accept it only with
``accept_unbound_resolution`` in their SDK configuration. docs/balancing.md gives the
trade-off against per-request, nonce-bound signatures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time

from kaa_wire import UNBOUND_NONCE, _codec
from servers import logs
from servers.balancing import Plan
from servers.clock import wall_ms
from servers.keyring import Keyring
from servers.limits import WorkerPool
from servers.metrics import Metrics

__all__ = ["Presigner"]

_MAX_APPS = 10_000


#: What one cached answer is for: an application token, and the key generation trusted.
_For = tuple[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class _Signed:
    plan: Plan
    keyring: Keyring
    signed_at: float
    answers: tuple[tuple[bytes, bytes], ...]  # (signed_part, signature) per variant


class Presigner:
    def __init__(
        self,
        pool: WorkerPool,
        *,
        valid_for_s: int,
        metrics: Metrics,
        log: logging.Logger,
    ) -> None:
        self._pool = pool
        self._valid_for_s = valid_for_s
        self._metrics = metrics
        self._log = log
        self._signed: dict[_For, _Signed] = {}
        self._signing: dict[_For, tuple[Plan, Keyring, asyncio.Future[_Signed]]] = {}
        self._background: set[asyncio.Task[_Signed]] = set()

    async def answer(
        self,
        app_token: str,
        plan: Plan,
        rng: random.Random,
        keyring: Keyring,
        trusted_generation: int,
    ) -> tuple[bytes, bytes]:
        """(signed_part, signature) of one variant of ``plan``, picked by weight, signed by
        ``keyring`` for endpoints that trust ``trusted_generation``."""
        key = (app_token, trusted_generation)
        entry = self._signed.get(key)
        now = time.monotonic()
        if (
            entry is None
            or entry.plan != plan
            or entry.keyring is not keyring
            or now - entry.signed_at >= self._valid_for_s - 1
        ):
            entry = await self._sign(key, plan, keyring)
        elif now - entry.signed_at >= self._valid_for_s / 3 and key not in self._signing:
            task = asyncio.get_running_loop().create_task(self._sign(key, plan, keyring))
            self._background.add(task)
            task.add_done_callback(self._background_done)
        return entry.answers[plan.pick_index(rng)]

    def _background_done(self, task: asyncio.Task[_Signed]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logs.event(self._log, logging.WARNING, "re-signing failed", error=str(task.exception()))

    async def _sign(self, key: _For, plan: Plan, keyring: Keyring) -> _Signed:
        signing = self._signing.get(key)
        if signing is not None and signing[0] == plan and signing[1] is keyring:
            return await asyncio.shield(signing[2])
        future: asyncio.Future[_Signed] = asyncio.get_running_loop().create_future()
        self._signing[key] = (plan, keyring, future)
        try:
            entry = await self._sign_variants(key, plan, keyring)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # consumed here; waiters re-raise it
            raise
        finally:
            signing = self._signing.get(key)
            if signing is not None and signing[2] is future:
                del self._signing[key]
        future.set_result(entry)
        if len(self._signed) >= _MAX_APPS and key not in self._signed:
            self._signed.clear()
        self._signed[key] = entry
        return entry

    async def _sign_variants(self, key: _For, plan: Plan, keyring: Keyring) -> _Signed:
        app_token, trusted_generation = key
        server_time_ms = wall_ms()
        rotations = keyring.chain_from(trusted_generation)
        signer = keyring.signer
        parts = [
            _codec.resolve_response_signed_part(
                UNBOUND_NONCE,
                server_time_ms,
                self._valid_for_s,
                keyring.generation,
                signer.algorithm,
                variant,
                rotations,
            )
            for variant in plan.variants
        ]
        signatures = await asyncio.gather(
            *(
                self._pool.run(signer.sign, _codec.resolve_signed_data(app_token, part))
                for part in parts
            )
        )
        self._metrics.signatures.inc("cached", amount=len(parts))
        logs.event(self._log, logging.DEBUG, "list signed", variants=len(parts))
        return _Signed(
            plan, keyring, time.monotonic(), tuple(zip(parts, signatures, strict=True))
        )

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
