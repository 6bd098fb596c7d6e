"""The node lease: an Operations node announces itself in the node table and renews.

The row holds what a Bootstrap needs to list the node (host, port, X25519 public key,
priority, weight) and its current load (acknowledged registrations per second over the
last renewal interval). It is renewed every third of the lease; a node that stops renewing
(crashed, partitioned, stuck) drops out of Bootstrap answers once the lease lapses. A
clean shutdown deletes the row at once.

Each lease names its holder, :data:`PROCESS_HOLDER`: a second service started with the
node id of a live one is refused (LeaseHeld) instead of taking its row over, and a
shutdown deletes only its own lease. One exception: a service restarted after a crash on
the very address the lease names, which it has just bound exclusively (so the lease's
holder cannot be serving it any more), reclaims the lease at once rather than waiting for
it to lapse. Worker processes share their supervisor's token
(it is made at import, before ``--workers`` forks), so they renew one row together.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from servers import logs
from servers.clock import wall_ms
from servers.operations.service import LoadMeter
from servers.store.base import LeaseHeld, Node, RegistryStore
from servers.tasks import cancel_and_wait

__all__ = ["NodeLease", "PROCESS_HOLDER"]

#: This process's lease holder token (random; its forked workers inherit it).
PROCESS_HOLDER = secrets.token_hex(16)


class NodeLease:
    def __init__(
        self,
        store: RegistryStore,
        *,
        node_id: str,
        host: str,
        port: int,
        kex_public_key: bytes,
        priority: int,
        weight: int,
        lease_s: float,
        load: LoadMeter,
        log: logging.Logger,
        load_scale: int = 1,
        holder: str = PROCESS_HOLDER,
        owns_address: bool = False,
    ) -> None:
        self._store = store
        self._template = Node(
            node_id=node_id,
            host=host,
            port=port,
            kex_public_key=kex_public_key,
            priority=priority,
            weight=weight,
            load=0,
            lease_expires_ms=0,
            started_ms=0,
            renewed_ms=0,
            holder=holder,
        )
        #: This process listens on (host, port) itself, bound exclusively: a lease naming that
        #: address under another holder is a crashed process's, reclaimed at start.
        self._owns_address = owns_address
        self._lease_ms = round(lease_s * 1000)
        self._interval_s = lease_s / 3
        self._load = load
        #: Worker processes sharing this node's port (and this row): each reports its own
        #: rate times their number, since the kernel spreads connections evenly over them.
        self._load_scale = load_scale
        self._log = log
        self._started_ms = 0
        self._last_count = 0
        self._last_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        #: Whether start() took the lease (a refused start has nothing to release).
        self._taken = False
        #: The renewals' failures; unhealthy while the store cannot be written.
        self.trouble = logs.Trouble(log, "lease renewal", base_s=lease_s / 12)

    @property
    def node_id(self) -> str:
        return self._template.node_id

    async def start(self) -> None:
        """Take the lease (fails loudly if the store refuses), then renew in the background."""
        self._started_ms = wall_ms()
        try:
            await self._renew(reclaim=self._owns_address)
        except LeaseHeld as exc:
            held = exc.node
            logs.event(
                self._log, logging.ERROR, "lease held by another process", node=self.node_id,
                holder_address=f"{held.host}:{held.port}",
                lease_left_ms=held.lease_expires_ms - self._started_ms,
            )  # fmt: skip
            raise
        self._taken = True
        logs.event(
            self._log,
            logging.INFO,
            "lease taken",
            node=self.node_id,
            priority=self._template.priority,
            weight=self._template.weight,
            lease_ms=self._lease_ms,
        )
        self._task = asyncio.get_running_loop().create_task(self._renew_forever())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if not self._taken:
            return
        try:
            await self._store.remove_node(self.node_id, self._template.holder)
        except Exception as exc:
            logs.event(self._log, logging.WARNING, "lease release failed", error=str(exc))
        else:
            logs.event(self._log, logging.INFO, "lease released", node=self.node_id)

    def _rate(self) -> int:
        now = time.monotonic()
        count = self._load.count
        elapsed = max(now - self._last_at, 1e-3)
        rate = round(self._load_scale * (count - self._last_count) / elapsed)
        self._last_count, self._last_at = count, now
        return rate

    async def _renew(self, *, reclaim: bool = False) -> None:
        now = wall_ms()
        node = Node(
            node_id=self._template.node_id,
            host=self._template.host,
            port=self._template.port,
            kex_public_key=self._template.kex_public_key,
            priority=self._template.priority,
            weight=self._template.weight,
            load=self._rate(),
            lease_expires_ms=now + self._lease_ms,
            started_ms=self._started_ms,
            renewed_ms=now,
            holder=self._template.holder,
        )
        await self._store.put_node(node, reclaim=reclaim)

    async def _renew_forever(self) -> None:
        delay = self._interval_s
        while True:
            await asyncio.sleep(delay)
            try:
                await self._renew()
            except Exception as exc:  # try again; the lease may lapse meanwhile
                # Never wait longer than the interval: a lease must not lapse for a backoff.
                delay = min(self.trouble.failed(exc), self._interval_s)
            else:
                self.trouble.succeeded()
                delay = self._interval_s
