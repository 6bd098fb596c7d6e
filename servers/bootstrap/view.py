"""What a Bootstrap answers from: the live Operations nodes and the applications.

Both are read from the store and kept in memory: the live nodes are re-read every
``refresh_s``, at once when the store reports a node change (PostgreSQL: LISTEN/NOTIFY;
see ``RegistryStore.subscribe_nodes``), and when the earliest lease it knows expires (so a
node that stopped renewing drops out when its lease lapses, not up to ``refresh_s``
later). Applications are cached for ``refresh_s``. A plan per application is computed
when the node set or the application changed, never per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from servers import logs
from servers.balancing import Plan, make_plan
from servers.caching import LookupCache, Miss
from servers.clock import wall_ms
from servers.store.base import Application, Node, RegistryStore
from servers.tasks import cancel_and_wait

__all__ = ["RegistryView"]

_MAX_APPS = 100_000
#: Shortest pause between two refreshes woken by a lease expiry.
_MIN_WAKE_S = 0.02


class RegistryView:
    def __init__(self, store: RegistryStore, *, refresh_s: float, log: logging.Logger) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._log = log
        self._nodes: tuple[Node, ...] = ()
        self._nodes_version = 0
        self._apps: LookupCache[str, Application] = LookupCache(
            store.get_application,
            ttl_s=refresh_s,
            negative_ttl_s=refresh_s,
            max_entries=_MAX_APPS,
        )
        self._plans: dict[str, tuple[int, Application, Plan]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        #: The node refresh's failures; unhealthy while the store cannot be read.
        self.trouble = logs.Trouble(log, "node refresh", base_s=refresh_s)

    @property
    def nodes(self) -> tuple[Node, ...]:
        return self._nodes

    async def start(self) -> None:
        await self.refresh()
        self._store.subscribe_nodes(self._wake.set)
        self._task = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def refresh(self) -> None:
        nodes = tuple(await self._store.live_nodes(wall_ms()))
        if nodes != self._nodes:
            before = {n.node_id for n in self._nodes}
            after = {n.node_id for n in nodes}
            if before != after:
                logs.event(
                    self._log,
                    logging.INFO,
                    "nodes changed",
                    live=len(after),
                    joined=",".join(sorted(after - before)),
                    left=",".join(sorted(before - after)),
                )
            self._nodes = nodes
            self._nodes_version += 1
            self._plans.clear()

    def _next_refresh_s(self) -> float:
        soonest = min((n.lease_expires_ms for n in self._nodes), default=None)
        if soonest is None:
            return self._refresh_s
        return min(self._refresh_s, max(_MIN_WAKE_S, (soonest - wall_ms()) / 1000 + 0.001))

    async def _refresh_forever(self) -> None:
        delay = self._next_refresh_s()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                await self.refresh()
            except Exception as exc:  # keep answering from the last good view
                # Back off: with the store down, lapsing leases would otherwise wake this
                # loop every few milliseconds, each time with a log line.
                delay = self.trouble.failed(exc)
            else:
                self.trouble.succeeded()
                delay = self._next_refresh_s()

    def cached_application(self, token: str) -> Application | Miss | None:
        return self._apps.cached(token)

    async def application(self, token: str) -> Application | None:
        return await self._apps.get(token)

    def plan(self, app: Application) -> Plan:
        cached = self._plans.get(app.token)
        if cached is not None and cached[0] == self._nodes_version and cached[1] == app:
            return cached[2]
        plan = make_plan(app.balancing, self._nodes, app.token)
        if len(self._plans) >= _MAX_APPS:
            self._plans.clear()
        self._plans[app.token] = (self._nodes_version, app, plan)
        return plan
