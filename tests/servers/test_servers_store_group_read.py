"""The SQLite store's gathered key reads (servers/store/_group_read.py): what a batch does
when the store cannot take it, and when a caller gives up. The contract itself (right
key per id, alone and together) is in test_servers_store.py, on both backends."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from store_records import endpoint_write

from servers.caching import MISS
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
        store, write = await _store_with_one(tmp_path)
        try:
            gone = asyncio.ensure_future(store.get_endpoint_key(write.endpoint_id))
            kept = asyncio.ensure_future(store.get_endpoint_key(write.endpoint_id))
            await asyncio.sleep(0)
            gone.cancel()
            assert await kept == _key_of(write)
            assert gone.cancelled()
        finally:
            await store.close()

    asyncio.run(body())


async def _store_with_one(tmp_path: Path) -> tuple[SqliteStore, EndpointWrite]:
    """An open store holding one registered endpoint (the caller closes it)."""
    store = SqliteStore(tmp_path / "r.db")
    await store.open()
    write = endpoint_write(1, carried_key=True)
    assert await store.register_endpoint(write) is WriteOutcome.NEW
    return store, write


def _key_of(write: EndpointWrite) -> EndpointKey:
    return EndpointKey(write.public_key, write.application)


def test_a_key_read_on_the_loop_thread_answers_at_once(tmp_path: Path) -> None:
    """SQLite answers a key-cache miss on the caller's thread (endpoint_key_now): the
    stored key, None for an unknown id; MISS before the store is open and after it closed."""

    async def body() -> None:
        assert SqliteStore(tmp_path / "unopened.db").endpoint_key_now(bytes(20)) is MISS
        store, write = await _store_with_one(tmp_path)
        try:
            assert store.endpoint_key_now(write.endpoint_id) == _key_of(write)
            assert store.endpoint_key_now(bytes(20)) is None
        finally:
            await store.close()
        assert store.endpoint_key_now(write.endpoint_id) is MISS

    asyncio.run(body())


def test_a_key_read_that_went_to_the_disk_rests_the_loop_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop-thread read slower than NOW_SLOW_S (a page from the disk) sends the next
    NOW_PAUSE_S of reads to the reader threads (MISS here), then the loop reads again."""
    from servers.store import sqlite as sqlite_module

    async def body() -> None:
        store, write = await _store_with_one(tmp_path)
        try:
            monkeypatch.setattr(sqlite_module, "NOW_SLOW_S", -1.0)  # every read is "slow"
            monkeypatch.setattr(sqlite_module, "NOW_PAUSE_S", 0.3)
            assert store.endpoint_key_now(write.endpoint_id) == _key_of(write)
            assert store.endpoint_key_now(write.endpoint_id) is MISS
            assert await store.get_endpoint_key(write.endpoint_id) == _key_of(write)
            await asyncio.sleep(0.35)
            monkeypatch.setattr(sqlite_module, "NOW_SLOW_S", 0.0005)
            assert store.endpoint_key_now(write.endpoint_id) == _key_of(write)
            assert store.endpoint_key_now(write.endpoint_id) == _key_of(write)
        finally:
            await store.close()

    asyncio.run(body())
