"""The PostgreSQL writer's decisions, without a database: one batch's outcomes and the rows
it writes (servers/store/postgres/batch.py), and which node writes are news to listeners
(notify.py). The same batches on a real database: test_servers_postgres.py."""

from __future__ import annotations

import hashlib
import re

import pytest

from servers.store import EndpointStatus, EndpointWrite, Node, StoreError
from servers.store._decision import StoredEndpoint
from servers.store.postgres.batch import (
    INSERT_ENDPOINTS,
    UPDATE_ENDPOINTS,
    Batch,
    Row,
    locked_rows,
)
from servers.store.postgres.notify import is_news

T0 = 1_700_000_000_000
ACTIVE = EndpointStatus.ACTIVE.value
NEW, EXISTING, PROFILE_UPDATED = "NEW", "EXISTING", "PROFILE_UPDATED"


def _id(endpoint: int) -> bytes:
    return hashlib.sha1(f"key-{endpoint}".encode()).digest()


def _write(endpoint: int, request_ms: int, profile: bytes = b"p") -> EndpointWrite:
    return EndpointWrite(
        endpoint_id=_id(endpoint),
        public_key=f"key-{endpoint}".encode(),
        sdk_token_hash=hashlib.sha256(b"sdk").digest(),
        application="app-1",
        profile=profile,
        profile_hash=hashlib.sha256(profile).digest(),
        request_ms=request_ms,
        now_ms=request_ms + 5,
    )


def _stored(request_ms: int, profile: bytes = b"p", status: str = ACTIVE) -> StoredEndpoint:
    return StoredEndpoint(status, "app-1", hashlib.sha256(profile).digest(), request_ms)


def _outcomes(batch: Batch) -> list[str]:
    return [o.value for o in batch.outcomes]


def test_new_endpoints_are_decided_in_arrival_order_and_inserted_once() -> None:
    writes = [
        _write(1, T0),  # NEW
        _write(1, T0 + 1),  # EXISTING
        _write(1, T0 + 1, b"q"),  # REPLAYED: same timestamp
        _write(1, T0 + 2, b"q"),  # PROFILE_UPDATED
        _write(1, T0 + 3, b"q"),  # EXISTING
        _write(2, T0),  # NEW, another endpoint
        _write(2, T0 - 1),  # REPLAYED: older
    ]
    batch = Batch(writes, {})
    assert _outcomes(batch) == [
        NEW, EXISTING, "REPLAYED", PROFILE_UPDATED, EXISTING, NEW, "REPLAYED",
    ]  # fmt: skip
    assert batch.updates() == []
    one, two = sorted(batch.inserts(), key=lambda r: r.public_key)
    # One row per endpoint, with what the last accepted write left.
    assert one == Row(
        True, _id(1), b"key-1", writes[0].sdk_token_hash, "app-1", b"q",
        hashlib.sha256(b"q").digest(), T0 + 5, T0 + 3 + 5, EXISTING, T0 + 3,
    )  # fmt: skip
    assert (two.profile, two.last_request_ms, two.registration_status) == (b"p", T0, NEW)


def test_stored_endpoints_are_updated_and_keep_an_unchanged_profile() -> None:
    stored = {_id(1): _stored(T0), _id(2): _stored(T0), _id(3): _stored(T0, status="revoked")}
    writes = [
        _write(2, T0 + 1),  # EXISTING: the stored profile stays (no profile written)
        _write(1, T0 + 1, b"q"),  # PROFILE_UPDATED
        _write(1, T0 + 2, b"q"),  # EXISTING, after the update
        _write(3, T0 + 1),  # REVOKED: nothing written
    ]
    batch = Batch(writes, stored)
    assert _outcomes(batch) == [EXISTING, PROFILE_UPDATED, EXISTING, "REVOKED"]
    assert batch.inserts() == []
    rows = {r.endpoint_id: r for r in batch.updates()}
    assert set(rows) == {_id(1), _id(2)}
    assert (rows[_id(1)].profile, rows[_id(1)].registration_status) == (b"q", EXISTING)
    assert rows[_id(1)].last_request_ms == T0 + 2
    assert (rows[_id(2)].profile, rows[_id(2)].profile_hash) == (None, None)
    assert stored[_id(1)] == _stored(T0)  # the caller's rows are read, never changed


