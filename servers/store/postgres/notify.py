"""Node changes pushed with LISTEN/NOTIFY, so a Bootstrap re-reads the node table at once
instead of at its next poll.

A node that joins, leaves, moves or comes back from a lapsed lease commits a
``pg_notify('kaa_nodes', node_id)`` in the transaction that changes it
(:func:`notify_node_change`); :class:`NodeListener` holds a LISTEN connection and calls its
subscribers back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg

from servers import logs
from servers.store.base import Node
from servers.tasks import cancel_and_wait

__all__ = ["NODES_CHANNEL", "NodeListener", "is_news", "notify_node_change"]

#: The LISTEN/NOTIFY channel of node joins, leaves and changes (payload: the node id).
NODES_CHANNEL = "kaa_nodes"

_log = logging.getLogger("servers.store")


def is_news(old: Mapping[str, Any] | None, node: Node) -> bool:
    """Whether writing ``node`` over the stored ``old`` row (None: no row) changes the node
    set as readers see it. A renewal of a live, unchanged lease is no news; anything else
    is."""
    return (
        old is None
        or old["lease_expires_ms"] <= node.renewed_ms
        or (old["host"], old["port"], bytes(old["kex_public_key"]))
        != (node.host, node.port, node.kex_public_key)
        or (old["priority"], old["weight"]) != (node.priority, node.weight)
    )


async def notify_node_change(conn: asyncpg.Connection, node_id: str) -> None:
    """Tell every listener, once the caller's transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", NODES_CHANNEL, node_id)


def _set_event(event: asyncio.Event, *_: object) -> None:
    event.set()


class NodeListener:
    """One LISTEN connection for all of a store's subscribers, opened on first use."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connect = connect
        self._callbacks: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._listen_forever())

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def _changed(self, *_: object) -> None:
        for callback in self._callbacks:
            try:
                callback()
            except Exception:  # one subscriber's bug must not silence the others
                _log.exception("node change callback failed")

    async def _listen_forever(self) -> None:
        """Hold a LISTEN connection; reconnect when it drops (and call back then: changes
        may have been missed meanwhile)."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self._connect()
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set_event, lost))
                await conn.add_listener(NODES_CHANNEL, self._changed)
                self._changed()
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 10.0)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=10.0)  # is it still there?
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logs.event(_log, logging.WARNING, "node listener lost", error=str(exc))
            finally:
                if conn is not None:
                    conn.terminate()
            await asyncio.sleep(1.0)
