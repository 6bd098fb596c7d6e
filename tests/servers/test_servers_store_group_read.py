"""The SQLite store's gathered key reads (servers/store/_group_read.py): what a batch does
when the store cannot take it, and when a caller gives up. The contract itself (right
key per id, alone and together) is in test_servers_store.py, on both backends."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from store_records import endpoint_write

from servers.store import EndpointKey, EndpointWrite, StoreBusy, StoreError, WriteOutcome
from servers.store.limits import StoreLimits
from servers.store.sqlite import SqliteStore


def test_a_batch_the_store_cannot_take_fails_every_waiter(tmp_path: Path) -> None:
    async def body() -> None:
        store = SqliteStore(tmp_path / "r.db", limits=StoreLimits(max_pending_reads=1))
        await store.open()
        try:
            write = endpoint_write(1, carried_key=True)
            assert await store.register_endpoint(write) is WriteOutcome.NEW
            release = threading.Event()
            # holds the one pending read until released
            blocker = asyncio.ensure_future(store._read(lambda _: release.wait(30)))
            await asyncio.sleep(0)
            waiters = [store.get_endpoint_key(write.endpoint_id) for _ in range(3)]
            results = await asyncio.gather(*waiters, return_exceptions=True)
            assert all(isinstance(r, StoreBusy) for r in results), results
            release.set()
            assert await blocker
            # the bound is released: the next batch is answered
            assert await store.get_endpoint_key(write.endpoint_id) == _key_of(write)
        finally:
            await store.close()
        with pytest.raises(StoreError):
            await store.get_endpoint_key(write.endpoint_id)

    asyncio.run(body())


def test_a_cancelled_waiter_leaves_the_others_answered(tmp_path: Path) -> None:
    async def body() -> None:
        store = SqliteStore(tmp_path / "r.db")
        await store.open()
        try:
            write = endpoint_write(1, carried_key=True)
            assert await store.register_endpoint(write) is WriteOutcome.NEW
            gone = asyncio.ensure_future(store.get_endpoint_key(write.endpoint_id))
            kept = asyncio.ensure_future(store.get_endpoint_key(write.endpoint_id))
            await asyncio.sleep(0)
            gone.cancel()
            assert await kept == _key_of(write)
            assert gone.cancelled()
        finally:
            await store.close()

    asyncio.run(body())


def _key_of(write: EndpointWrite) -> EndpointKey:
    return EndpointKey(write.public_key, write.application)
