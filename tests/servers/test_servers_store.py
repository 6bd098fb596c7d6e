"""The registry store contract, written against the abstract interface.

Every test takes ``store_backend`` (conftest.py), which is parametrized over the
backends; a PostgreSQL backend adds itself there and inherits all of these tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib

import pytest
from servers_harness import StoreBackend
from store_records import T0, endpoint_write

from kaa_wire import RegistrationStatus, Topic
from servers.store import (
    AlreadyExists,
    Application,
    ApplicationChanges,
    AuditEntry,
    Balancing,
    EndpointKey,
    EndpointStatus,
    LeaseHeld,
    Node,
    NotFound,
    Refused,
    RegistryStore,
    SdkToken,
    WriteOutcome,
)


def _app(token: str = "app-1", **overrides: object) -> Application:
    fields: dict[str, object] = {
        "token": token,
        "name": "thermostats",
        "config": b'{"period_s": 60}',
        "config_version": 1,
        "topics": (Topic(1, "alerts"), Topic(2, "firmware")),
        "balancing": Balancing.STATIC,
        "cached_signature": False,
        "created_ms": T0,
    }
    fields.update(overrides)
    return Application(**fields)  # type: ignore[arg-type]


def _audit(action: str, subject: str = "x") -> AuditEntry:
    return AuditEntry(at_ms=T0, actor="test", action=action, subject=subject)


#: A registration of the tests' endpoint (number 1 unless named) at T0 unless told.
_write = functools.partial(endpoint_write, profile=b'{"model": "a"}')


#: The store's statement-order hint must never change an outcome: the outcome tests run
#: with both values.
HINTS = pytest.mark.parametrize("carried_key", [False, True], ids=["update-first", "insert-first"])


async def _with_app(store: RegistryStore) -> None:
    await store.create_application(_app(), _audit("app.create", "app-1"))


def test_applications_round_trip(store_backend: StoreBackend) -> None:
    async def body(store: RegistryStore) -> None:
        app = _app()
        await store.create_application(app, _audit("app.create"))
        assert await store.get_application("app-1") == app
        assert await store.get_application("nope") is None
        with pytest.raises(AlreadyExists):
            await store.create_application(app, _audit("app.create"))
        await store.create_application(_app("app-2", name="meters"), _audit("app.create"))
        assert [a.token for a in await store.list_applications()] == ["app-1", "app-2"]

    store_backend.run(body)


def test_update_application_bumps_version_with_new_config(store_backend: StoreBackend) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        updated = await store.update_application(
            "app-1", ApplicationChanges(config=b"{}"), _audit("app.update")
        )
        assert (updated.config, updated.config_version) == (b"{}", 2)
        updated = await store.update_application(
            "app-1",
            ApplicationChanges(balancing=Balancing.LEAST_LOADED, cached_signature=True),
            _audit("app.update"),
        )
        assert updated.config_version == 2
        assert updated == await store.get_application("app-1")
        assert updated.balancing is Balancing.LEAST_LOADED and updated.cached_signature
        with pytest.raises(NotFound):
            await store.update_application("nope", ApplicationChanges(name="x"), _audit("u"))

    store_backend.run(body)


def test_an_update_is_checked_on_the_state_it_makes_inside_its_transaction(
    store_backend: StoreBackend,
) -> None:
    """Two updates racing each passed a check made before on the old state, and together
    made a state the check refuses (the console attack of 2026-12-03, round 3): the check
    now sees the changed row inside the write, after every earlier change."""

    def not_both(app: Application) -> None:  # (the app starts with 2 topics, 16 bytes)
        if len(app.topics) > 2 and len(app.config) > 20:
            raise ValueError("the state is too large")

    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        before = await store.get_application("app-1")
        assert before is not None
        audit_before = await store.list_audit()
        big = b'{"big": "%s"}' % (b"9" * 20)
        racing = await asyncio.gather(
            store.update_application("app-1", ApplicationChanges(config=big),
                                     _audit("app.update"), not_both),
            store.update_application("app-1", ApplicationChanges(topics=(*before.topics,
                                     Topic(3, "more"))), _audit("app.update"), not_both),
            return_exceptions=True,
        )  # fmt: skip
        assert sum(isinstance(r, Refused) for r in racing) == 1, racing
        (kept,) = [r for r in racing if isinstance(r, Application)]
        assert await store.get_application("app-1") == kept != before
        assert len(await store.list_audit()) == len(audit_before) + 1  # the refused one's undone

    store_backend.run(body)


def test_sdk_tokens_are_found_by_hash(store_backend: StoreBackend) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        token = SdkToken(hashlib.sha256(b"secret").digest(), "app-1", T0)
        await store.add_sdk_token(token, _audit("sdk.create"))
        assert await store.find_sdk_token(token.token_hash) == token
        assert await store.find_sdk_token(hashlib.sha256(b"other").digest()) is None
        assert await store.list_sdk_tokens("app-1") == [token]
        with pytest.raises(AlreadyExists):
            await store.add_sdk_token(token, _audit("sdk.create"))
        with pytest.raises(NotFound):
            orphan = SdkToken(hashlib.sha256(b"o").digest(), "no-app", T0)
            await store.add_sdk_token(orphan, _audit("sdk.create"))

    store_backend.run(body)


@HINTS
def test_register_new_existing_and_profile_updated(
    store_backend: StoreBackend, carried_key: bool
) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        first = _write(carried_key=carried_key, request_ms=T0)
        assert await store.register_endpoint(first) is WriteOutcome.NEW
        assert (
            await store.register_endpoint(_write(carried_key=carried_key, request_ms=T0 + 1))
            is WriteOutcome.EXISTING
        )
        changed = _write(carried_key=carried_key, request_ms=T0 + 2, profile=b'{"model": "b"}')
        assert await store.register_endpoint(changed) is WriteOutcome.PROFILE_UPDATED

        stored = await store.get_endpoint(first.endpoint_id)
        assert stored is not None
        assert stored.public_key == first.public_key
        assert stored.profile == b'{"model": "b"}'
        assert stored.profile_hash == hashlib.sha256(b'{"model": "b"}').digest()
        assert stored.first_seen_ms == T0 + 5
        assert stored.last_seen_ms == T0 + 2 + 5
        assert stored.last_request_ms == T0 + 2
        assert stored.status is EndpointStatus.ACTIVE
        assert stored.registration_status is RegistrationStatus.PROFILE_UPDATED
        assert await store.get_endpoint(bytes(20)) is None

    store_backend.run(body)


@HINTS
def test_existing_reconnect_updates_the_visit_and_keeps_the_rest(
    carried_key: bool,
    store_backend: StoreBackend,
) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        first = _write(carried_key=carried_key, request_ms=T0)
        assert await store.register_endpoint(first) is WriteOutcome.NEW
        created = await store.get_endpoint(first.endpoint_id)
        assert created is not None
        assert created.registration_status is RegistrationStatus.NEW
        assert (created.first_seen_ms, created.last_seen_ms) == (T0 + 5, T0 + 5)
        assert created.revoked_ms is None

        again = _write(carried_key=carried_key, request_ms=T0 + 7, sdk_token=b"rotated")
        assert await store.register_endpoint(again) is WriteOutcome.EXISTING
        stored = await store.get_endpoint(first.endpoint_id)
        assert stored is not None
        assert stored.sdk_token_hash == hashlib.sha256(b"rotated").digest()
        assert (stored.last_seen_ms, stored.last_request_ms) == (T0 + 12, T0 + 7)
        assert stored.registration_status is RegistrationStatus.EXISTING
        for field in ("public_key", "application", "profile", "profile_hash", "first_seen_ms",
                      "status", "revoked_ms"):  # fmt: skip
            assert getattr(stored, field) == getattr(created, field), field

    store_backend.run(body)


@HINTS
def test_updated_profile_is_the_one_later_reconnects_compare(
    carried_key: bool,
    store_backend: StoreBackend,
) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        assert (
            await store.register_endpoint(_write(carried_key=carried_key, request_ms=T0))
            is WriteOutcome.NEW
        )
        changed = _write(
            carried_key=carried_key,
            request_ms=T0 + 1,
            profile=b'{"model": "b"}',
            sdk_token=b"rotated",
        )
        assert await store.register_endpoint(changed) is WriteOutcome.PROFILE_UPDATED
        stored = await store.get_endpoint(changed.endpoint_id)
        assert stored is not None and stored.sdk_token_hash == changed.sdk_token_hash
        same = _write(carried_key=carried_key, request_ms=T0 + 2, profile=b'{"model": "b"}')
        assert await store.register_endpoint(same) is WriteOutcome.EXISTING
        back = _write(carried_key=carried_key, request_ms=T0 + 3)
        assert await store.register_endpoint(back) is WriteOutcome.PROFILE_UPDATED
        stored = await store.get_endpoint(back.endpoint_id)
        assert stored is not None
        assert (stored.profile, stored.profile_hash) == (back.profile, back.profile_hash)

    store_backend.run(body)


#: (revoked first, application, request time, profile) of a refused registration, and why.
#: The refusals are checked in this order: a revoked endpoint is REVOKED whatever else.
SAME, NEW = b'{"model": "a"}', b'{"model": "new"}'
REFUSALS = {
    "revoked": (True, "app-1", T0 + 1, SAME, WriteOutcome.REVOKED),
    "revoked, new profile, replayed": (True, "app-2", T0, NEW, WriteOutcome.REVOKED),
    "other application": (False, "app-2", T0 + 1, SAME, WriteOutcome.OTHER_APPLICATION),
    "other application, new profile, replayed": (
        False, "app-2", T0, NEW, WriteOutcome.OTHER_APPLICATION
    ),
    "replayed": (False, "app-1", T0, SAME, WriteOutcome.REPLAYED),
    "replayed, new profile": (False, "app-1", T0 - 1, NEW, WriteOutcome.REPLAYED),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS)
@HINTS
def test_refused_registrations_leave_the_row_unchanged(
    carried_key: bool, store_backend: StoreBackend, case: str
) -> None:
    revoke, application, request_ms, profile, expected = REFUSALS[case]

    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        await store.create_application(_app("app-2"), _audit("app.create"))
        assert (
            await store.register_endpoint(_write(carried_key=carried_key, request_ms=T0))
            is WriteOutcome.NEW
        )
        endpoint_id = _write(carried_key=carried_key).endpoint_id
        if revoke:
            await store.revoke_endpoint(endpoint_id, _audit("endpoint.revoke"))
        before = await store.get_endpoint(endpoint_id)
        refused = _write(
            carried_key=carried_key,
            request_ms=request_ms,
            profile=profile,
            application=application,
            sdk_token=b"x",
        )
        assert await store.register_endpoint(refused) is expected
        assert await store.get_endpoint(endpoint_id) == before

    store_backend.run(body)


@HINTS
def test_replayed_timestamps_are_refused_and_write_nothing(
    store_backend: StoreBackend, carried_key: bool
) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        assert (
            await store.register_endpoint(_write(carried_key=carried_key, request_ms=T0 + 10))
            is WriteOutcome.NEW
        )
        same = _write(carried_key=carried_key, request_ms=T0 + 10, profile=b"changed")
        older = _write(carried_key=carried_key, request_ms=T0 + 9, profile=b"changed")
        assert await store.register_endpoint(same) is WriteOutcome.REPLAYED
        assert await store.register_endpoint(older) is WriteOutcome.REPLAYED
        stored = await store.get_endpoint(same.endpoint_id)
        assert stored is not None
        assert (stored.profile, stored.last_request_ms) == (b'{"model": "a"}', T0 + 10)

    store_backend.run(body)


@HINTS
def test_concurrent_copies_of_one_request_are_accepted_once(
    store_backend: StoreBackend, carried_key: bool
) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        outcomes = await asyncio.gather(
            *(store.register_endpoint(_write(carried_key=carried_key)) for _ in range(20))
        )
        assert sorted(o.value for o in outcomes) == ["NEW"] + ["REPLAYED"] * 19

    store_backend.run(body)


def test_revoked_endpoint_is_refused_and_audited(store_backend: StoreBackend) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        write = _write()
        await store.register_endpoint(write)
        revoked = await store.revoke_endpoint(
            write.endpoint_id, AuditEntry(T0 + 100, "ops", "endpoint.revoke", "ab", "stolen")
        )
        assert revoked.status is EndpointStatus.REVOKED and revoked.revoked_ms == T0 + 100
        later = _write(request_ms=T0 + 1000)
        assert await store.register_endpoint(later) is WriteOutcome.REVOKED
        stored = await store.get_endpoint(write.endpoint_id)
        assert stored is not None and stored.last_request_ms == T0
        audit = await store.list_audit()
        assert (audit[0].action, audit[0].detail) == ("endpoint.revoke", "stolen")

    store_backend.run(body)


@HINTS
def test_an_id_revoked_before_it_registers_is_refused(
    store_backend: StoreBackend, carried_key: bool
) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        write = _write(carried_key=carried_key)
        pre = await store.revoke_endpoint(
            write.endpoint_id, AuditEntry(T0 + 100, "ops", "endpoint.pre-revoke", "ab", "stolen")
        )
        assert (pre.status, pre.revoked_ms, pre.registered) == (
            EndpointStatus.REVOKED, T0 + 100, False
        )
        assert (await store.list_audit())[0].action == "endpoint.pre-revoke"
        assert await store.register_endpoint(write) is WriteOutcome.REVOKED
        assert await store.get_endpoint(write.endpoint_id) == pre  # nothing written
        assert await store.get_endpoint_key(write.endpoint_id) is None  # no key to reconnect by
        # Reinstated, it is forgotten, and registers as new.
        back = await store.reinstate_endpoint(write.endpoint_id, _audit("endpoint.reinstate"))
        assert back.status is EndpointStatus.ACTIVE and back.revoked_ms is None
        assert await store.get_endpoint(write.endpoint_id) is None
        assert await store.register_endpoint(write) is WriteOutcome.NEW
        stored = await store.get_endpoint(write.endpoint_id)
        assert stored is not None and stored.registered

    store_backend.run(body)


def test_a_reinstated_endpoint_registers_again_and_both_are_audited(
    store_backend: StoreBackend,
) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        write = _write()
        await store.register_endpoint(write)
        await store.revoke_endpoint(write.endpoint_id, _audit("endpoint.revoke"))
        again = await store.revoke_endpoint(write.endpoint_id, _audit("endpoint.revoke"))
        assert again.revoked_ms is not None
        back = await store.reinstate_endpoint(
            write.endpoint_id, AuditEntry(T0 + 200, "ops", "endpoint.reinstate", "ab", "found")
        )
        assert back.status is EndpointStatus.ACTIVE and back.revoked_ms is None
        later = _write(request_ms=T0 + 1000)
        assert await store.register_endpoint(later) is WriteOutcome.EXISTING
        audit = await store.list_audit()
        assert (audit[0].action, audit[0].detail) == ("endpoint.reinstate", "found")
        with pytest.raises(NotFound):
            await store.reinstate_endpoint(bytes(20), _audit("endpoint.reinstate"))

    store_backend.run(body)


def test_endpoint_of_another_application_is_refused(store_backend: StoreBackend) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        await store.create_application(_app("app-2"), _audit("app.create"))
        assert await store.register_endpoint(_write()) is WriteOutcome.NEW
        moved = _write(request_ms=T0 + 1, application="app-2")
        assert await store.register_endpoint(moved) is WriteOutcome.OTHER_APPLICATION

    store_backend.run(body)


def test_list_endpoints_filters_and_pages(store_backend: StoreBackend) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        await store.create_application(_app("app-2"), _audit("app.create"))
        for n in range(5):
            await store.register_endpoint(_write(endpoint=n, application=f"app-{1 + n % 2}"))
        everything = await store.list_endpoints()
        assert [e.public_key for e in everything] == [f"key-{n}".encode() for n in range(5)]
        app2 = await store.list_endpoints("app-2")
        assert [e.public_key for e in app2] == [b"key-1", b"key-3"]
        page = await store.list_endpoints(limit=2, offset=2)
        assert [e.public_key for e in page] == [b"key-2", b"key-3"]

    store_backend.run(body)


def _node(node_id: str, expires: int, **overrides: object) -> Node:
    fields: dict[str, object] = {
        "node_id": node_id,
        "host": "127.0.0.1",
        "port": 9997,
        "kex_public_key": bytes(32),
        "priority": 100,
        "weight": 100,
        "load": 0,
        "lease_expires_ms": expires,
        "started_ms": T0,
        "renewed_ms": T0,
    }
    fields.update(overrides)
    return Node(**fields)  # type: ignore[arg-type]


def test_node_leases_lapse(store_backend: StoreBackend) -> None:
    async def body(store: RegistryStore) -> None:
        await store.put_node(_node("a", T0 + 1000))
        await store.put_node(_node("b", T0 + 2000))
        assert [n.node_id for n in await store.live_nodes(T0 + 500)] == ["a", "b"]
        assert [n.node_id for n in await store.live_nodes(T0 + 1000)] == ["b"]
        # A renewal moves the lease and the load, and keeps the start time.
        await store.put_node(_node("a", T0 + 3000, load=7, started_ms=T0 + 999))
        live = await store.live_nodes(T0 + 2500)
        assert [(n.node_id, n.load, n.started_ms) for n in live] == [("a", 7, T0)]
        assert len(await store.list_nodes()) == 2
        await store.remove_node("a", "")
        assert [n.node_id for n in await store.list_nodes()] == ["b"]

    store_backend.run(body)


def test_a_live_lease_is_its_holders_alone(store_backend: StoreBackend) -> None:
    async def body(store: RegistryStore) -> None:
        mine = functools.partial(_node, "a", holder="mine", port=1111, priority=5)
        await store.put_node(mine(T0 + 1000))
        # Another process with the same node id, while the lease is live: refused, the row
        # as it was, and its release deletes nothing.
        with pytest.raises(LeaseHeld, match=r"node id 'a' is held .*127.0.0.1:1111.* 1.0 s more"):
            await store.put_node(_node("a", T0 + 2000, holder="theirs", port=2222, priority=9))
        await store.remove_node("a", "theirs")
        [node] = await store.list_nodes()
        assert (node.holder, node.port, node.priority, node.lease_expires_ms) == (
            "mine", 1111, 5, T0 + 1000
        )
        # The holder renews (its start time kept) ...
        await store.put_node(mine(T0 + 3000, renewed_ms=T0 + 900, started_ms=T0 + 900))
        [node] = await store.list_nodes()
        assert (node.lease_expires_ms, node.started_ms) == (T0 + 3000, T0)
        # ... and once its lease has lapsed, another process may take it over (its own
        # start time), after which the first one's release leaves it alone.
        theirs = _node("a", T0 + 9000, holder="theirs", renewed_ms=T0 + 3000,
                       started_ms=T0 + 3000, port=2222)  # fmt: skip
        await store.put_node(theirs)
        await store.remove_node("a", "mine")
        assert await store.list_nodes() == [dataclasses.replace(theirs, load=0)]
        await store.remove_node("a", "theirs")
        assert await store.list_nodes() == []

    store_backend.run(body)


def test_a_crashed_holders_live_lease_is_reclaimed_on_its_own_address(
    store_backend: StoreBackend,
) -> None:
    async def body(store: RegistryStore) -> None:
        await store.put_node(_node("a", T0 + 15_000, holder="crashed", port=1111))
        # Reclaiming needs the very address: another one is still refused.
        with pytest.raises(LeaseHeld):
            await store.put_node(_node("a", T0 + 16_000, holder="new", port=2222), reclaim=True)
        restarted = _node("a", T0 + 16_000, holder="new", port=1111, renewed_ms=T0 + 1000,
                          started_ms=T0 + 1000)  # fmt: skip
        with pytest.raises(LeaseHeld):  # not without reclaim
            await store.put_node(restarted)
        await store.put_node(restarted, reclaim=True)
        assert await store.list_nodes() == [restarted]

    store_backend.run(body)


def test_writes_are_visible_to_a_second_store_on_the_same_data(
    store_backend: StoreBackend,
) -> None:
    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        write = _write()
        assert await store.register_endpoint(write) is WriteOutcome.NEW
        async with store_backend.make() as other:
            stored = await other.get_endpoint(write.endpoint_id)
            assert stored is not None and stored.public_key == write.public_key
            assert await other.register_endpoint(write) is WriteOutcome.REPLAYED

    store_backend.run(body)


def test_endpoint_keys_are_read_alone_and_together(store_backend: StoreBackend) -> None:
    """The key-cache miss read: each lookup gets its own key (or None), whether it is alone
    or one of many asked in the same loop turn (SQLite answers those with one query, in
    chunks of _group_read.MAX_IDS_PER_QUERY), and the same id asked twice at once."""

    async def body(store: RegistryStore) -> None:
        await _with_app(store)
        writes = [endpoint_write(n, carried_key=True) for n in range(1, 601)]
        outcomes = await asyncio.gather(*(store.register_endpoint(w) for w in writes))
        assert set(outcomes) == {WriteOutcome.NEW}
        keys = [EndpointKey(w.public_key, w.application) for w in writes]
        assert await store.get_endpoint_key(writes[0].endpoint_id) == keys[0]
        assert await store.get_endpoint_key(bytes(20)) is None
        asked = [w.endpoint_id for w in writes] + [bytes(20), writes[7].endpoint_id]
        got = await asyncio.gather(*(store.get_endpoint_key(i) for i in asked))
        assert got == [*keys, None, keys[7]]

    store_backend.run(body)