def test_rows_are_written_in_endpoint_id_order_one_array_per_parameter() -> None:
    """Two nodes' batches lock and write in the same order, so they cannot deadlock."""
    ids = [3, 1, 4, 5, 9, 2, 6]
    stored = {_id(i): _stored(T0) for i in ids[::2]}
    writes = [_write(i, T0 + 1) for i in ids]
    assert Batch.endpoint_ids([*writes, *writes]) == sorted(_id(i) for i in ids)
    batch = Batch(writes, stored)
    for rows, arrays, sql in (
        (batch.inserts(), batch.insert_arrays(), INSERT_ENDPOINTS),
        (batch.updates(), batch.update_arrays(), UPDATE_ENDPOINTS),
    ):
        assert [r.endpoint_id for r in rows] == sorted(r.endpoint_id for r in rows)
        assert len(arrays) == len(set(re.findall(r"\$\d+", sql)))
        assert all(len(column) == len(rows) for column in arrays)
        assert arrays[0] == [r.endpoint_id for r in rows]
    assert len(batch.inserts()) + len(batch.updates()) == len(ids)


def test_endpoints_another_transaction_inserted_first_are_judged_again() -> None:
    """Two copies of one first registration on two nodes: the other node's INSERT won,
    so ours is REPLAYED, and the later write of the batch updates the row it made."""
    writes = [_write(1, T0), _write(1, T0 + 1), _write(2, T0)]
    batch = Batch(writes, {})
    assert _outcomes(batch) == [NEW, EXISTING, NEW]
    lost = batch.lost([_id(2)])  # the INSERT returned endpoint 2 only
    assert lost == {_id(1)}
    batch.judge_again(lost, {_id(1): _stored(T0)})
    assert _outcomes(batch) == ["REPLAYED", EXISTING, NEW]
    assert [r.endpoint_id for r in batch.inserts()] == [_id(2)]
    (update,) = batch.updates()
    assert (update.endpoint_id, update.last_request_ms, update.profile) == (_id(1), T0 + 1, None)


def test_a_lost_endpoint_without_a_row_is_never_acknowledged() -> None:
    batch = Batch([_write(1, T0)], {})
    with pytest.raises(StoreError, match="vanished"):
        batch.judge_again(batch.lost([]), {})


def test_locked_records_become_what_the_rule_reads() -> None:
    record = {
        "endpoint_id": _id(1), "status": ACTIVE, "application": "app-1",
        "profile_hash": memoryview(hashlib.sha256(b"p").digest()), "last_request_ms": T0,
    }  # fmt: skip
    assert locked_rows([record]) == {_id(1): _stored(T0)}


def _node(**changes: object) -> Node:
    fields: dict[str, object] = {
        "node_id": "a", "host": "127.0.0.1", "port": 9997, "kex_public_key": bytes(32),
        "priority": 100, "weight": 100, "load": 0, "lease_expires_ms": T0 + 2000,
        "started_ms": T0, "renewed_ms": T0 + 500,
    }  # fmt: skip
    fields.update(changes)
    return Node(**fields)  # type: ignore[arg-type]


OLD = {
    "host": "127.0.0.1", "port": 9997, "kex_public_key": bytes(32), "priority": 100,
    "weight": 100, "lease_expires_ms": T0 + 1000,
}  # fmt: skip


@pytest.mark.parametrize(
    ("old", "node", "news"),
    [
        (None, _node(), True),  # joins
        (OLD, _node(), False),  # renews a live lease, unchanged
        (OLD, _node(load=70), False),  # the load alone is no news
        ({**OLD, "lease_expires_ms": T0 + 500}, _node(), True),  # had lapsed
        (OLD, _node(port=9998), True),  # moves
        (OLD, _node(kex_public_key=b"\1" * 32), True),  # a new key
        (OLD, _node(weight=0), True),
        (OLD, _node(priority=7), True),
    ],
)
def test_which_node_writes_are_news(old: dict[str, object] | None, node: Node, news: bool) -> None:
    assert is_news(old, node) is news
