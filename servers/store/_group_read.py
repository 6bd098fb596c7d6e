"""Group read: the key lookups of one event-loop turn go to a reader thread as one query.

An Operations node whose key cache misses (a reconnect it has not seen, as after an
outage, when most of a fleet comes back at once) reads the endpoint's key from the
store. One read per miss costs a thread hand-off each way (wake the reader, wake the loop
through its self-pipe), which on one core is more than the SQLite lookup itself. Here the
lookups asked for during one turn of the loop are gathered, and a callback scheduled for
the next turn sends them all as one ``SELECT ... WHERE endpoint_id IN (...)`` job to the
reader pool: one hand-off each way per batch, like the group commit of the writes.
Loop thread only, except ``query``, which runs on a reader thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future as ThreadFuture
from typing import Any

from servers.store.base import EndpointKey

__all__ = ["KeyReads", "MAX_IDS_PER_QUERY"]

_Query = Callable[[sqlite3.Connection], dict[bytes, "EndpointKey"]]
_Waiting = dict[bytes, list["asyncio.Future[EndpointKey | None]"]]

#: Ids per statement: well under SQLite's bound on host parameters (32,766 since 3.32).
MAX_IDS_PER_QUERY = 256


def query(conn: sqlite3.Connection, ids: list[bytes]) -> dict[bytes, EndpointKey]:
    """The stored key and application of each of ``ids`` that is a registered endpoint
    (reader thread; an id revoked before it registered has an empty key and is left out)."""
    found: dict[bytes, EndpointKey] = {}
    for start in range(0, len(ids), MAX_IDS_PER_QUERY):
        chunk = ids[start : start + MAX_IDS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        sql = (
            "SELECT endpoint_id, public_key, application FROM endpoints "
            f"WHERE endpoint_id IN ({marks}) AND length(public_key) > 0"
        )
        for endpoint_id, public_key, application in conn.execute(sql, chunk):
            found[bytes(endpoint_id)] = EndpointKey(bytes(public_key), application)
    return found


class KeyReads:
    """Gathers ``get`` calls; ``submit(job)`` runs a job on a reader thread and returns a
    concurrent future, or raises (StoreBusy, StoreError) when the store cannot take it;
    ``release()`` is called on the loop once a submitted job is done."""

    def __init__(
        self,
        submit: Callable[[_Query], ThreadFuture[Any]],
        release: Callable[[], None],
    ) -> None:
        self._submit = submit
        self._release = release
        self._waiting: dict[bytes, list[asyncio.Future[EndpointKey | None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self, endpoint_id: bytes) -> asyncio.Future[EndpointKey | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[EndpointKey | None] = loop.create_future()
        if not self._waiting:
            self._loop = loop
            loop.call_soon(self._flush)
        self._waiting.setdefault(endpoint_id, []).append(future)
        return future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, {}
        ids = list(waiting)
        try:
            done = self._submit(lambda conn: query(conn, ids))
        except Exception as exc:  # StoreBusy / StoreError: every waiter gets it
            self._settle(waiting, None, exc)
            return
        loop = self._loop
        assert loop is not None
        done.add_done_callback(
            lambda f: loop.call_soon_threadsafe(self._finished, waiting, f)
        )  # fmt: skip

    def _finished(self, waiting: _Waiting, done: ThreadFuture[Any]) -> None:
        self._release()
        exc = done.exception()
        self._settle(waiting, None if exc else done.result(), exc)

    @staticmethod
    def _settle(
        waiting: dict[bytes, list[asyncio.Future[EndpointKey | None]]],
        found: dict[bytes, EndpointKey] | None,
        exc: BaseException | None,
    ) -> None:
        for endpoint_id, futures in waiting.items():
            for future in futures:
                if future.done():
                    continue  # its caller gave up (cancelled)
                if exc is not None:
                    future.set_exception(exc)
                else:
                    assert found is not None
                    future.set_result(found.get(endpoint_id))
