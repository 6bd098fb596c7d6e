"""Group read: the key lookups of one event-loop turn go to the store as one query.

An Operations node whose key cache misses (a reconnect it has not seen, as after an
outage, when most of a fleet comes back at once) reads the endpoint's key from the
store. One read per miss costs a hand-off each way: on SQLite, waking a reader thread and
waking the loop through its self-pipe, which on one core is more than the lookup itself;
on PostgreSQL, a pool checkout and a round trip. Here the lookups asked for during one
turn of the loop are gathered, and a callback scheduled for the next turn sends them all
as one ``WHERE endpoint_id IN (...)`` (SQLite) or ``= ANY($1)`` (PostgreSQL) read: one
hand-off each way per batch, like the group commit of the writes. Loop thread only; the
backend's ``read`` says how a batch travels.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable

from servers.store.base import EndpointKey

__all__ = ["KeyReads", "MAX_IDS_PER_QUERY", "POSTGRES_KEYS", "sqlite_keys"]

_Found = dict[bytes, EndpointKey]
_Waiting = dict[bytes, list["asyncio.Future[EndpointKey | None]"]]

#: Ids per SQLite statement: well under its bound on host parameters (32,766 since 3.32).
MAX_IDS_PER_QUERY = 256
#: One batch's keys on PostgreSQL (an id revoked before it registered has no key).
POSTGRES_KEYS = (
    "SELECT endpoint_id, public_key, application FROM endpoints "
    "WHERE endpoint_id = ANY($1::bytea[]) AND length(public_key) > 0"
)


def sqlite_keys(conn: sqlite3.Connection, ids: list[bytes]) -> _Found:
    """The stored key and application of each of ``ids`` that is a registered endpoint
    (reader thread; an id revoked before it registered has an empty key and is left out)."""
    found: _Found = {}
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
    """Gathers ``get`` calls. ``read(ids)`` starts one batch's read and returns the future
    of the keys it found by id, or raises (StoreBusy, StoreError) when the store cannot
    take it: every waiter of the batch then gets that error."""

    def __init__(self, read: Callable[[list[bytes]], asyncio.Future[_Found]]) -> None:
        self._read = read
        self._waiting: _Waiting = {}

    def get(self, endpoint_id: bytes) -> asyncio.Future[EndpointKey | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[EndpointKey | None] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.setdefault(endpoint_id, []).append(future)
        return future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, {}
        try:
            done = self._read(list(waiting))
        except Exception as exc:  # StoreBusy / StoreError: every waiter gets it
            _settle(waiting, None, exc)
            return
        done.add_done_callback(functools.partial(_finished, waiting))


def _finished(waiting: _Waiting, done: asyncio.Future[_Found]) -> None:
    if done.cancelled():  # the store closed under the batch
        for futures in waiting.values():
            for future in futures:
                future.cancel()
        return
    exc = done.exception()
    _settle(waiting, None if exc else done.result(), exc)


def _settle(waiting: _Waiting, found: _Found | None, exc: BaseException | None) -> None:
    for endpoint_id, futures in waiting.items():
        for future in futures:
            if future.done():
                continue  # its caller gave up (cancelled)
            if exc is not None:
                future.set_exception(exc)
            else:
                assert found is not None
                future.set_result(found.get(endpoint_id))
