"""The PostgreSQL writer's decisions, without a database: one batch's outcomes and the rows
it writes (servers/store/postgres/batch.py), and which node writes are news to listeners
(notify.py). The same batches on a real database: test_servers_postgres.py."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from store_records import ONE_BATCH, T0, endpoint_id, endpoint_write, node_lease

from servers.store import EndpointStatus, StoreError
from servers.store._decision import StoredEndpoint
from servers.store.postgres.batch import (
    INSERT_ENDPOINTS,
    UPDATE_ENDPOINTS,
    Batch,
    Row,
    locked_rows,
)
from servers.store.postgres.notify import is_news

ACTIVE = EndpointStatus.ACTIVE.value
NEW, EXISTING, PROFILE_UPDATED = "NEW", "EXISTING", "PROFILE_UPDATED"
ONE, TWO, THREE = endpoint_id(1), endpoint_id(2), endpoint_id(3)


def _stored(request_ms: int, profile: bytes = b"p", status: str = ACTIVE) -> StoredEndpoint:
    return StoredEndpoint(status, "app-1", hashlib.sha256(profile).digest(), request_ms)


def _outcomes(batch: Batch) -> list[str]:
    return [o.value for o in batch.outcomes]


def test_new_endpoints_are_decided_in_arrival_order_and_inserted_once() -> None:
    writes = [w for w, _ in ONE_BATCH]
    batch = Batch(writes, {})
    assert batch.outcomes == [outcome for _, outcome in ONE_BATCH]
    assert batch.updates() == []
    one, two = sorted(batch.inserts(), key=lambda r: r.public_key)
    # One row per endpoint, with what the last accepted write left.
    assert one == Row(
        True, ONE, b"key-1", writes[0].sdk_token_hash, "app-1", b"q",
        hashlib.sha256(b"q").digest(), T0 + 5, T0 + 3 + 5, EXISTING, T0 + 3,
    )  # fmt: skip
    assert (two.profile, two.last_request_ms, two.registration_status) == (b"p", T0, NEW)


def test_stored_endpoints_are_updated_and_keep_an_unchanged_profile() -> None:
    stored = {ONE: _stored(T0), TWO: _stored(T0), THREE: _stored(T0, status="revoked")}
    writes = [
        endpoint_write(2, T0 + 1),  # EXISTING: the stored profile stays (no profile written)
        endpoint_write(1, T0 + 1, b"q"),  # PROFILE_UPDATED
        endpoint_write(1, T0 + 2, b"q"),  # EXISTING, after the update
        endpoint_write(3, T0 + 1),  # REVOKED: nothing written
    ]
    batch = Batch(writes, stored)
    assert _outcomes(batch) == [EXISTING, PROFILE_UPDATED, EXISTING, "REVOKED"]
    assert batch.inserts() == []
    rows = {r.endpoint_id: r for r in batch.updates()}
    assert set(rows) == {ONE, TWO}
    assert (rows[ONE].profile, rows[ONE].registration_status) == (b"q", EXISTING)
    assert rows[ONE].last_request_ms == T0 + 2
    assert (rows[TWO].profile, rows[TWO].profile_hash) == (None, None)
    assert stored[ONE] == _stored(T0)  # the caller's rows are read, never changed


def test_rows_are_written_in_endpoint_id_order_one_array_per_parameter() -> None:
    """Two nodes' batches lock and write in the same order, so they cannot deadlock."""
    numbers = [3, 1, 4, 5, 9, 2, 6]
    stored = {endpoint_id(n): _stored(T0) for n in numbers[::2]}
    writes = [endpoint_write(n, T0 + 1) for n in numbers]
    assert Batch.endpoint_ids([*writes, *writes]) == sorted(endpoint_id(n) for n in numbers)
    batch = Batch(writes, stored)
    for rows, arrays, sql in (
        (batch.inserts(), batch.insert_arrays(), INSERT_ENDPOINTS),
        (batch.updates(), batch.update_arrays(), UPDATE_ENDPOINTS),
    ):
        assert [r.endpoint_id for r in rows] == sorted(r.endpoint_id for r in rows)
        assert len(arrays) == len(set(re.findall(r"\$\d+", sql)))
        assert all(len(column) == len(rows) for column in arrays)
        assert arrays[0] == [r.endpoint_id for r in rows]
    assert len(batch.inserts()) + len(batch.updates()) == len(numbers)


def test_endpoints_another_transaction_inserted_first_are_judged_again() -> None:
    """Two copies of one first registration on two nodes: the other node's INSERT won,
    so ours is REPLAYED, and the later write of the batch updates the row it made."""
    batch = Batch([endpoint_write(1, T0), endpoint_write(1, T0 + 1), endpoint_write(2, T0)], {})
    assert _outcomes(batch) == [NEW, EXISTING, NEW]
    lost = batch.lost([TWO])  # the INSERT returned endpoint 2 only
    assert lost == {ONE}
    batch.judge_again(lost, {ONE: _stored(T0)})
    assert _outcomes(batch) == ["REPLAYED", EXISTING, NEW]
    assert [r.endpoint_id for r in batch.inserts()] == [TWO]
    (update,) = batch.updates()
    assert (update.endpoint_id, update.last_request_ms, update.profile) == (ONE, T0 + 1, None)


def test_a_lost_endpoint_without_a_row_is_never_acknowledged() -> None:
    batch = Batch([endpoint_write(1, T0)], {})
    with pytest.raises(StoreError, match="vanished"):
        batch.judge_again(batch.lost([]), {})


def test_locked_records_become_what_the_rule_reads() -> None:
    record = {
        "endpoint_id": ONE, "status": ACTIVE, "application": "app-1",
        "profile_hash": memoryview(hashlib.sha256(b"p").digest()), "last_request_ms": T0,
    }  # fmt: skip
    assert locked_rows([record]) == {ONE: _stored(T0)}


#: A stored lease that is live at ``RENEWAL``.
OLD = {
    "host": "127.0.0.1", "port": 9997, "kex_public_key": bytes(32), "priority": 100,
    "weight": 100, "lease_expires_ms": T0 + 1000,
}  # fmt: skip
RENEWAL = T0 + 500


@pytest.mark.parametrize(
    ("old", "changes", "news"),
    [
        (None, {}, True),  # joins
        (OLD, {}, False),  # renews a live lease, unchanged
        (OLD, {"load": 70}, False),  # the load alone is no news
        ({**OLD, "lease_expires_ms": RENEWAL}, {}, True),  # had lapsed
        (OLD, {"port": 9998}, True),  # moves
        (OLD, {"kex_public_key": b"\1" * 32}, True),  # a new key
        (OLD, {"weight": 0}, True),
        (OLD, {"priority": 7}, True),
    ],
)
def test_which_node_writes_are_news(
    old: dict[str, object] | None, changes: dict[str, Any], news: bool
) -> None:
    assert is_news(old, node_lease(renewed_ms=RENEWAL, **changes)) is news
